//! The `Operation` a consumed message's context carries for code that reads it (the SQL pool's
//! N+1 detector): only once `Operation::enable` was called, so services without such code do not
//! pay for it. Own process: `enable` is process-wide.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use lapin::BasicProperties;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions};
use lapin::types::FieldTable;
use orderscope_amqp::TracedConsumer;
use orderscope_context::Operation;

/// The name of the operation in the context of the next delivery on `queue`, once published.
async fn operation_of_next_message(
    conn: &lapin::Connection,
    consumer: &mut TracedConsumer,
    queue: &str,
) -> Option<String> {
    confirm_channel(conn)
        .await
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            b"order",
            BasicProperties::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("a delivery within 10 s")
        .expect("consumer open")
        .expect("delivery");
    let name = delivery
        .context()
        .get::<Operation>()
        .map(|op| op.name().to_owned());
    delivery.ack().await.expect("ack");
    name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_carries_an_operation_once_enabled() {
    let conn = connect().await;
    let queue = unique("operation");
    declare_queue(&confirm_channel(&conn).await, &queue, FieldTable::default()).await;
    let consumer = consume_channel(&conn, 5)
        .await
        .basic_consume(
            queue.as_str().into(),
            "operation-test".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("basic_consume");
    let mut consumer = TracedConsumer::builder(consumer)
        .tracer(tracer(spans().provider()))
        .build();

    assert!(!Operation::is_enabled());
    assert_eq!(
        operation_of_next_message(&conn, &mut consumer, &queue).await,
        None
    );

    Operation::enable();
    let expected = format!("process {queue}");
    assert_eq!(
        operation_of_next_message(&conn, &mut consumer, &queue).await,
        Some(expected)
    );
    cleanup(&conn, &[&queue], &[]).await;
}
