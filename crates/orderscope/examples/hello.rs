//! The smallest orderscope service: `init`, one route and `/metrics` on 127.0.0.1 (a free port),
//! one request to itself, a short summary, a clean shutdown (exit 0 even when a collector did not
//! take the last spans: that is said in a WARN line).
//!
//! ```sh
//! cargo run -p orderscope --example hello
//! # with a collector:
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 cargo run -p orderscope --example hello
//! ```

use std::error::Error;

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use orderscope::OrderContext;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

async fn get_order(Path(id): Path<String>) -> String {
    let order = OrderContext::new(id.clone()).ok();
    let load = || {
        // Opened while the order is in scope, so the span and its log line carry `order.id`.
        let span = tracing::info_span!("load_order");
        let _entered = span.enter();
        tracing::info!(items = 3_u64, "order loaded");
    };
    match order {
        Some(order) => order.in_scope(load),
        None => load(),
    }
    metrics::counter!("function_calls_total", "function" => "get_order", "module" => "hello", "result" => "ok")
        .increment(1);
    format!("order {id}\n")
}

async fn fetch(addr: std::net::SocketAddr, path: &str) -> std::io::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let telemetry = orderscope::init("hello")?;

    let app = Router::new()
        .route("/orders/{id}", get(get_order))
        .merge(telemetry.metrics_router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });

    let response = fetch(addr, "/orders/ORD-2026-000123").await?;
    let status = response.lines().next().unwrap_or_default().to_owned();
    let metrics = fetch(addr, "/metrics").await?;
    let series = metrics
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .count();

    let _ = stop.send(());
    server.await??;

    eprintln!("hello: served on http://{addr}");
    eprintln!("hello: GET /orders/ORD-2026-000123 -> {status}");
    eprintln!("hello: GET /metrics -> {series} series");
    eprintln!(
        "hello: traces -> {}",
        match &telemetry.config().traces {
            orderscope::TraceExport::Otlp(otlp) => format!("{} ({})", otlp.endpoint, otlp.protocol),
            _ => "not exported (set OTEL_EXPORTER_OTLP_ENDPOINT)".to_owned(),
        }
    );

    // Flushes on a thread of its own, so this runtime keeps running meanwhile. When only
    // telemetry could not be delivered (a collector that does not answer), shutdown has said
    // what and where in a WARN line already: the service itself did its job and ends cleanly.
    if let Err(error) = telemetry.shutdown_async().await {
        eprintln!("hello: telemetry not flushed: {error}");
    }
    if !status.contains("200") {
        return Err(format!("unexpected response: {status}").into());
    }
    Ok(())
}
