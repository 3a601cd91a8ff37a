//! Publish → consume across two connections, spans exported by OTLP to an in-process receiver.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use lapin::BasicProperties;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions};
use lapin::types::{AMQPValue, FieldTable};
use opentelemetry::global::BoxedTracer;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use orderscope_amqp::{TracedChannel, TracedConsumer};
use orderscope_context::{Channel, OrderContext, Priority, WithOrder};
use orderscope_testing::OrderSpanProcessor;
use orderscope_testing::{OtlpReceiver, ReceivedSpan, SpanKind, assert_child_of};

struct Otlp {
    receiver: OtlpReceiver,
    provider: SdkTracerProvider,
}

async fn otlp() -> Otlp {
    let receiver = OtlpReceiver::start().await.expect("start OTLP receiver");
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(receiver.grpc_endpoint())
        .build()
        .expect("OTLP exporter");
    let provider = SdkTracerProvider::builder()
        .with_span_processor(OrderSpanProcessor::new())
        .with_batch_exporter(exporter)
        .build();
    Otlp { receiver, provider }
}

fn tracer_of(provider: &SdkTracerProvider) -> BoxedTracer {
    BoxedTracer::new(Box::new(provider.tracer("orderscope-amqp")))
}

async fn flush_and_wait(otlp: &Otlp, n: usize) -> Vec<ReceivedSpan> {
    let provider = otlp.provider.clone();
    tokio::task::spawn_blocking(move || provider.force_flush())
        .await
        .expect("flush task")
        .expect("flush");
    otlp.receiver
        .wait_for_spans(n, Duration::from_secs(10))
        .await
        .expect("spans arrive at the OTLP receiver")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_then_consume_is_one_trace() {
    let otlp = otlp().await;
    let publisher_conn = connect().await;
    let consumer_conn = connect().await;
    let queue = unique("e2e");

    let setup = publisher_conn.create_channel().await.unwrap();
    declare_queue(&setup, &queue, FieldTable::default()).await;

    let publisher = TracedChannel::builder(confirm_channel(&publisher_conn).await)
        .tracer(tracer_of(&otlp.provider))
        .server("127.0.0.1", 5672)
        .build();
    let order = OrderContext::builder("ORD-2026-000123")
        .channel(Channel::Api)
        .priority(Priority::High)
        .build()
        .unwrap();
    let outcome = publisher
        .publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            b"{\"id\":\"ORD-2026-000123\"}",
            BasicProperties::default(),
        )
        .with_order(order.clone())
        .await
        .expect("publish confirmed");
    assert!(outcome.confirmed());

    let consumer = TracedConsumer::builder(
        consume_channel(&consumer_conn, 10)
            .await
            .basic_consume(
                queue.as_str().into(),
                "e2e".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap(),
    )
    .tracer(tracer_of(&otlp.provider))
    .build();
    let mut consumer = consumer;
    let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("a delivery within 10 s")
        .expect("consumer open")
        .expect("delivery");

    // Raw header table: the default set, every propagation header a long string; the order id
    // travels in baggage only (`x-order-id` is opt-in).
    let headers = delivery.headers().expect("headers");
    for key in ["traceparent", "baggage"] {
        assert!(
            matches!(headers.inner().get(key), Some(AMQPValue::LongString(_))),
            "{key} must be a long string: {:?}",
            headers.inner().get(key)
        );
    }
    let mut keys: Vec<&str> = headers.inner().keys().map(|k| k.as_str()).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["baggage", "traceparent", "x-published-at-ms"]);
    assert!(matches!(
        headers.inner().get("x-published-at-ms"),
        Some(AMQPValue::LongLongInt(_))
    ));
    assert_eq!(
        delivery
            .properties()
            .message_id()
            .as_ref()
            .map(|s| s.as_str()),
        Some(outcome.message_id())
    );
    assert!(delivery.properties().timestamp().is_some());
    assert_eq!(delivery.order().map(|o| o.id()), Some("ORD-2026-000123"));

    // The order is in scope while the handler runs.
    let in_scope = delivery
        .scope(async { OrderContext::current().map(|o| o.id().to_owned()) })
        .await;
    assert_eq!(in_scope.as_deref(), Some("ORD-2026-000123"));
    delivery.ack().await.expect("ack");

    let spans = flush_and_wait(&otlp, 2).await;
    let publish = spans
        .iter()
        .find(|s| s.name == "publish amq.default")
        .expect("publish span");
    let process = spans
        .iter()
        .find(|s| s.name == format!("process {queue}"))
        .expect("process span");
    assert_eq!(publish.kind, SpanKind::Producer);
    assert_eq!(process.kind, SpanKind::Consumer);
    assert_child_of(process, publish);
    assert!(process.links_to(publish), "process span links to publish");
    for span in [publish, process] {
        assert_eq!(
            span.attr_str("order.id"),
            Some("ORD-2026-000123"),
            "{}",
            span.name
        );
        assert_eq!(span.attr_str("order.channel"), Some("api"), "{}", span.name);
        assert_eq!(
            span.attr_str("order.priority"),
            Some("high"),
            "{}",
            span.name
        );
        assert_eq!(span.attr_str("messaging.system"), Some("rabbitmq"));
        assert_eq!(
            span.attr_str("messaging.message.id"),
            Some(outcome.message_id())
        );
        assert_eq!(
            span.attr_str("messaging.rabbitmq.destination.routing_key"),
            Some(queue.as_str())
        );
    }
    assert_eq!(
        publish.attr_str("messaging.destination.name"),
        Some(queue.as_str()),
        "the default exchange is left out: the routing key alone"
    );
    assert_eq!(publish.attr_str("messaging.operation.type"), Some("send"));
    assert_eq!(publish.attr_str("server.address"), Some("127.0.0.1"));
    assert_eq!(publish.attr_i64("server.port"), Some(5672));
    assert_eq!(publish.attr_str("orderscope.outcome"), Some("ack"));
    assert_eq!(
        process.attr_str("messaging.destination.name"),
        Some(queue.as_str())
    );
    assert_eq!(
        process.attr_str("messaging.operation.type"),
        Some("process")
    );
    assert_eq!(process.attr_str("orderscope.outcome"), Some("ack"));
    assert!(
        process
            .attr_i64("messaging.rabbitmq.message.delivery_tag")
            .is_some()
    );

    cleanup(&publisher_conn, &[&queue], &[]).await;
}

/// Headers the way Python's pika and Java's RabbitMQ instrumentations write them: long strings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_instrumentation_headers_continue_the_trace() {
    let otlp = otlp().await;
    let conn = connect().await;
    let queue = unique("foreign");
    let channel = confirm_channel(&conn).await;
    declare_queue(&channel, &queue, FieldTable::default()).await;

    // pika: `properties=pika.BasicProperties(headers={"traceparent": "...", "baggage": "..."})` — str values
    // are encoded as long strings. Java (opentelemetry-java-instrumentation) writes the same via
    // `AMQP.BasicProperties.headers`, with String values written as long strings too.
    let producers = [
        (
            "0af7651916cd43dd8448eb211c80319c",
            "b7ad6b7169203331",
            "order.id=ORD-PY-1",
        ),
        (
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "00f067aa0ba902b7",
            "order.id=ORD-JAVA-1,order.channel=crm",
        ),
    ];
    for (trace_id, span_id, baggage) in producers {
        let mut headers = FieldTable::default();
        headers.insert(
            "traceparent".into(),
            long(&format!("00-{trace_id}-{span_id}-01")),
        );
        headers.insert("baggage".into(), long(baggage));
        channel
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                b"{}",
                BasicProperties::default().with_headers(headers),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }

    let mut consumer = TracedConsumer::builder(
        consume_channel(&conn, 10)
            .await
            .basic_consume(
                queue.as_str().into(),
                "foreign".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap(),
    )
    .tracer(tracer_of(&otlp.provider))
    .build();
    let mut orders = Vec::new();
    for _ in 0..2 {
        let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .expect("delivery within 10 s")
            .unwrap()
            .unwrap();
        orders.push(delivery.order().map(|o| o.id().to_owned()));
        delivery.ack().await.unwrap();
    }
    assert_eq!(
        orders,
        [Some("ORD-PY-1".to_owned()), Some("ORD-JAVA-1".to_owned())]
    );

    let spans = flush_and_wait(&otlp, 2).await;
    for (trace_id, span_id, _) in producers {
        let span = spans
            .iter()
            .find(|s| s.trace_id == trace_id)
            .unwrap_or_else(|| panic!("a process span in trace {trace_id}: {spans:?}"));
        assert_eq!(span.parent_span_id.as_deref(), Some(span_id));
        assert!(span.links.iter().any(|l| l.span_id == span_id));
        assert!(span.attr_str("order.id").is_some());
    }
    cleanup(&conn, &[&queue], &[]).await;
}
