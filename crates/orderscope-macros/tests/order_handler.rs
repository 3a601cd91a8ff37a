//! `#[order_handler(order = ...)]`: RED metrics, a span with the order fields, the order in scope.

mod common;

use std::sync::{Arc, Mutex};

use common::{YieldOnce, block_on, capture, fn_labels};
use opentelemetry::trace::{SpanId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use orderscope::{Channel, OrderContext, order_handler};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};

const MODULE: &str = module_path!();

struct ScheduleCmd {
    order_id: String,
    slots: u32,
}

#[derive(Debug, orderscope::ErrorType)]
enum MesError {
    NoCapacity,
}

#[order_handler(order = cmd.order_id)]
fn schedule(cmd: ScheduleCmd) -> Result<Option<String>, MesError> {
    if cmd.slots == 0 {
        return Err(MesError::NoCapacity);
    }
    // The order is in scope, and `cmd` is still whole (the order expression borrows).
    let _child = tracing::info_span!("child").entered();
    Ok(OrderContext::current().map(|o| o.id().to_owned()))
}

#[order_handler(order = order, name = "mes.plan")]
async fn plan(order: OrderContext) -> Option<String> {
    YieldOnce::default().await;
    let child = tracing::info_span!("child");
    async { OrderContext::current().map(|o| o.id().to_owned()) }
        .instrument_in(child)
        .await
}

trait InstrumentIn: std::future::Future + Sized {
    fn instrument_in(self, span: tracing::Span) -> tracing::instrument::Instrumented<Self> {
        tracing::Instrument::instrument(self, span)
    }
}
impl<F: std::future::Future> InstrumentIn for F {}

/// A span's name and fields.
type SpanFields = (String, Vec<(String, String)>);

/// Span fields as a plain `tracing` subscriber sees them.
#[derive(Clone, Default)]
struct Fields(Arc<Mutex<Vec<SpanFields>>>);

struct Collect<'a>(&'a mut Vec<(String, String)>);

impl Visit for Collect<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
}

impl<S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>> Layer<S>
    for Fields
{
    fn on_new_span(&self, attrs: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
        let mut fields = Vec::new();
        attrs.record(&mut Collect(&mut fields));
        self.0
            .lock()
            .unwrap()
            .push((attrs.metadata().name().to_owned(), fields));
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let name = ctx.span(id).unwrap().name();
        let mut spans = self.0.lock().unwrap();
        let entry = spans.iter_mut().rev().find(|(n, _)| n == name).unwrap();
        values.record(&mut Collect(&mut entry.1));
    }
}

impl Fields {
    fn of(&self, span: &str) -> Vec<(String, String)> {
        let mut fields = self
            .0
            .lock()
            .unwrap()
            .iter()
            .find(|(n, _)| n == span)
            .map(|(_, f)| f.clone())
            .unwrap_or_default();
        fields.sort();
        fields
    }
}

/// Runs `f` under `tracing-opentelemetry` with an in-memory exporter, plus the field recorder.
fn traced<R>(f: impl FnOnce() -> R) -> (R, Vec<SpanData>, Fields) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let fields = Fields::default();
    let subscriber = tracing_subscriber::registry()
        .with(fields.clone())
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let out = tracing::subscriber::with_default(subscriber, f);
    let _ = provider.force_flush();
    (out, exporter.get_finished_spans().unwrap(), fields)
}

fn span<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name}"))
}

#[test]
fn sync_handler_runs_in_a_span_with_the_order_in_scope() {
    let (((out, err), spans, fields), m) = capture(|| {
        traced(|| {
            let out = schedule(ScheduleCmd {
                order_id: "ORD-1".into(),
                slots: 1,
            });
            let err = schedule(ScheduleCmd {
                order_id: "ORD-2".into(),
                slots: 0,
            });
            (out, err)
        })
    });
    assert_eq!(out.unwrap().as_deref(), Some("ORD-1"));
    assert!(err.is_err());
    // Outside the handler, no order.
    assert!(OrderContext::current().is_none());

    assert_eq!(
        fields.of("schedule"),
        vec![("order.id".to_owned(), "ORD-1".to_owned())]
    );
    let handler = span(&spans, "schedule");
    let child = span(&spans, "child");
    assert_eq!(child.parent_span_id, handler.span_context.span_id());
    assert_eq!(
        child.span_context.trace_id(),
        handler.span_context.trace_id()
    );
    assert!(
        handler
            .attributes
            .iter()
            .any(|kv| kv.key.as_str() == "order.id" && kv.value.as_str() == "ORD-1")
    );

    assert_eq!(
        m.counter(
            "function_calls_total",
            &fn_labels("schedule", MODULE, &[("result", "ok")])
        ),
        Some(1)
    );
    assert_eq!(
        m.counter(
            "function_calls_total",
            &fn_labels(
                "schedule",
                MODULE,
                &[("result", "error"), ("error_type", "no_capacity")]
            )
        ),
        Some(1)
    );
}

#[test]
fn async_handler_keeps_span_and_order_across_polls() {
    let order = OrderContext::builder("ORD-7")
        .channel(Channel::Api)
        .build()
        .unwrap();
    let ((out, spans, fields), m) = capture(|| traced(|| block_on(plan(order))));
    assert_eq!(out.as_deref(), Some("ORD-7"));
    assert_eq!(
        fields.of("mes.plan"),
        vec![
            ("order.channel".to_owned(), "api".to_owned()),
            ("order.id".to_owned(), "ORD-7".to_owned()),
        ]
    );
    let handler = span(&spans, "mes.plan");
    let child = span(&spans, "child");
    assert_eq!(child.parent_span_id, handler.span_context.span_id());
    assert_eq!(handler.parent_span_id, SpanId::INVALID);
    assert_eq!(
        m.counter(
            "function_calls_total",
            &fn_labels("mes.plan", MODULE, &[("result", "ok")])
        ),
        Some(1)
    );
}

#[order_handler(order = id)]
fn lenient(id: &str) -> Option<String> {
    OrderContext::current().map(|o| o.id().to_owned())
}

#[test]
fn invalid_order_id_still_runs_the_body_without_an_order() {
    let (out, m) = capture(|| lenient(""));
    assert_eq!(out, None);
    assert_eq!(
        m.counter(
            "orderscope_propagation_dropped_total",
            &[("reason", "order_field_invalid")]
        ),
        Some(1)
    );
    assert_eq!(
        m.counter(
            "function_calls_total",
            &fn_labels("lenient", MODULE, &[("result", "ok")])
        ),
        Some(1)
    );
}

#[test]
fn no_subscriber_still_puts_the_order_in_scope() {
    assert_eq!(lenient("ORD-3").as_deref(), Some("ORD-3"));
    assert!(OrderContext::current().is_none());
}
