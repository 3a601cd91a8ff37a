//! Reconnection: a [`Connector`] makes connections, [`run_reconnecting`] consumes through them.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};

use opentelemetry::global::BoxedTracer;
use orderscope_context::LateTracer;

use crate::consume::{ConsumerConfig, Message};
use crate::retry::Backoff;
use crate::runner::{RunError, RunOptions, RunReport, Start};

type Connect =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = lapin::Result<Connection>> + Send>> + Send + Sync>;

/// Makes connections to the broker, again and again: what [`run_reconnecting`] uses when the broker closes the
/// connection (a restart, a failover, an operator), and what a publisher uses to rebuild its
/// [`TracedChannel`](crate::TracedChannel) ([`TracedChannel::rebuild`](crate::TracedChannel::rebuild)).
///
/// # Example
///
/// ```no_run
/// use lapin::ConnectionProperties;
/// use orderscope_amqp::{Connector, TracedChannel};
///
/// # async fn example() -> Result<(), lapin::Error> {
/// let connector = Connector::new(
///     "amqp://127.0.0.1:5672",
///     ConnectionProperties::default().with_connection_name("billing".into()),
/// );
/// let publisher = TracedChannel::new(connector.connect().await?.create_channel().await?);
/// // … the broker closed the connection: PublishError::ChannelClosed. Rebuild, same tracer and metrics:
/// let publisher = publisher.rebuild(connector.connect().await?.create_channel().await?);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Connector {
    connect: Connect,
    backoff: Backoff,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// Connects to `uri` with `properties` (give the connection a name: operators see it in the management
    /// UI and `rabbitmqctl list_connections`).
    #[must_use]
    pub fn new(uri: impl Into<String>, properties: ConnectionProperties) -> Self {
        let uri: Arc<str> = Arc::from(uri.into());
        Self::from_fn(move || {
            let uri = Arc::clone(&uri);
            let properties = properties.clone();
            async move { Connection::connect(&uri, properties).await }
        })
    }

    /// Connects with `connect` (TLS, custom properties, credentials fetched per attempt, …).
    #[must_use]
    pub fn from_fn<F, Fut>(connect: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = lapin::Result<Connection>> + Send + 'static,
    {
        Self {
            connect: Arc::new(move || Box::pin(connect())),
            backoff: Backoff::exponential(Duration::from_millis(100)).max(Duration::from_secs(10)),
        }
    }

    /// The delay between reconnection attempts. Defaults to 100 ms doubling up to 10 s, ± 20 %.
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// One connection attempt.
    ///
    /// # Errors
    ///
    /// lapin's connection error.
    pub async fn connect(&self) -> lapin::Result<Connection> {
        (self.connect)().await
    }

    /// Connects, retrying with the backoff until it succeeds.
    pub async fn connect_with_retry(&self) -> Connection {
        let mut attempt = 0_u32;
        loop {
            match self.connect().await {
                Ok(connection) => return connection,
                Err(error) => {
                    attempt = attempt.saturating_add(1);
                    let delay = self.backoff.delay(attempt);
                    tracing::warn!(error = %error, attempt, delay_ms = delay.as_millis() as u64, "connecting to the broker failed; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

/// What [`run_reconnecting`] consumes, and how.
#[derive(Clone)]
pub struct Consume {
    tracer: Option<Arc<LateTracer>>,
    queue: String,
    consumer_tag: String,
    prefetch: u16,
    options: BasicConsumeOptions,
    arguments: FieldTable,
}

impl Consume {
    /// Consumes `queue` with consumer tag `consumer_tag`; prefetch 1.
    #[must_use]
    pub fn new(queue: impl Into<String>, consumer_tag: impl Into<String>) -> Self {
        Self {
            tracer: None,
            queue: queue.into(),
            consumer_tag: consumer_tag.into(),
            prefetch: 1,
            options: BasicConsumeOptions::default(),
            arguments: FieldTable::default(),
        }
    }

    /// The channel's `basic_qos` prefetch, set again on every new channel. Defaults to 1. Set it to at least
    /// [`RunOptions::concurrency`].
    #[must_use]
    pub fn prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = prefetch;
        self
    }

    /// The tracer spans are created with. Defaults to `opentelemetry::global::tracer("orderscope-amqp")`,
    /// resolved when [`run_reconnecting`] starts.
    #[must_use]
    pub fn tracer(mut self, tracer: BoxedTracer) -> Self {
        self.tracer = Some(Arc::new(LateTracer::fixed(tracer)));
        self
    }

    /// `basic_consume` options and arguments. Default to lapin's defaults (`no_ack` must stay `false`).
    #[must_use]
    pub fn options(mut self, options: BasicConsumeOptions, arguments: FieldTable) -> Self {
        self.options = options;
        self.arguments = arguments;
        self
    }
}

impl fmt::Debug for Consume {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consume")
            .field("queue", &self.queue)
            .field("consumer_tag", &self.consumer_tag)
            .field("prefetch", &self.prefetch)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Like [`run`](crate::run), but survives the broker closing the channel or the connection: it connects through
/// `connector`, opens a channel with the same prefetch and the consumer again (and a new confirm channel for
/// [`RunOptions::retries`], sharing the given publisher's configuration), and goes on, reconnecting with the
/// connector's jittered backoff. Deliveries in flight on the dead channel are not settled there (lapin refuses;
/// counted as `error_type="channel_closed"`): the broker redelivers them, and they count in
/// `messaging_redelivered_messages_total` and [`RunReport::reconnects`]. It returns when the
/// [`shutdown`](RunOptions::shutdown) signal completes, or when the consumer is cancelled.
///
/// # Errors
///
/// The start checks of [`run`](crate::run) ([`RunError::NoDeadLetterRoute`], [`RunError::Topology`]), made on
/// the first connection. Consumer failures are not errors: they lead to a reconnection.
pub async fn run_reconnecting<H, Fut, E>(
    connector: Connector,
    consume: Consume,
    handler: H,
    options: RunOptions,
) -> Result<RunReport, RunError>
where
    H: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: fmt::Display + Send + 'static,
{
    let tracer = consume
        .tracer
        .clone()
        .unwrap_or_else(|| Arc::new(crate::publish::default_tracer()));
    let mut start = Start::new(handler, options);
    let mut first = true;
    loop {
        let retries = start.has_retries();
        let connected = start
            .until_shutdown(async {
                let connection = connector.connect_with_retry().await;
                open(&connection, &consume, &tracer, retries)
                    .await
                    .map(|c| (connection, c))
            })
            .await;
        let Some(opened) = connected else {
            return Ok(start.into_report());
        };
        let (connection, (consumer, publisher)) = match opened {
            Ok(opened) => opened,
            Err(error) => {
                tracing::warn!(queue = consume.queue.as_str(), error = %error, "opening the consumer failed; reconnecting");
                continue;
            }
        };
        if let Some(publisher) = publisher {
            start.replace_publisher(publisher);
        }
        if first {
            start.prepare(&consume.queue).await?;
            first = false;
        } else {
            start.count_reconnect();
            tracing::info!(
                queue = consume.queue.as_str(),
                "consuming again after a reconnection"
            );
        }
        match start.session(consumer).await {
            Some(error) => {
                tracing::warn!(queue = consume.queue.as_str(), error = %error, "the consumer's channel closed; reconnecting");
                let _ = connection.close(200, "reconnecting".into()).await;
            }
            None if start.stopped() => {
                let _ = connection.close(200, "shutdown".into()).await;
                return Ok(start.into_report());
            }
            None => {
                if connection.status().connected() {
                    let _ = connection.close(200, "consumer cancelled".into()).await;
                    return Ok(start.into_report());
                }
                tracing::warn!(
                    queue = consume.queue.as_str(),
                    "the connection closed; reconnecting"
                );
            }
        }
    }
}

/// Opens the consumer (and, for retries, a confirm channel) on `connection`.
async fn open(
    connection: &Connection,
    consume: &Consume,
    tracer: &Arc<LateTracer>,
    retries: bool,
) -> lapin::Result<(crate::TracedConsumer, Option<lapin::Channel>)> {
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(consume.prefetch, BasicQosOptions::default())
        .await?;
    let publisher = if retries {
        let publisher = connection.create_channel().await?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Some(publisher)
    } else {
        None
    };
    let consumer = channel
        .basic_consume(
            consume.queue.as_str().into(),
            consume.consumer_tag.as_str().into(),
            consume.options,
            consume.arguments.clone(),
        )
        .await?;
    let consumer = crate::TracedConsumer::with_config(
        consumer,
        ConsumerConfig::new(Arc::clone(tracer)),
        consume.prefetch,
    );
    Ok((consumer, publisher))
}
