//! Throughput against the local RabbitMQ (`AMQP_ADDR`, default `amqp://guest:guest@127.0.0.1:5672`), 1 KiB
//! messages:
//!
//! - `amqp/publish_confirm_bare` vs `amqp/publish_confirm_orderscope`: 32 publishes in flight, each awaited to
//!   its confirm; `amqp/publish_confirm_bare_same_headers` is bare lapin sending the headers and properties
//!   orderscope adds (fixed values): what carrying them costs lapin and the broker, the floor any traced
//!   publish sits on;
//! - `amqp/consume_ack_bare` vs `amqp/consume_ack_orderscope`: a batch of prefetched messages, each received and
//!   acked — by a plain lapin consumer loop awaiting each ack, and by [`orderscope_amqp::run`] with a handler
//!   that returns `Ok` (one handler at a time, like the bare loop; `run` sends each ack and goes on while lapin
//!   writes it, where the bare loop waits for that round trip to lapin's I/O thread). Each timed batch gets a fresh consumer (untimed set-up), with the same
//!   prefetch (200) on both sides, and ends when the last ack is written;
//! - `amqp/publish_confirm_peer_stack` and `amqp/consume_ack_peer_stack`: the same two workloads through the
//!   stack a service assembles without orderscope (see `peer/mod.rs`): a `tracing` span per publish and per
//!   delivery exported by tracing-opentelemetry, the global W3C propagator (trace context and baggage)
//!   writing and reading the headers through a hand-written injector and extractor, and a counter and a
//!   histogram per operation. The set-up checks that the peer really propagates the trace and the order.
//!
//! The orderscope cases run with a real SDK tracer provider (order processor + batch processor with a
//! discarding exporter) and the Prometheus recorder installed (the catalogue's buckets, upkeep every
//! second), so every span and metric is really recorded; the peer's subscriber is the global one. The
//! messages the consume cases read are published by a traced publisher, so they carry a `traceparent`
//! for the traced consumers to continue.

#![allow(missing_docs)]

mod peer;

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer};
use opentelemetry::context::FutureExt as _;
use opentelemetry::global::BoxedTracer;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider};
use orderscope_amqp::{Message, RetryPolicy, RunOptions, TracedChannel, TracedConsumer, run};
use orderscope_context::{OrderContext, WithOrder};
use orderscope_testing::{DroppingExporter, OrderSpanProcessor};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::runtime::Runtime;
use tokio::sync::Notify;

const PAYLOAD: [u8; 1024] = [b'x'; 1024];
/// Publishes in flight per iteration of the publish benches (confirms pipelined, as a busy publisher does).
const BATCH: usize = 32;

fn addr() -> String {
    std::env::var("AMQP_ADDR").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672".to_owned())
}

struct Broker {
    conn: Connection,
    publish_queue: String,
}

async fn broker() -> Broker {
    let addr = addr();
    let conn = Connection::connect(&addr, ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| {
            panic!("the AMQP bench needs RabbitMQ at {addr} (`scripts/test` starts one): {e}")
        });
    let publish_queue = format!("orderscope-bench.publish.{}", std::process::id());
    let channel = conn.create_channel().await.unwrap();
    // Bounded, so the publish benches do not fill the broker.
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongInt(1000));
    args.insert("x-expires".into(), AMQPValue::LongInt(60_000));
    channel
        .queue_declare(
            publish_queue.as_str().into(),
            QueueDeclareOptions::default(),
            args,
        )
        .await
        .unwrap();
    Broker {
        conn,
        publish_queue,
    }
}

async fn confirm_channel(conn: &Connection) -> Channel {
    let channel = conn.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    channel
}

fn tracer() -> (SdkTracerProvider, BoxedTracer) {
    let provider = SdkTracerProvider::builder()
        // As `orderscope::init` builds it: one processor, the order fields wrapped around the
        // batch exporter (two processors would make the SDK clone every finished span).
        .with_span_processor(OrderSpanProcessor::wrap(
            BatchSpanProcessor::builder(DroppingExporter).build(),
        ))
        .build();
    let tracer = BoxedTracer::new(Box::new(provider.tracer("orderscope-amqp")));
    (provider, tracer)
}

/// One timed batch of bare lapin: [`BATCH`] publishes of `properties` in flight, each awaited to its
/// confirm.
async fn bare_batch(channel: &Channel, queue: &str, properties: BasicProperties) {
    let publishes = (0..BATCH).map(|_| {
        let properties = properties.clone();
        async move {
            let confirm = channel
                .basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    &PAYLOAD,
                    properties,
                )
                .await
                .unwrap()
                .await
                .unwrap();
            assert!(confirm.is_ack());
        }
    });
    futures_util::future::join_all(publishes).await;
}

fn publish(c: &mut Criterion, rt: &Runtime, broker: &Broker) {
    let mut group = c.benchmark_group("amqp");
    let bare = rt.block_on(confirm_channel(&broker.conn));
    let queue = broker.publish_queue.clone();
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("publish_confirm_bare", |b| {
        b.to_async(rt)
            .iter(|| bare_batch(&bare, &queue, BasicProperties::default()));
    });

    // Bare lapin sending the message orderscope sends (its W3C headers, `x-published-at-ms`,
    // `message_id` and `timestamp`, fixed values): what the broker costs for the headers alone,
    // the floor any traced publish sits on.
    let same = rt.block_on(confirm_channel(&broker.conn));
    let mut headers = FieldTable::default();
    headers.insert(
        "traceparent".into(),
        AMQPValue::LongString("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
    );
    headers.insert(
        "baggage".into(),
        AMQPValue::LongString("order.id=ORD-2026-000123".into()),
    );
    headers.insert(
        "x-published-at-ms".into(),
        AMQPValue::LongLongInt(1_795_000_000_000),
    );
    let same_properties = BasicProperties::default()
        .with_message_id("0123456789abcdef0123456789abcdef".into())
        .with_timestamp(1_795_000_000)
        .with_headers(headers);
    group.bench_function("publish_confirm_bare_same_headers", |b| {
        b.to_async(rt)
            .iter(|| bare_batch(&same, &queue, same_properties.clone()));
    });

    let (_provider, tracer) = tracer();
    let traced = TracedChannel::builder(rt.block_on(confirm_channel(&broker.conn)))
        .tracer(tracer)
        .build();
    let order = OrderContext::new("ORD-2026-000123").unwrap();
    group.bench_function("publish_confirm_orderscope", |b| {
        b.to_async(rt).iter(|| {
            let traced = traced.clone();
            let queue = queue.clone();
            let order = order.clone();
            async move {
                let publishes = (0..BATCH).map(|_| {
                    traced
                        .publish(
                            "".into(),
                            queue.as_str().into(),
                            BasicPublishOptions::default(),
                            &PAYLOAD,
                            BasicProperties::default(),
                        )
                        .with_order(order.clone())
                });
                for result in futures_util::future::join_all(publishes).await {
                    result.unwrap();
                }
            }
        });
    });

    let peer_channel = rt.block_on(confirm_channel(&broker.conn));
    // Leaked once: a service names its queues with static strings.
    let peer_queue: &'static str = Box::leak(queue.clone().into_boxed_str());
    group.bench_function("publish_confirm_peer_stack", |b| {
        b.to_async(rt).iter(|| {
            let (channel, queue) = (&peer_channel, peer_queue);
            async move {
                let publishes = (0..BATCH).map(|_| peer::publish(channel, queue, &PAYLOAD));
                futures_util::future::join_all(publishes).await;
            }
            .with_context(peer::order_context())
        });
    });
    group.finish();
}

/// A queue and a publisher to refill it (untimed) before each timed batch.
struct ConsumeSetup {
    filler: TracedChannel,
    _filler_provider: SdkTracerProvider,
    queue: String,
}

async fn consume_setup(conn: &Connection, name: &str) -> ConsumeSetup {
    let queue = format!("orderscope-bench.{name}.{}", std::process::id());
    let channel = conn.create_channel().await.unwrap();
    let mut args = FieldTable::default();
    args.insert("x-expires".into(), AMQPValue::LongInt(60_000));
    channel
        .queue_declare(queue.as_str().into(), QueueDeclareOptions::default(), args)
        .await
        .unwrap();
    // The filler publishes traced messages (a real tracer: the messages carry a `traceparent`) for
    // every case, so all consume identical messages and the traced ones continue the publisher's trace.
    let (provider, tracer) = tracer();
    let filler = TracedChannel::builder(confirm_channel(conn).await)
        .tracer(tracer)
        .build();
    ConsumeSetup {
        filler,
        _filler_provider: provider,
        queue,
    }
}

/// A channel with a prefetch of 200 consuming `queue`.
async fn consumer(conn: &Connection, queue: &str, tag: &str) -> (Channel, Consumer) {
    let channel = conn.create_channel().await.unwrap();
    channel
        .basic_qos(200, BasicQosOptions::default())
        .await
        .unwrap();
    let consumer = channel
        .basic_consume(
            queue.into(),
            tag.into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    (channel, consumer)
}

async fn fill(filler: &TracedChannel, queue: &str, n: u64) {
    let order = OrderContext::new("ORD-2026-000123").unwrap();
    futures_util::stream::iter(0..n)
        .map(|_| {
            filler
                .publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    &PAYLOAD,
                    BasicProperties::default(),
                )
                .with_order(order.clone())
        })
        .buffer_unordered(128)
        .for_each(|r| {
            r.unwrap();
            async {}
        })
        .await;
}

fn consume(c: &mut Criterion, rt: &Runtime, broker: &Broker) {
    let mut group = c.benchmark_group("amqp");
    group.throughput(Throughput::Elements(1));

    let bare = rt.block_on(consume_setup(&broker.conn, "consume-bare"));
    let conn = &broker.conn;
    group.bench_function("consume_ack_bare", |b| {
        b.to_async(rt).iter_custom(|iters| {
            let bare = &bare;
            async move {
                fill(&bare.filler, &bare.queue, iters).await;
                let (channel, mut consumer) = consumer(conn, &bare.queue, "bare").await;
                let start = Instant::now();
                for _ in 0..iters {
                    let delivery = consumer.next().await.unwrap().unwrap();
                    assert!(delivery.ack(BasicAckOptions::default()).await.unwrap());
                }
                let elapsed = start.elapsed();
                channel.close(200, "done".into()).await.unwrap();
                elapsed
            }
        });
    });
    let (provider, _) = tracer();
    let traced = rt.block_on(consume_setup(&broker.conn, "consume-traced"));
    group.bench_function("consume_ack_orderscope", |b| {
        b.to_async(rt).iter_custom(|iters| {
            let traced = &traced;
            let provider = &provider;
            async move {
                fill(&traced.filler, &traced.queue, iters).await;
                let (channel, consumer) = consumer(conn, &traced.queue, "traced").await;
                let consumer = TracedConsumer::builder(consumer)
                    .tracer(BoxedTracer::new(Box::new(
                        provider.tracer("orderscope-amqp"),
                    )))
                    .prefetch(200)
                    .build();
                let handled = Arc::new(AtomicU64::new(0));
                let done = Arc::new(Notify::new());
                let handler = {
                    let (handled, done) = (Arc::clone(&handled), Arc::clone(&done));
                    move |_message: Message| {
                        if handled.fetch_add(1, Ordering::Relaxed) + 1 == iters {
                            done.notify_one();
                        }
                        std::future::ready(Ok::<(), std::convert::Infallible>(()))
                    }
                };
                let options = RunOptions::new()
                    .retry(RetryPolicy::Requeue)
                    .shutdown(async move { done.notified().await });
                let start = Instant::now();
                let report = run(consumer, handler, options).await.unwrap();
                let elapsed = start.elapsed();
                assert_eq!(report.acked, iters);
                channel.close(200, "done".into()).await.unwrap();
                elapsed
            }
        });
    });
    let peer_setup = rt.block_on(consume_setup(&broker.conn, "consume-peer"));
    let peer_queue: &'static str = Box::leak(peer_setup.queue.clone().into_boxed_str());
    group.bench_function("consume_ack_peer_stack", |b| {
        b.to_async(rt).iter_custom(|iters| {
            let setup = &peer_setup;
            async move {
                fill(&setup.filler, &setup.queue, iters).await;
                let (channel, mut consumer) = consumer(conn, &setup.queue, "peer").await;
                let start = Instant::now();
                for _ in 0..iters {
                    let delivery = consumer.next().await.unwrap().unwrap();
                    peer::process_and_ack(delivery, peer_queue).await;
                }
                let elapsed = start.elapsed();
                channel.close(200, "done".into()).await.unwrap();
                elapsed
            }
        });
    });
    group.finish();
    rt.block_on(async {
        let channel = broker.conn.create_channel().await.unwrap();
        for q in [
            &bare.queue,
            &peer_setup.queue,
            &traced.queue,
            &broker.publish_queue,
        ] {
            let _ = channel
                .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
    });
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // As a service installs them: the catalogue's buckets, histograms drained periodically.
    let handle = orderscope_metrics::prometheus_builder()
        .install_recorder()
        .expect("recorder");
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_secs(1));
            handle.run_upkeep();
        }
    });
    // The peer stack injects and extracts with the global propagator and records its spans through
    // the global subscriber, as their docs show; orderscope's cases read neither.
    peer::install_propagator();
    peer::assert_peer_propagates();
    let (peer_provider, subscriber) = peer::subscriber();
    tracing::subscriber::set_global_default(subscriber).expect("subscriber");
    let broker = rt.block_on(broker());
    publish(c, &rt, &broker);
    consume(c, &rt, &broker);
    let _ = peer_provider.shutdown();
}

criterion_group! {
    name = amqp;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(6));
    targets = benches
}
criterion_main!(amqp);
