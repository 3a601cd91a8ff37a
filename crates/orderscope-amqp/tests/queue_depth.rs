//! Queue depth against the real broker: ready messages and consumers of watched queues; a
//! missing queue loses its series and counts an error, without stopping the others.

mod common;

use std::sync::Arc;

use lapin::BasicProperties;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use orderscope_amqp::{QueueWatcher, append_queue_metrics};

/// The value of `name{messaging_destination_name=queue,…}` in the rendered text.
fn rendered(name: &str, queue: &str) -> Option<f64> {
    let mut text = String::new();
    append_queue_metrics(&mut text);
    let prefix = format!("{name}{{messaging_destination_name=\"{queue}\"");
    text.lines()
        .find(|l| l.starts_with(&prefix))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
}

#[test]
fn watched_queues_report_ready_messages_and_consumers_and_a_missing_one_counts_an_error() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let queue = common::unique("depth");
    let missing = common::unique("depth-missing");
    let (conn, channel) = runtime.block_on(async {
        let conn = Arc::new(common::connect().await);
        let channel = common::confirm_channel(&conn).await;
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    auto_delete: false,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        for _ in 0..3 {
            channel
                .basic_publish(
                    "".into(),
                    queue.as_str().into(),
                    BasicPublishOptions::default(),
                    b"{}",
                    BasicProperties::default(),
                )
                .await
                .unwrap()
                .await
                .unwrap();
        }
        (conn, channel)
    });

    // The missing queue comes first: the broker closes the channel on it, and the watcher must
    // still read the other one.
    let mut watcher = QueueWatcher::new(conn.clone(), [missing.clone(), queue.clone()]);
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || runtime.block_on(watcher.sample()));
    assert_eq!(rendered("orderscope_queue_messages", &queue), Some(3.0));
    assert_eq!(rendered("orderscope_queue_consumers", &queue), Some(0.0));
    assert_eq!(rendered("orderscope_queue_messages", &missing), None);
    assert_eq!(rendered("orderscope_queue_consumers", &missing), None);
    let errors: Vec<_> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(k, ..)| k.key().name() == "orderscope_queue_sample_errors_total")
        .map(|(k, _, _, v)| {
            let label = k.key().labels().next().unwrap().value().to_owned();
            (label, v)
        })
        .collect();
    assert_eq!(errors, vec![(missing.clone(), DebugValue::Counter(1))]);

    // A consumer with prefetch 1 takes one message: 2 ready, 1 consumer.
    let consumer_channel = runtime.block_on(common::consume_channel(&conn, 1));
    let _consumer = runtime.block_on(async {
        consumer_channel
            .basic_consume(
                queue.as_str().into(),
                "depth-test".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap()
    });
    // The broker hands the message over asynchronously: wait for the count to move.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        runtime.block_on(watcher.sample());
        if rendered("orderscope_queue_messages", &queue) == Some(2.0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ready count stayed at {:?}",
            rendered("orderscope_queue_messages", &queue)
        );
        runtime.block_on(tokio::time::sleep(std::time::Duration::from_millis(20)));
    }
    assert_eq!(rendered("orderscope_queue_consumers", &queue), Some(1.0));

    // Deleted: the series goes; it does not read 0.
    runtime.block_on(async {
        consumer_channel.close(200, "done".into()).await.unwrap();
        channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await
            .unwrap();
    });
    runtime.block_on(watcher.sample());
    assert_eq!(rendered("orderscope_queue_messages", &queue), None);
    assert_eq!(rendered("orderscope_queue_consumers", &queue), None);
}
