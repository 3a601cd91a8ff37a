//! Spans that do not fit in the bounded export queue are dropped, counted, and never block the
//! code that ends them.

use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

/// An exporter stuck in its first export until the test opens the gate.
#[derive(Debug)]
struct Gate(Mutex<mpsc::Receiver<()>>);

impl SpanExporter for Gate {
    async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
        // Returns once the sender is dropped.
        let _ = self.0.lock().unwrap().recv();
        Ok(())
    }
}

#[test]
fn a_full_queue_drops_and_counts_without_blocking() {
    let (open, gate) = mpsc::channel::<()>();
    let telemetry = orderscope::builder("mes")
        .with_env(Vec::<(String, String)>::new())
        .with_span_exporter(Gate(Mutex::new(gate)))
        .with_max_queue_size(4)
        .with_scheduled_delay(Duration::from_secs(3600))
        .with_log_writer(std::io::sink)
        .build()
        .expect("init");
    let prometheus = telemetry.prometheus_handle().clone();

    // At most 4 spans sit in the stuck export and 4 in the queue; the rest are dropped.
    let started = Instant::now();
    for i in 0..40_u64 {
        let span = tracing::info_span!("work", i);
        drop(span.enter());
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "ending spans never waits for export"
    );

    let samples = orderscope_testing::parse_prometheus(&prometheus.render()).expect("valid text");
    let dropped = samples
        .iter()
        .find(|s| {
            s.name == orderscope::SPANS_DROPPED_METRIC && s.label("reason") == Some("queue_full")
        })
        .map(|s| s.value)
        .unwrap_or_default();
    assert!(dropped >= 32.0, "dropped spans counted: {dropped}");

    drop(open);
    telemetry.shutdown().expect("shutdown");
}
