//! Helpers shared by the integration tests (each test file is its own process, because `init`
//! installs process-wide globals).

#![allow(dead_code, unreachable_pub)]

use std::io;
use std::sync::{Arc, Mutex};

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
