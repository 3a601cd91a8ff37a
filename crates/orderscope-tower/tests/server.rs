//! Server layer, in process and scoped: spans in a `SpanCapture`, metrics in a thread-local
//! debugging recorder, a current-thread runtime so everything runs inside the recorder's scope.

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Path;
use axum::routing::{any, get};
use axum::{Router, http::StatusCode};
use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use opentelemetry::KeyValue;
use orderscope_context::OrderContext;
use orderscope_testing::OrderSpanProcessor;
use orderscope_testing::{LocalMetrics, MetricsSnapshot, ReceivedSpan, SpanCapture, SpanKind};
use orderscope_tower::server::SpanAttributes;
use orderscope_tower::{Order, ServerLayer};
use tower::ServiceExt;

const DURATION: &str = "http_server_request_duration_seconds";
const ACTIVE: &str = "http_server_active_requests";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn capture() -> SpanCapture {
    SpanCapture::builder()
        .with_processor(OrderSpanProcessor::new())
        .build()
}

/// Runs `f` on a current-thread runtime with `metrics` as this thread's recorder.
fn run<F: Future>(metrics: &LocalMetrics, f: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    metrics.in_scope(|| runtime.block_on(f))
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, Bytes) {
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, body)
}

fn get_request(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).expect("request")
}

fn one_span(spans: &[ReceivedSpan], name: &str) -> ReceivedSpan {
    let matching: Vec<_> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(matching.len(), 1, "spans named {name:?} in {spans:#?}");
    matching[0].clone()
}

fn labels<'a>(
    method: &'a str,
    route: &'a str,
    status: Option<&'a str>,
    error: Option<&'a str>,
) -> Vec<(&'a str, &'a str)> {
    let mut labels = vec![("http_request_method", method), ("http_route", route)];
    if let Some(status) = status {
        labels.push(("http_response_status_code", status));
    }
    if let Some(error) = error {
        labels.push(("error_type", error));
    }
    labels
}

fn count(snapshot: &MetricsSnapshot, labels: &[(&str, &str)]) -> usize {
    snapshot
        .histogram(DURATION, labels)
        .map_or(0, |values| values.len())
}

async fn show_order(Path(id): Path<String>, order: Option<Order>) -> String {
    format!(
        "{id}:{}",
        order.map(|o| o.id().to_owned()).unwrap_or_default()
    )
}

#[test]
fn server_span_follows_semantic_conventions_and_carries_the_order() {
    let spans = capture();
    let metrics = LocalMetrics::new();
    let app = Router::new()
        .route("/orders/{id}", get(show_order))
        .layer(ServerLayer::new().tracer_provider(spans.provider()));

    let (status, body) = run(&metrics, async {
        let request = Request::get("/orders/42")
            .header("host", "shop.internal:8080")
            .header("user-agent", "curl/8.5")
            .header("traceparent", TRACEPARENT)
            .header("baggage", "order.id=ORD-1,order.channel=web,session=abc")
            .body(Body::empty())
            .expect("request");
        send(&app, request).await
    });
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "42:ORD-1");

    let span = one_span(&spans.spans(), "GET /orders/{id}");
    assert_eq!(span.kind, SpanKind::Server);
    assert_eq!(span.trace_id, TRACE_ID);
    assert_eq!(span.parent_span_id.as_deref(), Some(PARENT_ID));
    assert_eq!(span.attr_str("http.request.method"), Some("GET"));
    assert_eq!(span.attr_str("http.route"), Some("/orders/{id}"));
    assert_eq!(span.attr_str("url.path"), Some("/orders/42"));
    assert_eq!(span.attr_str("url.scheme"), Some("http"));
    assert_eq!(span.attr_str("network.protocol.version"), Some("1.1"));
    assert_eq!(span.attr_str("server.address"), Some("shop.internal"));
    assert_eq!(span.attr_str("user_agent.original"), Some("curl/8.5"));
    assert_eq!(span.attr_i64("http.response.status_code"), Some(200));
    assert_eq!(span.attr_str("order.id"), Some("ORD-1"));
    assert_eq!(span.attr_str("order.channel"), Some("web"));
    assert!(span.attr("error.type").is_none());
    assert!(!span.status.is_error());

    let snapshot = metrics.snapshot();
    assert_eq!(
        snapshot.series(DURATION),
        vec![vec![
            ("http_request_method".to_owned(), "GET".to_owned()),
            ("http_response_status_code".to_owned(), "200".to_owned()),
            ("http_route".to_owned(), "/orders/{id}".to_owned()),
        ]]
    );
    assert_eq!(
        count(&snapshot, &labels("GET", "/orders/{id}", Some("200"), None)),
        1
    );
    assert_eq!(
        snapshot.gauge(ACTIVE, &labels("GET", "/orders/{id}", None, None)),
        Some(0.0)
    );
}

#[test]
fn nested_routes_use_the_full_template_and_fallbacks_are_unmatched() {
    let spans = capture();
    let metrics = LocalMetrics::new();
    let api = Router::new().route("/items/{id}", get(|| async { "item" }));
    let app = Router::new()
        .nest("/api/v1", api)
        .fallback(|| async { (StatusCode::NOT_FOUND, "nothing here") })
        .layer(ServerLayer::new().tracer_provider(spans.provider()));

    run(&metrics, async {
        assert_eq!(
            send(&app, get_request("/api/v1/items/7")).await.0,
            StatusCode::OK
        );
        for path in ["/wp-admin.php", "/random/8f3a", "/api/v1/nope"] {
            assert_eq!(send(&app, get_request(path)).await.0, StatusCode::NOT_FOUND);
        }
    });

    let all = spans.spans();
    let nested = one_span(&all, "GET /api/v1/items/{id}");
    assert_eq!(nested.attr_str("http.route"), Some("/api/v1/items/{id}"));
    let unmatched: Vec<_> = all.iter().filter(|s| s.name == "GET").collect();
    assert_eq!(unmatched.len(), 3);
    for span in unmatched {
        assert!(span.attr("http.route").is_none(), "{span:#?}");
        assert!(!span.status.is_error(), "404 is not a server error");
    }

    let snapshot = metrics.snapshot();
    assert_eq!(
        count(&snapshot, &labels("GET", "unmatched", Some("404"), None)),
        3
    );
    assert_eq!(
        count(
            &snapshot,
            &labels("GET", "/api/v1/items/{id}", Some("200"), None)
        ),
        1
    );
    for series in snapshot.series(DURATION) {
        for (key, value) in series {
            assert!(
                !(key == "http_route" && value.contains("wp-admin")),
                "raw path leaked"
            );
        }
    }
}

#[test]
fn unknown_methods_become_other() {
    let spans = capture();
    let metrics = LocalMetrics::new();
    let app = Router::new()
        .route("/cache/{key}", any(|| async { "purged" }))
        .layer(ServerLayer::new().tracer_provider(spans.provider()));

    run(&metrics, async {
        let request = Request::builder()
            .method("PURGE")
            .uri("/cache/home")
            .body(Body::empty())
            .expect("request");
        assert_eq!(send(&app, request).await.0, StatusCode::OK);
    });

    let span = one_span(&spans.spans(), "HTTP /cache/{key}");
    assert_eq!(span.attr_str("http.request.method"), Some("_OTHER"));
    assert_eq!(span.attr_str("http.request.method_original"), Some("PURGE"));
    let snapshot = metrics.snapshot();
    assert_eq!(
        count(
            &snapshot,
            &labels("_OTHER", "/cache/{key}", Some("200"), None)
        ),
        1
    );
}

#[test]
fn skipped_paths_record_nothing() {
    let spans = capture();
    let metrics = LocalMetrics::new();
    let app = Router::new()
        .route("/metrics", get(|| async { "# metrics" }))
        .route("/health", get(|| async { "ok" }))
        .route("/orders/{id}", get(|| async { "order" }))
        .layer(ServerLayer::new().tracer_provider(spans.provider()));
    let custom = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/metrics", get(|| async { "# metrics" }))
        .layer(
            ServerLayer::new()
                .skip_paths(["/health"])
                .tracer_provider(spans.provider()),
        );

    run(&metrics, async {
        assert_eq!(send(&app, get_request("/metrics")).await.1, "# metrics");
        assert_eq!(send(&app, get_request("/health")).await.1, "ok");
        assert_eq!(send(&custom, get_request("/health")).await.1, "ok");
        assert_eq!(send(&custom, get_request("/metrics")).await.1, "# metrics");
    });

    let names: Vec<_> = spans.spans().into_iter().map(|s| s.name).collect();
    assert_eq!(names, vec!["GET /health", "GET /metrics"]);
    let snapshot = metrics.snapshot();
    let routes: Vec<_> = snapshot
        .series(DURATION)
        .into_iter()
        .flat_map(|labels| labels.into_iter().filter(|(k, _)| k == "http_route"))
        .map(|(_, v)| v)
        .collect();
    assert_eq!(routes, vec!["/health", "/metrics"]);
}

#[test]
fn server_errors_mark_the_span_and_the_metric() {
    let spans = capture();
    let metrics = LocalMetrics::new();
    let app = Router::new()
        .route(
            "/fail",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "down") }),
        )
        .route("/missing", get(|| async { StatusCode::NOT_FOUND }))
        .layer(ServerLayer::new().tracer_provider(spans.provider()));

    run(&metrics, async {
        assert_eq!(send(&app, get_request("/fail")).await.0, 503);
        assert_eq!(send(&app, get_request("/missing")).await.0, 404);
    });

    let all = spans.spans();
    let failed = one_span(&all, "GET /fail");
    assert!(failed.status.is_error());
    assert_eq!(failed.attr_str("error.type"), Some("503"));
    let missing = one_span(&all, "GET /missing");
    assert!(!missing.status.is_error());
    assert!(missing.attr("error.type").is_none());

    let snapshot = metrics.snapshot();
    assert_eq!(
        count(&snapshot, &labels("GET", "/fail", Some("503"), Some("503"))),
        1
    );
    assert_eq!(
        count(&snapshot, &labels("GET", "/missing", Some("404"), None)),
        1
    );
}

async fn boom() -> &'static str {
    panic!("handler exploded")
}

#[test]
fn caught_panics_become_500_and_are_recorded() {
    let spans = capture();
    let metrics = LocalMetrics::new();
    let app = Router::new().route("/boom", get(boom)).layer(
        ServerLayer::new()
            .catch_panic(true)
            .tracer_provider(spans.provider()),
    );

    let (status, body) = run(&metrics, send(&app, get_request("/boom")));
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.is_empty());

    let span = one_span(&spans.spans(), "GET /boom");
    assert!(span.status.is_error());
    assert_eq!(span.attr_str("error.type"), Some("panic"));
    assert_eq!(span.attr_i64("http.response.status_code"), Some(500));
    let event = span.event("exception").expect("exception event");
    assert_eq!(
        event.attr_str("exception.message"),
        Some("handler exploded")
    );

    let snapshot = metrics.snapshot();
    assert_eq!(
        count(
            &snapshot,
            &labels("GET", "/boom", Some("500"), Some("panic"))
        ),
        1
    );
    assert_eq!(
        snapshot.gauge(ACTIVE, &labels("GET", "/boom", None, None)),
        Some(0.0)
    );
}

#[test]
fn uncaught_panics_propagate_and_are_recorded() {
    let spans = capture();
    let metrics = LocalMetrics::new();
    let app = Router::new()
        .route("/boom", get(boom))
        .layer(ServerLayer::new().tracer_provider(spans.provider()));

    let joined = run(&metrics, async {
        let app = app.clone();
        tokio::spawn(async move { send(&app, get_request("/boom")).await }).await
    });
    assert!(joined.expect_err("panics").is_panic());

    let span = one_span(&spans.spans(), "GET /boom");
    assert!(span.status.is_error());
    assert_eq!(span.attr_str("error.type"), Some("panic"));
    let snapshot = metrics.snapshot();
    assert_eq!(
        count(&snapshot, &labels("GET", "/boom", None, Some("panic"))),
        1
    );
    assert_eq!(
        snapshot.gauge(ACTIVE, &labels("GET", "/boom", None, None)),
        Some(0.0)
    );
}

#[test]
fn a_request_dropped_before_its_response_is_cancelled() {
    let spans = capture();
    let metrics = LocalMetrics::new();
    let app = Router::new()
        .route("/slow", get(std::future::pending::<&'static str>))
        .layer(ServerLayer::new().tracer_provider(spans.provider()));

    metrics.in_scope(|| {
        let mut future = pin!(app.clone().oneshot(get_request("/slow")));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(future.as_mut().poll(&mut cx).is_pending());
        let snapshot = metrics.snapshot();
        assert_eq!(
            snapshot.gauge(ACTIVE, &labels("GET", "/slow", None, None)),
            Some(1.0)
        );
    });

    let span = one_span(&spans.spans(), "GET /slow");
    assert_eq!(span.attr_str("error.type"), Some("cancelled"));
    assert!(span.status.is_error());
    let snapshot = metrics.snapshot();
    assert_eq!(
        count(&snapshot, &labels("GET", "/slow", None, Some("cancelled"))),
        1
    );
    // The debugging recorder resets gauges on each snapshot: +1 was taken above, -1 is left.
    assert_eq!(
        snapshot.gauge(ACTIVE, &labels("GET", "/slow", None, None)),
        Some(-1.0)
    );
}

#[test]
fn a_body_dropped_midstream_is_cancelled_with_its_status() {
    let metrics = LocalMetrics::new();
    let app = Router::new()
        .route(
            "/stream",
            get(|| async { Body::from_stream(chunk_stream(vec!["a", "b"])) }),
        )
        .layer(ServerLayer::new().tracing(false));

    run(&metrics, async {
        let response = app
            .clone()
            .oneshot(get_request("/stream"))
            .await
            .expect("ok");
        let mut body = response.into_body();
        let first = body.frame().await.expect("frame").expect("data");
        assert_eq!(first.into_data().expect("data"), "a");
        drop(body);
    });

    let snapshot = metrics.snapshot();
    assert_eq!(
        count(
            &snapshot,
            &labels("GET", "/stream", Some("200"), Some("cancelled"))
        ),
        1
    );
    assert_eq!(
        snapshot.gauge(ACTIVE, &labels("GET", "/stream", None, None)),
        Some(0.0)
    );
}

/// A stream of chunks that is pending between chunks (so a reader can stop in the middle).
struct ChunkStream {
    chunks: std::vec::IntoIter<&'static str>,
    ready: bool,
}

fn chunk_stream(chunks: Vec<&'static str>) -> ChunkStream {
    ChunkStream {
        chunks: chunks.into_iter(),
        ready: true,
    }
}

impl futures_core::Stream for ChunkStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Self::Item>> {
        if self.ready {
            self.ready = false;
            Poll::Ready(
                self.chunks
                    .next()
                    .map(|c| Ok(Bytes::from_static(c.as_bytes()))),
            )
        } else {
            self.ready = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

#[test]
fn head_requests_are_recorded_at_the_response_head() {
    let metrics = LocalMetrics::new();
    let app = Router::new()
        .route(
            "/orders/{id}",
            get(|| async { "a body axum drops for HEAD" }),
        )
        .layer(ServerLayer::new().tracing(false));

    run(&metrics, async {
        let request = Request::head("/orders/1")
            .body(Body::empty())
            .expect("request");
        assert_eq!(send(&app, request).await.0, StatusCode::OK);
    });
    let snapshot = metrics.snapshot();
    assert_eq!(
        count(
            &snapshot,
            &labels("HEAD", "/orders/{id}", Some("200"), None)
        ),
        1
    );
}

#[test]
fn hooks_add_bounded_attributes() {
    let spans = capture();
    let metrics = LocalMetrics::new();
    let layer = ServerLayer::new()
        .tracer_provider(spans.provider())
        .on_request(
            |request: &http::request::Parts, attrs: &mut SpanAttributes<'_>| {
                if let Some(tenant) = request.headers.get("x-tenant") {
                    attrs.insert(KeyValue::new(
                        "tenant",
                        tenant.to_str().unwrap_or_default().to_owned(),
                    ));
                }
                for i in 0..100 {
                    attrs.insert(KeyValue::new(format!("spam.{i}"), i));
                }
            },
        )
        .on_response(
            |response: &http::response::Parts, attrs: &mut SpanAttributes<'_>| {
                if response.headers.contains_key("x-cache") {
                    attrs.insert(KeyValue::new("cache.hit", true));
                }
            },
        );
    let app = Router::new()
        .route("/x", get(|| async { ([("x-cache", "hit")], "cached") }))
        .layer(layer);

    run(&metrics, async {
        let request = Request::get("/x")
            .header("x-tenant", "acme")
            .body(Body::empty())
            .expect("request");
        send(&app, request).await
    });

    let span = one_span(&spans.spans(), "GET /x");
    assert_eq!(span.attr_str("tenant"), Some("acme"));
    assert_eq!(span.attr("cache.hit").and_then(|v| v.as_bool()), Some(true));
    let spam = span
        .attributes
        .keys()
        .filter(|k| k.starts_with("spam."))
        .count();
    assert_eq!(spam, orderscope_tower::server::MAX_HOOK_ATTRIBUTES - 1);
}

#[test]
fn extra_labels_come_from_a_fixed_set() {
    let metrics = LocalMetrics::new();
    let layer = ServerLayer::new().tracing(false).label_from(
        "partner_tier",
        &["gold", "silver"],
        |request: &http::request::Parts| {
            request
                .headers
                .get("x-tier")
                .and_then(|v| v.to_str().ok())
                .map(|tier| match tier {
                    "gold" => "gold",
                    "silver" => "silver",
                    _ => "unknown",
                })
        },
    );
    let app = Router::new()
        .route("/x", get(|| async { "x" }))
        .layer(layer);

    run(&metrics, async {
        for tier in ["gold", "gold", "silver", "platinum"] {
            let request = Request::get("/x")
                .header("x-tier", tier)
                .body(Body::empty())
                .expect("request");
            send(&app, request).await;
        }
        send(&app, get_request("/x")).await;
    });

    let snapshot = metrics.snapshot();
    let with_tier = |tier| {
        let mut l = labels("GET", "/x", Some("200"), None);
        l.push(("partner_tier", tier));
        count(&snapshot, &l)
    };
    assert_eq!(with_tier("gold"), 2);
    assert_eq!(with_tier("silver"), 1);
    assert_eq!(with_tier("_other"), 2);
}

#[test]
fn the_series_limit_folds_new_series_into_an_overflow_series() {
    let metrics = LocalMetrics::new();
    let mut app = Router::new();
    for i in 0..5 {
        app = app.route(&format!("/r{i}"), get(|| async { "r" }));
    }
    let app = app.layer(ServerLayer::new().tracing(false).series_limit(3));

    run(&metrics, async {
        for i in 0..5 {
            send(&app, get_request(&format!("/r{i}"))).await;
        }
    });

    let snapshot = metrics.snapshot();
    assert_eq!(snapshot.series(DURATION).len(), 4, "3 series + overflow");
    assert_eq!(
        count(
            &snapshot,
            &[
                ("http_request_method", "_overflow"),
                ("http_route", "_overflow"),
                ("http_response_status_code", "_overflow"),
            ]
        ),
        2
    );
    assert_eq!(snapshot.series(ACTIVE).len(), 4);
}

#[test]
fn measurements_in_the_overflow_series_are_counted() {
    let metrics = LocalMetrics::new();
    let mut app = Router::new();
    for i in 0..5 {
        app = app.route(&format!("/r{i}"), get(|| async { "r" }));
    }
    let app = app.layer(ServerLayer::new().tracing(false).series_limit(3));

    run(&metrics, async {
        for i in 0..5 {
            send(&app, get_request(&format!("/r{i}"))).await;
        }
    });

    let snapshot = metrics.snapshot();
    let overflow = "orderscope_cardinality_overflow_total";
    assert_eq!(snapshot.counter(overflow, &[("metric", DURATION)]), Some(2));
    // Two requests over the limit, each incrementing and decrementing the gauge.
    assert_eq!(snapshot.counter(overflow, &[("metric", ACTIVE)]), Some(4));
}

#[test]
fn the_order_extractor() {
    let metrics = LocalMetrics::new();
    async fn required(order: Order) -> String {
        order.id().to_owned()
    }
    async fn optional(order: Option<Order>) -> String {
        order.map_or_else(|| "none".to_owned(), |o| o.into_inner().id().to_owned())
    }
    let app = Router::new()
        .route("/required", get(required))
        .route("/optional", get(optional))
        .layer(ServerLayer::new());

    run(&metrics, async {
        let with_order = |uri: &str| {
            Request::get(uri)
                .header("baggage", "order.id=ORD-7")
                .body(Body::empty())
                .expect("request")
        };
        assert_eq!(send(&app, with_order("/required")).await.1, "ORD-7");
        assert_eq!(send(&app, with_order("/optional")).await.1, "ORD-7");
        let (status, _) = send(&app, get_request("/required")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(send(&app, get_request("/optional")).await.1, "none");
    });
}

/// The layer keeps the order in the context, not in the request extensions; an order a middleware
/// puts in the extensions (one it read from the payload, say) is the one the extractor gives.
#[test]
fn the_order_extractor_prefers_an_order_a_middleware_put_in_the_extensions() {
    let metrics = LocalMetrics::new();
    async fn required(order: Order) -> String {
        order.id().to_owned()
    }
    async fn from_payload(mut request: Request<Body>) -> Request<Body> {
        let order = OrderContext::new("ORD-FROM-PAYLOAD").expect("valid id");
        request.extensions_mut().insert(order);
        request
    }
    let plain = Router::new()
        .route("/required", get(required))
        .layer(ServerLayer::new());
    let with_middleware = Router::new()
        .route("/required", get(required))
        .layer(axum::middleware::map_request(from_payload))
        .layer(ServerLayer::new());

    run(&metrics, async {
        let with_order = || {
            Request::get("/required")
                .header("baggage", "order.id=ORD-7")
                .body(Body::empty())
                .expect("request")
        };
        let (status, body) = send(&plain, with_order()).await;
        assert_eq!(
            (status, body.as_ref()),
            (StatusCode::OK, "ORD-7".as_bytes())
        );
        let (status, body) = send(&with_middleware, with_order()).await;
        assert_eq!(
            (status, body.as_ref()),
            (StatusCode::OK, "ORD-FROM-PAYLOAD".as_bytes())
        );
    });
}

#[test]
fn handler_code_runs_with_the_server_span_and_order_current() {
    use opentelemetry::trace::TraceContextExt;
    let spans = capture();
    let metrics = LocalMetrics::new();
    async fn handler() -> String {
        let cx = opentelemetry::Context::current();
        let span_id = cx.span().span_context().span_id().to_string();
        let order = OrderContext::current().map(|o| o.id().to_owned());
        // A nested future that yields once still sees the context after being woken.
        tokio::task::yield_now().await;
        let again = OrderContext::current().map(|o| o.id().to_owned());
        format!(
            "{span_id}:{}:{}",
            order.unwrap_or_default(),
            again.unwrap_or_default()
        )
    }
    let app = Router::new()
        .route("/ctx", get(handler))
        .layer(ServerLayer::new().tracer_provider(spans.provider()));

    let (_, body) = run(&metrics, async {
        let request = Request::get("/ctx")
            .header("traceparent", TRACEPARENT)
            .header("baggage", "order.id=ORD-3")
            .body(Body::empty())
            .expect("request");
        send(&app, request).await
    });
    let span = one_span(&spans.spans(), "GET /ctx");
    assert_eq!(
        String::from_utf8(body.to_vec()).expect("utf8"),
        format!("{}:ORD-3:ORD-3", span.span_id)
    );
}

#[test]
fn public_endpoints_start_a_new_trace_linked_to_the_caller() {
    let spans = capture();
    let metrics = LocalMetrics::new();
    async fn handler(order: Option<Order>) -> String {
        let session =
            opentelemetry::baggage::BaggageExt::baggage(&opentelemetry::Context::current())
                .get("session")
                .is_some();
        format!(
            "{}:{session}",
            order.map(|o| o.id().to_owned()).unwrap_or_default()
        )
    }
    let public = Router::new()
        .route("/public", get(handler))
        .layer(ServerLayer::public().tracer_provider(spans.provider()));
    let allowing = Router::new().route("/allowing", get(handler)).layer(
        ServerLayer::public()
            .allow_baggage_key("order.id")
            .tracer_provider(spans.provider()),
    );

    let (plain, allowed) = run(&metrics, async {
        let request = |uri: &str| {
            Request::get(uri)
                .header("traceparent", TRACEPARENT)
                .header("baggage", "order.id=ORD-9,session=s3cr3t")
                .body(Body::empty())
                .expect("request")
        };
        (
            send(&public, request("/public")).await.1,
            send(&allowing, request("/allowing")).await.1,
        )
    });
    assert_eq!(plain, ":false", "untrusted baggage is gone");
    assert_eq!(allowed, "ORD-9:false", "only the allowed key is kept");

    let all = spans.spans();
    for name in ["GET /public", "GET /allowing"] {
        let span = one_span(&all, name);
        assert!(span.is_root(), "{span:#?}");
        assert_ne!(span.trace_id, TRACE_ID);
        assert_eq!(span.links.len(), 1);
        assert_eq!(span.links[0].trace_id, TRACE_ID);
        assert_eq!(span.links[0].span_id, PARENT_ID);
        assert!(span.attr("session").is_none());
    }
    assert!(one_span(&all, "GET /public").attr("order.id").is_none());
    assert_eq!(
        one_span(&all, "GET /allowing").attr_str("order.id"),
        Some("ORD-9")
    );
}

#[test]
fn route_layer_instruments_matched_routes() {
    let spans = capture();
    let metrics = LocalMetrics::new();
    let app = Router::new()
        .route("/orders/{id}", get(|| async { "ok" }))
        .route_layer(ServerLayer::new().tracer_provider(spans.provider()));

    run(&metrics, async {
        send(&app, get_request("/orders/1")).await;
        send(&app, get_request("/elsewhere")).await;
    });
    let names: Vec<_> = spans.spans().into_iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        vec!["GET /orders/{id}"],
        "route_layer skips the fallback"
    );
}

#[test]
fn a_streamed_response_is_measured_to_its_end() {
    let spans = capture();
    let metrics = LocalMetrics::new();
    async fn slow_stream() -> Body {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(1);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(100));
            // Eleven chunks, 100 ms apart: the last one leaves a second after the first.
            for i in 0..11 {
                interval.tick().await;
                if tx
                    .send(Ok(Bytes::from(format!("chunk {i}\n"))))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        Body::from_stream(ReceiverStream(rx))
    }
    let app = Router::new()
        .route("/export", get(slow_stream))
        .layer(ServerLayer::new().tracer_provider(spans.provider()));

    // Over real TCP on one thread, so the thread-local recorder sees the server's records.
    let received = run(&metrics, async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Empty<Bytes>>();
        let response = client
            .get(format!("http://{addr}/export").parse().expect("uri"))
            .await
            .expect("response");
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        // Once the body is read, the server has polled its body to the end.
        body
    });
    assert_eq!(received.iter().filter(|b| **b == b'\n').count(), 11);

    let snapshot = metrics.snapshot();
    let durations = snapshot
        .histogram(DURATION, &labels("GET", "/export", Some("200"), None))
        .expect("recorded");
    assert_eq!(durations.len(), 1);
    assert!(
        durations[0] >= 0.99,
        "duration {} covers the streamed body",
        durations[0]
    );
    let span = one_span(&spans.spans(), "GET /export");
    assert!(span.duration_nanos() >= 990_000_000);
}

/// `mpsc::Receiver` as a `Stream`.
struct ReceiverStream<T>(tokio::sync::mpsc::Receiver<T>);

impl<T> futures_core::Stream for ReceiverStream<T> {
    type Item = T;

    fn poll_next(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}
