//! Traced consuming: [`TracedConsumer`] yields [`TracedDelivery`]s.

use std::borrow::Cow;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures_util::Stream;
use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Consumer};
use opentelemetry::context::{FutureExt as _, WithContext};
use opentelemetry::global::BoxedTracer;
use opentelemetry::trace::{
    Link, SpanBuilder, SpanContext, SpanId, SpanKind, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Context, KeyValue};
use orderscope_context::LateTracer;
use orderscope_context::{OrderContext, Propagation};

use crate::attempt::{Attempt, PREVIOUS_ATTEMPT_HEADER, as_u64};
use crate::instruments::{ConsumeHandles, MAX_ROUTES, Route};
use crate::publish::PUBLISHED_AT_MS_HEADER;
use crate::settle::Pending;

/// The span attribute holding a delivery's attempt number (1 = first attempt).
pub const ATTEMPT_ATTRIBUTE: &str = "orderscope.attempt";

/// Configuration shared by a consumer and all its deliveries.
pub(crate) struct ConsumerConfig {
    pub(crate) tracer: Arc<LateTracer>,
    pub(crate) propagation: Propagation,
    pub(crate) server: Option<(Cow<'static, str>, u16)>,
}

impl ConsumerConfig {
    pub(crate) fn new(tracer: Arc<LateTracer>) -> Self {
        Self {
            tracer,
            propagation: Propagation::trusted(),
            server: None,
        }
    }
}

/// State shared by a consumer and its deliveries.
pub(crate) struct ConsumerShared {
    pub(crate) queue: ShortString,
    /// `process {queue}`, kept once (see [`span_name`](crate::instruments::span_name)): the span and the
    /// operation take it without a copy.
    pub(crate) span_name: Cow<'static, str>,
    pub(crate) config: ConsumerConfig,
    pub(crate) handles: ConsumeHandles,
}

impl fmt::Debug for ConsumerShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsumerShared")
            .field("queue", &self.queue)
            .field("propagation", &self.config.propagation)
            .field("server", &self.config.server)
            .finish_non_exhaustive()
    }
}

/// A `lapin::Consumer` yielding traced deliveries: a `Stream` of `Result<TracedDelivery, lapin::Error>`.
///
/// Each delivery opens the CONSUMER span `process {queue}`:
///
/// - a delivery carrying trace headers — the first one and every retry (requeue, delayed retry, redelivery
///   after a reconnect, the dead-letter queue's consumer) — is a child of the producer's span and linked to it,
///   so an order stays one trace across attempts; its attempt number is the attribute `orderscope.attempt`
///   (see [`Message::attempt`]), and a retry the runner republished also links to the previous attempt's span;
/// - a message without (valid) trace headers: a new root span, counted in `messaging_untraced_messages_total`.
///
/// The span ends when the delivery is settled (see [`TracedDelivery`]). The order read from the message's
/// baggage is in the delivery's [`context`](Message::context); attach it while handling the message with
/// [`Message::scope`] (the [`run`](crate::run) runner does this for you).
///
/// # Example
///
/// ```no_run
/// use futures_util::StreamExt;
/// use lapin::{options::BasicConsumeOptions, types::FieldTable, Connection, ConnectionProperties};
/// use orderscope_amqp::TracedChannel;
/// use orderscope_context::OrderContext;
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let conn = Connection::connect("amqp://127.0.0.1:5672", ConnectionProperties::default()).await?;
/// let channel = TracedChannel::new(conn.create_channel().await?);
/// let mut consumer = channel
///     .consume("orders".into(), "billing".into(), BasicConsumeOptions::default(), FieldTable::default())
///     .await?;
/// while let Some(delivery) = consumer.next().await {
///     let delivery = delivery?;
///     let order_id = delivery
///         .scope(async { OrderContext::current().map(|o| o.id().to_owned()) })
///         .await;
///     println!("order {order_id:?}: {} bytes", delivery.data().len());
///     delivery.ack().await?;
/// }
/// # Ok(())
/// # }
/// ```
#[pin_project::pin_project]
#[derive(Debug)]
pub struct TracedConsumer {
    #[pin]
    inner: Consumer,
    shared: Arc<ConsumerShared>,
    prefetch: Prefetch,
    route: SeenRoutes,
}

/// The [`Route`]s of the exchanges and routing keys a consumer saw, up to [`MAX_ROUTES`]: its messages
/// arrive by a few ways (a topic binding's keys, say), so the attribute strings are built once per way and
/// shared by the spans, not copied per message. Past the limit, the last entry is rebuilt as needed.
#[derive(Debug, Default)]
struct SeenRoutes(Vec<(String, Route)>);

impl SeenRoutes {
    /// The attributes of a delivery from `exchange` with `routing_key`.
    fn get(&mut self, exchange: &str, routing_key: &str, queue: &str) -> &Route {
        let seen = self
            .0
            .iter()
            .position(|(e, route)| e == exchange && route.routing_key() == routing_key);
        let index = seen.unwrap_or_else(|| {
            let entry = (
                exchange.to_owned(),
                Route::consumed(exchange, routing_key, queue),
            );
            if self.0.len() < MAX_ROUTES {
                self.0.push(entry);
            } else {
                self.0[MAX_ROUTES - 1] = entry;
            }
            self.0.len() - 1
        });
        &self.0[index].1
    }
}

/// A consumer's share of `orderscope_consumer_prefetch`, given back when the consumer is dropped.
#[derive(Debug)]
struct Prefetch {
    count: u16,
    shared: Arc<ConsumerShared>,
}

impl Prefetch {
    fn new(count: u16, shared: &Arc<ConsumerShared>) -> Self {
        if count > 0 {
            shared.handles.prefetch.increment(f64::from(count));
        }
        Self {
            count,
            shared: Arc::clone(shared),
        }
    }
}

impl Prefetch {
    /// Lowers the recorded prefetch to `limit` (the runner's concurrency): deliveries beyond it wait in lapin's
    /// buffer, where they are not counted as unsettled.
    fn cap(&mut self, limit: usize) {
        let capped = u16::try_from(limit).unwrap_or(u16::MAX).min(self.count);
        if capped < self.count {
            self.shared
                .handles
                .prefetch
                .decrement(f64::from(self.count - capped));
            self.count = capped;
        }
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        if self.count > 0 {
            self.shared
                .handles
                .prefetch
                .decrement(f64::from(self.count));
        }
    }
}

/// Configures a [`TracedConsumer`]; from [`TracedConsumer::builder`].
#[derive(Debug)]
pub struct TracedConsumerBuilder {
    consumer: Consumer,
    tracer: Option<BoxedTracer>,
    propagation: Propagation,
    server: Option<(Cow<'static, str>, u16)>,
    prefetch: u16,
}

impl TracedConsumerBuilder {
    /// The prefetch (`basic_qos` count) of the consumer's channel, as set with lapin: added to
    /// `orderscope_consumer_prefetch` while the consumer lives, so `messaging_unsettled_messages` ÷
    /// `orderscope_consumer_prefetch` is the consumers' saturation (1 = the broker sends no more until one is
    /// settled). Defaults to 0: not recorded (lapin does not tell a consumer its channel's prefetch).
    /// [`run_reconnecting`](crate::run_reconnecting) records the prefetch of its [`Consume`](crate::Consume).
    ///
    /// A delivery counts as unsettled from when the consumer yields it until its ack, nack or reject is sent.
    /// [`run`](crate::run) takes at most [`RunOptions::concurrency`](crate::RunOptions::concurrency) deliveries
    /// at once (the rest wait in lapin's buffer, uncounted), so under `run` the recorded prefetch is capped at
    /// the concurrency: saturation 1 means every handler slot is busy.
    #[must_use]
    pub fn prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = prefetch;
        self
    }

    /// The tracer spans are created with. Defaults to the global provider's `orderscope-amqp` tracer,
    /// looked up when spans start until a provider is installed.
    #[must_use]
    pub fn tracer(mut self, tracer: BoxedTracer) -> Self {
        self.tracer = Some(tracer);
        self
    }

    /// How incoming trace headers and baggage are trusted. Defaults to [`Propagation::trusted`]: a queue is
    /// internal. With [`Propagation::untrusted`] the process span is always a new root, linked to the
    /// producer's span.
    #[must_use]
    pub fn propagation(mut self, propagation: Propagation) -> Self {
        self.propagation = propagation;
        self
    }

    /// The broker's host and port, recorded as `server.address` and `server.port`. Defaults to not recorded.
    #[must_use]
    pub fn server(mut self, address: impl Into<Cow<'static, str>>, port: u16) -> Self {
        self.server = Some((address.into(), port));
        self
    }

    /// Builds the consumer wrapper and registers its metric handles.
    #[must_use]
    pub fn build(self) -> TracedConsumer {
        let config = ConsumerConfig {
            tracer: Arc::new(
                self.tracer
                    .map_or_else(crate::publish::default_tracer, LateTracer::fixed),
            ),
            propagation: self.propagation,
            server: self.server,
        };
        TracedConsumer::with_config(self.consumer, config, self.prefetch)
    }
}

impl TracedConsumer {
    /// Wraps a consumer with the default configuration (see [`TracedConsumerBuilder`]).
    ///
    /// The consumer must not use `no_ack`: deliveries are settled through [`TracedDelivery`].
    #[must_use]
    pub fn new(consumer: Consumer) -> Self {
        Self::builder(consumer).build()
    }

    /// Starts configuring a wrapper for `consumer`.
    #[must_use]
    pub fn builder(consumer: Consumer) -> TracedConsumerBuilder {
        TracedConsumerBuilder {
            consumer,
            tracer: None,
            propagation: Propagation::trusted(),
            server: None,
            prefetch: 0,
        }
    }

    pub(crate) fn with_config(consumer: Consumer, config: ConsumerConfig, prefetch: u16) -> Self {
        let queue = consumer.queue();
        let shared = ConsumerShared {
            span_name: crate::instruments::span_name(format!("process {queue}")),
            handles: ConsumeHandles::new(queue.as_str()),
            queue,
            config,
        };
        let shared = Arc::new(shared);
        Self {
            inner: consumer,
            prefetch: Prefetch::new(prefetch, &shared),
            shared,
            route: SeenRoutes::default(),
        }
    }

    /// Caps the recorded prefetch at the runner's concurrency (see [`Prefetch::cap`]).
    pub(crate) fn cap_prefetch(&mut self, concurrency: usize) {
        self.prefetch.cap(concurrency);
    }

    /// The queue this consumer reads.
    #[must_use]
    pub fn queue(&self) -> &str {
        self.shared.queue.as_str()
    }

    /// The wrapped consumer.
    #[must_use]
    pub fn get_ref(&self) -> &Consumer {
        &self.inner
    }
}

impl Stream for TracedConsumer {
    type Item = Result<TracedDelivery, lapin::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        match this.inner.poll_next(cx) {
            Poll::Ready(Some(Ok(delivery))) => Poll::Ready(Some(Ok(TracedDelivery::new(
                delivery,
                this.shared,
                this.route,
            )))),
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A received message: payload, properties and the trace context of its `process` span.
///
/// [`TracedDelivery`] dereferences to it; the [`run`](crate::run) runner hands it to the handler.
#[derive(Debug)]
pub struct Message {
    pub(crate) delivery_tag: u64,
    pub(crate) exchange: ShortString,
    pub(crate) routing_key: ShortString,
    pub(crate) redelivered: bool,
    pub(crate) attempt: Attempt,
    pub(crate) properties: BasicProperties,
    pub(crate) data: Vec<u8>,
    pub(crate) cx: Context,
    pub(crate) shared: Arc<ConsumerShared>,
}

impl Message {
    /// The payload.
    #[must_use]
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Takes the payload out, leaving it empty.
    pub fn take_data(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.data)
    }

    /// The message properties.
    #[must_use]
    pub fn properties(&self) -> &BasicProperties {
        &self.properties
    }

    /// The message headers, if any.
    #[must_use]
    pub fn headers(&self) -> Option<&FieldTable> {
        self.properties.headers().as_ref()
    }

    /// The exchange the message was published to (empty for the default exchange).
    #[must_use]
    pub fn exchange(&self) -> &str {
        self.exchange.as_str()
    }

    /// The routing key the message was published with.
    #[must_use]
    pub fn routing_key(&self) -> &str {
        self.routing_key.as_str()
    }

    /// The queue the message was consumed from.
    #[must_use]
    pub fn queue(&self) -> &str {
        self.shared.queue.as_str()
    }

    /// The delivery tag on the consuming channel.
    #[must_use]
    pub fn delivery_tag(&self) -> u64 {
        self.delivery_tag
    }

    /// Whether the broker marked this delivery as redelivered.
    #[must_use]
    pub fn redelivered(&self) -> bool {
        self.redelivered
    }

    /// How many times the message was attempted before this delivery, when that is counted precisely: the
    /// SDK's [`ATTEMPT_HEADER`](crate::ATTEMPT_HEADER) on a retry it republished, `x-delivery-count` (quorum
    /// queues count every requeue), and this queue's own `x-death` entries (a dead-letter loop back to it;
    /// other queues' entries are not counted). `None` when only the [`redelivered`](Self::redelivered) flag is
    /// known (a requeue on a classic queue).
    #[must_use]
    pub fn delivery_count(&self) -> Option<u32> {
        self.attempt.before()
    }

    /// This delivery's attempt number, from 1: one more than [`delivery_count`](Self::delivery_count), and at
    /// least 2 when the message is [`redelivered`](Self::redelivered). Recorded on the `process` span as
    /// `orderscope.attempt`.
    #[must_use]
    pub fn attempt(&self) -> u32 {
        self.attempt.number
    }

    /// `true` if this is not the message's first attempt.
    #[must_use]
    pub fn is_retry(&self) -> bool {
        self.attempt.number > 1
    }

    /// The context of the `process` span: the span itself, the baggage and the [`OrderContext`] of the
    /// message. Parent further spans on it, or attach it with [`scope`](Self::scope).
    #[must_use]
    pub fn context(&self) -> &Context {
        &self.cx
    }

    /// The order the message belongs to, read from its `baggage` header.
    #[must_use]
    pub fn order(&self) -> Option<&OrderContext> {
        self.cx.get::<OrderContext>()
    }

    /// Runs `future` with this message's [`context`](Self::context) attached on every poll, so
    /// `OrderContext::current()`, log lines and child spans see the order and the `process` span.
    pub fn scope<F>(&self, future: F) -> WithContext<F> {
        future.with_context(self.cx.clone())
    }
}

/// A message received through a [`TracedConsumer`], to be settled exactly once with
/// [`ack`](Self::ack), [`nack`](Self::nack) or [`reject`](Self::reject).
///
/// Dereferences to [`Message`]. Dropping a delivery without settling it is a bug: it is logged at error
/// level, counted in `messaging_process_duration_seconds` with `outcome="nack_requeue"` and
/// `error_type="dropped"`, and — inside a Tokio runtime — nacked with requeue so the broker redelivers it
/// (otherwise the broker redelivers it when the channel closes).
///
/// # Settling
///
/// Settle with [`ack`](TracedDelivery::ack), [`nack`](TracedDelivery::nack) or
/// [`reject`](TracedDelivery::reject) — exactly once, since each consumes the delivery.
///
/// The outcome is recorded on the `process {queue}` span (attribute `orderscope.outcome`; no separate
/// `ack {queue}` CLIENT span, which would double the span volume for no extra information), which then ends,
/// and in `messaging_process_duration_seconds` (time from receipt to settle) with `outcome` one of `ack`,
/// `nack_requeue`, `nack_dead_letter`, `reject`, `panic` and, on failure, `error_type` one of
/// `handler_error`, `panic`, `settle_failed`, `channel_closed`, `dropped`. The settle call itself is timed in
/// `messaging_client_operation_duration_seconds` (`messaging_operation_name` = `ack`, `nack`, `reject`).
///
/// A settle that lapin answers with `Ok(false)` — the channel was closed, so the broker will redeliver the
/// message and the work will be done twice — is returned as [`SettleError::ChannelClosed`](crate::SettleError::ChannelClosed), logged and
/// counted with `error_type="channel_closed"`; it is never swallowed.
///
/// # Example
///
/// ```no_run
/// use orderscope_amqp::{TracedDelivery, SettleError};
///
/// async fn handle(delivery: TracedDelivery) -> Result<(), SettleError> {
///     if delivery.data().is_empty() {
///         // Dead-letter it (or drop it, when the queue has no dead-letter exchange).
///         return delivery.nack(false).await;
///     }
///     delivery.ack().await
/// }
/// ```
#[derive(Debug)]
pub struct TracedDelivery {
    pub(crate) message: Message,
    pub(crate) pending: Pending,
}

impl std::ops::Deref for TracedDelivery {
    type Target = Message;

    fn deref(&self) -> &Message {
        &self.message
    }
}

impl std::ops::DerefMut for TracedDelivery {
    fn deref_mut(&mut self) -> &mut Message {
        &mut self.message
    }
}

impl TracedDelivery {
    fn new(delivery: Delivery, shared: &Arc<ConsumerShared>, route: &mut SeenRoutes) -> Self {
        let received = Instant::now();
        let handles = &shared.handles;
        handles.consumed.increment(1);
        handles.unsettled.increment(1.0);

        let Delivery {
            delivery_tag,
            exchange,
            routing_key,
            redelivered,
            properties,
            data,
            acker,
        } = delivery;
        let headers = properties.headers().as_ref();

        let extracted = headers.map(|h| shared.config.propagation.extract_amqp(h));
        let remote = extracted.as_ref().and_then(|e| e.remote()).cloned();
        let attempt = Attempt::read(headers, shared.queue.as_str(), redelivered);
        if attempt.number > 1 {
            handles.redelivered.increment(1);
        }
        if remote.is_none() {
            handles.untraced.increment(1);
        }
        if let Some(latency) = queue_latency(&properties) {
            handles.latency.record(latency);
        }

        // Every attempt — first delivery, requeue, delayed retry, redelivery after a reconnect, dead-letter
        // consumer — is a child of the publish span: one trace per message, whatever happened to it.
        let parent = match extracted {
            Some(extracted) => extracted.into_context(),
            None => Context::new(),
        };
        let mut attributes = Vec::with_capacity(12);
        attributes.push(KeyValue::new("messaging.system", "rabbitmq"));
        attributes.push(KeyValue::new("messaging.operation.name", "process"));
        attributes.push(KeyValue::new("messaging.operation.type", "process"));
        let route = route.get(
            exchange.as_str(),
            routing_key.as_str(),
            shared.queue.as_str(),
        );
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
        if let Some(id) = properties.message_id() {
            attributes.push(KeyValue::new(
                "messaging.message.id",
                id.as_str().to_owned(),
            ));
        }
        attributes.push(KeyValue::new(
            "messaging.rabbitmq.message.delivery_tag",
            i64::try_from(delivery_tag).unwrap_or(i64::MAX),
        ));
        attributes.push(KeyValue::new(
            "messaging.message.body.size",
            i64::try_from(data.len()).unwrap_or(i64::MAX),
        ));
        if let Some(id) = properties.correlation_id() {
            attributes.push(KeyValue::new(
                "messaging.message.conversation_id",
                id.as_str().to_owned(),
            ));
        }
        attributes.push(KeyValue::new(ATTEMPT_ATTRIBUTE, i64::from(attempt.number)));
        if let Some((address, port)) = &shared.config.server {
            attributes.push(KeyValue::new("server.address", address.clone()));
            attributes.push(KeyValue::new("server.port", i64::from(*port)));
        }
        let mut builder = SpanBuilder::from_name(shared.span_name.clone())
            .with_kind(SpanKind::Consumer)
            .with_attributes(attributes);
        let previous = headers.and_then(previous_attempt);
        if remote.is_some() || previous.is_some() {
            let mut links = Vec::with_capacity(2);
            links.extend(remote.map(Link::with_context));
            links.extend(previous.map(Link::with_context));
            builder = builder.with_links(links);
        }
        let cx = orderscope_context::Operation::in_context(
            shared.config.tracer.start(builder, &parent),
            shared.span_name.clone(),
        );

        Self {
            message: Message {
                delivery_tag,
                exchange,
                routing_key,
                redelivered,
                attempt,
                properties,
                data,
                cx: cx.clone(),
                shared: Arc::clone(shared),
            },
            pending: Pending::new(acker, cx, received, Arc::clone(shared)),
        }
    }

    /// Splits off the settle state, for the runner.
    pub(crate) fn into_parts(self) -> (Message, Pending) {
        (self.message, self.pending)
    }
}

/// The span context of the previous attempt's `process` span, from [`PREVIOUS_ATTEMPT_HEADER`].
fn previous_attempt(headers: &FieldTable) -> Option<SpanContext> {
    let bytes = match headers.inner().get(PREVIOUS_ATTEMPT_HEADER)? {
        AMQPValue::LongString(s) => s.as_bytes(),
        AMQPValue::ByteArray(b) => b.as_slice(),
        _ => return None,
    };
    let mut parts = std::str::from_utf8(bytes).ok()?.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != "00" || trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let cx = SpanContext::new(
        TraceId::from_hex(trace).ok()?,
        SpanId::from_hex(span).ok()?,
        TraceFlags::new(flags & 1),
        true,
        TraceState::NONE,
    );
    cx.is_valid().then_some(cx)
}

/// Seconds between publish (`x-published-at-ms`, else the `timestamp` property) and now; `None` when the
/// message carries neither, or the publisher's clock is ahead.
fn queue_latency(properties: &BasicProperties) -> Option<f64> {
    let published_ms = properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(PUBLISHED_AT_MS_HEADER))
        .and_then(as_u64)
        .or_else(|| properties.timestamp().map(|s| s.saturating_mul(1000)))?;
    let now_ms = u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()?
            .as_millis(),
    )
    .ok()?;
    let ms = now_ms.checked_sub(published_ms)?;
    #[allow(clippy::cast_precision_loss)]
    Some(ms as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::LongString;

    #[test]
    fn previous_attempt_reads_a_traceparent() {
        let mut h = FieldTable::default();
        h.insert(
            PREVIOUS_ATTEMPT_HEADER.into(),
            AMQPValue::LongString(LongString::from(
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            )),
        );
        let cx = previous_attempt(&h).unwrap();
        assert_eq!(cx.span_id(), SpanId::from_hex("b7ad6b7169203331").unwrap());
        assert!(cx.is_sampled());
        for bad in [
            "",
            "00-0af7-b7ad-01",
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ] {
            h.insert(
                PREVIOUS_ATTEMPT_HEADER.into(),
                AMQPValue::LongString(LongString::from(bad)),
            );
            assert!(previous_attempt(&h).is_none(), "{bad}");
        }
        h.insert(PREVIOUS_ATTEMPT_HEADER.into(), AMQPValue::Boolean(true));
        assert!(previous_attempt(&h).is_none());
    }

    #[test]
    fn the_last_route_is_built_once_and_rebuilt_when_it_changes() {
        use opentelemetry::StringValue;

        fn attributes(route: &Route) -> (&str, Option<&str>) {
            (
                route.destination.as_str(),
                route.routing_key_attribute().map(StringValue::as_str),
            )
        }
        let mut last = SeenRoutes::default();
        let a = last.get("orders", "order.created", "billing");
        assert_eq!(
            attributes(a),
            ("orders:order.created:billing", Some("order.created"))
        );
        let a = std::ptr::from_ref(a.destination.as_str());
        let b = last.get("orders", "order.created", "billing");
        assert!(
            std::ptr::eq(a, b.destination.as_str()),
            "built again for the same route"
        );

        let c = last.get("orders", "order.paid", "billing");
        assert_eq!(
            attributes(c),
            ("orders:order.paid:billing", Some("order.paid"))
        );
        // A key seen before is not built again, whatever came between.
        let again = last.get("orders", "order.created", "billing");
        assert!(
            std::ptr::eq(a, again.destination.as_str()),
            "built again after another route"
        );
        // The default exchange: the routing key is the queue, named once.
        let d = last.get("", "billing", "billing");
        assert_eq!(attributes(d), ("billing", Some("billing")));
        let e = last.get("fanout", "", "billing");
        assert_eq!(attributes(e), ("fanout:billing", None));
    }

    #[test]
    fn latency_from_header_then_timestamp() {
        let now_ms = u64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap();
        let mut h = FieldTable::default();
        h.insert(
            PUBLISHED_AT_MS_HEADER.into(),
            AMQPValue::LongLongInt(i64::try_from(now_ms - 1500).unwrap()),
        );
        let p = BasicProperties::default().with_headers(h);
        let l = queue_latency(&p).unwrap();
        assert!((1.4..10.0).contains(&l), "{l}");

        let p = BasicProperties::default().with_timestamp(now_ms / 1000 - 2);
        let l = queue_latency(&p).unwrap();
        assert!((1.0..10.0).contains(&l), "{l}");

        let p = BasicProperties::default().with_timestamp(now_ms / 1000 + 100);
        assert_eq!(queue_latency(&p), None);
        assert_eq!(queue_latency(&BasicProperties::default()), None);
    }
}
