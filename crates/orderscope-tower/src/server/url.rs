//! `server.address`, `server.port`, `url.scheme` and `url.query` of a server span.

use std::borrow::Cow;

use http::HeaderMap;
use http::uri::Uri;

/// Marks a request that arrived over TLS: insert it into the request extensions where the
/// connection is accepted, and the server span says `url.scheme="https"`.
///
/// axum's `serve` speaks plain HTTP; a service that terminates TLS itself (with `tokio-rustls`,
/// `axum-server`, …) knows which connections are encrypted. Insert the marker from the
/// per-connection service, for example with `tower_http::add_extension::AddExtensionLayer` or
/// `axum::Extension` on the router served by the TLS listener.
///
/// ```
/// use axum::{Extension, Router, routing::get};
/// use orderscope_tower::server::{ServerLayer, Tls};
///
/// // The router served by the TLS listener.
/// let app: Router = Router::new()
///     .route("/orders/{id}", get(|| async { "ok" }))
///     .layer(ServerLayer::new())
///     .layer(Extension(Tls));
/// # let _ = app;
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tls;

/// Query keys whose values are replaced with `REDACTED` in `url.query`: the ones the HTTP
/// semantic conventions name, and common credentials.
pub const DEFAULT_REDACTED_QUERY_KEYS: &[&str] = &[
    "AWSAccessKeyId",
    "Signature",
    "sig",
    "X-Goog-Signature",
    "access_token",
    "refresh_token",
    "id_token",
    "token",
    "api_key",
    "apikey",
    "key",
    "password",
    "passwd",
    "secret",
    "client_secret",
    "code",
];

/// Longest `url.query` recorded; longer queries are cut (at a parameter boundary when one is
/// within the limit).
pub const MAX_QUERY_LEN: usize = 1024;

/// The value a redacted query parameter gets.
const REDACTED: &str = "REDACTED";

/// `url.scheme`: `https` for a [`Tls`] connection; else, when the layer trusts it, the
/// `X-Forwarded-Proto` or `Forwarded: proto=` header of the proxy in front; else the scheme of
/// an absolute request target; else `http`.
pub(crate) fn scheme(
    tls: bool,
    trust_forwarded: bool,
    uri: &Uri,
    headers: &HeaderMap,
) -> &'static str {
    if tls {
        return "https";
    }
    if trust_forwarded && let Some(scheme) = forwarded_scheme(headers) {
        return scheme;
    }
    if uri.scheme() == Some(&http::uri::Scheme::HTTPS) {
        "https"
    } else {
        "http"
    }
}

/// The scheme a proxy says the client used: `Forwarded: proto=` (RFC 7239, first element) wins
/// over `X-Forwarded-Proto` (first value). Only `http` and `https` are accepted.
fn forwarded_scheme(headers: &HeaderMap) -> Option<&'static str> {
    let known = |value: &str| {
        let value = value.trim().trim_matches('"');
        if value.eq_ignore_ascii_case("https") {
            Some("https")
        } else if value.eq_ignore_ascii_case("http") {
            Some("http")
        } else {
            None
        }
    };
    if let Some(forwarded) = headers
        .get(http::header::FORWARDED)
        .and_then(|v| v.to_str().ok())
    {
        let first = forwarded.split(',').next().unwrap_or_default();
        for pair in first.split(';') {
            if let Some((name, value)) = pair.split_once('=')
                && name.trim().eq_ignore_ascii_case("proto")
            {
                return known(value);
            }
        }
    }
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| known(v.split(',').next().unwrap_or_default()))
}

/// `server.address` and `server.port` from the request target or the `Host` header; the port
/// defaults to the scheme's when the authority names none.
pub(crate) fn server_address<'a>(
    uri: &'a Uri,
    headers: &'a HeaderMap,
    scheme: &str,
) -> Option<(&'a str, i64)> {
    let authority = uri
        .authority()
        .map(http::uri::Authority::as_str)
        .or_else(|| {
            headers
                .get(http::header::HOST)
                .and_then(|host| host.to_str().ok())
        })?;
    let (host, port) = split_authority(authority);
    if host.is_empty() {
        return None;
    }
    let port = port.unwrap_or(if scheme == "https" { 443 } else { 80 });
    Some((host, i64::from(port)))
}

/// Host and port of `host[:port]` or `[v6][:port]`; a malformed port counts as none.
fn split_authority(authority: &str) -> (&str, Option<u16>) {
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').unwrap_or((rest, ""));
        return (host, after.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => (host, port.parse().ok()),
        _ => (authority, None),
    }
}

/// `url.query` with the values of `redact` keys (ASCII case-insensitive) replaced with
/// `REDACTED`, cut to [`MAX_QUERY_LEN`]. Borrowed when nothing is replaced nor cut.
pub(crate) fn redacted_query<'a>(query: &'a str, redact: &[Cow<'static, str>]) -> Cow<'a, str> {
    let query = if query.len() > MAX_QUERY_LEN {
        let cut = &query[..MAX_QUERY_LEN];
        // Query strings are ASCII in a valid URI; stay on a parameter boundary when possible.
        cut.rfind('&').map_or(cut, |end| &cut[..end])
    } else {
        query
    };
    let sensitive = |key: &str| redact.iter().any(|k| k.eq_ignore_ascii_case(key));
    if !query
        .split('&')
        .any(|pair| sensitive(pair.split('=').next().unwrap_or_default()))
    {
        return Cow::Borrowed(query);
    }
    let mut out = String::with_capacity(query.len());
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((key, _)) if sensitive(key) => {
                out.push_str(key);
                out.push('=');
                out.push_str(REDACTED);
            }
            _ => out.push_str(pair),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Vec<Cow<'static, str>> {
        DEFAULT_REDACTED_QUERY_KEYS
            .iter()
            .map(|k| Cow::Borrowed(*k))
            .collect()
    }

    #[test]
    fn query_values_of_sensitive_keys_are_redacted() {
        assert_eq!(
            redacted_query("page=2&sig=abc&Token=x&status=open", &keys()),
            "page=2&sig=REDACTED&Token=REDACTED&status=open"
        );
        assert!(matches!(
            redacted_query("page=2&per_page=50", &keys()),
            Cow::Borrowed(_)
        ));
        // A key without a value has nothing to hide; an empty query stays empty.
        assert_eq!(redacted_query("token&a=1", &keys()), "token&a=1");
        assert_eq!(redacted_query("", &keys()), "");
    }

    #[test]
    fn long_queries_are_cut_at_a_parameter() {
        let long = format!("a=1&b={}", "x".repeat(2000));
        assert_eq!(redacted_query(&long, &keys()), "a=1");
        let one = "x".repeat(2000);
        assert_eq!(redacted_query(&one, &keys()).len(), MAX_QUERY_LEN);
    }

    #[test]
    fn authorities() {
        assert_eq!(
            split_authority("shop.example:8443"),
            ("shop.example", Some(8443))
        );
        assert_eq!(split_authority("shop.example"), ("shop.example", None));
        assert_eq!(split_authority("[::1]:3000"), ("::1", Some(3000)));
        assert_eq!(split_authority("[::1]"), ("::1", None));
        assert_eq!(split_authority("host:99999"), ("host", None));
        assert_eq!(split_authority("host:"), ("host", None));
    }

    #[test]
    fn forwarded_schemes() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-proto", "https".parse().unwrap());
        assert_eq!(forwarded_scheme(&headers), Some("https"));
        headers.insert(
            http::header::FORWARDED,
            "for=192.0.2.60;proto=http;by=203.0.113.43".parse().unwrap(),
        );
        assert_eq!(forwarded_scheme(&headers), Some("http"));
        headers.insert(http::header::FORWARDED, "proto=gopher".parse().unwrap());
        assert_eq!(forwarded_scheme(&headers), None);
        let uri: Uri = "/x".parse().unwrap();
        assert_eq!(scheme(false, false, &uri, &headers), "http");
        assert_eq!(scheme(true, false, &uri, &headers), "https");
    }
}
