//! The reqwest-middleware integration against a real orderscope server over TCP: span,
//! injection, metric labels, URL template, opt-out, transport errors.

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use http::HeaderMap;
use opentelemetry::trace::{TraceContextExt, Tracer, TracerProvider};
use orderscope_context::OrderContext;
use orderscope_testing::OrderSpanProcessor;
use orderscope_testing::{LocalMetrics, SpanCapture, SpanKind, assert_child_of};
use orderscope_tower::reqwest::ClientMiddleware;
use orderscope_tower::{ClientLayer, NoPropagation, Order, ServerLayer, UrlTemplate};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};

const DURATION: &str = "http_client_request_duration_seconds";

/// What the server saw: `{order id or -} {traceparent or -} {baggage or -}`.
async fn echo(order: Option<Order>, headers: HeaderMap) -> String {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    format!(
        "{} {} {}",
        order.as_ref().map_or("-", |o| o.id()),
        header("traceparent"),
        header("baggage")
    )
}

async fn serve() -> SocketAddr {
    let app = Router::new()
        .route("/orders/{id}", get(echo))
        .route(
            "/fail",
            get(|| async { http::StatusCode::SERVICE_UNAVAILABLE }),
        )
        .layer(ServerLayer::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    addr
}

fn client(spans: &SpanCapture) -> ClientWithMiddleware {
    orderscope_testing::install_crypto_provider();
    ClientBuilder::new(reqwest::Client::new())
        .with(ClientMiddleware::from_layer(
            ClientLayer::new().tracer_provider(spans.provider()),
        ))
        .build()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn server_receives_the_order_and_the_client_span() {
    let spans = SpanCapture::builder()
        .with_processor(OrderSpanProcessor::new())
        .build();
    let metrics = LocalMetrics::new();
    let client = client(&spans);
    let tracer = spans.provider().tracer("test");
    let order = OrderContext::new("ORD-5").expect("order");

    let (body, addr) = metrics.in_scope(|| {
        runtime().block_on(async {
            let addr = serve().await;
            let parent = tracer.start("handler");
            let cx = order.to_context(&opentelemetry::Context::new().with_span(parent));
            let body = {
                let _guard = cx.clone().attach();
                client
                    .get(format!("http://{addr}/orders/5?token=secret"))
                    .with_extension(UrlTemplate("/orders/{id}"))
                    .send()
                    .await
                    .expect("response")
                    .text()
                    .await
                    .expect("body")
            };
            cx.span().end();
            (body, addr)
        })
    });

    let all = spans.spans();
    let client_span = all
        .iter()
        .find(|s| s.kind == SpanKind::Client)
        .expect("client span");
    let parent = all.iter().find(|s| s.name == "handler").expect("parent");
    assert_eq!(client_span.name, "GET /orders/{id}");
    assert_child_of(client_span, parent);
    assert_eq!(client_span.attr_str("server.address"), Some("127.0.0.1"));
    assert_eq!(
        client_span.attr_i64("server.port"),
        Some(i64::from(addr.port()))
    );
    assert_eq!(
        client_span.attr_str("url.full").map(str::to_owned),
        Some(format!("http://127.0.0.1:{}/orders/5", addr.port()))
    );
    assert_eq!(client_span.attr_i64("http.response.status_code"), Some(200));
    assert_eq!(client_span.attr_str("order.id"), Some("ORD-5"));

    assert_eq!(
        body,
        format!(
            "ORD-5 00-{}-{}-01 order.id=ORD-5",
            client_span.trace_id, client_span.span_id
        ),
        "the server reads the order, and its parent is the client span"
    );

    let snapshot = metrics.snapshot();
    assert_eq!(
        snapshot
            .histogram(
                DURATION,
                &[
                    ("http_request_method", "GET"),
                    ("server_address", "127.0.0.1"),
                    ("http_response_status_code", "200"),
                ]
            )
            .map(|v| v.len()),
        Some(1)
    );
}

#[test]
fn opt_out_error_status_and_transport_errors() {
    let spans = SpanCapture::builder().build();
    let metrics = LocalMetrics::new();
    let client = client(&spans);
    let order = OrderContext::new("ORD-6").expect("order");

    metrics.in_scope(|| {
        runtime().block_on(async {
            let addr = serve().await;
            let _guard = order.attach();
            let body = client
                .get(format!("http://{addr}/orders/6"))
                .with_extension(NoPropagation)
                .send()
                .await
                .expect("response")
                .text()
                .await
                .expect("body");
            assert_eq!(body, "- - -", "nothing propagated");

            let status = client
                .get(format!("http://{addr}/fail"))
                .send()
                .await
                .expect("response")
                .status();
            assert_eq!(status, 503);

            // A port nobody listens on: bound, then closed.
            let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let port = closed.local_addr().expect("addr").port();
            drop(closed);
            let error = client
                .get(format!("http://127.0.0.1:{port}/x"))
                .send()
                .await
                .expect_err("connection refused");
            assert!(error.is_connect(), "{error:?}");
        })
    });

    let all = spans.spans();
    let failed = all
        .iter()
        .find(|s| s.attr_i64("http.response.status_code") == Some(503))
        .expect("503 span");
    assert_eq!(failed.attr_str("error.type"), Some("503"));
    assert!(failed.status.is_error());
    let refused = all
        .iter()
        .find(|s| s.attr_str("error.type") == Some("connect"))
        .expect("connect error span");
    assert!(refused.status.is_error());
    assert_eq!(refused.attr_i64("http.response.status_code"), None);

    let snapshot = metrics.snapshot();
    assert!(
        snapshot
            .histogram(
                DURATION,
                &[
                    ("http_request_method", "GET"),
                    ("server_address", "127.0.0.1"),
                    ("error_type", "connect"),
                ]
            )
            .is_some(),
        "transport errors are measured with their error_type"
    );
    assert!(
        snapshot
            .histogram(
                DURATION,
                &[
                    ("http_request_method", "GET"),
                    ("server_address", "127.0.0.1"),
                    ("http_response_status_code", "503"),
                    ("error_type", "503"),
                ]
            )
            .is_some()
    );
}

#[test]
fn shares_its_configuration_with_the_layer() {
    orderscope_testing::install_crypto_provider();
    // Propagation off on the layer: the middleware built from it sends nothing either.
    let spans = SpanCapture::builder().build();
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(ClientMiddleware::from(
            ClientLayer::new()
                .propagate(false)
                .tracer_provider(spans.provider()),
        ))
        .build();
    let order = OrderContext::new("ORD-7").expect("order");
    let body = runtime().block_on(async {
        let addr = serve().await;
        let _guard = order.attach();
        client
            .get(format!("http://{addr}/orders/7"))
            .send()
            .await
            .expect("response")
            .text()
            .await
            .expect("body")
    });
    assert_eq!(body, "- - -");
}
