//! Traced publishing: [`TracedChannel::publish`] with publisher confirms.

use std::borrow::Cow;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lapin::message::BasicReturnMessage;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, PublisherConfirm};
use opentelemetry::global::{BoxedSpan, BoxedTracer};
use opentelemetry::trace::{Span as _, SpanBuilder, SpanKind, Status, TraceContextExt};
use opentelemetry::{Context, KeyValue, StringValue};
use orderscope_context::LateTracer;

use crate::consume::{ConsumerConfig, TracedConsumer};
use crate::instruments::{PublishCache, PublishHandles, Route, SentOutcome, SpanNames};

/// Header carrying the publish time in milliseconds since the Unix epoch (a long-long integer).
pub const PUBLISHED_AT_MS_HEADER: &str = "x-published-at-ms";

/// The span attribute holding the publish or settle outcome.
pub const OUTCOME_ATTRIBUTE: &str = "orderscope.outcome";

const DEFAULT_CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_MAX_DESTINATIONS: usize = 256;

/// Why a publish did not reach a queue, as far as the broker told us.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The message was published with `mandatory` and no queue was bound to take it: the broker returned it.
    /// Without `mandatory` the broker drops such a message silently.
    #[error("the broker returned the message as unroutable ({reply_code} {reply_text})")]
    Returned {
        /// AMQP reply code, e.g. 312 (`NO_ROUTE`).
        reply_code: u16,
        /// The broker's reply text.
        reply_text: String,
        /// The returned message.
        message: Box<BasicReturnMessage>,
    },
    /// The broker negatively acknowledged the message: it could not take responsibility for it.
    #[error("the broker negatively acknowledged the message")]
    Nacked,
    /// No confirm arrived within the confirm timeout. The message may still have been routed.
    #[error("no publisher confirm within {0:?}")]
    Timeout(Duration),
    /// The channel was closed (or failed) before the message was confirmed.
    #[error("the channel closed before the message was confirmed: {0}")]
    ChannelClosed(#[source] lapin::Error),
}

impl PublishError {
    /// The `outcome` label value this error was counted under.
    #[must_use]
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Returned { .. } => "returned",
            Self::Nacked => "nack",
            Self::Timeout(_) => "timeout",
            Self::ChannelClosed(_) => "channel_closed",
        }
    }
}

/// A successful publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishOutcome {
    message_id: Arc<str>,
    confirmed: bool,
}

impl PublishOutcome {
    /// The message's `message_id` (the caller's, or the one assigned on publish).
    #[must_use]
    pub fn message_id(&self) -> &str {
        &self.message_id
    }

    /// `true` when the broker confirmed the message; `false` when the channel is not in confirm mode, so
    /// nothing is known beyond "written to the socket".
    #[must_use]
    pub fn confirmed(&self) -> bool {
        self.confirmed
    }
}

/// Shared, immutable configuration of a [`TracedChannel`] (and of its clones).
pub(crate) struct Shared {
    pub(crate) tracer: Arc<LateTracer>,
    pub(crate) confirm_timeout: Option<Duration>,
    pub(crate) keep_caller_trace_context: bool,
    pub(crate) order_id_header: bool,
    pub(crate) server: Option<(Cow<'static, str>, u16)>,
    pub(crate) cache: PublishCache,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("confirm_timeout", &self.confirm_timeout)
            .field("server", &self.server)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

/// A `lapin::Channel` whose publishes are traced and counted.
///
/// Cheap to clone: clones share the channel, the tracer and the metric handles.
///
/// # Example
///
/// ```no_run
/// use lapin::{options::{BasicPublishOptions, ConfirmSelectOptions}, BasicProperties, Connection, ConnectionProperties};
/// use orderscope_amqp::TracedChannel;
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let conn = Connection::connect("amqp://127.0.0.1:5672", ConnectionProperties::default()).await?;
/// let channel = conn.create_channel().await?;
/// channel.confirm_select(ConfirmSelectOptions::default()).await?;
/// let channel = TracedChannel::new(channel);
///
/// let outcome = channel
///     .publish(
///         "orders".into(),
///         "order.created".into(),
///         BasicPublishOptions { mandatory: true, ..Default::default() },
///         b"{\"id\":\"ORD-1\"}",
///         BasicProperties::default(),
///     )
///     .await?; // Err(PublishError::Returned { .. }) when no queue is bound
/// assert!(outcome.confirmed());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct TracedChannel {
    channel: Channel,
    shared: Arc<Shared>,
}

/// Configures a [`TracedChannel`]; from [`TracedChannel::builder`].
#[derive(Debug)]
pub struct TracedChannelBuilder {
    channel: Channel,
    tracer: Option<BoxedTracer>,
    confirm_timeout: Option<Duration>,
    keep_caller_trace_context: bool,
    order_id_header: bool,
    server: Option<(Cow<'static, str>, u16)>,
    max_destinations: usize,
}

impl TracedChannelBuilder {
    /// The tracer spans are created with. Defaults to the global provider's `orderscope-amqp` tracer,
    /// looked up when spans start until a provider is installed.
    #[must_use]
    pub fn tracer(mut self, tracer: BoxedTracer) -> Self {
        self.tracer = Some(tracer);
        self
    }

    /// How long a publish waits for the broker's confirm before it fails with [`PublishError::Timeout`].
    /// `None` waits as long as the channel lives. Defaults to 30 seconds. Only used in confirm mode.
    ///
    /// The timer needs a Tokio runtime with the time driver enabled; outside a Tokio runtime no timeout applies.
    #[must_use]
    pub fn confirm_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.confirm_timeout = timeout;
        self
    }

    /// Keeps a `traceparent` the caller put in the headers even inside an active span (by default it is
    /// replaced there, so a handler that republishes with the incoming headers copied continues its own
    /// trace). Defaults to `false`.
    #[must_use]
    pub fn keep_caller_trace_context(mut self, keep: bool) -> Self {
        self.keep_caller_trace_context = keep;
        self
    }

    /// Also writes the order's id as a plain `x-order-id` header (a long string) on every publish with an order
    /// in scope, for readers that parse no `baggage`: a consumer in a language without a W3C baggage reader, a
    /// person looking at messages in the management UI. The id always travels in `baggage` (`order.id`), which
    /// orderscope's consumers read. Defaults to `false`: the header costs every publish its allocation,
    /// encoding and bytes on the wire.
    #[must_use]
    pub fn order_id_header(mut self, write: bool) -> Self {
        self.order_id_header = write;
        self
    }

    /// The broker's host and port, recorded as `server.address` and `server.port` on spans. Defaults to not
    /// recorded (lapin does not expose the peer of a channel).
    #[must_use]
    pub fn server(mut self, address: impl Into<Cow<'static, str>>, port: u16) -> Self {
        self.server = Some((address.into(), port));
        self
    }

    /// How many exchanges get their own `messaging_destination_name` series; further ones are recorded as
    /// `_overflow`, and each of their measurements counts in `orderscope_cardinality_overflow_total{metric}`.
    /// Clamped to `1..=2^20` like [`SeriesLimit::new`](orderscope_metrics::SeriesLimit::new). Defaults to 256.
    #[must_use]
    pub fn max_destinations(mut self, max: usize) -> Self {
        self.max_destinations = max;
        self
    }

    /// Builds the channel wrapper.
    #[must_use]
    pub fn build(self) -> TracedChannel {
        TracedChannel {
            channel: self.channel,
            shared: Arc::new(Shared {
                tracer: Arc::new(self.tracer.map_or_else(default_tracer, LateTracer::fixed)),
                confirm_timeout: self.confirm_timeout,
                keep_caller_trace_context: self.keep_caller_trace_context,
                order_id_header: self.order_id_header,
                server: self.server,
                cache: PublishCache::new(self.max_destinations),
            }),
        }
    }
}

/// The instrumentation scope of the spans: this crate, its version and
/// [`SEMCONV_SCHEMA_URL`](orderscope_context::SEMCONV_SCHEMA_URL).
pub(crate) fn scope() -> opentelemetry::InstrumentationScope {
    opentelemetry::InstrumentationScope::builder(env!("CARGO_PKG_NAME"))
        .with_version(env!("CARGO_PKG_VERSION"))
        .with_schema_url(orderscope_context::SEMCONV_SCHEMA_URL)
        .build()
}

/// The global provider's tracer, looked up when spans start until a provider is installed, so a
/// channel or consumer built before `orderscope::init` traces once it has run.
pub(crate) fn default_tracer() -> LateTracer {
    LateTracer::global(scope())
}

impl TracedChannel {
    /// Wraps a channel with the default configuration (see [`TracedChannelBuilder`]).
    #[must_use]
    pub fn new(channel: Channel) -> Self {
        Self::builder(channel).build()
    }

    /// Starts configuring a wrapper for `channel`.
    #[must_use]
    pub fn builder(channel: Channel) -> TracedChannelBuilder {
        TracedChannelBuilder {
            channel,
            tracer: None,
            confirm_timeout: Some(DEFAULT_CONFIRM_TIMEOUT),
            keep_caller_trace_context: false,
            order_id_header: false,
            server: None,
            max_destinations: DEFAULT_MAX_DESTINATIONS,
        }
    }

    /// The wrapped channel.
    #[must_use]
    pub fn get_ref(&self) -> &Channel {
        &self.channel
    }

    /// A wrapper for `channel` (a new one, after the old one closed) with this one's configuration: the same
    /// tracer, confirm timeout and metric handles.
    #[must_use]
    pub fn rebuild(&self, channel: Channel) -> Self {
        Self {
            channel,
            shared: Arc::clone(&self.shared),
        }
    }

    /// Unwraps the channel.
    #[must_use]
    pub fn into_inner(self) -> Channel {
        self.channel
    }

    /// Starts a traced consumer on `queue` (lapin's `basic_consume`, then [`TracedConsumer::new`] sharing this
    /// channel's tracer and server attributes).
    ///
    /// # Errors
    ///
    /// Whatever `basic_consume` returns.
    pub async fn consume(
        &self,
        queue: ShortString,
        consumer_tag: ShortString,
        options: BasicConsumeOptions,
        arguments: FieldTable,
    ) -> lapin::Result<TracedConsumer> {
        let consumer = self
            .channel
            .basic_consume(queue, consumer_tag, options, arguments)
            .await?;
        let mut config = ConsumerConfig::new(Arc::clone(&self.shared.tracer));
        config.server.clone_from(&self.shared.server);
        Ok(TracedConsumer::with_config(consumer, config, 0))
    }

    /// Publishes a message, traced, and — when the channel is in confirm mode — waits for the broker's confirm.
    ///
    /// - Opens the PRODUCER span `publish {exchange}` (the default exchange is `amq.default`) as a child of
    ///   the current context.
    /// - Writes `traceparent`, `tracestate` (when not empty) and `baggage` as long-string headers (and
    ///   `x-order-id` with [`TracedChannelBuilder::order_id_header`]), `x-published-at-ms`, and the
    ///   `message_id` (when absent) and `timestamp` (when absent) properties. A
    ///   `traceparent` already in the headers (copied from an incoming message, say) is replaced when the
    ///   publish happens inside an active span, and kept otherwise or with
    ///   [`TracedChannelBuilder::keep_caller_trace_context`].
    /// - In confirm mode, waits for the confirm inside the span and counts the outcome in
    ///   `messaging_client_sent_messages_total` (`ack`, `nack`, `returned`, `timeout`, `channel_closed`) and
    ///   `messaging_client_operation_duration_seconds`. Without confirm mode only the duration is recorded:
    ///   nothing is known about the message's fate.
    ///
    /// # Errors
    ///
    /// [`PublishError`] for a returned (mandatory, unroutable) or nacked message, a confirm timeout, or a
    /// closed channel.
    ///
    /// # Panics
    ///
    /// In confirm mode with a confirm timeout, inside a Tokio runtime built without the time driver.
    pub async fn publish(
        &self,
        exchange: ShortString,
        routing_key: ShortString,
        options: BasicPublishOptions,
        payload: &[u8],
        properties: BasicProperties,
    ) -> Result<PublishOutcome, PublishError> {
        // Only what the outcome needs is kept across the wait for the confirm: this future is moved and
        // allocated by every caller that runs publishes concurrently.
        let start = Instant::now();
        let handles = self.shared.cache.get(exchange.as_str());
        let overflow_names = handles
            .names
            .is_none()
            .then(|| SpanNames::transient(exchange.as_str()));
        let names = handles.names.as_ref().or(overflow_names.as_ref());
        let (mut span, message_id, properties) = self.prepare(
            &handles,
            names,
            &exchange,
            &routing_key,
            payload,
            properties,
        );
        // On the heap: lapin's publish and the confirm wait are most of this future's size, and a
        // publish future is moved by every combinator and executor it passes through.
        let result = Box::pin(self.confirm(self.channel.basic_publish(
            exchange,
            routing_key,
            options,
            payload,
            properties,
        )))
        .await;
        let seconds = start.elapsed().as_secs_f64();
        match result {
            Ok(confirmed) => {
                if confirmed {
                    handles.record(SentOutcome::Ack, seconds);
                    span.set_attribute(KeyValue::new(OUTCOME_ATTRIBUTE, "ack"));
                } else {
                    handles.record_unconfirmed(seconds);
                    span.set_attribute(KeyValue::new(OUTCOME_ATTRIBUTE, "unconfirmed"));
                }
                span.end();
                Ok(PublishOutcome {
                    message_id,
                    confirmed,
                })
            }
            Err(error) => {
                let outcome = match &error {
                    PublishError::Returned { reply_code, .. } => {
                        SentOutcome::Returned(returned_reason(*reply_code))
                    }
                    PublishError::Nacked => SentOutcome::Nack,
                    PublishError::Timeout(_) => SentOutcome::Timeout,
                    PublishError::ChannelClosed(_) => SentOutcome::ChannelClosed,
                };
                handles.record(outcome, seconds);
                span.set_attribute(KeyValue::new(OUTCOME_ATTRIBUTE, outcome.outcome()));
                if let Some(error_type) = outcome.error_type() {
                    span.set_attribute(KeyValue::new("error.type", error_type));
                }
                span.set_status(Status::error(error.to_string()));
                span.end();
                tracing::warn!(
                    exchange = names.map_or("", |n| n.destination.as_str()),
                    message_id = &*message_id,
                    outcome = outcome.outcome(),
                    error = %error,
                    "message not confirmed by the broker"
                );
                Err(error)
            }
        }
    }

    /// The span of a publish (started), its message id, and the properties with the message id, timestamp and
    /// headers written. The span stays out of a `Context`: nothing runs inside it.
    fn prepare(
        &self,
        handles: &PublishHandles,
        names: Option<&SpanNames>,
        exchange: &ShortString,
        routing_key: &ShortString,
        payload: &[u8],
        properties: BasicProperties,
    ) -> (BoxedSpan, Arc<str>, BasicProperties) {
        let shared = &*self.shared;
        // The id is written once for the property; the span attribute and the outcome share one copy.
        let (properties, message_id) = match properties.message_id() {
            Some(id) => {
                let id = Arc::<str>::from(id.as_str());
                (properties, id)
            }
            None => {
                let id = next_message_id();
                let shared_id = Arc::<str>::from(id.as_str());
                (properties.with_message_id(ShortString::from(id)), shared_id)
            }
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let properties = if properties.timestamp().is_none() {
            properties.with_timestamp(now.as_secs())
        } else {
            properties
        };

        let transient_route;
        let route = match names.and_then(|_| handles.route(exchange.as_str(), routing_key.as_str()))
        {
            Some(route) => route,
            None => {
                transient_route = Route::new(exchange.as_str(), routing_key.as_str());
                &transient_route
            }
        };
        let mut attributes = Vec::with_capacity(9);
        attributes.push(KeyValue::new("messaging.system", "rabbitmq"));
        attributes.push(KeyValue::new("messaging.operation.name", "publish"));
        attributes.push(KeyValue::new("messaging.operation.type", "send"));
        attributes.push(KeyValue::new(
            "messaging.destination.name",
            route.destination.clone(),
        ));
        if let Some(routing_key) = route.routing_key_attribute() {
            attributes.push(KeyValue::new(
                "messaging.rabbitmq.destination.routing_key",
                routing_key.clone(),
            ));
        }
        attributes.push(KeyValue::new(
            "messaging.message.id",
            StringValue::from(Arc::clone(&message_id)),
        ));
        attributes.push(KeyValue::new(
            "messaging.message.body.size",
            i64::try_from(payload.len()).unwrap_or(i64::MAX),
        ));
        if let Some(id) = properties.correlation_id() {
            attributes.push(KeyValue::new(
                "messaging.message.conversation_id",
                id.as_str().to_owned(),
            ));
        }
        if let Some((address, port)) = &shared.server {
            attributes.push(KeyValue::new("server.address", address.clone()));
            attributes.push(KeyValue::new("server.port", i64::from(*port)));
        }
        let span_name = names.map_or(Cow::Borrowed("publish"), |n| n.span_name.clone());
        let builder = SpanBuilder::from_name(span_name)
            .with_kind(SpanKind::Producer)
            .with_attributes(attributes);
        let mut headers = properties.headers().clone().unwrap_or_default();
        let span = Context::map_current(|parent| {
            let span = shared.tracer.build_with_context(builder, parent);
            // Headers copied from an incoming message carry its (stale) trace context: a publish inside an
            // active span belongs to that span.
            let replace = parent.has_active_span() && !shared.keep_caller_trace_context;
            orderscope_context::carrier::inject_amqp_for_span(
                parent,
                span.span_context(),
                &mut headers,
                replace,
            );
            if shared.order_id_header {
                orderscope_context::carrier::insert_order_id(parent, &mut headers);
            }
            span
        });
        headers.insert(
            ShortString::from(PUBLISHED_AT_MS_HEADER),
            AMQPValue::LongLongInt(i64::try_from(now.as_millis()).unwrap_or(i64::MAX)),
        );
        (span, message_id, properties.with_headers(headers))
    }

    /// Republishes a copy of a delivered message to `queue` through the default exchange, mandatory, and waits
    /// for the confirm: no span (the copy keeps the original's trace context), no sent-message count (the
    /// runner counts it as a settle outcome).
    pub(crate) async fn republish(
        &self,
        queue: &str,
        payload: &[u8],
        properties: BasicProperties,
    ) -> Result<(), PublishError> {
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        match self
            .confirm(self.channel.basic_publish(
                "".into(),
                queue.into(),
                options,
                payload,
                properties,
            ))
            .await?
        {
            true => Ok(()),
            // Checked when the runner starts; a channel that lost confirm mode cannot vouch for the copy.
            false => Err(PublishError::Nacked),
        }
    }

    /// Runs `publish` (lapin's `basic_publish`) and waits for the confirm; `Ok(true)` when acked, `Ok(false)`
    /// when not in confirm mode.
    async fn confirm(
        &self,
        publish: impl Future<Output = lapin::Result<PublisherConfirm>>,
    ) -> Result<bool, PublishError> {
        let confirm = publish.await.map_err(PublishError::ChannelClosed)?;
        let confirmation = match self.shared.confirm_timeout {
            Some(timeout)
                if self.channel.status().confirm()
                    && tokio::runtime::Handle::try_current().is_ok() =>
            {
                tokio::time::timeout(timeout, confirm)
                    .await
                    .map_err(|_| PublishError::Timeout(timeout))?
            }
            _ => confirm.await,
        }
        .map_err(PublishError::ChannelClosed)?;
        match confirmation {
            Confirmation::Ack(None) => Ok(true),
            Confirmation::Ack(Some(returned)) => Err(PublishError::Returned {
                reply_code: returned.reply_code,
                reply_text: returned.reply_text.to_string(),
                message: Box::new(returned),
            }),
            Confirmation::Nack(_) => Err(PublishError::Nacked),
            Confirmation::NotRequested => Ok(false),
        }
    }
}

fn returned_reason(reply_code: u16) -> &'static str {
    match reply_code {
        312 => "no_route",
        313 => "no_consumers",
        _ => "returned",
    }
}

/// A unique message id: a random per-process prefix and a counter, `{prefix:016x}-{n}`.
fn next_message_id() -> String {
    static PREFIX: OnceLock<String> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        hasher.write_u32(std::process::id());
        format!("{:016x}-", hasher.finish())
    });
    let mut n = itoa::Buffer::new();
    let n = n.format(COUNTER.fetch_add(1, Ordering::Relaxed));
    let mut id = String::with_capacity(prefix.len() + n.len());
    id.push_str(prefix);
    id.push_str(n);
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instruments::{consume_destination, publish_destination};

    #[test]
    fn message_ids_are_unique() {
        let a = next_message_id();
        let b = next_message_id();
        assert_ne!(a, b);
        assert_eq!(a.as_bytes()[16], b'-');
        assert!(a[..16].bytes().all(|b| b.is_ascii_hexdigit()));
        let (n_a, n_b): (u64, u64) = (a[17..].parse().unwrap(), b[17..].parse().unwrap());
        assert!(n_b > n_a, "{a} then {b}");
    }

    #[test]
    fn destination_names_follow_the_rabbitmq_conventions() {
        assert_eq!(
            publish_destination("orders", "order.created"),
            "orders:order.created"
        );
        assert_eq!(publish_destination("orders", ""), "orders");
        assert_eq!(publish_destination("", "work"), "work");
        assert_eq!(publish_destination("", ""), "amq.default");
        assert_eq!(
            consume_destination("orders", "order.created", "mes"),
            "orders:order.created:mes"
        );
        assert_eq!(consume_destination("", "work", "work"), "work");
        assert_eq!(consume_destination("orders", "mes", "mes"), "orders:mes");
        assert_eq!(consume_destination("orders", "", "mes"), "orders:mes");
        assert_eq!(consume_destination("", "", "mes"), "mes");
    }

    #[test]
    fn the_spans_carry_the_schema_url_of_the_conventions() {
        assert_eq!(
            scope().schema_url(),
            Some(orderscope_context::SEMCONV_SCHEMA_URL)
        );
    }

    #[test]
    fn returned_reasons_are_bounded() {
        assert_eq!(returned_reason(312), "no_route");
        assert_eq!(returned_reason(313), "no_consumers");
        assert_eq!(returned_reason(1), "returned");
    }
}
