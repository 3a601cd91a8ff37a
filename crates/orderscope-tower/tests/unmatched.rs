//! `UnmatchedLayer`: requests no route matched are measured once, whether the `ServerLayer` is
//! applied before or after merging the router that carries it. Own process: the layer follows
//! the `ServerLayer` applied last in the process, so no other test may apply one concurrently.

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use orderscope_testing::{LocalMetrics, SpanCapture};
use orderscope_tower::ServerLayer;
use orderscope_tower::server::UnmatchedLayer;
use tower::ServiceExt;

const DURATION: &str = "http_server_request_duration_seconds";

/// What `orderscope`'s `metrics_router()` is: a `/metrics` route and this layer.
fn metrics_router() -> Router {
    Router::new()
        .route("/metrics", get(|| async { "# metrics" }))
        .layer(UnmatchedLayer::new())
}

fn run(app: Router, metrics: &LocalMetrics) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics.in_scope(|| {
        runtime.block_on(async {
            for (method, path, status) in [
                (Method::GET, "/nowhere/1", StatusCode::NOT_FOUND),
                (
                    Method::from_bytes(b"PURGE").unwrap(),
                    "/nowhere/2",
                    StatusCode::NOT_FOUND,
                ),
                (Method::GET, "/orders/1", StatusCode::OK),
                (Method::GET, "/metrics", StatusCode::OK),
            ] {
                let response = app
                    .clone()
                    .oneshot(
                        Request::builder()
                            .method(method)
                            .uri(path)
                            .body(Body::empty())
                            .unwrap(),
                    )
                    .await
                    .unwrap();
                assert_eq!(response.status(), status, "{path}");
                response.into_body().collect().await.unwrap();
            }
        });
    });
}

fn check(metrics: &LocalMetrics, spans: &SpanCapture) {
    let snapshot = metrics.snapshot();
    let unmatched = |method| {
        snapshot
            .histogram(
                DURATION,
                &[
                    ("http_request_method", method),
                    ("http_route", "unmatched"),
                    ("http_response_status_code", "404"),
                ],
            )
            .map(|values| values.len())
    };
    assert_eq!(
        unmatched("GET"),
        Some(1),
        "{:#?}",
        snapshot.series(DURATION)
    );
    assert_eq!(
        unmatched("_OTHER"),
        Some(1),
        "{:#?}",
        snapshot.series(DURATION)
    );
    assert_eq!(
        snapshot.series(DURATION).len(),
        3,
        "{:#?}",
        snapshot.series(DURATION)
    );
    let spans = spans.spans();
    let names: Vec<_> = spans.iter().map(|s| s.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ["GET", "GET /orders/{id}", "HTTP"], "{spans:#?}");
}

#[test]
fn unmatched_requests_are_measured_once_in_either_order() {
    // README's order: layer, then merge.
    let metrics = LocalMetrics::new();
    let spans = SpanCapture::builder().build();
    let app = Router::new()
        .route("/orders/{id}", get(|| async { "ok" }))
        .layer(ServerLayer::new().tracer_provider(spans.provider()))
        .merge(metrics_router());
    run(app, &metrics);
    check(&metrics, &spans);

    // Merge, then layer: the `ServerLayer` wraps the fallback itself; not measured twice.
    let metrics = LocalMetrics::new();
    let spans = SpanCapture::builder().build();
    let app = Router::new()
        .route("/orders/{id}", get(|| async { "ok" }))
        .merge(metrics_router())
        .layer(ServerLayer::new().tracer_provider(spans.provider()));
    run(app, &metrics);
    check(&metrics, &spans);
}
