//! A service with its own `tracing` subscriber (another layer beside orderscope's) and its own
//! `metrics` recorder adds orderscope's pieces: log lines with trace ids, spans exported by
//! OTLP, metrics in the service's recorder, and the guard that flushes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use orderscope_testing::{LogCapture, OtlpReceiver};
use tracing_subscriber::prelude::*;

/// The service's own layer: counts the events it sees.
struct CountingLayer(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountingLayer {
    fn on_event(
        &self,
        _event: &tracing::Event<'_>,
        _cx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn the_pieces_join_a_service_that_has_its_own_subscriber_and_recorder() {
    let receiver = OtlpReceiver::start_in_background().expect("receiver");

    // The service's own recorder, installed before orderscope is set up.
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::set_global_recorder(recorder).expect("the service's recorder");

    let logs = LogCapture::new();
    let parts = orderscope::builder("composed")
        .with_env(Vec::<(String, String)>::new())
        .with_otlp_endpoint(receiver.http_endpoint())
        .with_log_writer(logs.clone())
        .with_prometheus_recorder(false)
        .build_parts()
        .expect("parts");
    assert!(parts.recorder.is_none());
    let seen = Arc::new(AtomicUsize::new(0));
    tracing_subscriber::registry()
        .with(parts.layer.with_filter(parts.filter))
        .with(CountingLayer(seen.clone()))
        .init();
    opentelemetry::global::set_text_map_propagator(parts.propagator);
    let telemetry = parts.telemetry;
    telemetry.describe_metrics();

    let order = orderscope::OrderContext::new("ORD-2026-000777").expect("order");
    order.in_scope(|| {
        let span = tracing::info_span!("handle_order");
        let _entered = span.enter();
        tracing::info!("order handled");
    });
    telemetry.shutdown().expect("shutdown flushes");

    // Spans went out by OTLP, with the order on them.
    let span = receiver
        .wait_for_spans_blocking(1, Duration::from_secs(10))
        .expect("span exported")
        .into_iter()
        .find(|s| s.name == "handle_order")
        .expect("handle_order");
    assert_eq!(span.attr_str("order.id"), Some("ORD-2026-000777"));

    // The log line is orderscope's JSON, correlated with the span.
    let line = logs
        .json_lines()
        .expect("JSON lines")
        .into_iter()
        .find(|l| l["message"] == "order handled")
        .expect("the log line");
    assert_eq!(line["trace_id"], span.trace_id.as_str());
    assert_eq!(line["order.id"], "ORD-2026-000777");

    // The service's own layer saw the same event.
    assert!(seen.load(Ordering::SeqCst) >= 1);

    // orderscope's metrics went to the service's recorder.
    let snapshot = snapshotter.snapshot().into_vec();
    assert!(
        snapshot.iter().any(|(key, _, _, value)| key.key().name()
            == orderscope::EXPORT_FAILURES_METRIC
            && matches!(value, DebugValue::Counter(0))),
        "{snapshot:?}"
    );
    // Nothing was installed behind the service's back: no global tracer provider.
    use opentelemetry::trace::{Span as _, Tracer as _};
    let span = opentelemetry::global::tracer("probe").start("probe");
    assert!(!span.span_context().is_valid());
}
