//! Shared test support: broker connection, unique names, topology, metrics and spans.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use lapin::options::{
    BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use opentelemetry::global::BoxedTracer;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use orderscope_testing::OrderSpanProcessor;
use orderscope_testing::{LocalMetrics, MetricValue, SpanCapture};

/// The broker address: `AMQP_ADDR`, else the local RabbitMQ.
pub fn amqp_addr() -> String {
    std::env::var("AMQP_ADDR").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672".to_owned())
}

/// Connects to the broker, or fails the test loudly.
pub async fn connect() -> Connection {
    let addr = amqp_addr();
    match Connection::connect(&addr, ConnectionProperties::default()).await {
        Ok(conn) => conn,
        Err(error) => panic!(
            "these tests need a RabbitMQ broker at {addr} (set AMQP_ADDR to use another one; \
             `scripts/test` starts one): {error}"
        ),
    }
}

/// A channel in confirm mode.
pub async fn confirm_channel(conn: &Connection) -> Channel {
    let channel = conn.create_channel().await.expect("create channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm_select");
    channel
}

/// Publishes `body` to `queue` through the default exchange with bare lapin and waits for the confirm
/// (`channel` in confirm mode).
pub async fn publish_bare(channel: &Channel, queue: &str, body: &[u8]) {
    channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default(),
        )
        .await
        .expect("basic_publish")
        .await
        .expect("confirm");
}

/// A channel with a prefetch limit, for consuming.
pub async fn consume_channel(conn: &Connection, prefetch: u16) -> Channel {
    let channel = conn.create_channel().await.expect("create channel");
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await
        .expect("basic_qos");
    channel
}

/// A name no other test (or test run) uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    format!(
        "orderscope-test.{prefix}.{:012x}",
        hasher.finish() & 0xffff_ffff_ffff
    )
}

/// Queue arguments that make a forgotten test queue disappear after a minute of disuse.
pub fn expiring(mut args: FieldTable) -> FieldTable {
    args.insert("x-expires".into(), AMQPValue::LongInt(60_000));
    args
}

/// Declares a (non-durable, expiring) queue.
pub async fn declare_queue(channel: &Channel, name: &str, args: FieldTable) {
    channel
        .queue_declare(name.into(), QueueDeclareOptions::default(), expiring(args))
        .await
        .expect("queue_declare");
}

/// Declares a direct exchange.
pub async fn declare_exchange(channel: &Channel, name: &str) {
    channel
        .exchange_declare(
            name.into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("exchange_declare");
}

/// Binds `queue` to `exchange` with `key`.
pub async fn bind(channel: &Channel, queue: &str, exchange: &str, key: &str) {
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("queue_bind");
}

/// How many ready messages the broker holds in `queue` (a passive declare).
pub async fn message_count(conn: &Connection, queue: &str) -> u32 {
    let channel = conn.create_channel().await.expect("create channel");
    let q = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("passive queue_declare");
    let _ = channel.close(200, "done".into()).await;
    q.message_count()
}

/// Deletes queues and exchanges.
pub async fn cleanup(conn: &Connection, queues: &[&str], exchanges: &[&str]) {
    let channel = conn.create_channel().await.expect("create channel");
    for q in queues {
        let _ = channel
            .queue_delete((*q).into(), QueueDeleteOptions::default())
            .await;
    }
    for e in exchanges {
        let _ = channel
            .exchange_delete((*e).into(), ExchangeDeleteOptions::default())
            .await;
    }
    let _ = channel.close(200, "done".into()).await;
}

/// Deletes `queue` and its retry topology: the dead-letter queue and every delay queue.
pub async fn cleanup_retries(conn: &Connection, queue: &str, r: &orderscope_amqp::Retries) {
    let mut names = vec![queue.to_owned(), r.dead_letter_queue().to_owned()];
    names.extend((1..r.attempts()).map(|n| r.delay_queue(n)));
    cleanup(
        conn,
        &names.iter().map(String::as_str).collect::<Vec<_>>(),
        &[],
    )
    .await;
}

/// A long-string header value.
pub fn long(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

/// Span capture with the order processor; spans are tracked per test by unique names.
pub fn spans() -> &'static SpanCapture {
    static CAPTURE: OnceLock<SpanCapture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        SpanCapture::builder()
            .with_processor(OrderSpanProcessor::new())
            .build()
    })
}

/// A boxed tracer from `provider`.
pub fn tracer(provider: &SdkTracerProvider) -> BoxedTracer {
    BoxedTracer::new(Box::new(provider.tracer("orderscope-amqp-test")))
}

/// The process-wide metrics recorder, accumulated across snapshots so parallel tests in one file do not drain
/// each other's values (the debugging recorder resets on every snapshot).
type SeriesKey = (String, Vec<(String, String)>);

pub struct Metrics {
    local: LocalMetrics,
    totals: Mutex<HashMap<SeriesKey, Acc>>,
}

#[derive(Clone, Debug, Default)]
struct Acc {
    counter: u64,
    gauge: f64,
    histogram: Vec<f64>,
}

/// One global install per test file.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let local = LocalMetrics::new();
        local
            .install_global()
            .expect("one metrics recorder per test process");
        Metrics {
            local,
            totals: Mutex::new(HashMap::new()),
        }
    })
}

fn key(name: &str, labels: &[(&str, &str)]) -> SeriesKey {
    let mut labels: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    labels.sort();
    (name.to_owned(), labels)
}

impl Metrics {
    fn refresh(&self) -> std::sync::MutexGuard<'_, HashMap<SeriesKey, Acc>> {
        let mut totals = self.totals.lock().unwrap();
        for series in self.local.snapshot().all() {
            let entry = totals
                .entry((series.name.clone(), series.labels.clone()))
                .or_default();
            match &series.value {
                MetricValue::Counter(c) => entry.counter += c,
                MetricValue::Gauge(g) => entry.gauge += g,
                MetricValue::Histogram(h) => entry.histogram.extend_from_slice(h),
            }
        }
        totals
    }

    /// The counter with exactly these labels (0 when never recorded).
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.refresh()
            .get(&key(name, labels))
            .map_or(0, |a| a.counter)
    }

    /// The gauge with exactly these labels (the sum of its increments and decrements).
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.refresh()
            .get(&key(name, labels))
            .map_or(0.0, |a| a.gauge)
    }

    /// The histogram samples with exactly these labels.
    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        self.refresh()
            .get(&key(name, labels))
            .map(|a| a.histogram.clone())
            .unwrap_or_default()
    }

    /// Every label set recorded for `name` that contains `label`.
    pub fn series_with(&self, name: &str, label: (&str, &str)) -> Vec<Vec<(String, String)>> {
        self.refresh()
            .keys()
            .filter(|(n, labels)| {
                n == name && labels.iter().any(|(k, v)| k == label.0 && v == label.1)
            })
            .map(|(_, labels)| labels.clone())
            .collect()
    }

    /// The sum of counter `name` over all series containing `label`.
    pub fn counter_sum_with(&self, name: &str, label: (&str, &str)) -> u64 {
        self.refresh()
            .iter()
            .filter(|((n, labels), _)| {
                n == name && labels.iter().any(|(k, v)| k == label.0 && v == label.1)
            })
            .map(|(_, a)| a.counter)
            .sum()
    }
}

/// Receives `n` messages from `queue` with a plain (auto-ack) consumer, waiting up to 10 s for each: the
/// broker dead-letters asynchronously, so a message may arrive a moment after the nack.
pub async fn receive(conn: &Connection, queue: &str, n: usize) -> Vec<lapin::message::Delivery> {
    use futures_util::StreamExt as _;
    let channel = conn.create_channel().await.expect("create channel");
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "receive".into(),
            lapin::options::BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("basic_consume");
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match tokio::time::timeout(std::time::Duration::from_secs(10), consumer.next()).await {
            Ok(Some(Ok(delivery))) => out.push(delivery),
            other => panic!(
                "expected {n} messages in {queue}, got {} then {other:?}",
                out.len()
            ),
        }
    }
    let _ = channel.close(200, "done".into()).await;
    out
}

/// A TCP proxy between the client and the broker whose broker-to-client direction can be held: while held, no
/// frame from the broker (a publisher confirm, say) reaches the client.
pub struct Proxy {
    /// The `amqp://` URI that goes through the proxy.
    pub uri: String,
    hold: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
}

impl Proxy {
    /// Starts the proxy on 127.0.0.1, port 0.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let broker = amqp_addr();
        let target = broker
            .rsplit('@')
            .next()
            .unwrap_or("127.0.0.1:5672")
            .trim_end_matches('/')
            .to_owned();
        let target = target
            .split('/')
            .next()
            .unwrap_or("127.0.0.1:5672")
            .to_owned();
        let credentials = broker
            .strip_prefix("amqp://")
            .and_then(|rest| rest.split_once('@'))
            .map_or_else(String::new, |(c, _)| format!("{c}@"));
        let hold = std::sync::Arc::new(tokio::sync::watch::channel(false).0);
        let hold_for_task = std::sync::Arc::clone(&hold);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let target = target.clone();
                let hold = hold_for_task.subscribe();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let upstream = tokio::io::copy(&mut client_read, &mut server_write);
                    let downstream = async move {
                        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                        let mut hold = hold;
                        let mut buf = vec![0_u8; 64 * 1024];
                        loop {
                            let n = match server_read.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            // Bytes read while held are delivered only once released.
                            if hold.wait_for(|held| !*held).await.is_err() {
                                return;
                            }
                            if client_write.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    };
                    tokio::select! {
                        _ = upstream => {}
                        () = downstream => {}
                    }
                });
            }
        });
        Self {
            uri: format!("amqp://{credentials}127.0.0.1:{port}/%2f"),
            hold,
        }
    }

    /// Holds (or releases) everything the broker sends to the client.
    pub fn hold(&self, held: bool) {
        self.hold.send_replace(held);
    }
}

/// Closes this test's own connections — those with the client-provided name `name` — through `rabbitmqctl`,
/// as a broker restart or an operator would. Never touches other connections on the shared broker. Returns
/// how many were closed.
pub async fn close_connections_named(name: &str) -> usize {
    let list = tokio::process::Command::new("rabbitmqctl")
        .args([
            "list_connections",
            "-q",
            "--no-table-headers",
            "pid",
            "client_properties",
        ])
        .output()
        .await
        .expect("these tests need rabbitmqctl on PATH to close their own connections");
    assert!(
        list.status.success(),
        "rabbitmqctl list_connections: {list:?}"
    );
    let mut closed = 0;
    for line in String::from_utf8_lossy(&list.stdout).lines() {
        // The client properties hold the connection name (names are unique per test).
        let Some((pid, properties)) = line.split_once('\t') else {
            continue;
        };
        if !properties.contains(&format!("\"{name}\"")) {
            continue;
        }
        let status = tokio::process::Command::new("rabbitmqctl")
            .args([
                "close_connection",
                pid.trim(),
                "orderscope test: simulated broker close",
            ])
            .output()
            .await
            .expect("rabbitmqctl close_connection");
        assert!(
            status.status.success(),
            "rabbitmqctl close_connection: {status:?}"
        );
        closed += 1;
    }
    closed
}
