//! The routers and the request that the `http_server` bench and the allocation test compare: the
//! same cases, built one way, so their figures describe the same stacks.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request};
use axum::routing::get;
use orderscope_context::carrier::HeaderExtractor;
use orderscope_tower::ServerLayer;
use tower::ServiceBuilder;
use tower_http::trace::TraceLayer;
use tracing_opentelemetry::OpenTelemetrySpanExt;

async fn show_order(Path(id): Path<String>) -> String {
    id
}

fn base() -> Router {
    Router::new().route("/orders/{id}", get(show_order))
}

/// The peer stack's span, as tower-http and tracing-opentelemetry document it: tower-http's
/// default span fields at `INFO`, and the W3C parent from the global propagator set in
/// `make_span_with`, before the span starts.
pub(crate) fn peer_span<B>(request: &http::Request<B>) -> tracing::Span {
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        uri = %request.uri(),
        version = ?request.version(),
    );
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(request.headers()))
    });
    let _ = span.set_parent(parent);
    span
}

pub(crate) fn request() -> Request<Body> {
    Request::get("/orders/ORD-2026-000123")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .header("baggage", "order.id=ORD-2026-000123")
        .body(Body::empty())
        .expect("request")
}

/// `(name, router)` for every case, `bare` first.
pub(crate) fn cases() -> Vec<(&'static str, Router)> {
    vec![
        ("bare", base()),
        (
            "empty_layer",
            base().layer(tower::layer::layer_fn(|inner| inner)),
        ),
        (
            "orderscope_metrics",
            base().layer(ServerLayer::new().tracing(false)),
        ),
        ("orderscope_full", base().layer(ServerLayer::new())),
        (
            "peer_metrics",
            base().layer(axum_prometheus::PrometheusMetricLayer::new()),
        ),
        (
            "peer_stack",
            base().layer(
                ServiceBuilder::new()
                    .layer(TraceLayer::new_for_http().make_span_with(peer_span))
                    .layer(axum_prometheus::PrometheusMetricLayer::new()),
            ),
        ),
    ]
}
