//! Reconnection: the broker closes our connections (only this test's own, by name) and consuming goes on;
//! a publisher sees a typed error and is rebuilt.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use lapin::options::BasicPublishOptions;
use lapin::types::FieldTable;
use lapin::{BasicProperties, ConnectionProperties};
use orderscope_amqp::{
    Backoff, Connector, Consume, Message, PublishError, RetryPolicy, RunOptions, TracedChannel,
    run_reconnecting,
};
use tokio::sync::{Notify, watch};

const REDELIVERED: &str = "messaging_redelivered_messages_total";

fn connector(name: &str) -> Connector {
    Connector::new(
        amqp_addr(),
        ConnectionProperties::default().with_connection_name(name.into()),
    )
    .backoff(Backoff::exponential(Duration::from_millis(50)).max(Duration::from_millis(500)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_consumes_again_after_the_broker_closes_its_connection() {
    const N: usize = 200;
    const CLOSE_AT: usize = 60;
    let m = metrics();
    let conn = connect().await;
    let queue = unique("reconnect");
    let name = unique("reconnect-conn");
    let channel = confirm_channel(&conn).await;
    declare_queue(&channel, &queue, FieldTable::default()).await;
    let publisher = TracedChannel::builder(channel)
        .tracer(tracer(spans().provider()))
        .build();
    for i in 0..N {
        publisher
            .publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                i.to_string().as_bytes(),
                BasicProperties::default(),
            )
            .await
            .expect("published");
    }

    // Handlers past CLOSE_AT wait until the connection is closed under them: their deliveries are in flight
    // on a dead channel.
    let (closed_tx, closed_rx) = watch::channel(false);
    let reached = Arc::new(Notify::new());
    let all_done = Arc::new(Notify::new());
    let handled: Arc<Mutex<HashMap<usize, usize>>> = Arc::default();
    let handler = {
        let (handled, reached, all_done) = (
            Arc::clone(&handled),
            Arc::clone(&reached),
            Arc::clone(&all_done),
        );
        move |message: Message| {
            let (handled, reached, all_done) = (
                Arc::clone(&handled),
                Arc::clone(&reached),
                Arc::clone(&all_done),
            );
            let mut closed = closed_rx.clone();
            async move {
                let i: usize = std::str::from_utf8(message.data())
                    .unwrap()
                    .parse()
                    .unwrap();
                let unique = {
                    let mut handled = handled.lock().unwrap();
                    *handled.entry(i).or_default() += 1;
                    handled.len()
                };
                if unique >= CLOSE_AT && !*closed.borrow() {
                    reached.notify_one();
                    let _ = closed.wait_for(|c| *c).await;
                }
                if unique == N {
                    all_done.notify_one();
                }
                Ok::<(), String>(())
            }
        }
    };
    let runner = tokio::spawn(run_reconnecting(
        connector(&name),
        Consume::new(queue.as_str(), "reconnect-test")
            .prefetch(8)
            .tracer(tracer(spans().provider())),
        handler,
        RunOptions::new()
            .retry(RetryPolicy::Requeue)
            .concurrency(4)
            .shutdown({
                let all_done = Arc::clone(&all_done);
                async move {
                    let _ =
                        tokio::time::timeout(Duration::from_secs(30), all_done.notified()).await;
                }
            }),
    ));
    tokio::time::timeout(Duration::from_secs(10), reached.notified())
        .await
        .expect("handlers reached the close point");
    assert_eq!(
        close_connections_named(&name).await,
        1,
        "one connection named {name}"
    );
    closed_tx.send_replace(true);

    let report = runner.await.unwrap().expect("runner");
    let handled = handled.lock().unwrap().clone();
    let lost: Vec<usize> = (0..N).filter(|i| !handled.contains_key(i)).collect();
    assert!(lost.is_empty(), "lost messages: {lost:?}");
    let duplicates: usize = handled.values().map(|n| n - 1).sum();
    assert!(report.reconnects >= 1, "{report:?}");
    // Only deliveries in flight or prefetched on the dead channel come again, flagged as redelivered.
    assert!(
        duplicates <= 8,
        "{duplicates} duplicates with a prefetch of 8"
    );
    assert!(
        m.counter(
            REDELIVERED,
            &[
                ("messaging_system", "rabbitmq"),
                ("messaging_destination_name", queue.as_str()),
            ]
        ) >= duplicates as u64
    );
    // An ack lapin refused on the dead channel means a second delivery; so can an ack lapin sent but the broker
    // never processed (lapin's ack does not wait for the broker): at most the prefetch.
    assert!(report.settle_failed as usize <= duplicates, "{report:?}");
    assert_eq!(report.acked as usize, N + duplicates);
    assert_eq!(message_count(&conn, &queue).await, 0);
    cleanup(&conn, &[&queue], &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_on_a_closed_connection_gets_a_typed_error_and_is_rebuilt() {
    let conn = connect().await;
    let queue = unique("rebuild");
    let name = unique("rebuild-conn");
    declare_queue(
        &conn.create_channel().await.unwrap(),
        &queue,
        FieldTable::default(),
    )
    .await;
    let connector = connector(&name);
    let open = || async {
        let channel = connector
            .connect()
            .await
            .expect("connect")
            .create_channel()
            .await
            .unwrap();
        channel
            .confirm_select(lapin::options::ConfirmSelectOptions::default())
            .await
            .unwrap();
        channel
    };
    let publisher = TracedChannel::builder(open().await)
        .tracer(tracer(spans().provider()))
        .build();
    let publish = |p: &TracedChannel| {
        let p = p.clone();
        let queue = queue.clone();
        async move {
            p.publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                b"x",
                BasicProperties::default(),
            )
            .await
        }
    };
    publish(&publisher).await.expect("before the close");
    assert_eq!(close_connections_named(&name).await, 1);
    // lapin learns of the close asynchronously: wait until the channel reports it.
    tokio::time::timeout(Duration::from_secs(10), async {
        while publisher.get_ref().status().connected() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the channel saw the close");
    let error = publish(&publisher).await.expect_err("closed");
    assert!(matches!(error, PublishError::ChannelClosed(_)), "{error:?}");
    let publisher = publisher.rebuild(open().await);
    assert!(publish(&publisher).await.expect("rebuilt").confirmed());
    assert_eq!(message_count(&conn, &queue).await, 2);
    cleanup(&conn, &[&queue], &[]).await;
}
