//! Consumer saturation against the real broker: `messaging_unsettled_messages` ÷
//! `orderscope_consumer_prefetch`, per queue.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use lapin::BasicProperties;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions};
use lapin::types::FieldTable;
use orderscope_amqp::{Message, RetryPolicy, RunOptions, TracedChannel, TracedConsumer, run};
use tokio::sync::{Semaphore, oneshot};

const UNSETTLED: &str = "messaging_unsettled_messages";
const PREFETCH: &str = "orderscope_consumer_prefetch";

/// Polls `condition` every 10 ms until it holds; panics with `what` after 10 s.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "not within 10 s: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Publishes `n` messages to `queue`, confirmed.
async fn fill(conn: &lapin::Connection, queue: &str, n: usize) {
    let publisher = TracedChannel::new(confirm_channel(conn).await);
    for _ in 0..n {
        publisher
            .publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                b"work",
                BasicProperties::default(),
            )
            .await
            .expect("published");
    }
}

/// Runs a handler that blocks until `gate` gives it a permit, over a consumer with prefetch
/// `prefetch`, at `concurrency`; checks the saturation while blocked (`window` unsettled of a
/// window of `window`: 1) and after the release (0), and that the consumer's prefetch is taken
/// off when it ends.
async fn blocked_then_released(prefetch: u16, concurrency: usize, window: usize) {
    let m = metrics();
    let conn = connect().await;
    let queue = unique("saturation");
    let channel = confirm_channel(&conn).await;
    declare_queue(&channel, &queue, expiring(FieldTable::default())).await;
    let total = 2 * usize::from(prefetch);
    fill(&conn, &queue, total).await;

    let consumer = consume_channel(&conn, prefetch)
        .await
        .basic_consume(
            queue.as_str().into(),
            "saturation".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("basic_consume");
    let consumer = TracedConsumer::builder(consumer)
        .tracer(tracer(spans().provider()))
        .prefetch(prefetch)
        .build();
    let base = [
        ("messaging_system", "rabbitmq"),
        ("messaging_destination_name", queue.as_str()),
    ];
    assert_eq!(m.gauge(PREFETCH, &base), f64::from(prefetch));

    let gate = Arc::new(Semaphore::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let handled = Arc::new(AtomicUsize::new(0));
    let handler = {
        let (gate, started, handled) = (
            Arc::clone(&gate),
            Arc::clone(&started),
            Arc::clone(&handled),
        );
        move |_message: Message| {
            let (gate, started, handled) = (
                Arc::clone(&gate),
                Arc::clone(&started),
                Arc::clone(&handled),
            );
            async move {
                started.fetch_add(1, Ordering::SeqCst);
                gate.acquire().await.expect("gate open").forget();
                handled.fetch_add(1, Ordering::SeqCst);
                Ok::<(), std::convert::Infallible>(())
            }
        }
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let options = RunOptions::new()
        .retry(RetryPolicy::Requeue)
        .concurrency(concurrency)
        .shutdown(async move {
            let _ = stopped.await;
        });
    let runner = tokio::spawn(run(consumer, handler, options));

    // Every handler slot blocked: the window is full.
    eventually("every handler blocked", || {
        started.load(Ordering::SeqCst) == window
    })
    .await;
    eventually("the blocked deliveries unsettled", || {
        m.gauge(UNSETTLED, &base) == window as f64
    })
    .await;
    let prefetch_gauge = m.gauge(PREFETCH, &base);
    assert_eq!(prefetch_gauge, window as f64, "the runner's window");
    assert_eq!(m.gauge(UNSETTLED, &base) / prefetch_gauge, 1.0);
    // The broker holds back what the prefetch does not let through.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready = message_count(&conn, &queue).await as usize;
        if ready == total - usize::from(prefetch) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{ready} ready, expected {}",
            total - usize::from(prefetch)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Released: everything is handled and settled, nothing stays unsettled.
    gate.add_permits(total);
    eventually("every message handled", || {
        handled.load(Ordering::SeqCst) == total
    })
    .await;
    eventually("nothing unsettled", || m.gauge(UNSETTLED, &base) == 0.0).await;
    assert_eq!(m.gauge(UNSETTLED, &base) / prefetch_gauge, 0.0);

    stop.send(()).expect("runner alive");
    let report = runner.await.expect("runner task").expect("run");
    assert_eq!(report.acked, total as u64);
    assert_eq!(
        m.gauge(PREFETCH, &base),
        0.0,
        "the ended consumer's prefetch is taken off"
    );
    cleanup(&conn, &[&queue], &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_blocking_with_prefetch_p_show_p_unsettled_and_saturation_1() {
    blocked_then_released(4, 4, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_blocked_handler_saturates_a_runner_at_concurrency_1() {
    // Prefetch 5, one handler at a time: the other four wait in lapin's buffer, so the window
    // the runner records is 1.
    blocked_then_released(5, 1, 1).await;
}
