//! With the collector's port closed (grpc), the service keeps serving, nothing blocks,
//! `shutdown()` returns within its bound, and the failed exports are counted.

mod common;

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use orderscope::SPANS_DROPPED_METRIC;

const SHUTDOWN_BOUND: Duration = Duration::from_secs(2);

async fn order(Path(id): Path<String>) -> String {
    let span = tracing::info_span!("load_order", order_id = %id);
    let _entered = span.enter();
    tracing::info!("loaded");
    format!("order {id}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_collector_port_blocks_nothing_and_is_counted() {
    // A port that was just free: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let telemetry = orderscope::builder("mes")
        .with_env([
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{closed}")),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "300".to_owned()),
            ("OTEL_BSP_SCHEDULE_DELAY", "10".to_owned()),
        ])
        .with_shutdown_timeout(SHUTDOWN_BOUND)
        .with_log_writer(std::io::sink)
        .build()
        .expect("init");
    let prometheus = telemetry.prometheus_handle().clone();

    let app = Router::new()
        .route("/orders/{id}", get(order))
        .merge(telemetry.metrics_router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    // Requests are served promptly while every export fails.
    for i in 0..50 {
        let started = Instant::now();
        let (status, body) = tokio::time::timeout(
            Duration::from_secs(5),
            common::get(addr, &format!("/orders/{i}")),
        )
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
