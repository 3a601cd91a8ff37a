//! The peer stack for RabbitMQ: what a service assembles without orderscope, as tracing,
//! tracing-opentelemetry and the OpenTelemetry propagation API document it.
//!
//! - A `tracing` span per publish (`otel.kind = "producer"`) and per delivery (`"consumer"`), exported
//!   by tracing-opentelemetry's layer through the SDK's batch processor.
//! - The global W3C propagator (trace context and baggage) injecting into and extracting from the
//!   message headers through a hand-written `Injector`/`Extractor` over lapin's `FieldTable`; the
//!   order id travels as `order.id` baggage set on the caller's OpenTelemetry context.
//! - A counter and a duration histogram per operation with the `metrics` macros, labelled with the
//!   queue's name as a `&'static str` (as a service names its queues), so no label is built per call.
//!
//! [`assert_peer_propagates`] checks at set-up that the peer really writes a sampled `traceparent` and the
//! order's baggage, and that its consumer span continues the publisher's trace: a peer that lost either
//! would be measured doing less than it should.

use std::time::Instant;

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicPublishOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};
use opentelemetry::baggage::BaggageExt as _;
use opentelemetry::propagation::{Extractor, Injector, TextMapCompositePropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::{BatchSpanProcessor, InMemorySpanExporter, SdkTracerProvider};
use orderscope_testing::DroppingExporter;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;

/// Writes headers into lapin's header table as long strings.
struct HeaderInjector<'a>(&'a mut FieldTable);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0
            .insert(key.into(), AMQPValue::LongString(value.into()));
    }
}

/// Reads long-string headers from lapin's header table.
struct HeaderExtractor<'a>(&'a FieldTable);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match self.0.inner().get(key)? {
            AMQPValue::LongString(value) => std::str::from_utf8(value.as_bytes()).ok(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.0.inner().keys().map(|key| key.as_str()).collect()
    }
}

/// The peer's subscriber: tracing-opentelemetry's layer over an SDK provider with the batch
/// processor (and the same discarding exporter) as orderscope's cases.
pub(crate) fn subscriber() -> (SdkTracerProvider, impl tracing::Subscriber + Send + Sync) {
    let provider = SdkTracerProvider::builder()
        .with_span_processor(BatchSpanProcessor::builder(DroppingExporter).build())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("peer")));
    (provider, subscriber)
}

/// Sets the global propagator the peer uses: W3C trace context and baggage.
pub(crate) fn install_propagator() {
    opentelemetry::global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ]));
}

/// The caller's context: the order id as baggage, as a service without orderscope carries it.
pub(crate) fn order_context() -> Context {
    Context::current().with_baggage([KeyValue::new("order.id", "ORD-2026-000123")])
}

/// The publish span and the headers carrying its context.
fn publish_span(queue: &str) -> (tracing::Span, FieldTable) {
    let span = tracing::info_span!(
        "publish",
        otel.kind = "producer",
        messaging.system = "rabbitmq",
        messaging.operation.name = "publish",
        messaging.destination.name = queue,
    );
    let mut headers = FieldTable::default();
    let cx = span.context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&cx, &mut HeaderInjector(&mut headers));
    });
    (span, headers)
}

/// Publishes `payload` to `queue` inside a producer span, waits for the confirm, and counts it.
pub(crate) async fn publish(channel: &Channel, queue: &'static str, payload: &[u8]) {
    let (span, headers) = publish_span(queue);
    let start = Instant::now();
    let confirm = async {
        channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                payload,
                BasicProperties::default().with_headers(headers),
            )
            .await
            .unwrap()
            .await
            .unwrap()
    }
    .instrument(span)
    .await;
    assert!(confirm.is_ack());
    metrics::counter!(
        "messaging_client_sent_messages_total",
        "messaging_destination_name" => queue,
        "outcome" => "ack",
    )
    .increment(1);
    metrics::histogram!(
        "messaging_client_operation_duration_seconds",
        "messaging_destination_name" => queue,
    )
    .record(start.elapsed().as_secs_f64());
}

/// The consumer span of a delivery, continuing the publisher's trace.
fn process_span(delivery: &Delivery, queue: &str) -> tracing::Span {
    let empty = FieldTable::default();
    let headers = delivery.properties.headers().as_ref().unwrap_or(&empty);
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    });
    let span = tracing::info_span!(
        "process",
        otel.kind = "consumer",
        messaging.system = "rabbitmq",
        messaging.operation.name = "process",
        messaging.destination.name = queue,
    );
    let _ = span.set_parent(parent);
    span
}

/// Handles a delivery inside a consumer span (the handler does nothing), acks it, and counts it.
pub(crate) async fn process_and_ack(delivery: Delivery, queue: &'static str) {
    let span = process_span(&delivery, queue);
    let start = Instant::now();
    let acked = async { delivery.ack(BasicAckOptions::default()).await.unwrap() }
        .instrument(span)
        .await;
    metrics::counter!(
        "messaging_client_consumed_messages_total",
        "messaging_destination_name" => queue,
    )
    .increment(1);
    metrics::histogram!(
        "messaging_process_duration_seconds",
        "messaging_destination_name" => queue,
    )
    .record(start.elapsed().as_secs_f64());
    assert!(acked);
}

/// Checks, with [`install_propagator`] done, that the peer writes a sampled `traceparent` and the
/// order's `baggage`, and that a consumer span made from those headers is the publish span's child.
pub(crate) fn assert_peer_propagates() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("check")));
    tracing::subscriber::with_default(subscriber, || {
        let _order = order_context().attach();
        let (span, headers) = publish_span("q");
        let get = |key: &str| HeaderExtractor(&headers).get(key).map(str::to_owned);
        let traceparent = get("traceparent").expect("the peer writes no traceparent");
        assert!(
            traceparent.starts_with("00-") && traceparent.ends_with("-01"),
            "not a sampled W3C traceparent: {traceparent}"
        );
        assert_eq!(get("baggage").as_deref(), Some("order.id=ORD-2026-000123"));
        drop(span);
        let properties = BasicProperties::default().with_headers(headers);
        let delivery = Delivery {
            properties,
            ..Delivery::mock(1, "".into(), "q".into(), false, Vec::new())
        };
        drop(process_span(&delivery, "q"));
    });
    let spans = exporter.get_finished_spans().expect("spans");
    let find = |name: &str| {
        spans
            .iter()
            .find(|span| span.name == name)
            .unwrap_or_else(|| panic!("no peer {name} span in {spans:#?}"))
    };
    let (publish, process) = (find("publish"), find("process"));
    assert_eq!(
        process.span_context.trace_id(),
        publish.span_context.trace_id(),
        "the peer's consumer span is not in the publisher's trace"
    );
    assert_eq!(
        process.parent_span_id,
        publish.span_context.span_id(),
        "the peer's consumer span is not the publish span's child"
    );
}
