//! Layers built before the metrics recorder and the tracer provider are installed record into
//! them once they are (own test process: installs both globals).

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use opentelemetry::trace::SpanKind;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use orderscope_tower::{ClientLayer, ServerLayer};
use tower::{Layer, ServiceExt, service_fn};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

async fn call(app: &Router, path: &str) -> http::StatusCode {
    let response = app
        .clone()
        .oneshot(
            Request::get(path)
                .header("traceparent", TRACEPARENT)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    response.into_body().collect().await.unwrap();
    status
}

#[tokio::test]
async fn layers_built_before_init_record_into_the_pipeline_installed_later() {
    // Built, and used, before anything is installed.
    let app = Router::new()
        .route("/orders/{id}", get(|| async { "ok" }))
        .layer(ServerLayer::new());
    let client = ClientLayer::new().layer(service_fn(|_: Request<Empty<Bytes>>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(Empty::<Bytes>::new()))
    }));
    let outbound = |client: &orderscope_tower::Client<_>| {
        client.clone().oneshot(
            Request::get("http://stock.internal/stock/1")
                .body(Empty::new())
                .unwrap(),
        )
    };
    assert_eq!(call(&app, "/orders/1").await, 200);
    outbound(&client).await.unwrap();

    // What `orderscope::init` does: a global recorder and a global tracer provider.
    let recorder = orderscope_metrics::build_recorder();
    let metrics = recorder.handle();
    metrics::set_global_recorder(recorder).unwrap();
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());

    for _ in 0..3 {
        assert_eq!(call(&app, "/orders/1").await, 200);
        outbound(&client).await.unwrap();
    }
    provider.force_flush().unwrap();

    let text = metrics.render();
    assert!(
        text.contains(
            "http_server_request_duration_seconds_count{http_request_method=\"GET\",http_route=\"/orders/{id}\",http_response_status_code=\"200\"} 3"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "http_server_active_requests{http_request_method=\"GET\",http_route=\"/orders/{id}\"} 0"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "http_client_request_duration_seconds_count{http_request_method=\"GET\",server_address=\"stock.internal\",http_response_status_code=\"200\"} 3"
        ),
        "{text}"
    );

    let spans = exporter.get_finished_spans().unwrap();
    let servers: Vec<_> = spans
        .iter()
        .filter(|s| s.span_kind == SpanKind::Server)
        .collect();
    let clients = spans
        .iter()
        .filter(|s| s.span_kind == SpanKind::Client)
        .count();
    assert_eq!(servers.len(), 3, "{spans:#?}");
    assert_eq!(clients, 3, "{spans:#?}");
    for span in servers {
        assert_eq!(span.name, "GET /orders/{id}");
        assert_eq!(
            span.span_context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }
}
