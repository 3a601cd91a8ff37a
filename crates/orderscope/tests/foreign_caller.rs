//! A caller that knows nothing of orderscope — an OpenTelemetry-Python client (run for real, see
//! `foreign_caller.py`; `scripts/lib.sh` `ensure_python_otel` installs it) — posts an order whose
//! id is only in the JSON body, with `traceparent` and no baggage. The trace continues, and with
//! `Order::or_from_id` the server span and the handler's log lines carry `order.id`.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use orderscope::WithOrder;
use orderscope::tower::{Order, ServerLayer};
use orderscope_testing::{OtlpReceiver, SpanKind};

/// The Python of `ensure_python_otel`, or `$ORDERSCOPE_PYTHON`.
fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("ORDERSCOPE_PYTHON") {
        return python.into();
    }
    let venv =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/python-otel/bin/python");
    assert!(
        venv.exists(),
        "no Python with the OpenTelemetry SDK at {}: run `. scripts/lib.sh && ensure_python_otel` \
         (scripts/test does) or set ORDERSCOPE_PYTHON",
        venv.display()
    );
    venv
}

async fn create_order(order: Option<Order>, body: Bytes) -> String {
    let Ok(message) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return "bad json".to_owned();
    };
    let id = message["order_id"].as_str().unwrap_or_default().to_owned();
    match Order::or_from_id(order, &id) {
        Some(order) => accept(id).with_order(order.into_inner()).await,
        None => "invalid order id".to_owned(),
    }
}

async fn accept(id: String) -> String {
    tracing::info!("order accepted");
    format!("accepted {id}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_callers_order_is_in_the_trace_and_the_logs() {
    let python = python();
    let receiver = OtlpReceiver::start().await.expect("receiver");
    let logs = common::Capture::default();
    let telemetry = orderscope::builder("crm")
        .with_env([("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.http_endpoint())])
        .with_log_writer(logs.clone())
        .build()
        .expect("init");

    let app = Router::new()
        .route("/orders", post(create_order))
        .layer(ServerLayer::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/foreign_caller.py");
    let url = format!("http://{addr}/orders");
    let output = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(&url)
        .arg("ORD-PY-0042")
        .output()
        .await
        .expect("run the Python client");
    assert!(
        output.status.success(),
        "Python client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let caller: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("the client's JSON line");
    assert_eq!(caller["status"], 200);
    assert_eq!(caller["body"], "accepted ORD-PY-0042");
    assert!(caller["sent"]["traceparent"].is_string());
    assert!(caller["sent"].get("baggage").is_none(), "no baggage sent");
    let trace_id = caller["trace_id"].as_str().expect("trace id").to_owned();
    let span_id = caller["span_id"].as_str().expect("span id").to_owned();

    tokio::task::block_in_place(|| telemetry.force_flush()).expect("flush");
    let spans = receiver
        .wait_for_spans(1, Duration::from_secs(10))
        .await
        .expect("the server span");
    let server = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server)
        .expect("server span");
    assert_eq!(server.name, "POST /orders");
    assert_eq!(server.trace_id, trace_id, "the Python trace continues");
    assert_eq!(server.parent_span_id.as_deref(), Some(span_id.as_str()));
    assert_eq!(server.attr_str("order.id"), Some("ORD-PY-0042"));

    let line = logs.find("order accepted").expect("log line");
    assert_eq!(line["order.id"], "ORD-PY-0042");
    assert_eq!(line["trace_id"], trace_id.as_str());

    tokio::task::block_in_place(|| telemetry.shutdown()).expect("shutdown");
}
