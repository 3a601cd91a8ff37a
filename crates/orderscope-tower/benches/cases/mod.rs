//! The routers and the request that the `http_server` bench and the allocation test compare: the
//! same cases, built one way, so their figures describe the same stacks.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request};
use axum::routing::get;
use http_body_util::BodyExt as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use orderscope_context::carrier::HeaderExtractor;
use orderscope_tower::ServerLayer;
use tower::ServiceBuilder;
use tower::ServiceExt as _;
use tower_http::trace::TraceLayer;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt as _;

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

/// Checks (with the global propagator set to W3C trace context) that the peer stack's server span
/// continues the caller's trace: a peer whose spans lost the remote parent would be measured doing
/// less than it should.
pub(crate) fn assert_peer_gets_the_remote_parent() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("check")));
    let (_, peer) = cases()
        .into_iter()
        .find(|(name, _)| *name == "peer_stack")
        .expect("peer_stack");
    let peer = peer.with_state::<()>(());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    tracing::subscriber::with_default(subscriber, || {
        runtime.block_on(async {
            let response = peer.oneshot(request()).await.expect("infallible");
            std::hint::black_box(response.into_body().collect().await.expect("body"));
        });
    });
    let spans = exporter.get_finished_spans().expect("spans");
    let server = spans
        .iter()
        .find(|span| span.name == "request")
        .unwrap_or_else(|| panic!("no peer span in {spans:#?}"));
    assert_eq!(
        server.span_context.trace_id().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "peer span is not in the caller's trace"
    );
    assert_eq!(
        server.parent_span_id.to_string(),
        "00f067aa0ba902b7",
        "peer span is not the caller's child"
    );
}
