//! Publishing: confirm outcomes, headers, metrics.

mod common;

use common::*;
use lapin::BasicProperties;
use lapin::options::{BasicGetOptions, BasicPublishOptions};
use lapin::types::{AMQPValue, FieldTable};
use orderscope_amqp::{PublishError, TracedChannel};
use orderscope_context::{OrderContext, WithOrder};

const SENT: &str = "messaging_client_sent_messages_total";
const DURATION: &str = "messaging_client_operation_duration_seconds";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mandatory_publish_without_a_queue_is_returned_counted_and_reported() {
    let m = metrics();
    let conn = connect().await;
    let exchange = unique("nowhere");
    let channel = confirm_channel(&conn).await;
    declare_exchange(&channel, &exchange).await;
    let traced = TracedChannel::builder(channel)
        .tracer(tracer(spans().provider()))
        .build();

    let result = traced
        .publish(
            exchange.as_str().into(),
            "order.created".into(),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            b"lost?",
            BasicProperties::default(),
        )
        .await;
    match result {
        Err(PublishError::Returned {
            reply_code,
            message,
            ..
        }) => {
            assert_eq!(reply_code, 312);
            assert_eq!(message.data, b"lost?");
        }
        other => panic!("expected a returned message, got {other:?}"),
    }

    let labels = [
        ("messaging_system", "rabbitmq"),
        ("messaging_destination_name", exchange.as_str()),
        ("outcome", "returned"),
        ("error_type", "no_route"),
    ];
    assert_eq!(m.counter(SENT, &labels), 1);
    assert_eq!(
        m.histogram(
            DURATION,
            &[
                ("messaging_system", "rabbitmq"),
                ("messaging_destination_name", exchange.as_str()),
                ("messaging_operation_name", "publish"),
                ("error_type", "no_route"),
            ]
        )
        .len(),
        1
    );
    let span = spans()
        .spans()
        .into_iter()
        .find(|s| s.name == format!("publish {exchange}"))
        .expect("publish span");
    assert_eq!(span.attr_str("orderscope.outcome"), Some("returned"));
    assert_eq!(span.attr_str("error.type"), Some("no_route"));
    assert!(span.status.is_error());
    cleanup(&conn, &[], &[&exchange]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_publish_keeps_caller_headers_and_traceparent() {
    let m = metrics();
    let conn = connect().await;
    let exchange = unique("acked");
    let queue = unique("acked-q");
    let channel = confirm_channel(&conn).await;
    declare_exchange(&channel, &exchange).await;
    declare_queue(&channel, &queue, FieldTable::default()).await;
    bind(&channel, &queue, &exchange, "k").await;
    let traced = TracedChannel::builder(channel.clone())
        .tracer(tracer(spans().provider()))
        .order_id_header(true)
        .build();

    let caller_traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let mut headers = FieldTable::default();
    headers.insert("traceparent".into(), long(caller_traceparent));
    headers.insert("tenant".into(), AMQPValue::LongInt(7));
    let order = OrderContext::new("ORD-KEEP-1").unwrap();
    let outcome = traced
        .publish(
            exchange.as_str().into(),
            "k".into(),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default()
                .with_headers(headers)
                .with_message_id("my-id".into()),
        )
        .with_order(order)
        .await
        .expect("acked");
    assert!(outcome.confirmed());
    assert_eq!(outcome.message_id(), "my-id");

    let got = channel
        .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("message in the queue");
    let headers = got.delivery.properties.headers().clone().unwrap();
    let map = headers.inner();
    assert_eq!(map.get("traceparent"), Some(&long(caller_traceparent)));
    assert_eq!(map.get("tenant"), Some(&AMQPValue::LongInt(7)));
    assert_eq!(map.get("x-order-id"), Some(&long("ORD-KEEP-1")));
    assert!(matches!(map.get("baggage"), Some(AMQPValue::LongString(_))));
    assert_eq!(
        got.delivery
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.as_str()),
        Some("my-id")
    );

    assert_eq!(
        m.counter(
            SENT,
            &[
                ("messaging_system", "rabbitmq"),
                ("messaging_destination_name", exchange.as_str()),
                ("outcome", "ack"),
            ]
        ),
        1
    );
    cleanup(&conn, &[&queue], &[&exchange]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copied_headers_get_the_current_trace_inside_a_span_unless_kept() {
    use opentelemetry::context::FutureExt as _;
    use opentelemetry::trace::{TraceContextExt as _, Tracer as _};
    let conn = connect().await;
    let queue = unique("stale");
    let channel = confirm_channel(&conn).await;
    declare_queue(&channel, &queue, FieldTable::default()).await;
    let stale = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let copied = || {
        let mut headers = FieldTable::default();
        headers.insert("traceparent".into(), long(stale));
        headers.insert("tracestate".into(), long("old=1"));
        BasicProperties::default().with_headers(headers)
    };
    let handler_span = spans().tracer("handler").start("handle incoming");
    let handler_cx = opentelemetry::Context::current_with_span(handler_span);
    let trace_id = handler_cx.span().span_context().trace_id().to_string();
    for keep in [false, true] {
        let traced = TracedChannel::builder(channel.clone())
            .tracer(tracer(spans().provider()))
            .keep_caller_trace_context(keep)
            .build();
        traced
            .publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                b"x",
                copied(),
            )
            .with_context(handler_cx.clone())
            .await
            .expect("acked");
        let got = channel
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
            .expect("message in the queue");
        let headers = got.delivery.properties.headers().clone().unwrap();
        let traceparent = match headers.inner().get("traceparent") {
            Some(AMQPValue::LongString(s)) => String::from_utf8(s.as_bytes().to_vec()).unwrap(),
            other => panic!("traceparent {other:?}"),
        };
        if keep {
            assert_eq!(traceparent, stale);
        } else {
            assert!(
                traceparent.contains(&trace_id),
                "{traceparent} continues {trace_id}"
            );
            assert!(
                !headers.contains_key("tracestate"),
                "the stale tracestate went with it"
            );
        }
    }
    cleanup(&conn, &[&queue], &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_on_a_closed_channel_is_channel_closed() {
    let m = metrics();
    let conn = connect().await;
    let exchange = unique("closed");
    let channel = confirm_channel(&conn).await;
    declare_exchange(&channel, &exchange).await;
    let traced = TracedChannel::builder(channel.clone())
        .tracer(tracer(spans().provider()))
        .build();
    channel.close(200, "bye".into()).await.unwrap();

    let error = traced
        .publish(
            exchange.as_str().into(),
            "k".into(),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        )
        .await
        .expect_err("closed channel");
    assert!(matches!(error, PublishError::ChannelClosed(_)), "{error:?}");
    assert_eq!(error.outcome(), "channel_closed");
    assert_eq!(
        m.counter(
            SENT,
            &[
                ("messaging_system", "rabbitmq"),
                ("messaging_destination_name", exchange.as_str()),
                ("outcome", "channel_closed"),
                ("error_type", "channel_closed"),
            ]
        ),
        1
    );
    cleanup(&conn, &[], &[&exchange]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_confirm_mode_publishes_are_counted_as_unconfirmed() {
    let m = metrics();
    let conn = connect().await;
    let queue = unique("noconfirm");
    let exchange = unique("noconfirm-x");
    let channel = conn.create_channel().await.unwrap();
    declare_exchange(&channel, &exchange).await;
    declare_queue(&channel, &queue, FieldTable::default()).await;
    bind(&channel, &queue, &exchange, "k").await;
    let traced = TracedChannel::builder(channel)
        .tracer(tracer(spans().provider()))
        .build();
    for _ in 0..3 {
        let outcome = traced
            .publish(
                exchange.as_str().into(),
                "k".into(),
                BasicPublishOptions::default(),
                b"x",
                BasicProperties::default(),
            )
            .await
            .unwrap();
        assert!(!outcome.confirmed());
    }
    // Counted, with an outcome that says nothing is known about the message's fate.
    let labels = |outcome| {
        [
            ("messaging_system", "rabbitmq"),
            ("messaging_destination_name", exchange.as_str()),
            ("outcome", outcome),
        ]
    };
    assert_eq!(m.counter(SENT, &labels("unconfirmed")), 3);
    assert_eq!(m.counter(SENT, &labels("ack")), 0);
    assert_eq!(
        m.histogram(
            DURATION,
            &[
                ("messaging_system", "rabbitmq"),
                ("messaging_destination_name", exchange.as_str()),
                ("messaging_operation_name", "publish"),
            ]
        )
        .len(),
        3
    );
    cleanup(&conn, &[&queue], &[&exchange]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destinations_beyond_the_limit_share_the_overflow_series() {
    let m = metrics();
    let conn = connect().await;
    let channel = confirm_channel(&conn).await;
    let exchanges = [unique("limit-a"), unique("limit-b"), unique("limit-c")];
    for e in &exchanges {
        declare_exchange(&channel, e).await;
    }
    let traced = TracedChannel::builder(channel)
        .tracer(tracer(spans().provider()))
        .max_destinations(2)
        .build();
    for e in &exchanges {
        // Not mandatory: unroutable messages are acked and dropped by the broker.
        traced
            .publish(
                e.as_str().into(),
                "k".into(),
                BasicPublishOptions::default(),
                b"x",
                BasicProperties::default(),
            )
            .await
            .unwrap();
    }
    for e in &exchanges[..2] {
        assert_eq!(
            m.counter_sum_with(SENT, ("messaging_destination_name", e.as_str())),
            1
        );
    }
    assert_eq!(
        m.counter_sum_with(SENT, ("messaging_destination_name", exchanges[2].as_str())),
        0
    );
    assert!(m.counter_sum_with(SENT, ("messaging_destination_name", "_overflow")) >= 1);
    assert!(m.counter_sum_with("orderscope_cardinality_overflow_total", ("metric", SENT)) >= 1);
    let refs: Vec<&str> = exchanges.iter().map(String::as_str).collect();
    cleanup(&conn, &[], &refs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirms_that_do_not_arrive_in_time_are_timeouts() {
    const N: usize = 20;
    const TIMEOUT: std::time::Duration = std::time::Duration::from_millis(100);
    let m = metrics();
    // The client talks to the broker through a proxy that holds every frame the broker sends while the
    // messages are published: no confirm can reach the client before the timeout.
    let proxy = Proxy::start().await;
    let conn = lapin::Connection::connect(&proxy.uri, lapin::ConnectionProperties::default())
        .await
        .expect("connect through the proxy");
    let exchange = unique("timeout");
    let queue = unique("timeout-q");
    let channel = confirm_channel(&conn).await;
    declare_exchange(&channel, &exchange).await;
    declare_queue(&channel, &queue, FieldTable::default()).await;
    bind(&channel, &queue, &exchange, "k").await;
    let traced = TracedChannel::builder(channel)
        .tracer(tracer(spans().provider()))
        .confirm_timeout(Some(TIMEOUT))
        .build();
    let publish = || {
        traced.publish(
            exchange.as_str().into(),
            "k".into(),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        )
    };
    proxy.hold(true);
    let started = std::time::Instant::now();
    let results = futures_util::future::join_all((0..N).map(|_| publish())).await;
    let waited = started.elapsed();
    proxy.hold(false);
    for result in &results {
        assert!(
            matches!(result, Err(PublishError::Timeout(t)) if *t == TIMEOUT),
            "{result:?}"
        );
    }
    assert!(waited >= TIMEOUT, "timed out after {waited:?}");
    // Released, the channel works again: the late confirms are ignored and a new publish is acked.
    assert!(
        publish()
            .await
            .expect("confirmed after release")
            .confirmed()
    );
    let labels = |outcome| {
        [
            ("messaging_system", "rabbitmq"),
            ("messaging_destination_name", exchange.as_str()),
            ("outcome", outcome),
        ]
    };
    let [a, b, c] = labels("timeout");
    assert_eq!(
        m.counter(SENT, &[a, b, c, ("error_type", "timeout")]),
        N as u64
    );
    assert_eq!(m.counter(SENT, &labels("ack")), 1);
    // All N + 1 messages reached the queue: a timeout says nothing about the message's fate.
    let mut count = 0;
    for _ in 0..100 {
        count = message_count(&conn, &queue).await;
        if count == N as u32 + 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(count, N as u32 + 1);
    cleanup(&conn, &[&queue], &[&exchange]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_that_rejects_publishes_is_a_nack() {
    let m = metrics();
    let conn = connect().await;
    let queue = unique("full");
    let exchange = unique("full-x");
    let channel = confirm_channel(&conn).await;
    declare_exchange(&channel, &exchange).await;
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongInt(1));
    args.insert("x-overflow".into(), long("reject-publish"));
    declare_queue(&channel, &queue, args).await;
    bind(&channel, &queue, &exchange, "k").await;
    let traced = TracedChannel::builder(channel)
        .tracer(tracer(spans().provider()))
        .build();
    let publish = || {
        traced.publish(
            exchange.as_str().into(),
            "k".into(),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        )
    };
    publish().await.expect("the first message fits");
    let error = publish().await.expect_err("the queue is full");
    assert!(matches!(error, PublishError::Nacked), "{error:?}");
    assert_eq!(
        m.counter(
            SENT,
            &[
                ("messaging_system", "rabbitmq"),
                ("messaging_destination_name", exchange.as_str()),
                ("outcome", "nack"),
                ("error_type", "nack"),
            ]
        ),
        1
    );
    cleanup(&conn, &[&queue], &[&exchange]).await;
}

#[test]
fn publish_and_run_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    async fn publish(channel: TracedChannel) {
        let _ = channel
            .publish(
                "".into(),
                "".into(),
                BasicPublishOptions::default(),
                b"",
                BasicProperties::default(),
            )
            .await;
    }
    async fn run(consumer: orderscope_amqp::TracedConsumer) {
        let _ = orderscope_amqp::run(
            consumer,
            |_m: orderscope_amqp::Message| async { Ok::<(), String>(()) },
            orderscope_amqp::RunOptions::new(),
        )
        .await;
    }
    // Only the types are checked; nothing is polled.
    let _ = |c: TracedChannel| assert_send(&publish(c));
    let _ = |c: orderscope_amqp::TracedConsumer| assert_send(&run(c));
}

/// A publish future is moved by every combinator and executor it passes through (`join_all`,
/// `tokio::spawn`, `with_order`): lapin's publish and the confirm wait are kept on the heap, so it stays
/// small.
#[tokio::test]
async fn a_publish_future_is_small() {
    let conn = connect().await;
    let traced = TracedChannel::new(confirm_channel(&conn).await);
    let future = traced.publish(
        "".into(),
        "orderscope.size".into(),
        BasicPublishOptions::default(),
        b"x",
        BasicProperties::default(),
    );
    let size = std::mem::size_of_val(&future);
    assert!(size <= 1024, "a publish future is {size} bytes");
    let with_order = future.with_order(OrderContext::new("ORD-2026-000123").unwrap());
    let size = std::mem::size_of_val(&with_order);
    assert!(size <= 1024, "with its order, {size} bytes");
}
