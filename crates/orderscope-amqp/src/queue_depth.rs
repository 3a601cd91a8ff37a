//! RabbitMQ queue depth: ready messages and consumers of an explicit, bounded list of queues,
//! read by passive declare on a dedicated channel.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::connector::Connector;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use orderscope_metrics::catalogue::{QUEUE_CONSUMERS, QUEUE_MESSAGES, QUEUE_SAMPLE_ERRORS, labels};

/// The most queues one [`QueueWatcher`] watches; names beyond are ignored (and warned about).
pub const MAX_WATCHED_QUEUES: usize = 64;

/// Queue name → (ready messages, consumers), as last sampled by any watcher.
static DEPTHS: Mutex<BTreeMap<String, (u64, u64)>> = Mutex::new(BTreeMap::new());

/// Watches the depth of named queues: every [`sample`](Self::sample) passively declares each
/// queue on a channel of its own and records
///
/// | Prometheus metric | type | labels |
/// | --- | --- | --- |
/// | `orderscope_queue_messages` | gauge | `messaging_destination_name`, `state="ready"` |
/// | `orderscope_queue_consumers` | gauge | `messaging_destination_name` |
/// | `orderscope_queue_sample_errors_total` | counter | `messaging_destination_name` |
///
/// A queue that cannot be read (missing: the broker answers 404 and closes the channel, which
/// is reopened for the next queue) loses its series — a missing queue is not an empty one — and
/// counts an error. The gauges are kept outside the `metrics` recorder, which cannot drop a
/// series; [`append_queue_metrics`] renders them (the `orderscope` facade's `/metrics` does).
///
/// The broker's `message_count` of a passive declare is the *ready* count (unacknowledged
/// deliveries are not included). Sample on a tick, never per message:
/// [`spawn`](Self::spawn) does it every interval on the current Tokio runtime.
///
/// # Example
///
/// ```no_run
/// use std::sync::Arc;
/// use std::time::Duration;
/// use lapin::{Connection, ConnectionProperties};
/// use orderscope_amqp::QueueWatcher;
///
/// # async fn example() -> Result<(), lapin::Error> {
/// let conn = Arc::new(Connection::connect("amqp://127.0.0.1:5672", ConnectionProperties::default()).await?);
/// let _task = QueueWatcher::new(conn, ["orders.mes", "orders.crm"]).spawn(Duration::from_secs(5));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct QueueWatcher {
    source: Source,
    queues: Vec<String>,
    channel: Option<Channel>,
}

/// Where a [`QueueWatcher`] gets its connection.
#[derive(Debug)]
enum Source {
    /// The caller's connection, for the watcher's life.
    Fixed(Arc<Connection>),
    /// Made by a connector, and made again when the broker closed it.
    Connector(Connector, Option<Box<Connection>>),
}

impl QueueWatcher {
    /// Watches `queues` (at most [`MAX_WATCHED_QUEUES`]) over `connection`. When the broker closes it, every
    /// sample fails from then on: use [`reconnecting`](Self::reconnecting) to survive that.
    pub fn new<I, Q>(connection: Arc<Connection>, queues: I) -> Self
    where
        I: IntoIterator<Item = Q>,
        Q: Into<String>,
    {
        Self::with_source(Source::Fixed(connection), queues)
    }

    /// Watches `queues` (at most [`MAX_WATCHED_QUEUES`]) over a connection `connector` makes when the first
    /// sample starts, and makes again (once per sample, no retry loop) when the broker closed it — a restart,
    /// a failover, an operator. A sample that cannot connect fails for every queue, which drops their series
    /// and counts the errors.
    pub fn reconnecting<I, Q>(connector: Connector, queues: I) -> Self
    where
        I: IntoIterator<Item = Q>,
        Q: Into<String>,
    {
        Self::with_source(Source::Connector(connector, None), queues)
    }

    fn with_source<I, Q>(source: Source, queues: I) -> Self
    where
        I: IntoIterator<Item = Q>,
        Q: Into<String>,
    {
        let mut names: Vec<String> = queues.into_iter().map(Into::into).collect();
        names.sort();
        names.dedup();
        if names.len() > MAX_WATCHED_QUEUES {
            tracing::warn!(
                watched = MAX_WATCHED_QUEUES,
                ignored = names.len() - MAX_WATCHED_QUEUES,
                "too many queues to watch; the rest are ignored"
            );
            names.truncate(MAX_WATCHED_QUEUES);
        }
        QueueWatcher {
            source,
            queues: names,
            channel: None,
        }
    }

    /// The queues watched.
    pub fn queues(&self) -> &[String] {
        &self.queues
    }

    /// Reads every watched queue once.
    pub async fn sample(&mut self) {
        if let Source::Connector(connector, connection) = &mut self.source
            && !connection.as_ref().is_some_and(|c| c.status().connected())
        {
            self.channel = None;
            *connection = match connector.connect().await {
                Ok(c) => Some(Box::new(c)),
                Err(error) => {
                    tracing::debug!(%error, "the queue watcher cannot connect");
                    None
                }
            };
        }
        for i in 0..self.queues.len() {
            let name = self.queues[i].clone();
            match self.declare(&name).await {
                Some(depth) => {
                    lock().insert(name, depth);
                }
                None => {
                    lock().remove(&name);
                    metrics::counter!(
                        QUEUE_SAMPLE_ERRORS,
                        labels::MESSAGING_DESTINATION_NAME => name
                    )
                    .increment(1);
                }
            }
        }
    }

    async fn declare(&mut self, queue: &str) -> Option<(u64, u64)> {
        let open = self
            .channel
            .as_ref()
            .is_some_and(|c| c.status().connected());
        if !open {
            self.channel = match &mut self.source {
                Source::Fixed(connection) => connection.create_channel().await.ok(),
                Source::Connector(_, Some(connection)) => connection.create_channel().await.ok(),
                Source::Connector(_, None) => None,
            };
        }
        let channel = self.channel.as_ref()?;
        let options = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        match channel
            .queue_declare(queue.into(), options, FieldTable::default())
            .await
        {
            Ok(q) => Some((u64::from(q.message_count()), u64::from(q.consumer_count()))),
            Err(error) => {
                tracing::debug!(queue, %error, "cannot read the queue's depth");
                None
            }
        }
    }

    /// Samples every `interval` on the current Tokio runtime until the task is aborted; the
    /// queues' series are dropped then.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn spawn(mut self, interval: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let _forget = Forget(self.queues.clone());
            loop {
                self.sample().await;
                tokio::time::sleep(interval).await;
            }
        })
    }
}

/// Drops the series of its queues when the watching task ends.
struct Forget(Vec<String>);

impl Drop for Forget {
    fn drop(&mut self) {
        let mut depths = lock();
        for q in &self.0 {
            depths.remove(q);
        }
    }
}

fn lock() -> std::sync::MutexGuard<'static, BTreeMap<String, (u64, u64)>> {
    DEPTHS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Appends `orderscope_queue_messages` and `orderscope_queue_consumers` of the watched queues, in
/// the Prometheus text format, to `out` (nothing when no queue was read).
pub fn append_queue_metrics(out: &mut String) {
    let depths = lock();
    if depths.is_empty() {
        return;
    }
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "# HELP {QUEUE_MESSAGES} Messages in a watched RabbitMQ queue, by state.\n# TYPE {QUEUE_MESSAGES} gauge"
    );
    for (queue, (ready, _)) in depths.iter() {
        let _ = writeln!(
            out,
            "{QUEUE_MESSAGES}{{messaging_destination_name=\"{}\",state=\"ready\"}} {ready}",
            escape(queue)
        );
    }
    let _ = writeln!(
        out,
        "# HELP {QUEUE_CONSUMERS} Consumers of a watched RabbitMQ queue.\n# TYPE {QUEUE_CONSUMERS} gauge"
    );
    for (queue, (_, consumers)) in depths.iter() {
        let _ = writeln!(
            out,
            "{QUEUE_CONSUMERS}{{messaging_destination_name=\"{}\"}} {consumers}",
            escape(queue)
        );
    }
}

/// A Prometheus label value: `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
