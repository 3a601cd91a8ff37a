//! Publishes `N` batches of 32 confirmed 1 KiB messages against the local RabbitMQ (`AMQP_ADDR`, default
//! `amqp://guest:guest@127.0.0.1:5672`), as the `amqp/publish_confirm_*` benches do, for counting instructions
//! per publish where wall-clock timings are too noisy:
//!
//! ```text
//! cargo build --release -p orderscope-amqp --example publish_loop
//! valgrind --tool=callgrind --callgrind-out-file=n.out  target/release/examples/publish_loop orderscope 100
//! valgrind --tool=callgrind --callgrind-out-file=3n.out target/release/examples/publish_loop orderscope 300
//! ```
//!
//! Instructions per publish are `(I(300) - I(100)) / (200 * 32)`: set-up and tear-down cancel out. The first
//! argument is `bare` (plain lapin, default properties) or `orderscope` (a [`TracedChannel`] with an SDK tracer
//! provider and the Prometheus recorder, as in the bench).

#![allow(missing_docs)]

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use opentelemetry::global::BoxedTracer;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider};
use orderscope_amqp::TracedChannel;
use orderscope_context::{OrderContext, WithOrder};
use orderscope_testing::DroppingExporter;

const PAYLOAD: [u8; 1024] = [b'x'; 1024];
const BATCH: usize = 32;

async fn confirm_channel(conn: &Connection) -> Channel {
    let channel = conn.create_channel().await.expect("channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
    channel
}

async fn bare(channel: &Channel, queue: &str, batches: usize) {
    for _ in 0..batches {
        let publishes = (0..BATCH).map(|_| async move {
            let confirm = channel
                .basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    &PAYLOAD,
                    BasicProperties::default(),
                )
                .await
                .expect("publish")
                .await
                .expect("confirm");
            assert!(confirm.is_ack());
        });
        futures_util::future::join_all(publishes).await;
    }
}

async fn traced(channel: &TracedChannel, queue: &str, batches: usize) {
    let order = OrderContext::new("ORD-2026-000123").expect("order id");
    for _ in 0..batches {
        let publishes = (0..BATCH).map(|_| {
            channel
                .publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    &PAYLOAD,
                    BasicProperties::default(),
                )
                .with_order(order.clone())
        });
        for result in futures_util::future::join_all(publishes).await {
            result.expect("confirmed publish");
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "orderscope".to_owned());
    let batches: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(100);
    let addr = std::env::var("AMQP_ADDR")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672".to_owned());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let provider = SdkTracerProvider::builder()
        .with_span_processor(orderscope_testing::OrderSpanProcessor::wrap(
            BatchSpanProcessor::builder(DroppingExporter).build(),
        ))
        .build();
    metrics::set_global_recorder(
        metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder(),
    )
    .expect("recorder");

    rt.block_on(async {
        let conn = Connection::connect(&addr, ConnectionProperties::default())
            .await
            .expect("RabbitMQ");
        let queue = format!("orderscope-publish-loop.{}", std::process::id());
        let channel = conn.create_channel().await.expect("channel");
        let mut args = FieldTable::default();
        args.insert("x-max-length".into(), AMQPValue::LongInt(1000));
        channel
            .queue_declare(queue.as_str().into(), QueueDeclareOptions::default(), args)
            .await
            .expect("queue");
        let publisher = confirm_channel(&conn).await;
        match mode.as_str() {
            "bare" => bare(&publisher, &queue, batches).await,
            "orderscope" | "orderscope-order-id" => {
                let tracer = BoxedTracer::new(Box::new(provider.tracer("orderscope-amqp")));
                let channel = TracedChannel::builder(publisher)
                    .tracer(tracer)
                    .order_id_header(mode == "orderscope-order-id")
                    .build();
                traced(&channel, &queue, batches).await;
            }
            other => panic!("unknown mode {other:?}: bare, orderscope or orderscope-order-id"),
        }
        let _ = channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await;
        let _ = conn.close(200, "done".into()).await;
    });
    let _ = provider.shutdown();
}
