//! README's quick-start pattern — `.layer(ServerLayer::new())` then
//! `.merge(telemetry.metrics_router())` — measures every request: unknown paths with random
//! methods are `http_route="unmatched"` (unknown methods `_OTHER`) with a bounded set of series
//! and a server span each; a 405 on a known route is counted too. Own process: `init`.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::{Router, routing::get};
use http_body_util::BodyExt as _;
use orderscope::tower::{Order, ServerLayer};
use orderscope_testing::OtlpReceiver;
use tower::ServiceExt as _;

async fn show_order(order: Option<Order>) -> String {
    order.map(|o| o.id().to_owned()).unwrap_or_default()
}

/// A small xorshift generator seeded from the clock: different paths and methods every run.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

const METHODS: [&str; 8] = [
    "GET", "POST", "PUT", "DELETE", "PATCH", "PURGE", "BREW", "M-SEARCH",
];
const REQUESTS: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_pattern_measures_every_request() {
    let receiver = OtlpReceiver::start().await.expect("receiver");
    let logs = common::Capture::default();
    let telemetry = orderscope::builder("api")
        .with_env([("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.http_endpoint())])
        .with_log_writer(logs)
        .build()
        .expect("init");

    // Exactly as README's quick start builds it.
    let app = Router::new()
        .route("/orders/{id}", get(show_order))
        .layer(ServerLayer::new())
        .merge(telemetry.metrics_router());

    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut random = Random(seed | 1);
    let mut paths = BTreeSet::new();
    for _ in 0..REQUESTS {
        let method = METHODS[(random.next() % METHODS.len() as u64) as usize];
        let path = format!("/p{:x}/{:x}", random.next(), random.next() % 1000);
        paths.insert(path.clone());
        let response = app
            .clone()
            .oneshot(
                Request::builder()
                    .method(Method::from_bytes(method.as_bytes()).unwrap())
                    .uri(&path)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{method} {path}");
        response.into_body().collect().await.unwrap();
    }
    // A known route: matched, and a 405 for a method it does not serve.
    for (method, status) in [
        (Method::GET, StatusCode::OK),
        (Method::POST, StatusCode::METHOD_NOT_ALLOWED),
    ] {
        let response = app
            .clone()
            .oneshot(
                Request::builder()
                    .method(method)
                    .uri("/orders/A-1")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), status);
        response.into_body().collect().await.unwrap();
    }
    // The scrape itself is not traffic.
    let scrape = app
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let text = String::from_utf8(
        scrape
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();

    let samples = orderscope_testing::parse_prometheus(&text).expect("Prometheus text");
    let counts: Vec<_> = samples
        .iter()
        .filter(|s| s.name == "http_server_request_duration_seconds_count")
        .collect();
    let unmatched: Vec<_> = counts
        .iter()
        .filter(|s| s.labels.get("http_route").map(String::as_str) == Some("unmatched"))
        .collect();
    let total: f64 = unmatched.iter().map(|s| s.value).sum();
    assert_eq!(total, REQUESTS as f64, "{text}");
    // Bounded: one series per known method (plus `_OTHER`), whatever the paths.
    let methods: BTreeSet<_> = unmatched
        .iter()
        .map(|s| s.labels["http_request_method"].clone())
        .collect();
    assert!(
        methods
            .iter()
            .all(|m| ["GET", "POST", "PUT", "DELETE", "PATCH", "_OTHER"].contains(&m.as_str())),
        "{methods:?}"
    );
    assert!(unmatched.len() <= 6, "{text}");
    assert!(
        unmatched.iter().all(|s| s
            .labels
            .get("http_response_status_code")
            .map(String::as_str)
            == Some("404")),
        "{text}"
    );
    for path in paths.iter().take(20) {
        assert!(
            !text.contains(path.as_str()),
            "raw path {path} in the metrics"
        );
    }
    let route = |method: &str, status: &str| {
        counts.iter().any(|s| {
            s.labels.get("http_route").map(String::as_str) == Some("/orders/{id}")
                && s.labels["http_request_method"] == method
                && s.labels
                    .get("http_response_status_code")
                    .map(String::as_str)
                    == Some(status)
                && s.value == 1.0
        })
    };
    assert!(route("GET", "200") && route("POST", "405"), "{text}");
    assert!(
        !counts
            .iter()
            .any(|s| s.labels.get("http_route").map(String::as_str) == Some("/metrics")),
        "{text}"
    );
    // No request in flight is left on the gauge.
    assert!(
        samples
            .iter()
            .filter(|s| s.name == "http_server_active_requests")
            .all(|s| s.value == 0.0),
        "{text}"
    );

    // A server span for every request.
    tokio::task::block_in_place(|| telemetry.force_flush()).expect("flush");
    let spans = receiver
        .wait_for_spans(REQUESTS + 2, Duration::from_secs(20))
        .await
        .expect("a span per request");
    let unmatched_spans: Vec<_> = spans
        .iter()
        .filter(|s| {
            s.attr_str("http.route").is_none()
                && s.attr_str("url.path").is_some_and(|p| p.starts_with("/p"))
        })
        .collect();
    assert_eq!(unmatched_spans.len(), REQUESTS);
    for span in &unmatched_spans {
        assert_eq!(span.attr_i64("http.response.status_code"), Some(404));
        let method = span.attr_str("http.request.method").unwrap();
        assert!(["GET", "POST", "PUT", "DELETE", "PATCH", "_OTHER"].contains(&method));
        let expected = if method == "_OTHER" { "HTTP" } else { method };
        assert_eq!(span.name, expected, "span names never carry the path");
        if method == "_OTHER" {
            assert!(span.attr_str("http.request.method_original").is_some());
        }
    }
    tokio::task::block_in_place(|| telemetry.shutdown()).expect("clean shutdown");
}
