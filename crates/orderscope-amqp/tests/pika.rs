//! A publisher that knows nothing of orderscope (Python's pika) sends an order whose id is only in its JSON
//! body; `RunOptions::order_from` puts it in scope, so the process span and the log lines carry `order.id`.
//!
//! Needs `python3` with `pika` (`scripts/lib.sh` has `ensure_pika`). The JSON log layer is installed globally,
//! so this test has a file (a process) of its own.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use lapin::options::BasicConsumeOptions;
use lapin::types::FieldTable;
use orderscope_amqp::{Message, RetryPolicy, RunOptions, TracedConsumer, run};
use orderscope_context::OrderContext;
use orderscope_logs::JsonLayer;
use orderscope_testing::LogCapture;
use tokio::sync::Notify;
use tracing_subscriber::layer::SubscriberExt as _;

const PUBLISH: &str = r#"
import json, sys
import pika
connection = pika.BlockingConnection(pika.URLParameters(sys.argv[1]))
channel = connection.channel()
channel.confirm_delivery()
channel.basic_publish("", sys.argv[2], json.dumps({"order_id": sys.argv[3], "items": 3}),
                      pika.BasicProperties(content_type="application/json"))
connection.close()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_published_by_pika_is_in_scope_from_its_body() {
    let logs = LogCapture::new();
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(JsonLayer::new("pika-test").with_writer(logs.clone())),
    )
    .expect("one subscriber in this test process");
    let conn = connect().await;
    let queue = unique("pika");
    let channel = confirm_channel(&conn).await;
    declare_queue(&channel, &queue, FieldTable::default()).await;

    let published = tokio::process::Command::new("python3")
        .args(["-c", PUBLISH, &amqp_addr(), &queue, "ORD-PIKA-1"])
        .output()
        .await
        .expect("this test needs python3 (and pika: scripts/lib.sh ensure_pika)");
    assert!(
        published.status.success(),
        "the pika publisher failed (is pika installed? scripts/lib.sh ensure_pika): {}",
        String::from_utf8_lossy(&published.stderr)
    );

    let consumer = consume_channel(&conn, 1)
        .await
        .basic_consume(
            queue.as_str().into(),
            "pika-test".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("basic_consume");
    let consumer = TracedConsumer::builder(consumer)
        .tracer(tracer(spans().provider()))
        .build();
    let seen = Arc::new(Mutex::new(None));
    let done = Arc::new(Notify::new());
    let report = run(
        consumer,
        {
            let (seen, done) = (Arc::clone(&seen), Arc::clone(&done));
            move |message: Message| {
                let (seen, done) = (Arc::clone(&seen), Arc::clone(&done));
                async move {
                    tracing::info!(bytes = message.data().len(), "pika order received");
                    *seen.lock().unwrap() = OrderContext::current().map(|o| o.id().to_owned());
                    done.notify_one();
                    Ok::<(), String>(())
                }
            }
        },
        RunOptions::new()
            .retry(RetryPolicy::Requeue)
            .order_from(|message| {
                let body: serde_json::Value = serde_json::from_slice(message.data()).ok()?;
                OrderContext::new(body.get("order_id")?.as_str()?).ok()
            })
            .shutdown(async move {
                let _ = tokio::time::timeout(Duration::from_secs(10), done.notified()).await;
            }),
    )
    .await
    .expect("runner");
    assert_eq!(report.acked, 1);
    assert_eq!(seen.lock().unwrap().as_deref(), Some("ORD-PIKA-1"));

    let span = spans()
        .spans()
        .into_iter()
        .find(|s| s.name == format!("process {queue}"))
        .expect("process span");
    assert_eq!(span.attr_str("order.id"), Some("ORD-PIKA-1"));
    let lines = logs.json_lines().expect("JSON lines");
    let line = lines
        .iter()
        .find(|l| l["message"] == "pika order received")
        .expect("the handler's log line");
    assert_eq!(line["order.id"], "ORD-PIKA-1");
    assert_eq!(line["trace_id"], span.trace_id.as_str());
    cleanup(&conn, &[&queue], &[]).await;
}
