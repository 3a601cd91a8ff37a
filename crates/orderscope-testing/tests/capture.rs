//! Span capture and metric snapshots.

use opentelemetry::trace::{SpanKind as ApiSpanKind, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanProcessor};
use orderscope_testing::{
    LocalMetrics, SpanCapture, SpanKind, SpansExt as _, Transport, assert_child_of, capture_metrics,
};

/// A processor that stamps an attribute in `on_start`, like `OrderSpanProcessor` does.
#[derive(Debug)]
struct Stamp;

impl SpanProcessor for Stamp {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, _cx: &Context) {
        use opentelemetry::trace::Span as _;
        span.set_attribute(KeyValue::new("stamped", true));
    }
    fn on_end(&self, _span: SpanData) {}
    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }
    fn shutdown_with_timeout(&self, _timeout: std::time::Duration) -> OTelSdkResult {
        Ok(())
    }
}

#[test]
fn capture_with_extra_processor_and_resource() {
    let capture = SpanCapture::builder()
        .with_processor(Stamp)
        .with_resource(Resource::builder_empty().with_service_name("cap").build())
        .build();
    let tracer = capture.tracer("scope");
    tracer.in_span("parent", |cx| {
        let child = tracer
            .span_builder("child")
            .with_kind(ApiSpanKind::Producer)
            .start_with_context(&tracer, &cx);
        drop(child);
    });
    let spans = capture.spans();
    assert_eq!(spans.names(), ["child", "parent"]);
    let parent = spans.find_span("parent").unwrap();
    let child = spans.find_span("child").unwrap();
    assert_child_of(child, parent);
    assert_eq!(child.kind, SpanKind::Producer);
    assert_eq!(child.attr("stamped").and_then(|v| v.as_bool()), Some(true));
    assert_eq!(child.resource_str("service.name"), Some("cap"));
    assert_eq!(child.transport, Transport::InProcess);
    assert_eq!(capture.finished_spans().len(), 2);
    capture.reset();
    assert!(capture.spans().is_empty());
}

#[test]
#[should_panic(expected = "to be a child of")]
fn assert_child_of_panics_with_both_spans() {
    let capture = SpanCapture::new();
    let tracer = capture.tracer("scope");
    tracer.in_span("a", |_| {});
    tracer.in_span("b", |_| {});
    let spans = capture.spans();
    assert_child_of(spans.find_span("b").unwrap(), spans.find_span("a").unwrap());
}

#[test]
fn tracing_spans_nest_through_the_subscriber() {
    let capture = SpanCapture::new();
    tracing::subscriber::with_default(capture.subscriber(), || {
        let outer = tracing::info_span!("outer", order.id = "ORD-1");
        let _g = outer.enter();
        let _inner = tracing::info_span!("inner").entered();
        assert!(Context::current().span().span_context().is_valid());
    });
    let spans = capture.spans();
    let outer = spans.find_span("outer").unwrap();
    assert_child_of(spans.find_span("inner").unwrap(), outer);
    assert_eq!(outer.attr_str("order.id"), Some("ORD-1"));
}

#[test]
fn snapshot_lookups_are_exact_and_order_insensitive() {
    let ((), snap) = capture_metrics(|| {
        metrics::describe_counter!("jobs_total", "Jobs run.");
        metrics::counter!("jobs_total", "queue" => "a", "result" => "ok").increment(2);
        metrics::counter!("jobs_total", "queue" => "a", "result" => "error").increment(1);
        metrics::counter!("jobs_total", "queue" => "a").increment(5);
        metrics::gauge!("depth", "queue" => "a").set(4.0);
        metrics::histogram!("latency_seconds").record(0.25);
        metrics::histogram!("latency_seconds").record(1.5);
    });
    assert_eq!(
        snap.counter("jobs_total", &[("result", "ok"), ("queue", "a")]),
        Some(2)
    );
    assert_eq!(snap.counter("jobs_total", &[("queue", "a")]), Some(5));
    assert_eq!(snap.counter("jobs_total", &[("result", "ok")]), None);
    assert_eq!(snap.counter("jobs_total", &[]), None);
    assert_eq!(snap.counter_sum("jobs_total"), 8);
    assert_eq!(snap.gauge("depth", &[("queue", "a")]), Some(4.0));
    assert_eq!(
        snap.counter("depth", &[("queue", "a")]),
        None,
        "kind matters"
    );
    assert_eq!(
        snap.histogram("latency_seconds", &[]),
        Some(vec![0.25, 1.5])
    );
    assert_eq!(
        snap.series("jobs_total"),
        vec![
            vec![("queue".to_owned(), "a".to_owned())],
            vec![
                ("queue".to_owned(), "a".to_owned()),
                ("result".to_owned(), "error".to_owned())
            ],
            vec![
                ("queue".to_owned(), "a".to_owned()),
                ("result".to_owned(), "ok".to_owned())
            ],
        ]
    );
    assert_eq!(snap.names(), ["depth", "jobs_total", "latency_seconds"]);
    assert_eq!(snap.description("jobs_total"), Some("Jobs run."));
    assert!(
        snap.to_string()
            .contains("jobs_total{queue=\"a\",result=\"ok\"} Counter(2)")
    );
}

#[test]
fn captures_are_isolated() {
    let ((), first) = capture_metrics(|| metrics::counter!("x_total").increment(1));
    let ((), second) = capture_metrics(|| metrics::counter!("x_total").increment(3));
    assert_eq!(first.counter("x_total", &[]), Some(1));
    assert_eq!(second.counter("x_total", &[]), Some(3));
    let ((), none) = capture_metrics(|| ());
    assert!(none.is_empty());
}

#[test]
fn local_metrics_spans_several_scopes() {
    let local = LocalMetrics::new();
    local.in_scope(|| metrics::counter!("a_total").increment(1));
    local.in_scope(|| metrics::counter!("a_total").increment(1));
    // Outside the scope nothing is recorded into it.
    metrics::counter!("a_total").increment(100);
    let snap = local.snapshot();
    assert_eq!(snap.counter("a_total", &[]), Some(2));
    // Snapshots drain counters.
    assert_eq!(local.snapshot().counter("a_total", &[]), Some(0));
}

#[test]
fn log_capture_collects_json_lines() {
    use tracing_subscriber::layer::SubscriberExt as _;
    let logs = orderscope_testing::LogCapture::new();
    let subscriber = tracing_subscriber::registry().with(
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(logs.clone()),
    );
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!(order.id = "ORD-9", "accepted");
        tracing::warn!("late");
    });
    let lines = logs.json_lines().expect("json");
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["fields"]["message"], "accepted");
    assert_eq!(lines[0]["fields"]["order.id"], "ORD-9");
    assert_eq!(lines[1]["level"], "WARN");
    logs.clear();
    assert!(logs.lines().is_empty());
}
