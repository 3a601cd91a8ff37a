//! `OrderSpanProcessor`: spans started under an order carry its fields as attributes.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use orderscope::context::{
    Channel, OrderContext, OrderSpanProcessor, Priority, Propagation, WithOrder, inject,
};
use orderscope::opentelemetry::trace::{Span, TraceContextExt, Tracer, TracerProvider};
use orderscope::opentelemetry::{Context, KeyValue};
use orderscope::opentelemetry_sdk::trace::{
    InMemorySpanExporter, SdkTracerProvider, SpanData, SpanProcessor,
};

fn provider() -> (SdkTracerProvider, InMemorySpanExporter) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(OrderSpanProcessor)
        .with_simple_exporter(exporter.clone())
        .build();
    (provider, exporter)
}

fn attrs(span: &SpanData) -> BTreeMap<String, String> {
    span.attributes
        .iter()
        .map(|KeyValue { key, value, .. }| (key.to_string(), value.to_string()))
        .collect()
}

fn by_name(spans: &[SpanData]) -> HashMap<String, &SpanData> {
    spans.iter().map(|s| (s.name.to_string(), s)).collect()
}

fn order() -> OrderContext {
    OrderContext::builder("ORD-2026-000123")
        .channel(Channel::Phone)
        .priority(Priority::High)
        .deadline(SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_040_000))
        .build()
        .unwrap()
}

#[test]
fn child_spans_get_the_order_fields() {
    let (provider, exporter) = provider();
    let tracer = provider.tracer("test");
    order().in_scope(|| {
        tracer.in_span("parent", |_cx| {
            let mut child = tracer.start("child");
            child.set_attribute(KeyValue::new("own", "attribute"));
            child.end();
        });
    });
    tracer.start("outside").end();

    let spans = exporter.get_finished_spans().unwrap();
    let spans = by_name(&spans);
    let expected: BTreeMap<String, String> = [
        ("order.id", "ORD-2026-000123"),
        ("order.channel", "phone"),
        ("order.deadline", "2026-11-30T12:00:00Z"),
        ("order.priority", "high"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(attrs(spans["parent"]), expected);
    let mut child = expected.clone();
    child.insert("own".into(), "attribute".into());
    assert_eq!(attrs(spans["child"]), child);
    assert_eq!(
        spans["child"].parent_span_id,
        spans["parent"].span_context.span_id()
    );
    assert!(attrs(spans["outside"]).is_empty());
}

#[test]
fn a_span_started_from_an_extracted_context_continues_the_trace_with_the_order() {
    let (provider, exporter) = provider();
    let tracer = provider.tracer("test");

    // Upstream: a span with the order in scope writes its headers.
    let mut headers: HashMap<String, String> = HashMap::new();
    let upstream = tracer.start_with_context("upstream", &order().to_context(&Context::new()));
    let upstream_cx = order().to_context(&Context::new().with_span(upstream));
    inject(&upstream_cx, &mut headers);
    let upstream_span = upstream_cx.span().span_context().clone();
    upstream_cx.span().end();

    // Downstream: the process span starts from the extracted context.
    let extracted = Propagation::trusted().extract(&headers);
    tracer
        .start_with_context("process", extracted.context())
        .end();

    let spans = exporter.get_finished_spans().unwrap();
    let spans = by_name(&spans);
    let process = spans["process"];
    assert_eq!(process.span_context.trace_id(), upstream_span.trace_id());
    assert_eq!(process.parent_span_id, upstream_span.span_id());
    assert!(process.parent_span_is_remote);
    assert_eq!(attrs(process)["order.id"], "ORD-2026-000123");
    assert_eq!(attrs(process)["order.channel"], "phone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_in_spawned_tasks_get_the_order_fields() {
    let (provider, exporter) = provider();
    let tracer = provider.tracer("test");
    let task = async move {
        tokio::task::yield_now().await;
        tracer.start("in task").end();
    };
    tokio::spawn(task.with_order(order())).await.unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    assert_eq!(attrs(&spans[0])["order.id"], "ORD-2026-000123");
}

#[test]
fn the_other_methods_do_nothing() {
    let p = OrderSpanProcessor::new();
    assert!(p.force_flush().is_ok());
    assert!(p.shutdown().is_ok());
    assert!(p.shutdown_with_timeout(Duration::from_millis(1)).is_ok());
}

#[test]
fn the_wrapping_form_adds_the_fields_and_exports_through_the_inner_processor() {
    use orderscope::opentelemetry_sdk::trace::SimpleSpanProcessor;
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(OrderSpanProcessor::wrap(SimpleSpanProcessor::new(
            exporter.clone(),
        )))
        .build();
    let tracer = provider.tracer("test");
    order().in_scope(|| tracer.in_span("reserve stock", |_cx| {}));
    tracer.in_span("no order", |_cx| {});
    provider.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    let spans = by_name(&spans);
    let with_order = attrs(spans["reserve stock"]);
    assert_eq!(with_order["order.id"], "ORD-2026-000123");
    assert_eq!(with_order["order.channel"], "phone");
    assert!(!attrs(spans["no order"]).contains_key("order.id"));
}
