//! Helpers shared by the integration tests (each test file is its own process, because `init`
//! installs process-wide globals).

#![allow(dead_code, unreachable_pub)]

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Path;
use axum::routing::get as get_route;
use orderscope::SPANS_DROPPED_METRIC;

use orderscope::OrderContext;
use orderscope_testing::ReceivedSpan;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tracing_subscriber::fmt::MakeWriter;

/// A `MakeWriter` that keeps every log line.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).expect("logs are UTF-8")
    }

    /// Every line, parsed; panics on a line that is not a JSON object.
    pub fn json(&self) -> Vec<Value> {
        self.text()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }

    pub fn find(&self, message: &str) -> Option<Value> {
        self.json().into_iter().find(|v| v["message"] == message)
    }
}

pub struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl io::Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = CaptureWriter;

    fn make_writer(&'a self) -> Self::Writer {
        CaptureWriter(self.0.clone())
    }
}

/// A parent and a child span made with `tracing`, with an order in scope and a log line in the child.
pub fn emit_parent_child() {
    let order = OrderContext::new("ORD-2026-000123").expect("valid order id");
    order.in_scope(|| {
        let parent = tracing::info_span!("handle_order", items = 3_u64);
        let _p = parent.enter();
        let child = tracing::info_span!("reserve_stock");
        let _c = child.enter();
        tracing::info!(sku = "A-1", "stock reserved");
    });
}

/// Checks what [`emit_parent_child`] produced: at the receiver and in the log line.
pub fn check_parent_child(spans: &[ReceivedSpan], logs: &Capture) {
    let parent =
        orderscope_testing::find_span(spans, "handle_order").expect("parent span received");
    let child = orderscope_testing::find_span(spans, "reserve_stock").expect("child span received");
    orderscope_testing::assert_child_of(child, parent);
    assert!(parent.is_root(), "{}", parent.summary());
    assert_eq!(child.trace_id, parent.trace_id);

    for span in [parent, child] {
        assert_eq!(span.resource_str("service.name"), Some("mes"));
        assert_eq!(
            span.resource_str("deployment.environment.name"),
            Some("test")
        );
        assert_eq!(span.resource_str("team"), Some("orders"));
        assert_eq!(
            span.attr_str("order.id"),
            Some("ORD-2026-000123"),
            "{}",
            span.summary()
        );
    }

    let line = logs.find("stock reserved").expect("the log line");
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["service.name"], "mes");
    assert_eq!(line["trace_id"].as_str(), Some(child.trace_id.as_str()));
    assert_eq!(line["span_id"].as_str(), Some(child.span_id.as_str()));
    assert_eq!(line["order.id"], "ORD-2026-000123");
    assert_eq!(line["sku"], "A-1");
}

/// One `GET` over a fresh connection; returns the status line and the body.
pub async fn get(addr: std::net::SocketAddr, path: &str) -> io::Result<(String, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response.lines().next().unwrap_or_default().to_owned();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

// The closed-collector-port scenario, shared by closed_port_grpc.rs and closed_port_http.rs.

const SHUTDOWN_BOUND: Duration = Duration::from_secs(2);

async fn closed_port_order(Path(id): Path<String>) -> String {
    let span = tracing::info_span!("load_order", order_id = %id);
    let _entered = span.enter();
    tracing::info!("loaded");
    format!("order {id}")
}

/// With the collector's port closed, over `protocol`: the service keeps serving, nothing blocks,
/// `shutdown()` returns within its bound, and the failed exports are counted. Installs globals:
/// call it once per test binary, on a multi-thread runtime.
pub async fn closed_collector_port_scenario(protocol: &str) {
    // A port that was just free: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let telemetry = orderscope::builder("mes")
        .with_env([
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{closed}")),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_owned()),
            ("OTEL_BSP_SCHEDULE_DELAY", "10".to_owned()),
        ])
        .with_export_timeout(Duration::from_millis(300))
        .with_shutdown_timeout(SHUTDOWN_BOUND)
        .with_log_writer(std::io::sink)
        .build()
        .expect("init");
    let prometheus = telemetry.prometheus_handle().clone();

    let app = Router::new()
        .route("/orders/{id}", get_route(closed_port_order))
        .merge(telemetry.metrics_router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    // Requests are served promptly while every export fails.
    for i in 0..50 {
        let started = Instant::now();
        let (status, body) =
            tokio::time::timeout(Duration::from_secs(5), get(addr, &format!("/orders/{i}")))
                .await
                .expect("request answered")
                .expect("request");
        assert!(status.contains("200"), "{status}");
        assert_eq!(body, format!("order {i}"));
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "request {i} took {:?}",
            started.elapsed()
        );
    }

    // A flush reports the failure (and by then the exporter has counted it).
    let flushed = tokio::task::block_in_place(|| telemetry.force_flush());
    assert!(flushed.is_err(), "export to a closed port cannot succeed");

    let started = Instant::now();
    let _ = tokio::task::block_in_place(|| telemetry.shutdown());
    let took = started.elapsed();
    assert!(
        took < SHUTDOWN_BOUND + Duration::from_millis(500),
        "shutdown took {took:?}"
    );

    let text = prometheus.render();
    let samples = orderscope_testing::parse_prometheus(&text).expect("valid exposition");
    let failures = samples
        .iter()
        .find(|s| {
            s.name == orderscope::EXPORT_FAILURES_METRIC && s.label("signal") == Some("traces")
        })
        .map(|s| s.value)
        .unwrap_or_default();
    assert!(failures >= 1.0, "failed exports counted: {text}");
    let dropped = samples
        .iter()
        .find(|s| s.name == SPANS_DROPPED_METRIC && s.label("reason") == Some("export_failed"))
        .map(|s| s.value)
        .unwrap_or_default();
    assert!(dropped >= 1.0, "spans of failed exports counted: {text}");

    server.abort();
}

/// A collector that accepts connections and keeps them open without reading or answering; its
/// `http://` address.
pub fn silent_collector() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    format!("http://{addr}")
}
