//! `OTEL_PROPAGATORS=b3multi,baggage,jaeger`: orderscope's client layer and server layer speak B3
//! on the hop, the order still travels in `baggage`, and `jaeger` (no propagator crate for the
//! pinned OpenTelemetry version) is named in a WARN. `init` installs globals: its own process.

mod common;

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use opentelemetry::context::FutureExt;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use orderscope::OrderContext;
use orderscope::tower::{ClientLayer, Order, ServerLayer};
use tower::{Layer, ServiceExt};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// `{order id} {trace id in scope} {the B3 and W3C headers received}`.
async fn echo(order: Option<Order>, headers: HeaderMap) -> String {
    let cx = opentelemetry::Context::current();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    format!(
        "{} {} {} {} {}",
        order.as_ref().map_or("-", |o| o.id()),
        cx.span().span_context().trace_id(),
        header("x-b3-traceid"),
        header("traceparent"),
        header("baggage"),
    )
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_b3_service_speaks_b3_and_the_order_still_travels() {
    let logs = common::Capture::default();
    let telemetry = orderscope::builder("mes")
        .with_env([("OTEL_PROPAGATORS", "b3multi,baggage,jaeger")])
        .with_log_writer(logs.clone())
        .build()
        .expect("init");
    let warning = logs
        .json()
        .into_iter()
        .find(|line| {
            line["message"]
                .as_str()
                .is_some_and(|m| m.contains("unsupported propagator, `jaeger`"))
        })
        .unwrap_or_else(|| panic!("a WARN names jaeger: {}", logs.text()));
    assert_eq!(warning["level"], "WARN");

    let addr = serve(
        Router::new()
            .route("/orders/{id}", get(echo))
            .layer(ServerLayer::new()),
    )
    .await;
    let client = ClientLayer::new()
        .layer(HyperClient::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());

    let remote = opentelemetry::Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from_hex(TRACE_ID).expect("hex"),
        SpanId::from_hex("00f067aa0ba902b7").expect("hex"),
        TraceFlags::SAMPLED,
        true,
        TraceState::NONE,
    ));
    let cx = OrderContext::new("ORD-B3")
        .expect("order")
        .to_context(&remote);
    let request = http::Request::get(format!("http://{addr}/orders/1"))
        .body(Empty::<Bytes>::new())
        .expect("request");
    // The client layer starts its span when the service is called, on the first poll.
    let response = client
        .oneshot(request)
        .with_context(cx)
        .await
        .expect("response");
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(
        String::from_utf8_lossy(&body),
        format!("ORD-B3 {TRACE_ID} {TRACE_ID} - order.id=ORD-B3"),
        "B3 on the wire, no traceparent; the server continues the trace with the order"
    );

    // And the global propagator is the same composite.
    let mut headers = std::collections::HashMap::new();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&remote, &mut headers));
    assert_eq!(
        headers.get("x-b3-traceid").map(String::as_str),
        Some(TRACE_ID)
    );
    assert!(!headers.contains_key("traceparent"));

    tokio::task::block_in_place(|| telemetry.shutdown()).expect("shutdown");
}
