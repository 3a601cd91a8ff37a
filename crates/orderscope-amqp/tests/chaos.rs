//! Chaos: 5,000 messages, 10 % fail once, 1 % always fail, 1 % panic, and the broker closes our connections
//! (only this test's own, by name) twice mid-run. At the end every message was handled or sits in the
//! dead-letter queue, and the counters match what the broker holds.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use futures_util::StreamExt as _;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, ConnectionProperties};
use orderscope_amqp::{
    Backoff, Connector, Consume, Message, Retries, RunOptions, TracedChannel, run_reconnecting,
};
use tokio::sync::{Notify, watch};

const N: usize = 5_000;
const PROCESS: &str = "messaging_process_duration_seconds";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Ok,
    FailOnce,
    AlwaysFail,
    Panic,
}

fn kind(i: usize) -> Kind {
    match (i % 100, i % 10) {
        (0, _) => Kind::AlwaysFail,
        (1, _) => Kind::Panic,
        (_, 2) => Kind::FailOnce,
        _ => Kind::Ok,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_messages_through_failures_panics_and_two_broker_closes() {
    const ATTEMPTS: u32 = 3;
    let m = metrics();
    let conn = connect().await;
    let queue = unique("chaos");
    let name = unique("chaos-conn");
    let channel = confirm_channel(&conn).await;
    declare_queue(&channel, &queue, FieldTable::default()).await;
    let retries = Retries::new(queue.as_str())
        .max_attempts(ATTEMPTS)
        .backoff(Backoff::exponential(Duration::from_millis(20)))
        .queue_arguments(expiring(FieldTable::default()))
        .declare_at_start(true);
    let publisher = TracedChannel::builder(channel.clone())
        .tracer(tracer(spans().provider()))
        .build();
    for batch in (0..N).collect::<Vec<_>>().chunks(500) {
        let results = futures_util::future::join_all(batch.iter().map(|i| {
            publisher.publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                i.to_string().into_bytes().leak(),
                BasicProperties::default(),
            )
        }))
        .await;
        assert!(results.iter().all(Result::is_ok));
    }

    let expected_ok = (0..N)
        .filter(|i| matches!(kind(*i), Kind::Ok | Kind::FailOnce))
        .count();
    let expected_dead = N - expected_ok;
    // Successful handlings per message; last attempts of the poison ones.
    let handled: Arc<Mutex<HashMap<usize, usize>>> = Arc::default();
    let poison_done: Arc<Mutex<HashSet<usize>>> = Arc::default();
    // Handlers stop at 30 % and 70 % until the connection was closed under them.
    let (closed_tx, closed_rx) = watch::channel(0_u8);
    let pause = Arc::new(Notify::new());
    let all_done = Arc::new(Notify::new());
    let handler = {
        let (handled, poison_done, pause, all_done) = (
            Arc::clone(&handled),
            Arc::clone(&poison_done),
            Arc::clone(&pause),
            Arc::clone(&all_done),
        );
        move |message: Message| {
            let (handled, poison_done, pause, all_done) = (
                Arc::clone(&handled),
                Arc::clone(&poison_done),
                Arc::clone(&pause),
                Arc::clone(&all_done),
            );
            let mut closed = closed_rx.clone();
            async move {
                let i: usize = std::str::from_utf8(message.data())
                    .unwrap()
                    .parse()
                    .unwrap();
                let finish = |handled_count: usize, poison_count: usize| {
                    if handled_count == expected_ok && poison_count == expected_dead {
                        all_done.notify_one();
                    }
                };
                match kind(i) {
                    Kind::FailOnce if message.attempt() == 1 => return Err("fails once".to_owned()),
                    Kind::AlwaysFail | Kind::Panic => {
                        let poison_count = {
                            let mut done = poison_done.lock().unwrap();
                            if message.attempt() >= ATTEMPTS {
                                done.insert(i);
                            }
                            done.len()
                        };
                        finish(handled.lock().unwrap().len(), poison_count);
                        if kind(i) == Kind::Panic {
                            panic!("chaos panic on {i}");
                        }
                        return Err("always fails".to_owned());
                    }
                    _ => {}
                }
                let count = {
                    let mut handled = handled.lock().unwrap();
                    *handled.entry(i).or_default() += 1;
                    handled.len()
                };
                for (round, at) in [(1_u8, N * 3 / 10), (2, N * 7 / 10)] {
                    if count >= at && *closed.borrow() < round {
                        pause.notify_one();
                        let _ = closed.wait_for(|c| *c >= round).await;
                    }
                }
                finish(count, poison_done.lock().unwrap().len());
                Ok(())
            }
        }
    };
    let connector = Connector::new(
        amqp_addr(),
        ConnectionProperties::default().with_connection_name(name.as_str().into()),
    )
    .backoff(Backoff::exponential(Duration::from_millis(50)).max(Duration::from_millis(500)));
    let runner = tokio::spawn(run_reconnecting(
        connector,
        Consume::new(queue.as_str(), "chaos")
            .prefetch(64)
            .tracer(tracer(spans().provider())),
        handler,
        RunOptions::new()
            .retries(retries.clone(), publisher.clone())
            .concurrency(16)
            .shutdown({
                // Done when every good message was handled and the broker holds every poison one in the
                // dead-letter queue (the copy is published after the handler's last attempt returns).
                let (all_done, handled) = (Arc::clone(&all_done), Arc::clone(&handled));
                let (addr_conn, dlq) = (connect().await, retries.dead_letter_queue().to_owned());
                async move {
                    let wait = async {
                        all_done.notified().await;
                        let mut every = tokio::time::interval(Duration::from_millis(20));
                        loop {
                            every.tick().await;
                            if handled.lock().unwrap().len() == expected_ok
                                && message_count(&addr_conn, &dlq).await as usize >= expected_dead
                            {
                                break;
                            }
                        }
                    };
                    let _ = tokio::time::timeout(Duration::from_secs(45), wait).await;
                }
            }),
    ));
    for round in 1..=2_u8 {
        tokio::time::timeout(Duration::from_secs(30), pause.notified())
            .await
            .unwrap_or_else(|_| panic!("the run did not reach close {round}"));
        assert!(close_connections_named(&name).await >= 1, "close {round}");
        closed_tx.send_replace(round);
    }
    let report = runner.await.unwrap().expect("runner");

    // Drain the dead-letter queue.
    let dead_channel = conn.create_channel().await.unwrap();
    let dead_count = message_count(&conn, retries.dead_letter_queue()).await as usize;
    let mut dead_consumer = dead_channel
        .basic_consume(
            retries.dead_letter_queue().into(),
            "chaos-dlq".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut dead: HashMap<usize, usize> = HashMap::new();
    for _ in 0..dead_count {
        let d = tokio::time::timeout(Duration::from_secs(10), dead_consumer.next())
            .await
            .expect("dead letter")
            .unwrap()
            .unwrap();
        let i: usize = std::str::from_utf8(&d.data).unwrap().parse().unwrap();
        *dead.entry(i).or_default() += 1;
    }

    let handled = handled.lock().unwrap().clone();
    let lost: Vec<usize> = (0..N)
        .filter(|i| !handled.contains_key(i) && !dead.contains_key(i))
        .collect();
    assert!(lost.is_empty(), "{} lost messages: {lost:?}", lost.len());
    let wrong: Vec<usize> = dead
        .keys()
        .copied()
        .filter(|i| !matches!(kind(*i), Kind::AlwaysFail | Kind::Panic))
        .collect();
    assert!(
        wrong.is_empty(),
        "dead-lettered but should have succeeded: {wrong:?}"
    );
    assert_eq!(handled.len(), expected_ok);
    assert_eq!(dead.len(), expected_dead);
    // Duplicates happen only around the two reconnections: deliveries unacknowledged on the dead channel (at
    // most the prefetch, 64, each time) come again, flagged redelivered.
    let duplicates: usize = handled.values().map(|n| n - 1).sum::<usize>()
        + dead.values().map(|n| n - 1).sum::<usize>();
    assert!(report.reconnects >= 2, "{report:?}");
    assert!(
        duplicates <= 2 * 64,
        "{duplicates} duplicates after two reconnections"
    );
    // Counters against the broker: every dead-letter copy the runner counted is in the dead-letter queue.
    let [a, b] = [
        ("messaging_system", "rabbitmq"),
        ("messaging_destination_name", queue.as_str()),
    ];
    let dead_lettered = m
        .histogram(
            PROCESS,
            &[
                a,
                b,
                ("outcome", "dead_letter"),
                ("error_type", "handler_error"),
            ],
        )
        .len()
        + m.histogram(
            PROCESS,
            &[a, b, ("outcome", "dead_letter"), ("error_type", "panic")],
        )
        .len();
    assert_eq!(dead_lettered, dead_count);
    assert_eq!(report.dead_lettered as usize, dead_count);
    assert_eq!(message_count(&conn, &queue).await, 0);
    for n in 1..ATTEMPTS {
        assert_eq!(message_count(&conn, &retries.delay_queue(n)).await, 0);
    }
    cleanup_retries(&conn, &queue, &retries).await;
}
