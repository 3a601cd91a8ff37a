//! Server span attributes: `server.address`/`server.port`, `url.scheme` behind TLS (a marker from
//! the acceptor, or a trusted forwarded header), and the opt-in, redacted `url.query`.

use axum::body::Body;
use axum::routing::get;
use axum::{Extension, Router};
use http::Request;
use http_body_util::BodyExt;
use orderscope_testing::{ReceivedSpan, SpanCapture};
use orderscope_tower::ServerLayer;
use orderscope_tower::server::Tls;
use tower::ServiceExt;

/// Sends one request through `layer` (plus `tls`: the acceptor's marker) and returns its span.
fn span_of(layer: ServerLayer, tls: bool, request: Request<Body>) -> ReceivedSpan {
    let spans = SpanCapture::builder().build();
    let mut app = Router::new()
        .route("/orders", get(|| async { "ok" }))
        .layer(layer.tracer_provider(spans.provider()));
    if tls {
        app = app.layer(Extension(Tls));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200);
        response.into_body().collect().await.unwrap();
    });
    let mut all = spans.spans();
    assert_eq!(all.len(), 1, "{all:#?}");
    all.remove(0)
}

fn request(uri: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::get(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::empty()).unwrap()
}

#[test]
fn address_and_port_come_from_the_host_header() {
    let span = span_of(
        ServerLayer::new(),
        false,
        request("/orders?page=2", &[("host", "shop.example:8443")]),
    );
    assert_eq!(span.attr_str("server.address"), Some("shop.example"));
    assert_eq!(span.attr_i64("server.port"), Some(8443));
    assert_eq!(span.attr_str("url.scheme"), Some("http"));
    assert_eq!(span.attr_str("url.query"), None, "url.query is opt-in");

    let span = span_of(
        ServerLayer::new(),
        false,
        request("/orders", &[("host", "[::1]")]),
    );
    assert_eq!(span.attr_str("server.address"), Some("::1"));
    assert_eq!(span.attr_i64("server.port"), Some(80));
}

#[test]
fn tls_connections_are_https() {
    let span = span_of(
        ServerLayer::new(),
        true,
        request("/orders", &[("host", "shop.example")]),
    );
    assert_eq!(span.attr_str("url.scheme"), Some("https"));
    assert_eq!(span.attr_i64("server.port"), Some(443));
}

#[test]
fn forwarded_scheme_only_when_trusted() {
    let headers = [("host", "api.example"), ("x-forwarded-proto", "https")];
    let untrusted = span_of(ServerLayer::public(), false, request("/orders", &headers));
    assert_eq!(untrusted.attr_str("url.scheme"), Some("http"));
    let trusted = span_of(
        ServerLayer::public().trust_forwarded_scheme(true),
        false,
        request("/orders", &headers),
    );
    assert_eq!(trusted.attr_str("url.scheme"), Some("https"));
    assert_eq!(trusted.attr_i64("server.port"), Some(443));
    let forwarded = span_of(
        ServerLayer::public().trust_forwarded_scheme(true),
        false,
        request(
            "/orders",
            &[
                ("host", "api.example"),
                ("forwarded", "for=192.0.2.60;proto=https"),
            ],
        ),
    );
    assert_eq!(forwarded.attr_str("url.scheme"), Some("https"));
}

#[test]
fn query_is_recorded_when_enabled_and_redacted() {
    let span = span_of(
        ServerLayer::new()
            .record_query(true)
            .redact_query_key("partner_pin"),
        false,
        request(
            "/orders?status=open&access_token=s3cr3t&Sig=abc&partner_pin=1234&page=2",
            &[],
        ),
    );
    assert_eq!(
        span.attr_str("url.query"),
        Some("status=open&access_token=REDACTED&Sig=REDACTED&partner_pin=REDACTED&page=2")
    );
    assert_eq!(span.attr_str("url.path"), Some("/orders"));
}
