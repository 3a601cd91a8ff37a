//! Pieces shared by the server and the client middleware.

use http::Method;
use opentelemetry::InstrumentationScope;

/// Methods known to the HTTP semantic conventions, plus `_OTHER`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum MethodKind {
    Get,
    Post,
    Put,
    Delete,
    Patch,
    Head,
    Options,
    Connect,
    Trace,
    Other,
}

pub(crate) const METHOD_KINDS: usize = 10;

impl MethodKind {
    #[inline]
    pub(crate) fn of(method: &Method) -> Self {
        // Ordered by frequency.
        if *method == Method::GET {
            Self::Get
        } else if *method == Method::POST {
            Self::Post
        } else if *method == Method::PUT {
            Self::Put
        } else if *method == Method::DELETE {
            Self::Delete
        } else if *method == Method::PATCH {
            Self::Patch
        } else if *method == Method::HEAD {
            Self::Head
        } else if *method == Method::OPTIONS {
            Self::Options
        } else if *method == Method::CONNECT {
            Self::Connect
        } else if *method == Method::TRACE {
            Self::Trace
        } else {
            Self::Other
        }
    }

    /// The `http.request.method` value.
    #[inline]
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
            Self::Patch => "PATCH",
            Self::Head => "HEAD",
            Self::Options => "OPTIONS",
            Self::Connect => "CONNECT",
            Self::Trace => "TRACE",
            Self::Other => "_OTHER",
        }
    }

    /// The first word of a span name: the method, or `HTTP` for an unknown method.
    #[inline]
    pub(crate) const fn span_prefix(self) -> &'static str {
        match self {
            Self::Other => "HTTP",
            other => other.as_str(),
        }
    }
}

/// Span names are `Cow<'static, str>`; a `String` per request would be an allocation per request.
/// Names are built once per `(method, route)` and kept for the life of the process, bounded; past
/// the bound, spans are named by method only.
pub(crate) fn intern_span_name(method: MethodKind, route: &str) -> &'static str {
    orderscope_context::intern(format!("{} {route}", method.span_prefix()))
        .unwrap_or(method.span_prefix())
}

/// The instrumentation scope of the spans this crate creates, with
/// [`SEMCONV_SCHEMA_URL`](orderscope_context::SEMCONV_SCHEMA_URL).
pub(crate) fn scope() -> InstrumentationScope {
    InstrumentationScope::builder(env!("CARGO_PKG_NAME"))
        .with_version(env!("CARGO_PKG_VERSION"))
        .with_schema_url(orderscope_context::SEMCONV_SCHEMA_URL)
        .build()
}

/// The host part of a `Host` header value.
pub(crate) fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // [::1]:8080
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spans_carry_the_schema_url_of_the_conventions() {
        assert_eq!(
            scope().schema_url(),
            Some(orderscope_context::SEMCONV_SCHEMA_URL)
        );
    }

    #[test]
    fn methods_map_to_semconv_values() {
        assert_eq!(MethodKind::of(&Method::GET).as_str(), "GET");
        assert_eq!(MethodKind::of(&Method::TRACE).as_str(), "TRACE");
        let purge = Method::from_bytes(b"PURGE").unwrap();
        assert_eq!(MethodKind::of(&purge), MethodKind::Other);
        assert_eq!(MethodKind::Other.as_str(), "_OTHER");
        assert_eq!(MethodKind::Other.span_prefix(), "HTTP");
    }

    #[test]
    fn span_names_are_interned_once() {
        let a = intern_span_name(MethodKind::Get, "/orders/{id}");
        let b = intern_span_name(MethodKind::Get, "/orders/{id}");
        assert_eq!(a, "GET /orders/{id}");
        assert!(std::ptr::eq(a, b));
    }

    #[test]
    fn series_guard_stops_at_limit() {
        // The series budget of the server and client layers.
        let guard = orderscope_metrics::SeriesBudget::new(orderscope_metrics::SeriesLimit::new(2));
        assert!(guard.try_acquire());
        assert!(guard.try_acquire());
        assert!(!guard.try_acquire());
    }

    #[test]
    fn host_ports_are_stripped() {
        assert_eq!(strip_port("example.com:8080"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:8080"), "::1");
        assert_eq!(strip_port("127.0.0.1:3000"), "127.0.0.1");
    }
}
