//! Delayed retries against the broker: attempts counted, backoff observed, nothing blocked, nothing lost, one
//! trace across attempts, and the start checks.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use lapin::BasicProperties;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions};
use lapin::types::{AMQPValue, FieldArray, FieldTable};
use orderscope_amqp::{
    ATTEMPT_HEADER, Backoff, DEAD_LETTER_CAUSE_HEADER, Message, Retries, RetryPolicy, RunError,
    RunOptions, TracedChannel, TracedConsumer, run,
};
use orderscope_context::{OrderContext, WithOrder};
use tokio::sync::Notify;

const PROCESS: &str = "messaging_process_duration_seconds";
const UNSETTLED: &str = "messaging_unsettled_messages";

/// A delivery as the handler saw it: payload, attempt, when.
type Seen = (Vec<u8>, u32, Instant);

async fn consumer(conn: &lapin::Connection, queue: &str, prefetch: u16) -> TracedConsumer {
    let consumer = consume_channel(conn, prefetch)
        .await
        .basic_consume(
            queue.into(),
            "retry-test".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("basic_consume");
    TracedConsumer::builder(consumer)
        .tracer(tracer(spans().provider()))
        .build()
}

fn publisher(channel: lapin::Channel) -> TracedChannel {
    TracedChannel::builder(channel)
        .tracer(tracer(spans().provider()))
        .build()
}

/// Retries for `queue` whose queues vanish a minute after the test.
fn retries(queue: &str, attempts: u32, backoff: Backoff) -> Retries {
    Retries::new(queue)
        .max_attempts(attempts)
        .backoff(backoff)
        .queue_arguments(expiring(FieldTable::default()))
        .declare_at_start(true)
}

/// A foreign `x-death` entry, as a message dead-lettered from another queue carries it.
fn foreign_x_death() -> FieldTable {
    let mut death = FieldTable::default();
    death.insert("count".into(), AMQPValue::LongLongInt(1));
    death.insert("reason".into(), long("rejected"));
    death.insert("queue".into(), long("some-other-queue"));
    death.insert("exchange".into(), long(""));
    let mut headers = FieldTable::default();
    headers.insert(
        "x-death".into(),
        AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(death)])),
    );
    headers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_with_a_foreign_x_death_is_dead_lettered_after_exactly_n_attempts() {
    const ATTEMPTS: u32 = 3;
    const BEHIND: usize = 20;
    let m = metrics();
    let conn = connect().await;
    let queue = unique("xdeath");
    let channel = confirm_channel(&conn).await;
    declare_queue(&channel, &queue, FieldTable::default()).await;
    let r = retries(
        &queue,
        ATTEMPTS,
        Backoff::exponential(Duration::from_millis(50)),
    );
    let traced = publisher(channel.clone());

    // The poison message first, the good ones queued behind it.
    traced
        .publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions::default(),
            b"poison",
            BasicProperties::default().with_headers(foreign_x_death()),
        )
        .with_order(OrderContext::new("ORD-POISON-1").unwrap())
        .await
        .expect("published");
    for i in 0..BEHIND {
        traced
            .publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                format!("good {i}").as_bytes(),
                BasicProperties::default(),
            )
            .await
            .expect("published");
    }

    // (attempt number, good messages handled so far) per poison attempt.
    let poison_attempts = Arc::new(Mutex::new(Vec::new()));
    let good = Arc::new(Mutex::new(0_usize));
    let done = Arc::new(Notify::new());
    let handler = {
        let (poison_attempts, good, done) = (
            Arc::clone(&poison_attempts),
            Arc::clone(&good),
            Arc::clone(&done),
        );
        move |message: Message| {
            let (poison_attempts, good, done) = (
                Arc::clone(&poison_attempts),
                Arc::clone(&good),
                Arc::clone(&done),
            );
            async move {
                if message.data() == b"poison" {
                    let handled = *good.lock().unwrap();
                    let mut attempts = poison_attempts.lock().unwrap();
                    attempts.push((message.attempt(), handled));
                    if attempts.len() == ATTEMPTS as usize && handled == BEHIND {
                        done.notify_one();
                    }
                    return Err("always fails".to_owned());
                }
                let mut good = good.lock().unwrap();
                *good += 1;
                if *good == BEHIND && poison_attempts.lock().unwrap().len() == ATTEMPTS as usize {
                    done.notify_one();
                }
                Ok(())
            }
        }
    };
    let report = run(
        consumer(&conn, &queue, 1).await,
        handler,
        RunOptions::new()
            .retries(r.clone(), traced.clone())
            .shutdown({
                let done = Arc::clone(&done);
                async move {
                    let _ = tokio::time::timeout(Duration::from_secs(20), done.notified()).await;
                }
            }),
    )
    .await
    .expect("runner");

    let attempts = poison_attempts.lock().unwrap().clone();
    assert_eq!(
        attempts.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        [1, 2, 3],
        "exactly {ATTEMPTS} attempts, numbered: {attempts:?}"
    );
    // The first attempt came before the others; the retries came after all of them: never blocked.
    assert_eq!(attempts[0].1, 0);
    assert_eq!(attempts[1].1, BEHIND, "{attempts:?}");
    assert_eq!(*good.lock().unwrap(), BEHIND);
    assert_eq!(report.handled, BEHIND as u64 + u64::from(ATTEMPTS));
    assert_eq!(report.acked, BEHIND as u64);
    assert_eq!(report.retried, u64::from(ATTEMPTS - 1));
    assert_eq!(report.dead_lettered, 1);
    assert_eq!(report.requeued, 0);

    let dead = receive(&conn, r.dead_letter_queue(), 1).await.remove(0);
    assert_eq!(dead.data, b"poison");
    let headers = dead.properties.headers().clone().unwrap();
    let headers = headers.inner();
    assert_eq!(
        headers.get(DEAD_LETTER_CAUSE_HEADER),
        Some(&long("handler_error"))
    );
    assert_eq!(
        headers.get(ATTEMPT_HEADER),
        Some(&AMQPValue::LongLongInt(i64::from(ATTEMPTS) + 1))
    );
    // The dead letter keeps the order: in `baggage` (no `x-order-id` by default).
    assert_eq!(headers.get("baggage"), Some(&long("order.id=ORD-POISON-1")));
    assert_eq!(headers.get("x-order-id"), None);
    assert_eq!(message_count(&conn, &queue).await, 0);
    for n in 1..ATTEMPTS {
        assert_eq!(message_count(&conn, &r.delay_queue(n)).await, 0);
    }

    let [a, b] = [
        ("messaging_system", "rabbitmq"),
        ("messaging_destination_name", queue.as_str()),
    ];
    let retried = m.histogram(
        PROCESS,
        &[a, b, ("outcome", "retry"), ("error_type", "handler_error")],
    );
    assert_eq!(retried.len(), ATTEMPTS as usize - 1);
    let dead_lettered = m.histogram(
        PROCESS,
        &[
            a,
            b,
            ("outcome", "dead_letter"),
            ("error_type", "handler_error"),
        ],
    );
    assert_eq!(dead_lettered.len(), 1);

    // One trace: every attempt is a child of the publish span, numbered, linked to the previous attempt.
    let all = spans().spans();
    let publish = all
        .iter()
        .find(|s| s.name == "publish amq.default" && s.attr_str("order.id") == Some("ORD-POISON-1"))
        .expect("publish span");
    let mut process: Vec<_> = all
        .iter()
        .filter(|s| {
            s.name == format!("process {queue}") && s.attr_str("order.id") == Some("ORD-POISON-1")
        })
        .collect();
    process.sort_by_key(|s| s.attr_i64("orderscope.attempt"));
    assert_eq!(process.len(), ATTEMPTS as usize);
    for (i, span) in process.iter().enumerate() {
        assert_eq!(span.trace_id, publish.trace_id);
        assert_eq!(
            span.parent_span_id.as_deref(),
            Some(publish.span_id.as_str())
        );
        assert_eq!(span.attr_i64("orderscope.attempt"), Some(i as i64 + 1));
        assert!(span.status.is_error());
        if i > 0 {
            let previous = &process[i - 1].span_id;
            assert!(
                span.links.iter().any(|l| &l.span_id == previous),
                "attempt {} links to attempt {i}",
                i + 1
            );
        }
    }
    cleanup_retries(&conn, &queue, &r).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_delays_are_observed_and_one_message_retrying_does_not_hold_up_others() {
    const INITIAL: Duration = Duration::from_millis(300);
    let conn = connect().await;
    let queue = unique("backoff");
    let channel = confirm_channel(&conn).await;
    declare_queue(&channel, &queue, FieldTable::default()).await;
    let r = retries(
        &queue,
        3,
        Backoff::exponential(INITIAL).multiplier(2.0).jitter(0.1),
    );
    let traced = publisher(channel.clone());
    let publish = |body: &'static [u8]| {
        traced.publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default(),
        )
    };
    publish(b"flaky").await.expect("published");

    // When each delivery reached the handler.
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let done = Arc::new(Notify::new());
    let handler = {
        let (seen, done) = (Arc::clone(&seen), Arc::clone(&done));
        move |message: Message| {
            let (seen, done) = (Arc::clone(&seen), Arc::clone(&done));
            async move {
                seen.lock().unwrap().push((
                    message.data().to_vec(),
                    message.attempt(),
                    Instant::now(),
                ));
                match message.data() {
                    // Fails twice, then succeeds on the third attempt.
                    b"flaky" if message.attempt() < 3 => Err("not yet"),
                    b"flaky" => {
                        done.notify_one();
                        Ok(())
                    }
                    _ => Ok(()),
                }
            }
        }
    };
    let runner = tokio::spawn(run(
        consumer(&conn, &queue, 1).await,
        handler,
        RunOptions::new()
            .retries(r.clone(), traced.clone())
            .shutdown({
                let done = Arc::clone(&done);
                async move {
                    let _ = tokio::time::timeout(Duration::from_secs(20), done.notified()).await;
                }
            }),
    ));
    // Published while "flaky" waits for its first retry: handled at once, not after it.
    let wait_first = {
        let seen = Arc::clone(&seen);
        async move {
            while seen.lock().unwrap().is_empty() {
                tokio::task::yield_now().await;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait_first)
        .await
        .expect("first attempt");
    publish(b"other").await.expect("published");
    let report = runner.await.unwrap().expect("runner");
    assert_eq!(report.retried, 2);
    assert_eq!(report.acked, 2);

    let seen = seen.lock().unwrap().clone();
    let flaky: Vec<_> = seen.iter().filter(|(d, _, _)| d == b"flaky").collect();
    let other = seen
        .iter()
        .find(|(d, _, _)| d == b"other")
        .expect("other handled");
    assert_eq!(
        flaky.iter().map(|(_, n, _)| *n).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(
        other.2 < flaky[1].2,
        "the other message did not wait for the retry"
    );
    // Retry n waits INITIAL × 2ⁿ⁻¹ ± 10 %; the broker expires a message within some milliseconds of its TTL,
    // and the round trips add a little.
    for (n, pair) in flaky.windows(2).enumerate() {
        let expected = INITIAL.as_secs_f64() * 2_f64.powi(n as i32);
        let waited = (pair[1].2 - pair[0].2).as_secs_f64();
        assert!(
            waited >= expected * 0.9 - 0.005 && waited <= expected * 1.1 + 0.25,
            "retry {} waited {waited:.3} s, expected {expected:.3} s ± 10 %",
            n + 1
        );
    }
    cleanup_retries(&conn, &queue, &r).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_refuses_to_start_without_somewhere_to_dead_letter() {
    let conn = connect().await;
    let queue = unique("refuse");
    let channel = confirm_channel(&conn).await;
    declare_queue(&channel, &queue, FieldTable::default()).await;
    let ok = |_m: Message| async { Ok::<(), String>(()) };

    // The default policy dead-letters; nothing says where to.
    let error = run(consumer(&conn, &queue, 1).await, ok, RunOptions::new())
        .await
        .expect_err("refused");
    assert!(
        matches!(&error, RunError::NoDeadLetterRoute { queue: q } if *q == queue),
        "{error}"
    );
    assert!(
        error.to_string().contains("discard_dead_letters"),
        "{error}"
    );

    // Retries whose queues were never declared.
    let r = Retries::new(queue.as_str());
    let error = run(
        consumer(&conn, &queue, 1).await,
        ok,
        RunOptions::new().retries(r, publisher(confirm_channel(&conn).await)),
    )
    .await
    .expect_err("refused");
    assert!(matches!(error, RunError::Topology { .. }), "{error}");
    assert!(error.to_string().contains("missing"), "{error}");

    // A publisher without confirms cannot vouch for the copies.
    let plain = conn.create_channel().await.unwrap();
    let error = run(
        consumer(&conn, &queue, 1).await,
        ok,
        RunOptions::new().retries(Retries::new(queue.as_str()), publisher(plain)),
    )
    .await
    .expect_err("refused");
    assert!(error.to_string().contains("confirm mode"), "{error}");
    cleanup(&conn, &[&queue], &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discarded_messages_are_counted_when_discarding_is_accepted() {
    let m = metrics();
    let conn = connect().await;
    let queue = unique("discard");
    let channel = confirm_channel(&conn).await;
    declare_queue(&channel, &queue, FieldTable::default()).await;
    publisher(channel)
        .publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        )
        .with_order(OrderContext::new("ORD-GONE-1").unwrap())
        .await
        .expect("published");
    let done = Arc::new(Notify::new());
    let report = run(
        consumer(&conn, &queue, 1).await,
        {
            let done = Arc::clone(&done);
            move |_m: Message| {
                done.notify_one();
                async { Err::<(), _>("no") }
            }
        },
        RunOptions::new()
            .retry(RetryPolicy::DeadLetter)
            .discard_dead_letters()
            .shutdown(async move { done.notified().await }),
    )
    .await
    .expect("runner");
    assert_eq!(report.discarded, 1);
    assert_eq!(message_count(&conn, &queue).await, 0);
    assert_eq!(
        m.histogram(
            PROCESS,
            &[
                ("messaging_system", "rabbitmq"),
                ("messaging_destination_name", queue.as_str()),
                ("outcome", "discarded"),
                ("error_type", "handler_error"),
            ]
        )
        .len(),
        1
    );
    cleanup(&conn, &[&queue], &[]).await;
}

/// A failed message's retry copy whose publisher confirm does not come (a proxy holds everything the broker
/// sends to the retry publisher) holds up neither the handlers nor the acks of the messages behind it, and
/// is settled once the confirm arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_copy_waiting_for_its_confirm_holds_up_no_other_message() {
    const BEHIND: usize = 20;
    let conn = connect().await;
    let queue = unique("held-confirm");
    let channel = confirm_channel(&conn).await;
    declare_queue(&channel, &queue, expiring(FieldTable::default())).await;
    publish_bare(&channel, &queue, b"fails").await;
    for i in 0..BEHIND {
        publish_bare(&channel, &queue, format!("good {i}").as_bytes()).await;
    }
    let r = retries(&queue, 3, Backoff::exponential(Duration::from_secs(60)));

    // Only the retry publisher goes through the proxy; the consumer and its acks do not.
    let proxy = Arc::new(Proxy::start().await);
    let proxied = lapin::Connection::connect(&proxy.uri, lapin::ConnectionProperties::default())
        .await
        .expect("connect through the proxy");
    let retry_publisher = publisher(confirm_channel(&proxied).await);

    let m = metrics();
    let queue_label = queue.clone();
    let good = Arc::new(Mutex::new(0_usize));
    // `messaging_unsettled_messages` as the last good message's handler sees it.
    let unsettled_at_last = Arc::new(Mutex::new(None));
    let all_good = Arc::new(Notify::new());
    let handler = {
        let (queue_label, unsettled_at_last) =
            (queue_label.clone(), Arc::clone(&unsettled_at_last));
        let (proxy, good, all_good) =
            (Arc::clone(&proxy), Arc::clone(&good), Arc::clone(&all_good));
        move |message: Message| {
            let (proxy, good, all_good) =
                (Arc::clone(&proxy), Arc::clone(&good), Arc::clone(&all_good));
            let (queue_label, unsettled_at_last) =
                (queue_label.clone(), Arc::clone(&unsettled_at_last));
            async move {
                if message.data() == b"fails" {
                    // From here on, no confirm reaches the retry publisher.
                    proxy.hold(true);
                    return Err("fails".to_owned());
                }
                let mut good = good.lock().unwrap();
                *good += 1;
                if *good == BEHIND {
                    *unsettled_at_last.lock().unwrap() = Some(m.gauge(
                        UNSETTLED,
                        &[
                            ("messaging_system", "rabbitmq"),
                            ("messaging_destination_name", queue_label.as_str()),
                        ],
                    ));
                    all_good.notify_one();
                }
                Ok(())
            }
        }
    };
    let stop = Arc::new(Notify::new());
    // A prefetch of 5: the broker delivers all 20 good messages only if their acks reach it while the
    // copy's confirm is held.
    let runner = tokio::spawn(run(
        consumer(&conn, &queue, 5).await,
        handler,
        RunOptions::new()
            .retries(r.clone(), retry_publisher)
            .shutdown({
                let stop = Arc::clone(&stop);
                async move { stop.notified().await }
            }),
    ));

    tokio::time::timeout(Duration::from_secs(20), all_good.notified())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{} of the {BEHIND} messages behind the unconfirmed retry copy were handled",
                good.lock().unwrap()
            )
        });
    let [a, b] = [
        ("messaging_system", "rabbitmq"),
        ("messaging_destination_name", queue.as_str()),
    ];
    let retry_settled = || {
        m.histogram(
            PROCESS,
            &[a, b, ("outcome", "retry"), ("error_type", "handler_error")],
        )
        .len()
    };
    assert_eq!(
        retry_settled(),
        0,
        "the copy was confirmed through the hold"
    );
    // Only the last handler's own delivery counts as unsettled: the copy waiting for its confirm
    // holds no handler slot.
    assert_eq!(*unsettled_at_last.lock().unwrap(), Some(1.0));
    proxy.hold(false);
    stop.notify_one();
    let report = runner.await.expect("runner task").expect("runner");
    assert_eq!(report.handled, BEHIND as u64 + 1, "{report:?}");
    assert_eq!(report.acked, BEHIND as u64, "{report:?}");
    assert_eq!(report.retried, 1, "{report:?}");
    assert_eq!(report.settle_failed + report.lost_tasks, 0, "{report:?}");
    assert_eq!(retry_settled(), 1);
    assert_eq!(m.gauge(UNSETTLED, &[a, b]), 0.0);
    // The copy waits in the first delay queue; the work queue is empty.
    assert_eq!(message_count(&conn, &r.delay_queue(1)).await, 1);
    assert_eq!(message_count(&conn, &queue).await, 0);

    cleanup_retries(&conn, &queue, &r).await;
}
