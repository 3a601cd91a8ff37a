//! [`BaggageEgress`]: which hosts receive the order's baggage.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// Which hosts an outgoing request sends `baggage` (the order fields and other entries) to.
///
/// The order is the company's data: by default it goes only to hosts the service trusts —
/// loopback and private addresses (`10/8`, `172.16/12`, `192.168/16`, `100.64/10`, IPv6 unique
/// local `fc00::/7`, link-local), names the public DNS cannot resolve (`localhost`,
/// `*.localhost`, `*.internal`, `*.local`, `*.home.arpa`, and single-label names such as a
/// Compose or Kubernetes service, `crm`) — and to hosts added with
/// [`allow_host`](Self::allow_host). Every other host still receives `traceparent` (and
/// `tracestate`), so the trace continues, but no `baggage`. [`NoPropagation`](super::NoPropagation)
/// sends neither.
///
/// # Example
///
/// ```
/// use orderscope_tower::client::{BaggageEgress, ClientLayer};
///
/// let egress = BaggageEgress::trusted_hosts()
///     .allow_host("warehouse.example.com")
///     .allow_host(".corp.example.com"); // and every host under it
/// assert!(egress.allows("10.1.2.3"));
/// assert!(egress.allows("billing.corp.example.com"));
/// assert!(!egress.allows("api.stripe.com"));
/// let layer = ClientLayer::new().baggage_egress(egress);
/// # let _ = layer;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaggageEgress {
    private: bool,
    any: bool,
    hosts: Arc<[Box<str>]>,
}

impl Default for BaggageEgress {
    fn default() -> Self {
        Self::trusted_hosts()
    }
}

impl BaggageEgress {
    /// Loopback and private addresses, `localhost` and single-label names, plus the hosts added
    /// with [`allow_host`](Self::allow_host). The default.
    pub fn trusted_hosts() -> Self {
        Self {
            private: true,
            any: false,
            hosts: Arc::from([]),
        }
    }

    /// Only the hosts added with [`allow_host`](Self::allow_host), not even private addresses.
    pub fn listed_hosts_only() -> Self {
        Self {
            private: false,
            any: false,
            hosts: Arc::from([]),
        }
    }

    /// Every host (the behaviour of the stock OpenTelemetry propagators).
    pub fn any_host() -> Self {
        Self {
            private: true,
            any: true,
            hosts: Arc::from([]),
        }
    }

    /// Also sends baggage to `host`: an exact host name or address (ASCII case ignored), or, with
    /// a leading dot (`.corp.example.com`), every host under that domain.
    #[must_use]
    pub fn allow_host(self, host: impl Into<String>) -> Self {
        let mut host: String = host.into();
        host.make_ascii_lowercase();
        let mut hosts = self.hosts.to_vec();
        if !hosts.iter().any(|h| **h == *host) {
            hosts.push(host.into_boxed_str());
        }
        Self {
            hosts: Arc::from(hosts),
            ..self
        }
    }

    /// Whether a request to `host` (a name or an address, IPv6 with or without brackets) carries
    /// baggage.
    pub fn allows(&self, host: &str) -> bool {
        if self.any {
            return true;
        }
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let host = host.strip_suffix('.').unwrap_or(host);
        if self.private && is_private(host) {
            return true;
        }
        self.hosts
            .iter()
            .any(|allowed| match allowed.strip_prefix('.') {
                Some(domain) => {
                    host.len() > domain.len() + 1
                        && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
                        && host[host.len() - domain.len()..].eq_ignore_ascii_case(domain)
                }
                None => host.eq_ignore_ascii_case(allowed),
            })
    }
}

/// Domains the public DNS never resolves: `localhost` (RFC 6761), `.internal` (reserved by ICANN
/// for private use), `.local` (mDNS) and `.home.arpa` (RFC 8375).
const PRIVATE_SUFFIXES: [&str; 4] = [".localhost", ".internal", ".local", ".home.arpa"];

fn is_private(host: &str) -> bool {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => private_v4(ip),
        Ok(IpAddr::V6(ip)) => private_v6(ip),
        Err(_) => {
            (!host.is_empty() && !host.contains('.') && !host.contains(':'))
                || PRIVATE_SUFFIXES.iter().any(|suffix| {
                    host.len() > suffix.len()
                        && host
                            .get(host.len() - suffix.len()..)
                            .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix))
                })
                || host.eq_ignore_ascii_case("localhost")
        }
    }
}

fn private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || (a == 100 && (64..128).contains(&b))
}

fn private_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return private_v4(v4);
    }
    let first = ip.segments()[0];
    ip.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_hosts_by_default() {
        let e = BaggageEgress::default();
        for host in [
            "127.0.0.1",
            "10.0.0.7",
            "172.16.3.4",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.1.1",
            "::1",
            "[::1]",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "localhost",
            "LOCALHOST",
            "app.localhost",
            "crm",
            "mes-worker",
            "warehouse.internal",
            "printer.local",
            "nas.home.arpa",
        ] {
            assert!(e.allows(host), "{host}");
        }
        for host in [
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2001:db8::1",
            "::ffff:8.8.8.8",
            "api.stripe.com",
            "example.com.",
            "localhost.evil.com",
            ".internal",
            "crm.default.svc.cluster.local.example.com",
            "",
        ] {
            assert!(!e.allows(host), "{host}");
        }
    }

    #[test]
    fn allow_list() {
        let e = BaggageEgress::listed_hosts_only()
            .allow_host("Warehouse.Example.com")
            .allow_host(".corp.example.com");
        assert!(e.allows("warehouse.example.com"));
        assert!(e.allows("warehouse.example.com."));
        assert!(e.allows("a.b.corp.example.com"));
        assert!(!e.allows("corp.example.com"));
        assert!(!e.allows("evilcorp.example.com"));
        assert!(!e.allows("127.0.0.1"), "private addresses are not listed");
        assert!(BaggageEgress::any_host().allows("api.stripe.com"));
    }
}
