//! With `init`'s default propagators (W3C, the order in `baggage`) the order travels through
//! `opentelemetry::global` too: plain global injection reaches an orderscope server, orderscope's
//! client layer reaches a server that reads only the global propagator, and a reqwest client
//! with the middleware reaches an orderscope server. `init` installs globals: its own process.

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
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use orderscope::tower::{ClientLayer, Order, ServerLayer};
use orderscope::{Channel, OrderContext, ReqwestMiddleware};
use tower::{Layer, ServiceExt};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// An orderscope server: `{order id} {order channel} {trace id}` of what it has in scope.
async fn orderscope_echo(order: Option<Order>) -> String {
    let cx = opentelemetry::Context::current();
    format!(
        "{} {} {}",
        order.as_ref().map_or("-", |o| o.id()),
        order
            .as_ref()
            .and_then(|o| o.channel())
            .map_or("-", |c| c.as_str()),
        cx.span().span_context().trace_id()
    )
}

/// A server that knows only `opentelemetry::global`.
async fn global_echo(headers: HeaderMap) -> String {
    let cx =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(&headers)));
    let order = OrderContext::from_context(&cx);
    format!(
        "{} {}",
        order.as_ref().map_or("-", |o| o.id()),
        cx.span().span_context().trace_id()
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

fn caller() -> opentelemetry::Context {
    let remote = opentelemetry::Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from_hex(TRACE_ID).expect("hex"),
        SpanId::from_hex("00f067aa0ba902b7").expect("hex"),
        TraceFlags::SAMPLED,
        true,
        TraceState::NONE,
    ));
    OrderContext::builder("ORD-2026-000123")
        .channel(Channel::Api)
        .build()
        .expect("order")
        .to_context(&remote)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_travels_through_the_global_propagator() {
    let logs = common::Capture::default();
    let telemetry = orderscope::builder("crm")
        .with_env(Vec::<(String, String)>::new())
        .with_log_writer(logs.clone())
        .build()
        .expect("init");

    let ours = serve(
        Router::new()
            .route("/orders/{id}", get(orderscope_echo))
            .layer(ServerLayer::new()),
    )
    .await;
    let theirs = serve(Router::new().route("/orders/{id}", get(global_echo))).await;
    let hyper = HyperClient::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();

    // 1. Plain global injection (what reqwest-tracing, tonic or the AWS SDK do) → orderscope.
    let mut request = http::Request::get(format!("http://{ours}/orders/1"))
        .body(Empty::<Bytes>::new())
        .expect("request");
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&caller(), &mut HeaderInjector(request.headers_mut()))
    });
    let response = hyper.request(request).await.expect("response");
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(
        String::from_utf8_lossy(&body),
        format!("ORD-2026-000123 api {TRACE_ID}")
    );

    // 2. orderscope's client layer → a server reading only the global propagator.
    let client = ClientLayer::new().layer(hyper.clone());
    let request = http::Request::get(format!("http://{theirs}/orders/2"))
        .body(Empty::<Bytes>::new())
        .expect("request");
    // The client layer starts its span when the service is called, on the first poll.
    let response = client
        .oneshot(request)
        .with_context(caller())
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
        format!("ORD-2026-000123 {TRACE_ID}")
    );

    // 3. A reqwest client with the middleware → orderscope.
    let reqwest = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(ReqwestMiddleware::new())
        .build();
    let send = {
        reqwest
            .get(format!("http://{ours}/orders/3"))
            .send()
            .with_context(caller())
    };
    let body = send.await.expect("response").text().await.expect("body");
    assert_eq!(body, format!("ORD-2026-000123 api {TRACE_ID}"));

    assert!(
        !logs.text().contains("unsupported propagator"),
        "{}",
        logs.text()
    );
    tokio::task::block_in_place(|| telemetry.shutdown()).expect("shutdown");
}
