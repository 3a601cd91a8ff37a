//! End to end over real TCP: a caller → service A (server layer) → A's client layer → service B
//! (server layer). Spans are exported by OTLP/HTTP to the in-process receiver. The global tracer
//! provider is installed, so this file is its own test process.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::routing::get;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{Client as HyperClient, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use orderscope_testing::OrderSpanProcessor;
use orderscope_testing::{OtlpReceiver, SpanKind, assert_child_of};
use orderscope_tower::{Client, ClientLayer, Order, ServerLayer, UrlTemplate};
use tower::{Layer, ServiceExt};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

type Outbound = Client<HyperClient<HttpConnector, Empty<Bytes>>>;

#[derive(Clone)]
struct AppState {
    client: Outbound,
    b: std::net::SocketAddr,
}

/// Service A: looks the order up in service B.
async fn show_order(State(state): State<AppState>, order: Order) -> Result<String, StatusCode> {
    let mut request = Request::get(format!("http://{}/stock/42", state.b))
        .body(Empty::new())
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    request.extensions_mut().insert(UrlTemplate("/stock/{sku}"));
    let response = state
        .client
        .oneshot(request)
        .await
        .map_err(|_| StatusCode::BAD_GATEWAY)?;
    let seen_by_b = response
        .into_body()
        .collect()
        .await
        .map_err(|_| StatusCode::BAD_GATEWAY)?
        .to_bytes();
    Ok(format!(
        "A:{} B:{}",
        order.id(),
        String::from_utf8_lossy(&seen_by_b)
    ))
}

/// Service B: answers with the order it sees.
async fn stock(order: Option<Order>) -> String {
    order.map_or_else(|| "none".to_owned(), |order| order.id().to_owned())
}

async fn serve(app: Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_across_two_services() {
    orderscope_testing::install_crypto_provider();
    let receiver = OtlpReceiver::start().await.expect("receiver");
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(receiver.http_traces_endpoint())
        .with_timeout(Duration::from_secs(5))
        .with_headers(Default::default())
        .build()
        .expect("exporter");
    let provider = SdkTracerProvider::builder()
        .with_span_processor(OrderSpanProcessor::new())
        .with_batch_exporter(exporter)
        .build();
    // Both layers pick the global provider up at their first request.
    opentelemetry::global::set_tracer_provider(provider.clone());

    let b = serve(
        Router::new()
            .route("/stock/{sku}", get(stock))
            .layer(ServerLayer::new()),
    )
    .await;
    let hyper = HyperClient::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let client = ClientLayer::new().layer(hyper);
    let a = serve(
        Router::new()
            .route("/orders/{id}", get(show_order))
            .with_state(AppState { client, b })
            .layer(ServerLayer::new()),
    )
    .await;

    // The caller, not instrumented: sends a W3C trace context and the order as baggage.
    let caller = HyperClient::builder(TokioExecutor::new()).build_http::<Body>();
    let request = Request::get(format!("http://{a}/orders/ORD-2026-000123"))
        .header("traceparent", TRACEPARENT)
        .header(
            "baggage",
            "order.id=ORD-2026-000123,order.channel=api,order.priority=high",
        )
        .body(Body::empty())
        .expect("request");
    let response = caller.request(request).await.expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(
        body, "A:ORD-2026-000123 B:ORD-2026-000123",
        "B's handler sees the order"
    );

    provider.force_flush().expect("flush");
    let spans = receiver
        .wait_for_spans(3, Duration::from_secs(10))
        .await
        .expect("three spans");
    assert_eq!(spans.len(), 3, "{spans:#?}");

    let a_server = spans
        .iter()
        .find(|s| s.name == "GET /orders/{id}")
        .expect("A server span");
    let a_client = spans
        .iter()
        .find(|s| s.kind == SpanKind::Client)
        .expect("A client span");
    let b_server = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server && s.name == "GET /stock/{sku}")
        .expect("B server span");

    assert_eq!(a_server.kind, SpanKind::Server);
    assert_eq!(a_client.name, "GET /stock/{sku}");
    for span in [a_server, a_client, b_server] {
        assert_eq!(span.trace_id, TRACE_ID, "one trace: {}", span.summary());
        assert_eq!(span.attr_str("order.id"), Some("ORD-2026-000123"));
        assert_eq!(span.attr_str("order.channel"), Some("api"));
        assert_eq!(span.attr_str("order.priority"), Some("high"));
        assert!(!span.status.is_error());
        assert_eq!(span.scope_name, "orderscope-tower");
    }
    assert_eq!(a_server.parent_span_id.as_deref(), Some(CALLER_SPAN));
    assert_child_of(a_client, a_server);
    assert_child_of(b_server, a_client);

    assert_eq!(a_client.attr_str("url.template"), Some("/stock/{sku}"));
    assert_eq!(a_client.attr_str("server.address"), Some("127.0.0.1"));
    assert_eq!(a_client.attr_i64("server.port"), Some(i64::from(b.port())));
    assert_eq!(a_client.attr_i64("http.response.status_code"), Some(200));
    assert_eq!(b_server.attr_str("url.path"), Some("/stock/42"));
    assert_eq!(b_server.attr_str("http.route"), Some("/stock/{sku}"));
    assert_eq!(a_server.attr_str("http.route"), Some("/orders/{id}"));

    provider.shutdown().expect("shutdown");
}
