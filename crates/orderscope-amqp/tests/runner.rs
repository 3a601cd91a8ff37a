//! The runner: ack on Ok, nack per policy on Err and on panic, graceful stop.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use lapin::BasicProperties;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions};
use lapin::types::{AMQPValue, FieldTable};
use orderscope_amqp::{Message, RetryPolicy, RunOptions, TracedChannel, TracedConsumer, run};
use orderscope_context::{OrderContext, WithOrder};
use tokio::sync::{Notify, oneshot};

const PROCESS: &str = "messaging_process_duration_seconds";
const CONSUMED: &str = "messaging_client_consumed_messages_total";
const UNSETTLED: &str = "messaging_unsettled_messages";

fn dlx_args(dlq: &str) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-dead-letter-exchange".into(), long(""));
    args.insert("x-dead-letter-routing-key".into(), long(dlq));
    args
}

async fn consumer(conn: &lapin::Connection, queue: &str, prefetch: u16) -> TracedConsumer {
    consumer_on(&consume_channel(conn, prefetch).await, queue).await
}

/// A traced consumer of `queue` on `channel`, with the test tracer.
async fn consumer_on(channel: &lapin::Channel, queue: &str) -> TracedConsumer {
    let consumer = channel
        .basic_consume(
            queue.into(),
            "runner".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("basic_consume");
    TracedConsumer::builder(consumer)
        .tracer(tracer(spans().provider()))
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_error_dead_letters_with_trace_headers_intact() {
    let m = metrics();
    let conn = connect().await;
    let queue = unique("work");
    let dlq = unique("dlq");
    let channel = confirm_channel(&conn).await;
    declare_queue(&channel, &dlq, FieldTable::default()).await;
    declare_queue(&channel, &queue, dlx_args(&dlq)).await;

    let publisher = TracedChannel::builder(channel.clone())
        .tracer(tracer(spans().provider()))
        .build();
    publisher
        .publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions::default(),
            b"bad order",
            BasicProperties::default(),
        )
        .with_order(OrderContext::new("ORD-DLX-1").unwrap())
        .await
        .expect("published");

    let (done_tx, done_rx) = oneshot::channel::<()>();
    let done_tx = std::sync::Mutex::new(Some(done_tx));
    let report = run(
        consumer(&conn, &queue, 5).await,
        move |message: Message| {
            let seen = OrderContext::current().map(|o| o.id().to_owned());
            if let Some(tx) = done_tx.lock().unwrap().take() {
                let _ = tx.send(());
            }
            async move {
                assert_eq!(message.data(), b"bad order");
                Err(format!("cannot process order {seen:?}"))
            }
        },
        RunOptions::new()
            .retry(RetryPolicy::DeadLetter)
            .broker_dead_letters()
            .shutdown(async {
                let _ = done_rx.await;
            }),
    )
    .await
    .expect("runner");
    assert_eq!(report.handled, 1);
    assert_eq!(report.failed, 1);
    assert_eq!(report.dead_lettered, 1);

    let dead = receive(&conn, &dlq, 1).await.remove(0);
    assert_eq!(dead.data, b"bad order");
    let headers = dead.properties.headers().clone().unwrap();
    let map = headers.inner();
    assert!(matches!(
        map.get("traceparent"),
        Some(AMQPValue::LongString(_))
    ));
    assert_eq!(map.get("baggage"), Some(&long("order.id=ORD-DLX-1")));
    assert_eq!(map.get("x-order-id"), None, "not in the default header set");
    assert!(map.contains_key("x-death"));
    assert_eq!(message_count(&conn, &queue).await, 0);

    assert_eq!(
        m.histogram(
            PROCESS,
            &[
                ("messaging_system", "rabbitmq"),
                ("messaging_destination_name", queue.as_str()),
                ("outcome", "nack_dead_letter"),
                ("error_type", "handler_error"),
            ]
        )
        .len(),
        1
    );
    let span = spans()
        .spans()
        .into_iter()
        .find(|s| s.name == format!("process {queue}"))
        .expect("process span");
    assert!(span.status.is_error());
    assert_eq!(span.attr_str("order.id"), Some("ORD-DLX-1"));
    assert_eq!(
        span.attr_str("orderscope.outcome"),
        Some("nack_dead_letter")
    );
    cleanup(&conn, &[&queue, &dlq], &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_handlers_lose_no_message_and_the_runner_keeps_going() {
    const N: usize = 100;
    let m = metrics();
    let conn = connect().await;
    let queue = unique("panic");
    let dlq = unique("panic-dlq");
    let channel = confirm_channel(&conn).await;
    declare_queue(&channel, &dlq, FieldTable::default()).await;
    declare_queue(&channel, &queue, dlx_args(&dlq)).await;
    for i in 0..N {
        publish_bare(&channel, &queue, i.to_string().as_bytes()).await;
    }

    // Every message panics on its first delivery; every tenth panics on every delivery. With the default
    // policy on a classic queue: first failure → requeue, failure on redelivery → dead-letter.
    let calls = Arc::new(AtomicUsize::new(0));
    let all_done = Arc::new(Notify::new());
    let expected_calls = 2 * N;
    let handler = {
        let calls = Arc::clone(&calls);
        let all_done = Arc::clone(&all_done);
        move |message: Message| {
            let calls = Arc::clone(&calls);
            let all_done = Arc::clone(&all_done);
            async move {
                let i: usize = std::str::from_utf8(message.data())
                    .unwrap()
                    .parse()
                    .unwrap();
                if calls.fetch_add(1, Ordering::SeqCst) + 1 == expected_calls {
                    all_done.notify_one();
                }
                if !message.redelivered() || i.is_multiple_of(10) {
                    panic!("handler bug on message {i}");
                }
                Ok::<(), String>(())
            }
        }
    };
    let report = run(
        consumer(&conn, &queue, 20).await,
        handler,
        RunOptions::new()
            .broker_dead_letters()
            .concurrency(8)
            .shutdown({
                let all_done = Arc::clone(&all_done);
                async move { all_done.notified().await }
            }),
    )
    .await
    .expect("runner");

    assert_eq!(calls.load(Ordering::SeqCst), 2 * N);
    assert_eq!(report.handled, 2 * N as u64);
    assert_eq!(report.panicked, (N + N / 10) as u64);
    assert_eq!(report.acked, (N - N / 10) as u64);
    assert_eq!(report.requeued, N as u64);
    assert_eq!(report.dead_lettered, (N / 10) as u64);
    assert_eq!(report.settle_failed, 0);

    assert_eq!(message_count(&conn, &queue).await, 0);
    let dead = receive(&conn, &dlq, N / 10).await;
    assert!(dead.iter().all(|d| {
        std::str::from_utf8(&d.data)
            .unwrap()
            .parse::<usize>()
            .unwrap()
            .is_multiple_of(10)
    }));
    assert_eq!(
        message_count(&conn, &dlq).await,
        0,
        "exactly N / 10 dead-lettered"
    );

    let base = [
        ("messaging_system", "rabbitmq"),
        ("messaging_destination_name", queue.as_str()),
    ];
    assert_eq!(m.counter(CONSUMED, &base), 2 * N as u64);
    assert_eq!(m.gauge(UNSETTLED, &base), 0.0);
    let [a, b] = base;
    // A panic is recorded where the message went, with the cause as error_type.
    assert_eq!(
        m.histogram(
            PROCESS,
            &[a, b, ("outcome", "nack_requeue"), ("error_type", "panic")]
        )
        .len(),
        N
    );
    assert_eq!(
        m.histogram(
            PROCESS,
            &[
                a,
                b,
                ("outcome", "nack_dead_letter"),
                ("error_type", "panic")
            ]
        )
        .len(),
        N / 10
    );
    assert_eq!(
        m.histogram(PROCESS, &[a, b, ("outcome", "ack")]).len(),
        N - N / 10
    );
    cleanup(&conn, &[&queue, &dlq], &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_in_flight_handlers_to_settle() {
    const N: usize = 4;
    let m = metrics();
    let conn = connect().await;
    let queue = unique("graceful");
    let channel = confirm_channel(&conn).await;
    declare_queue(&channel, &queue, FieldTable::default()).await;
    for _ in 0..N {
        publish_bare(&channel, &queue, b"slow").await;
    }

    let started = Arc::new(AtomicUsize::new(0));
    let all_started = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let handler = {
        let started = Arc::clone(&started);
        let all_started = Arc::clone(&all_started);
        let release = Arc::clone(&release);
        move |_message: Message| {
            let started = Arc::clone(&started);
            let all_started = Arc::clone(&all_started);
            let release = Arc::clone(&release);
            async move {
                let released = release.notified();
                if started.fetch_add(1, Ordering::SeqCst) + 1 == N {
                    all_started.notify_one();
                }
                released.await;
                Ok::<(), String>(())
            }
        }
    };
    let runner = tokio::spawn(run(
        consumer(&conn, &queue, N as u16).await,
        handler,
        RunOptions::new()
            .retry(RetryPolicy::Requeue)
            .concurrency(N)
            .shutdown(async {
                let _ = stop_rx.await;
            }),
    ));
    all_started.notified().await;
    stop_tx.send(()).unwrap();
    tokio::task::yield_now().await;
    assert!(
        !runner.is_finished(),
        "run returns only after in-flight handlers settle"
    );
    release.notify_waiters();
    let report = runner.await.unwrap().expect("runner");
    assert_eq!(report.handled, N as u64);
    assert_eq!(report.acked, N as u64);
    let base = [
        ("messaging_system", "rabbitmq"),
        ("messaging_destination_name", queue.as_str()),
    ];
    assert_eq!(m.gauge(UNSETTLED, &base), 0.0);
    assert_eq!(message_count(&conn, &queue).await, 0);
    cleanup(&conn, &[&queue], &[]).await;
}

/// At concurrency 1 a delivery's settle overlaps the next handler; handlers still run one at a time, in
/// order, and every settle is done, counted and seen by the broker when `run` returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_handler_at_a_time_in_order_and_every_settle_done_when_run_returns() {
    const N: usize = 200;
    let m = metrics();
    let conn = connect().await;
    let queue = unique("in-order");
    let channel = confirm_channel(&conn).await;
    declare_queue(&channel, &queue, FieldTable::default()).await;
    for i in 0..N {
        publish_bare(&channel, &queue, i.to_string().as_bytes()).await;
    }

    let seen = Arc::new(std::sync::Mutex::new(Vec::with_capacity(N)));
    let running = Arc::new(AtomicUsize::new(0));
    let overlapped = Arc::new(AtomicUsize::new(0));
    let last = Arc::new(Notify::new());
    let handler = {
        let (seen, running, overlapped, last) = (
            Arc::clone(&seen),
            Arc::clone(&running),
            Arc::clone(&overlapped),
            Arc::clone(&last),
        );
        move |message: Message| {
            let (seen, running, overlapped, last) = (
                Arc::clone(&seen),
                Arc::clone(&running),
                Arc::clone(&overlapped),
                Arc::clone(&last),
            );
            async move {
                if running.fetch_add(1, Ordering::SeqCst) > 0 {
                    overlapped.fetch_add(1, Ordering::SeqCst);
                }
                tokio::task::yield_now().await;
                let i: usize = std::str::from_utf8(message.data())
                    .unwrap()
                    .parse()
                    .unwrap();
                let count = {
                    let mut seen = seen.lock().unwrap();
                    seen.push(i);
                    seen.len()
                };
                running.fetch_sub(1, Ordering::SeqCst);
                if count == N {
                    last.notify_one();
                }
                Ok::<(), String>(())
            }
        }
    };
    // The consumer's own channel, to close it afterwards: unacked messages would then be requeued.
    let consume = consume_channel(&conn, 50).await;
    let report = run(
        consumer_on(&consume, &queue).await,
        handler,
        RunOptions::new()
            .retry(RetryPolicy::Requeue)
            .shutdown(async move { last.notified().await }),
    )
    .await
    .expect("runner");

    assert_eq!(report.handled, N as u64);
    assert_eq!(report.acked, N as u64, "{report:?}");
    assert_eq!(report.settle_failed + report.lost_tasks, 0, "{report:?}");
    assert_eq!(
        overlapped.load(Ordering::SeqCst),
        0,
        "two handlers ran at once"
    );
    assert_eq!(*seen.lock().unwrap(), (0..N).collect::<Vec<_>>());
    let base = [
        ("messaging_system", "rabbitmq"),
        ("messaging_destination_name", queue.as_str()),
    ];
    assert_eq!(m.gauge(UNSETTLED, &base), 0.0);
    consume.close(200, "done".into()).await.unwrap();
    assert_eq!(
        message_count(&conn, &queue).await,
        0,
        "a message was not acked before run returned"
    );
    cleanup(&conn, &[&queue], &[]).await;
}
