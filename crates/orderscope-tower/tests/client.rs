//! Client layer over a stub inner service: propagation, span, metric. Scoped: `SpanCapture`, a
//! thread-local recorder, a current-thread runtime.

use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};

use http::{HeaderMap, Request, Response, StatusCode};
use opentelemetry::trace::{TraceContextExt, Tracer, TracerProvider};
use orderscope_context::OrderContext;
use orderscope_testing::OrderSpanProcessor;
use orderscope_testing::{LocalMetrics, SpanCapture, SpanKind, assert_child_of};
use orderscope_tower::{ClientLayer, NoPropagation, UrlTemplate};
use tower::{Layer, ServiceExt, service_fn};

const DURATION: &str = "http_client_request_duration_seconds";

fn run<F: Future>(metrics: &LocalMetrics, f: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    metrics.in_scope(|| runtime.block_on(f))
}

/// An inner "HTTP client" that keeps the headers it was sent and answers with `status`.
fn stub(
    status: StatusCode,
    seen: Arc<Mutex<Vec<HeaderMap>>>,
) -> impl tower::Service<
    Request<()>,
    Response = Response<()>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<()>, Infallible>> + Send,
> + Clone {
    service_fn(move |request: Request<()>| {
        seen.lock().expect("lock").push(request.headers().clone());
        async move {
            let mut response = Response::new(());
            *response.status_mut() = status;
            Ok::<_, Infallible>(response)
        }
    })
}

#[test]
fn propagates_the_current_context_and_order() {
    let spans = SpanCapture::builder()
        .with_processor(OrderSpanProcessor::new())
        .build();
    let metrics = LocalMetrics::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let client = ClientLayer::new()
        .tracer_provider(spans.provider())
        .layer(stub(StatusCode::OK, seen.clone()));

    let tracer = spans.provider().tracer("test");
    let order = OrderContext::new("ORD-5").expect("order");
    run(&metrics, async {
        let parent = tracer.start("handler");
        let cx = order.to_context(&opentelemetry::Context::new().with_span(parent));
        let _guard = cx.clone().attach();
        let mut request = Request::get("http://warehouse.internal:8080/stock/9?secret=1")
            .body(())
            .expect("request");
        request.extensions_mut().insert(UrlTemplate("/stock/{sku}"));
        let response = client.clone().oneshot(request).await.expect("response");
        assert_eq!(response.status(), StatusCode::OK);
        cx.span().end();
    });

    let all = spans.spans();
    let client_span = all
        .iter()
        .find(|s| s.kind == SpanKind::Client)
        .expect("client span");
    let parent = all.iter().find(|s| s.name == "handler").expect("parent");
    assert_eq!(client_span.name, "GET /stock/{sku}");
    assert_child_of(client_span, parent);
    assert_eq!(client_span.attr_str("http.request.method"), Some("GET"));
    assert_eq!(
        client_span.attr_str("server.address"),
        Some("warehouse.internal")
    );
    assert_eq!(client_span.attr_i64("server.port"), Some(8080));
    assert_eq!(
        client_span.attr_str("url.full"),
        Some("http://warehouse.internal:8080/stock/9")
    );
    assert_eq!(client_span.attr_str("url.template"), Some("/stock/{sku}"));
    assert_eq!(client_span.attr_i64("http.response.status_code"), Some(200));
    assert_eq!(client_span.attr_str("order.id"), Some("ORD-5"));
    assert!(!client_span.status.is_error());

    let headers = seen.lock().expect("lock").pop().expect("one request");
    let traceparent = headers["traceparent"].to_str().expect("ascii");
    assert_eq!(
        traceparent,
        format!("00-{}-{}-01", client_span.trace_id, client_span.span_id),
        "the next hop's parent is the client span"
    );
    assert_eq!(headers["baggage"], "order.id=ORD-5");

    let snapshot = metrics.snapshot();
    assert_eq!(
        snapshot
            .histogram(
                DURATION,
                &[
                    ("http_request_method", "GET"),
                    ("server_address", "warehouse.internal"),
                    ("http_response_status_code", "200"),
                ]
            )
            .map(|v| v.len()),
        Some(1)
    );
}

#[test]
fn no_propagation_per_request_and_per_layer() {
    let spans = SpanCapture::new();
    let metrics = LocalMetrics::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let client = ClientLayer::new()
        .tracer_provider(spans.provider())
        .layer(stub(StatusCode::OK, seen.clone()));
    let silent = ClientLayer::new()
        .propagate(false)
        .tracer_provider(spans.provider())
        .layer(stub(StatusCode::OK, seen.clone()));

    let order = OrderContext::new("ORD-6").expect("order");
    run(&metrics, async {
        let _guard = order.attach();
        let mut request = Request::get("https://api.carrier.example/rates")
            .body(())
            .expect("request");
        request.extensions_mut().insert(NoPropagation);
        client.clone().oneshot(request).await.expect("response");
        let request = Request::get("https://api.carrier.example/rates")
            .body(())
            .expect("request");
        silent.clone().oneshot(request).await.expect("response");
        let request = Request::get("http://internal/x").body(()).expect("request");
        client.clone().oneshot(request).await.expect("response");
    });

    let seen = seen.lock().expect("lock");
    for headers in &seen[..2] {
        assert!(headers.get("traceparent").is_none());
        assert!(headers.get("baggage").is_none());
    }
    assert_eq!(seen[2]["baggage"], "order.id=ORD-6");
    assert!(seen[2].get("traceparent").is_some());
    let all = spans.spans();
    assert_eq!(all.len(), 3, "spans are recorded either way");
    assert!(all.iter().all(|s| s.name == "GET"));
}

#[test]
fn client_errors_mark_the_span() {
    let spans = SpanCapture::new();
    let metrics = LocalMetrics::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let not_found = ClientLayer::new()
        .tracer_provider(spans.provider())
        .layer(stub(StatusCode::NOT_FOUND, seen.clone()));
    let failing = ClientLayer::new()
        .tracer_provider(spans.provider())
        .layer(service_fn(|_: Request<()>| async {
            Err::<Response<()>, _>(std::io::Error::other("connection refused"))
        }));

    run(&metrics, async {
        let request = Request::post("http://crm.internal/orders")
            .body(())
            .expect("request");
        not_found.clone().oneshot(request).await.expect("response");
        let request = Request::delete("http://mes.internal/jobs/1")
            .body(())
            .expect("request");
        assert!(failing.clone().oneshot(request).await.is_err());
    });

    let all = spans.spans();
    let post = all.iter().find(|s| s.name == "POST").expect("POST span");
    assert!(post.status.is_error());
    assert_eq!(post.attr_str("error.type"), Some("404"));
    let delete = all
        .iter()
        .find(|s| s.name == "DELETE")
        .expect("DELETE span");
    assert!(delete.status.is_error());
    assert_eq!(delete.attr_str("error.type"), Some("_OTHER"));

    let snapshot = metrics.snapshot();
    let count = |labels: &[(&str, &str)]| snapshot.histogram(DURATION, labels).map(|v| v.len());
    assert_eq!(
        count(&[
            ("http_request_method", "POST"),
            ("server_address", "crm.internal"),
            ("http_response_status_code", "404"),
            ("error_type", "404"),
        ]),
        Some(1)
    );
    assert_eq!(
        count(&[
            ("http_request_method", "DELETE"),
            ("server_address", "mes.internal"),
            ("error_type", "_OTHER"),
        ]),
        Some(1)
    );
}

#[test]
fn a_dropped_client_request_is_cancelled() {
    let metrics = LocalMetrics::new();
    let client = ClientLayer::new()
        .tracing(false)
        .layer(service_fn(|_: Request<()>| async {
            std::future::pending::<Result<Response<()>, Infallible>>().await
        }));
    run(&metrics, async {
        let request = Request::get("http://slow.internal/")
            .body(())
            .expect("request");
        let call = client.clone().oneshot(request);
        tokio::select! {
            _ = call => unreachable!("pending"),
            () = tokio::task::yield_now() => {}
        }
    });
    let snapshot = metrics.snapshot();
    assert_eq!(
        snapshot
            .histogram(
                DURATION,
                &[
                    ("http_request_method", "GET"),
                    ("server_address", "slow.internal"),
                    ("error_type", "cancelled"),
                ]
            )
            .map(|v| v.len()),
        Some(1)
    );
}
