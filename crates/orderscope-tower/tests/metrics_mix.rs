//! RED metrics over real TCP after a scripted mix of requests, then a cardinality attack. The
//! debugging recorder is installed globally (the server runs on several threads), so this file is
//! its own test process.

use std::collections::BTreeSet;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{any, get};
use http::Request;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use orderscope_testing::LocalMetrics;
use orderscope_tower::ServerLayer;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

const DURATION: &str = "http_server_request_duration_seconds";
const ACTIVE: &str = "http_server_active_requests";

/// Sends `"dropped"` when the handler's future is dropped.
struct DropSignal(mpsc::UnboundedSender<&'static str>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        let _ = self.0.send("dropped");
    }
}

async fn slow(State(events): State<mpsc::UnboundedSender<&'static str>>) -> &'static str {
    let _signal = DropSignal(events.clone());
    let _ = events.send("started");
    std::future::pending::<()>().await;
    "never"
}

async fn panics() -> &'static str {
    panic!("scripted panic")
}

fn set(labels: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut labels: Vec<_> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    labels.sort();
    labels
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_mix_then_cardinality_attack() {
    let metrics = LocalMetrics::new();
    metrics
        .install_global()
        .expect("first recorder of this process");

    let (events_tx, mut events) = mpsc::unbounded_channel();
    let app = Router::new()
        .route("/orders/{id}", get(|| async { "order" }))
        .route(
            "/fail",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "failed") }),
        )
        .route("/panic", get(panics))
        .route("/slow", get(slow))
        .route("/cache/{key}", any(|| async { "purged" }))
        .with_state(events_tx)
        .layer(ServerLayer::new().catch_panic(true));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });

    let client = Client::builder(TokioExecutor::new()).build_http::<Body>();
    let send = |method: &str, path: &str, baggage: Option<String>| {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"));
        if let Some(baggage) = baggage {
            request = request.header("baggage", baggage);
        }
        let request = request.body(Body::empty()).expect("request");
        let client = client.clone();
        async move {
            let response = client.request(request).await.expect("response");
            let status = response.status();
            response.into_body().collect().await.expect("body");
            status
        }
    };

    // The scripted mix.
    assert_eq!(
        send("GET", "/orders/1", Some("order.id=ORD-1".into())).await,
        200
    );
    assert_eq!(send("GET", "/no/such/route", None).await, 404);
    assert_eq!(send("GET", "/fail", None).await, 500);
    assert_eq!(send("GET", "/panic", None).await, 500);
    assert_eq!(send("PURGE", "/cache/home", None).await, 200);

    // A client that goes away while its request is being handled.
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /slow HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .expect("write");
    assert_eq!(events.recv().await, Some("started"));
    drop(stream);
    // The layer records before the handler's future is dropped.
    assert_eq!(events.recv().await, Some("dropped"));

    let snapshot = metrics.snapshot();
    let expected: BTreeSet<Vec<(String, String)>> = [
        set(&[
            ("http_request_method", "GET"),
            ("http_route", "/orders/{id}"),
            ("http_response_status_code", "200"),
        ]),
        set(&[
            ("http_request_method", "GET"),
            ("http_route", "unmatched"),
            ("http_response_status_code", "404"),
        ]),
        set(&[
            ("http_request_method", "GET"),
            ("http_route", "/fail"),
            ("http_response_status_code", "500"),
            ("error_type", "500"),
        ]),
        set(&[
            ("http_request_method", "GET"),
            ("http_route", "/panic"),
            ("http_response_status_code", "500"),
            ("error_type", "panic"),
        ]),
        set(&[
            ("http_request_method", "_OTHER"),
            ("http_route", "/cache/{key}"),
            ("http_response_status_code", "200"),
        ]),
        set(&[
            ("http_request_method", "GET"),
            ("http_route", "/slow"),
            ("error_type", "cancelled"),
        ]),
    ]
    .into_iter()
    .collect();
    let series: BTreeSet<_> = snapshot.series(DURATION).into_iter().collect();
    assert_eq!(series, expected);
    for labels in &expected {
        let labels: Vec<(&str, &str)> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let values = snapshot.histogram(DURATION, &labels).expect("series");
        assert_eq!(values.len(), 1, "{labels:?}");
    }

    let active: BTreeSet<_> = snapshot.series(ACTIVE).into_iter().collect();
    let expected_active: BTreeSet<_> = [
        ("GET", "/orders/{id}"),
        ("GET", "unmatched"),
        ("GET", "/fail"),
        ("GET", "/panic"),
        ("_OTHER", "/cache/{key}"),
        ("GET", "/slow"),
    ]
    .into_iter()
    .map(|(method, route)| set(&[("http_request_method", method), ("http_route", route)]))
    .collect();
    assert_eq!(active, expected_active);
    for labels in &expected_active {
        let labels: Vec<(&str, &str)> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(snapshot.gauge(ACTIVE, &labels), Some(0.0), "{labels:?}");
    }

    // A scanner on random paths, then 10,000 distinct orders: no new series.
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..10_000 {
        let path = format!("/{:x}/{:x}.php", next(), next());
        assert_eq!(send("GET", &path, None).await, 404);
    }
    for i in 0..10_000 {
        let baggage = format!("order.id=ORD-{i:06}-{:x}", next());
        assert_eq!(
            send("GET", &format!("/orders/{i}"), Some(baggage)).await,
            200
        );
    }
    let after = metrics.snapshot();
    let series_after: BTreeSet<_> = after.series(DURATION).into_iter().collect();
    assert_eq!(series_after, expected, "series count stays flat");
    assert_eq!(after.series(ACTIVE).len(), expected_active.len());
    assert_eq!(
        after
            .histogram(
                DURATION,
                &[
                    ("http_request_method", "GET"),
                    ("http_route", "unmatched"),
                    ("http_response_status_code", "404"),
                ]
            )
            .map(|v| v.len()),
        Some(10_000)
    );
    // Nothing carries an order id.
    for series in after.series(DURATION) {
        assert!(series.iter().all(|(_, v)| !v.starts_with("ORD-")));
    }
}
