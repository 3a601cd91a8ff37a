//! Consuming and settling: untraced and malformed messages, redeliveries, settle failures, drops.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};
use orderscope_amqp::{SettleError, TracedConsumer, TracedDelivery};

const CONSUMED: &str = "messaging_client_consumed_messages_total";
const UNTRACED: &str = "messaging_untraced_messages_total";
const REDELIVERED: &str = "messaging_redelivered_messages_total";
const UNSETTLED: &str = "messaging_unsettled_messages";
const PROCESS: &str = "messaging_process_duration_seconds";
const LATENCY: &str = "messaging_queue_latency_seconds";
const DROPPED: &str = "orderscope_propagation_dropped_total";

fn base(queue: &str) -> [(&'static str, &str); 2] {
    [
        ("messaging_system", "rabbitmq"),
        ("messaging_destination_name", queue),
    ]
}

async fn plain_publish(channel: &Channel, queue: &str, properties: BasicProperties) {
    channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            b"plain",
            properties,
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
}

async fn traced_consumer(channel: &Channel, queue: &str) -> TracedConsumer {
    let consumer = channel
        .basic_consume(
            queue.into(),
            "test".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("basic_consume");
    TracedConsumer::builder(consumer)
        .tracer(tracer(spans().provider()))
        .build()
}

async fn next(consumer: &mut TracedConsumer) -> TracedDelivery {
    tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("a delivery within 10 s")
        .expect("consumer open")
        .expect("delivery")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_lapin_message_is_processed_and_counted_untraced() {
    let m = metrics();
    let conn = connect().await;
    let queue = unique("plain");
    let channel = confirm_channel(&conn).await;
    declare_queue(&channel, &queue, FieldTable::default()).await;
    plain_publish(&channel, &queue, BasicProperties::default()).await;

    let mut consumer = traced_consumer(&consume_channel(&conn, 5).await, &queue).await;
    let delivery = next(&mut consumer).await;
    assert_eq!(delivery.data(), b"plain");
    assert!(delivery.order().is_none());
    assert_eq!(m.gauge(UNSETTLED, &base(&queue)), 1.0);
    delivery.ack().await.expect("ack");

    assert_eq!(m.counter(CONSUMED, &base(&queue)), 1);
    assert_eq!(m.counter(UNTRACED, &base(&queue)), 1);
    assert_eq!(m.counter(REDELIVERED, &base(&queue)), 0);
    assert_eq!(m.gauge(UNSETTLED, &base(&queue)), 0.0);
    // No publish time on the message: no latency sample.
    assert!(m.histogram(LATENCY, &base(&queue)).is_empty());
    let [a, b] = base(&queue);
    assert_eq!(m.histogram(PROCESS, &[a, b, ("outcome", "ack")]).len(), 1);

    let span = spans()
        .spans()
        .into_iter()
        .find(|s| s.name == format!("process {queue}"))
        .expect("process span");
    assert!(span.is_root());
    assert!(span.links.is_empty());
    cleanup(&conn, &[&queue], &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_typed_headers_are_ignored_counted_and_the_message_processed() {
    let m = metrics();
    let dropped_before = m.counter(DROPPED, &[("reason", "header_type")]);
    let conn = connect().await;
    let queue = unique("wrongtype");
    let channel = confirm_channel(&conn).await;
    declare_queue(&channel, &queue, FieldTable::default()).await;
    let mut headers = FieldTable::default();
    headers.insert("traceparent".into(), AMQPValue::LongLongInt(42));
    headers.insert("baggage".into(), AMQPValue::Boolean(true));
    headers.insert("x-published-at-ms".into(), AMQPValue::Boolean(false));
    plain_publish(
        &channel,
        &queue,
        BasicProperties::default().with_headers(headers),
    )
    .await;

    let mut consumer = traced_consumer(&consume_channel(&conn, 5).await, &queue).await;
    let delivery = next(&mut consumer).await;
    assert_eq!(delivery.data(), b"plain");
    assert!(delivery.order().is_none());
    delivery.ack().await.expect("ack");

    assert_eq!(m.counter(CONSUMED, &base(&queue)), 1);
    assert_eq!(m.counter(UNTRACED, &base(&queue)), 1);
    assert!(m.counter(DROPPED, &[("reason", "header_type")]) >= dropped_before + 2);
    cleanup(&conn, &[&queue], &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_message_stays_in_the_producers_trace_as_attempt_two() {
    let m = metrics();
    let conn = connect().await;
    let queue = unique("redeliver");
    let channel = confirm_channel(&conn).await;
    declare_queue(&channel, &queue, FieldTable::default()).await;
    let producer_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let producer_span = "00f067aa0ba902b7";
    let mut headers = FieldTable::default();
    headers.insert(
        "traceparent".into(),
        long(&format!("00-{producer_trace}-{producer_span}-01")),
    );
    headers.insert("baggage".into(), long("order.id=ORD-RETRY-1"));
    plain_publish(
        &channel,
        &queue,
        BasicProperties::default()
            .with_headers(headers)
            .with_timestamp(0),
    )
    .await;

    let mut consumer = traced_consumer(&consume_channel(&conn, 5).await, &queue).await;
    let first = next(&mut consumer).await;
    assert!(!first.is_retry());
    assert_eq!(first.attempt(), 1);
    first.nack(true).await.expect("nack requeue");
    let second = next(&mut consumer).await;
    assert!(second.redelivered());
    assert!(second.is_retry());
    assert_eq!(second.attempt(), 2);
    assert_eq!(
        second.delivery_count(),
        None,
        "a classic queue does not count requeues"
    );
    assert_eq!(second.order().map(|o| o.id()), Some("ORD-RETRY-1"));
    second.ack().await.expect("ack");

    assert_eq!(m.counter(CONSUMED, &base(&queue)), 2);
    assert_eq!(m.counter(REDELIVERED, &base(&queue)), 1);
    let [a, b] = base(&queue);
    assert_eq!(
        m.histogram(PROCESS, &[a, b, ("outcome", "nack_requeue")])
            .len(),
        1
    );
    // The timestamp property (seconds) is the latency fallback: published "at the epoch".
    assert!(m.histogram(LATENCY, &base(&queue)).iter().all(|s| *s > 1e9));

    let process: Vec<_> = spans()
        .spans()
        .into_iter()
        .filter(|s| s.name == format!("process {queue}"))
        .collect();
    assert_eq!(process.len(), 2);
    let first = process
        .iter()
        .find(|s| s.attr_str("orderscope.outcome") == Some("nack_requeue"))
        .unwrap();
    let retry = process
        .iter()
        .find(|s| s.attr_str("orderscope.outcome") == Some("ack"))
        .unwrap();
    assert_eq!(first.trace_id, producer_trace);
    assert_eq!(first.parent_span_id.as_deref(), Some(producer_span));
    // One trace per message: the retry is a child of the producer's span too, numbered.
    assert_eq!(retry.trace_id, producer_trace);
    assert_eq!(retry.parent_span_id.as_deref(), Some(producer_span));
    assert_eq!(first.attr_i64("orderscope.attempt"), Some(1));
    assert_eq!(retry.attr_i64("orderscope.attempt"), Some(2));
    assert!(
        retry
            .links
            .iter()
            .any(|l| l.trace_id == producer_trace && l.span_id == producer_span)
    );
    assert_eq!(retry.attr_str("order.id"), Some("ORD-RETRY-1"));
    cleanup(&conn, &[&queue], &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settling_on_a_closed_channel_is_an_error_and_counted() {
    let m = metrics();
    let conn = connect().await;
    let queue = unique("closedsettle");
    let channel = confirm_channel(&conn).await;
    declare_queue(&channel, &queue, FieldTable::default()).await;
    plain_publish(&channel, &queue, BasicProperties::default()).await;

    let consume_channel = consume_channel(&conn, 5).await;
    let mut consumer = traced_consumer(&consume_channel, &queue).await;
    let delivery = next(&mut consumer).await;
    consume_channel.close(200, "bye".into()).await.unwrap();
    let error = delivery
        .ack()
        .await
        .expect_err("settle on a closed channel");
    assert!(matches!(error, SettleError::ChannelClosed), "{error:?}");

    let [a, b] = base(&queue);
    assert_eq!(
        m.histogram(
            PROCESS,
            &[a, b, ("outcome", "ack"), ("error_type", "channel_closed")]
        )
        .len(),
        1
    );
    assert_eq!(m.gauge(UNSETTLED, &base(&queue)), 0.0);
    // The broker kept the message: it is ready again.
    assert_eq!(message_count(&conn, &queue).await, 1);
    cleanup(&conn, &[&queue], &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_delivery_is_counted_and_requeued() {
    let m = metrics();
    let conn = connect().await;
    let queue = unique("dropped");
    let channel = confirm_channel(&conn).await;
    declare_queue(&channel, &queue, FieldTable::default()).await;
    plain_publish(&channel, &queue, BasicProperties::default()).await;

    let mut consumer = traced_consumer(&consume_channel(&conn, 5).await, &queue).await;
    let delivery = next(&mut consumer).await;
    drop(delivery);
    let again = next(&mut consumer).await;
    assert!(again.redelivered(), "the dropped delivery was requeued");
    again.ack().await.unwrap();

    let [a, b] = base(&queue);
    assert_eq!(
        m.histogram(
            PROCESS,
            &[a, b, ("outcome", "nack_requeue"), ("error_type", "dropped")]
        )
        .len(),
        1
    );
    assert_eq!(m.gauge(UNSETTLED, &base(&queue)), 0.0);
    cleanup(&conn, &[&queue], &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_dropped_while_lapin_sends_it_is_recorded_as_the_ack_it_is() {
    let m = metrics();
    let conn = connect().await;
    let queue = unique("dropped-ack");
    let channel = confirm_channel(&conn).await;
    declare_queue(&channel, &queue, FieldTable::default()).await;
    plain_publish(&channel, &queue, BasicProperties::default()).await;
    plain_publish(&channel, &queue, BasicProperties::default()).await;

    let consume = consume_channel(&conn, 5).await;
    let mut consumer = traced_consumer(&consume, &queue).await;
    let (first, second) = (next(&mut consumer).await, next(&mut consumer).await);
    // Polled once (lapin has the ack), then dropped, as when the task running it is cancelled.
    let mut ack = Box::pin(first.ack());
    let _ = futures_util::FutureExt::now_or_never(ack.as_mut());
    drop(ack);
    // Lapin sends acks in the order it took them: once the second is written, the first was.
    second.ack().await.expect("second ack");
    // Closing the channel requeues what is unacked: both acks reached the broker, nothing is.
    consume.close(200, "done".into()).await.expect("close");
    assert_eq!(message_count(&conn, &queue).await, 0);

    let [a, b] = base(&queue);
    assert_eq!(
        m.histogram(PROCESS, &[a, b, ("outcome", "ack")]).len(),
        2,
        "recorded as the ack it is"
    );
    assert!(
        m.histogram(
            PROCESS,
            &[a, b, ("outcome", "nack_requeue"), ("error_type", "dropped")]
        )
        .is_empty(),
        "not as a requeued drop"
    );
    assert_eq!(m.gauge(UNSETTLED, &base(&queue)), 0.0);
    cleanup(&conn, &[&queue], &[]).await;
}
