//! Metric names and pre-registered metric handles.
//!
//! Series keys are built once per destination (exchange or queue) and their handles kept in orderscope-metrics'
//! [`KeyedHandle`]s, bound to the recorder current when they record: a channel or consumer built before
//! `orderscope::init` records into the recorder installed later. Under the global recorder the per-message cost
//! is a handle operation and a recorder check, never a key lookup in the recorder. The set of destinations one publisher records is bounded:
//! beyond [`crate::TracedChannelBuilder::max_destinations`] every further exchange shares the
//! `messaging_destination_name="_overflow"` series, and every measurement recorded there also counts in
//! `orderscope_cardinality_overflow_total{metric}`.
//!
//! [`PublishCache`] bundles the series of an exchange with its span name; its overflow entry keeps the other
//! labels (`outcome`, `error_type`) real, with only the destination folded. Its limit is a [`SeriesLimit`] and its
//! counting the shared [`Overflow`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use metrics::{Counter, Gauge, Histogram, Key, Label};
use opentelemetry::StringValue;
use orderscope_metrics::{KeyedHandle, MetricHandle, Overflow, SeriesLimit};

use orderscope_metrics::catalogue::labels::{
    ERROR_TYPE, MESSAGING_DESTINATION_NAME, MESSAGING_OPERATION_NAME, MESSAGING_SYSTEM, OUTCOME,
};
pub(crate) use orderscope_metrics::catalogue::{
    CONSUMER_PREFETCH, MESSAGING_CLIENT_CONSUMED_MESSAGES as CONSUMED_MESSAGES,
    MESSAGING_CLIENT_OPERATION_DURATION as OPERATION_DURATION,
    MESSAGING_CLIENT_SENT_MESSAGES as SENT_MESSAGES,
    MESSAGING_PROCESS_DURATION as PROCESS_DURATION, MESSAGING_QUEUE_LATENCY as QUEUE_LATENCY,
    MESSAGING_REDELIVERED_MESSAGES as REDELIVERED_MESSAGES,
    MESSAGING_UNSETTLED_MESSAGES as UNSETTLED_MESSAGES,
    MESSAGING_UNTRACED_MESSAGES as UNTRACED_MESSAGES,
};

pub(crate) const SYSTEM: &str = "rabbitmq";
pub(crate) use orderscope_metrics::catalogue::values::OVERFLOW;

/// The label value used for a destination: server-named queues (`amq.gen-…`) share one series, the default
/// exchange is `amq.default`.
pub(crate) fn destination_label(name: &str) -> String {
    if name.is_empty() {
        "amq.default".to_owned()
    } else if name.starts_with("amq.gen-") {
        "amq.gen".to_owned()
    } else {
        name.to_owned()
    }
}

fn labels(destination: &str, extra: &[(&'static str, &'static str)]) -> Vec<Label> {
    let mut labels = Vec::with_capacity(2 + extra.len());
    labels.push(Label::from_static_parts(MESSAGING_SYSTEM, SYSTEM));
    labels.push(Label::new(
        MESSAGING_DESTINATION_NAME,
        destination.to_owned(),
    ));
    for (k, v) in extra {
        labels.push(Label::from_static_parts(k, v));
    }
    labels
}

/// A span name (`publish {exchange}`, `process {queue}`) that spans and the
/// [`Operation`](orderscope_context::Operation) take without a copy: kept once per distinct name for the life of
/// the process through [`orderscope_context::intern`] (bounded; server-named queues, `amq.gen-…`, are not kept),
/// so a publisher or consumer built again after a reconnection reuses it. Called when a publisher's exchange or
/// a consumer is first seen, never per message.
pub(crate) fn span_name(name: String) -> Cow<'static, str> {
    if name.contains("amq.gen-") {
        return Cow::Owned(name);
    }
    match orderscope_context::intern(name.as_str()) {
        Some(kept) => Cow::Borrowed(kept),
        None => Cow::Owned(name),
    }
}

/// A series whose key is built on first use (so it appears only once it records).
struct Lazy<T> {
    cell: OnceLock<KeyedHandle<T>>,
}

impl<T: MetricHandle> Lazy<T> {
    const fn new() -> Self {
        Self {
            cell: OnceLock::new(),
        }
    }

    fn get(&self, key: impl FnOnce() -> Key) -> &KeyedHandle<T> {
        self.cell.get_or_init(|| KeyedHandle::new(key()))
    }
}

/// The outcome of a publish, as it appears in the `outcome` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SentOutcome {
    Ack,
    Nack,
    Returned(&'static str),
    Timeout,
    ChannelClosed,
    /// Written on a channel without publisher confirms: nothing is known about the message's fate.
    Unconfirmed,
}

impl SentOutcome {
    pub(crate) fn outcome(self) -> &'static str {
        match self {
            Self::Ack => "ack",
            Self::Nack => "nack",
            Self::Returned(_) => "returned",
            Self::Timeout => "timeout",
            Self::ChannelClosed => "channel_closed",
            Self::Unconfirmed => "unconfirmed",
        }
    }

    pub(crate) fn error_type(self) -> Option<&'static str> {
        match self {
            Self::Ack | Self::Unconfirmed => None,
            Self::Nack => Some("nack"),
            Self::Returned(reason) => Some(reason),
            Self::Timeout => Some("timeout"),
            Self::ChannelClosed => Some("channel_closed"),
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Ack => 0,
            Self::Nack => 1,
            Self::Returned("no_route") => 2,
            Self::Returned("no_consumers") => 3,
            Self::Returned(_) => 4,
            Self::Timeout => 5,
            Self::ChannelClosed => 6,
            Self::Unconfirmed => 7,
        }
    }
}

const SENT_SLOTS: usize = 8;

/// The span name and destination attribute of publishes to one exchange, built once.
#[derive(Debug)]
pub(crate) struct SpanNames {
    pub(crate) span_name: Cow<'static, str>,
    pub(crate) destination: StringValue,
}

impl SpanNames {
    pub(crate) fn new(exchange: &str) -> Self {
        let mut names = Self::transient(exchange);
        names.span_name = span_name(names.span_name.into_owned());
        names
    }

    /// The names of one publish to an exchange past the destination limit: built for it, not kept.
    pub(crate) fn transient(exchange: &str) -> Self {
        let destination = if exchange.is_empty() {
            "amq.default"
        } else {
            exchange
        };
        Self {
            span_name: Cow::Owned(format!("publish {destination}")),
            destination: StringValue::from(Arc::<str>::from(destination)),
        }
    }
}

/// Most routing keys per exchange whose span attributes are kept.
pub(crate) const MAX_ROUTES: usize = 16;

/// `messaging.destination.name` and `messaging.rabbitmq.destination.routing_key` of the messages with one
/// exchange and routing key: shared strings, so a span clones reference counts instead of building them.
#[derive(Debug)]
pub(crate) struct Route {
    /// `messaging.destination.name`, see [`publish_destination`] and [`consume_destination`].
    pub(crate) destination: StringValue,
    /// The routing key, and `messaging.rabbitmq.destination.routing_key` when not empty.
    routing_key: StringValue,
}

impl Route {
    /// The attributes of a publish.
    pub(crate) fn new(exchange: &str, routing_key: &str) -> Self {
        Self::with_destination(publish_destination(exchange, routing_key), routing_key)
    }

    /// The attributes of a delivery consumed from `queue`.
    pub(crate) fn consumed(exchange: &str, routing_key: &str, queue: &str) -> Self {
        Self::with_destination(
            consume_destination(exchange, routing_key, queue),
            routing_key,
        )
    }

    fn with_destination(destination: String, routing_key: &str) -> Self {
        let key = StringValue::from(Arc::<str>::from(routing_key));
        // The default exchange: the destination is the routing key (the queue), kept once.
        let destination = if destination == routing_key {
            key.clone()
        } else {
            StringValue::from(Arc::<str>::from(destination))
        };
        Self {
            destination,
            routing_key: key,
        }
    }

    /// The routing key these attributes are for.
    pub(crate) fn routing_key(&self) -> &str {
        self.routing_key.as_str()
    }

    /// `messaging.rabbitmq.destination.routing_key`; `None` for an empty routing key.
    pub(crate) fn routing_key_attribute(&self) -> Option<&StringValue> {
        (!self.routing_key.as_str().is_empty()).then_some(&self.routing_key)
    }
}

/// The [`Route`]s of one exchange, filled once per routing key and read without a lock.
#[derive(Debug, Default)]
struct Routes([OnceLock<Route>; MAX_ROUTES]);

impl Routes {
    fn get(&self, exchange: &str, routing_key: &str) -> Option<&Route> {
        for slot in &self.0 {
            // An empty slot takes this routing key; one another publish filled first with another key
            // is passed over like any other.
            let route = slot.get_or_init(|| Route::new(exchange, routing_key));
            if route.routing_key() == routing_key {
                return Some(route);
            }
        }
        None
    }
}

/// `messaging.destination.name` of a publish, per the RabbitMQ conventions: `{exchange}:{routing key}`, or the
/// one that is not empty, or `amq.default`.
pub(crate) fn publish_destination(exchange: &str, routing_key: &str) -> String {
    match (exchange.is_empty(), routing_key.is_empty()) {
        (false, false) => format!("{exchange}:{routing_key}"),
        (false, true) => exchange.to_owned(),
        (true, false) => routing_key.to_owned(),
        (true, true) => "amq.default".to_owned(),
    }
}

/// `messaging.destination.name` of a delivery: `{exchange}:{routing key}:{queue}`, empty parts left out, and the
/// routing key alone when it equals the queue.
pub(crate) fn consume_destination(exchange: &str, routing_key: &str, queue: &str) -> String {
    let mut name = String::with_capacity(exchange.len() + routing_key.len() + queue.len() + 2);
    for part in [exchange, routing_key] {
        if !part.is_empty() {
            if !name.is_empty() {
                name.push(':');
            }
            name.push_str(part);
        }
    }
    if !queue.is_empty() && queue != routing_key {
        if !name.is_empty() {
            name.push(':');
        }
        name.push_str(queue);
    }
    name
}

/// Handles for one exchange.
pub(crate) struct PublishHandles {
    destination: String,
    /// Span name and `messaging.destination.name` value for this exchange; `None` for the overflow entry, which
    /// several exchanges share.
    pub(crate) names: Option<SpanNames>,
    /// The span attributes of this exchange's routing keys (unused on the overflow entry).
    routes: Routes,
    sent: [Lazy<Counter>; SENT_SLOTS],
    duration: [Lazy<Histogram>; SENT_SLOTS],
    /// Publishes on a channel without confirms: the duration without an error type.
    duration_unconfirmed: Lazy<Histogram>,
    /// Set on the overflow entry: counts its measurements in `orderscope_cardinality_overflow_total`.
    overflow: Option<Box<OverflowCounts>>,
}

/// The overflow counting of the two publish metrics.
#[derive(Default)]
struct OverflowCounts {
    sent: Overflow<Counter>,
    duration: Overflow<Histogram>,
}

impl std::fmt::Debug for PublishHandles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishHandles")
            .field("destination", &self.destination)
            .finish_non_exhaustive()
    }
}

impl PublishHandles {
    fn new(destination: String, names: Option<SpanNames>) -> Self {
        Self {
            destination,
            overflow: names.is_none().then(Box::default),
            names,
            routes: Routes::default(),
            sent: [const { Lazy::new() }; SENT_SLOTS],
            duration: [const { Lazy::new() }; SENT_SLOTS],
            duration_unconfirmed: Lazy::new(),
        }
    }

    /// The span attributes of publishes to this exchange with `routing_key`: kept for the first
    /// [`MAX_ROUTES`] routing keys, `None` for further ones. Only for an exchange's own entry (with `names`).
    pub(crate) fn route(&self, exchange: &str, routing_key: &str) -> Option<&Route> {
        self.routes.get(exchange, routing_key)
    }

    pub(crate) fn record(&self, outcome: SentOutcome, seconds: f64) {
        let i = outcome.index();
        let error_type = outcome.error_type();
        if let Some(overflow) = &self.overflow {
            overflow.sent.count(SENT_MESSAGES);
            overflow.duration.count(OPERATION_DURATION);
        }
        self.sent[i]
            .get(|| {
                let mut extra = vec![(OUTCOME, outcome.outcome())];
                if let Some(e) = error_type {
                    extra.push((ERROR_TYPE, e));
                }
                Key::from_parts(SENT_MESSAGES, labels(&self.destination, &extra))
            })
            .increment(1);
        self.duration[i]
            .get(|| {
                let mut extra = vec![(MESSAGING_OPERATION_NAME, "publish")];
                if let Some(e) = error_type {
                    extra.push((ERROR_TYPE, e));
                }
                Key::from_parts(OPERATION_DURATION, labels(&self.destination, &extra))
            })
            .record(seconds);
    }

    pub(crate) fn record_unconfirmed(&self, seconds: f64) {
        let i = SentOutcome::Unconfirmed.index();
        if let Some(overflow) = &self.overflow {
            overflow.sent.count(SENT_MESSAGES);
            overflow.duration.count(OPERATION_DURATION);
        }
        self.sent[i]
            .get(|| {
                Key::from_parts(
                    SENT_MESSAGES,
                    labels(&self.destination, &[(OUTCOME, "unconfirmed")]),
                )
            })
            .increment(1);
        self.duration_unconfirmed
            .get(|| {
                Key::from_parts(
                    OPERATION_DURATION,
                    labels(&self.destination, &[(MESSAGING_OPERATION_NAME, "publish")]),
                )
            })
            .record(seconds);
    }
}

/// The handles of one publish: borrowed from the cache for its first exchange, shared for the others.
pub(crate) enum Handles<'a> {
    First(&'a PublishHandles),
    Other(Arc<PublishHandles>),
}

impl std::ops::Deref for Handles<'_> {
    type Target = PublishHandles;

    fn deref(&self) -> &PublishHandles {
        match self {
            Self::First(handles) => handles,
            Self::Other(handles) => handles,
        }
    }
}

/// A bounded per-exchange cache of [`PublishHandles`].
pub(crate) struct PublishCache {
    max: SeriesLimit,
    /// The first exchange published to, read without the lock: most channels publish to one exchange.
    first: OnceLock<(Box<str>, Arc<PublishHandles>)>,
    map: Mutex<HashMap<String, Arc<PublishHandles>>>,
    overflow: OnceLock<Arc<PublishHandles>>,
}

impl std::fmt::Debug for PublishCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishCache")
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl PublishCache {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max: SeriesLimit::new(max),
            first: OnceLock::new(),
            map: Mutex::new(HashMap::new()),
            overflow: OnceLock::new(),
        }
    }

    pub(crate) fn get(&self, exchange: &str) -> Handles<'_> {
        if let Some((name, handles)) = self.first.get()
            && **name == *exchange
        {
            return Handles::First(handles);
        }
        let handles = self.lookup(exchange);
        let (name, first) = self
            .first
            .get_or_init(|| (Box::from(exchange), Arc::clone(&handles)));
        if **name == *exchange {
            return Handles::First(first);
        }
        Handles::Other(handles)
    }

    fn lookup(&self, exchange: &str) -> Arc<PublishHandles> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = map.get(exchange) {
            return Arc::clone(h);
        }
        if map.len() >= self.max.get() {
            drop(map);
            return Arc::clone(
                self.overflow
                    .get_or_init(|| Arc::new(PublishHandles::new(OVERFLOW.to_owned(), None))),
            );
        }
        let handles = Arc::new(PublishHandles::new(
            destination_label(exchange),
            Some(SpanNames::new(exchange)),
        ));
        map.insert(exchange.to_owned(), Arc::clone(&handles));
        handles
    }
}

/// The settle outcome of a delivery, as it appears in the `outcome` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SettleOutcome {
    /// Acknowledged.
    Ack,
    /// Negatively acknowledged and requeued.
    NackRequeue,
    /// Negatively acknowledged without requeue: dead-lettered when the queue has a DLX, dropped otherwise.
    NackDeadLetter,
    /// Rejected (with or without requeue).
    Reject,
    /// The handler panicked; the message was nacked according to the retry policy. No longer recorded by
    /// [`run`](crate::run), which records where the message went (the outcome) and `error_type="panic"`.
    Panic,
    /// Republished to a delay queue for a later attempt, then acked.
    Retry,
    /// Republished to the dead-letter queue after the last attempt, then acked.
    DeadLetter,
    /// Nacked without requeue on a queue without a dead-letter route: the message is gone.
    Discarded,
}

impl SettleOutcome {
    /// The label value: `ack`, `nack_requeue`, `nack_dead_letter`, `reject`, `panic`, `retry`, `dead_letter`
    /// or `discarded`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ack => "ack",
            Self::NackRequeue => "nack_requeue",
            Self::NackDeadLetter => "nack_dead_letter",
            Self::Reject => "reject",
            Self::Panic => "panic",
            Self::Retry => "retry",
            Self::DeadLetter => "dead_letter",
            Self::Discarded => "discarded",
        }
    }

    /// Whether the message ended in a dead-letter queue (`nack_dead_letter`, `dead_letter`).
    #[must_use]
    pub fn is_dead_lettered(self) -> bool {
        matches!(self, Self::NackDeadLetter | Self::DeadLetter)
    }

    fn index(self) -> usize {
        match self {
            Self::Ack => 0,
            Self::NackRequeue => 1,
            Self::NackDeadLetter => 2,
            Self::Reject => 3,
            Self::Panic => 4,
            Self::Retry => 5,
            Self::DeadLetter => 6,
            Self::Discarded => 7,
        }
    }
}

impl std::fmt::Display for SettleOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

const SETTLE_SLOTS: usize = 8;
/// `error_type` values on the process duration, per outcome: none, or one of these.
pub(crate) const PROCESS_ERROR_TYPES: [&str; 6] = [
    "handler_error",
    "panic",
    "settle_failed",
    "channel_closed",
    "dropped",
    "republish_failed",
];

/// Handles for one queue, resolved when the consumer is wrapped.
pub(crate) struct ConsumeHandles {
    destination: String,
    pub(crate) consumed: KeyedHandle<Counter>,
    pub(crate) redelivered: KeyedHandle<Counter>,
    pub(crate) untraced: KeyedHandle<Counter>,
    pub(crate) unsettled: KeyedHandle<Gauge>,
    /// The consumers' prefetch, added when one is wrapped and taken off when it is dropped.
    pub(crate) prefetch: KeyedHandle<Gauge>,
    pub(crate) latency: KeyedHandle<Histogram>,
    /// `[outcome][0 = no error_type, 1.. = PROCESS_ERROR_TYPES]`.
    process: [[Lazy<Histogram>; 1 + PROCESS_ERROR_TYPES.len()]; SETTLE_SLOTS],
    settle_duration: [[Lazy<Histogram>; 2]; 3],
}

impl std::fmt::Debug for ConsumeHandles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumeHandles")
            .field("destination", &self.destination)
            .finish_non_exhaustive()
    }
}

impl ConsumeHandles {
    pub(crate) fn new(queue: &str) -> Self {
        let destination = destination_label(queue);
        let base = labels(&destination, &[]);
        Self {
            consumed: KeyedHandle::new(Key::from_parts(CONSUMED_MESSAGES, base.clone())),
            redelivered: KeyedHandle::new(Key::from_parts(REDELIVERED_MESSAGES, base.clone())),
            untraced: KeyedHandle::new(Key::from_parts(UNTRACED_MESSAGES, base.clone())),
            unsettled: KeyedHandle::new(Key::from_parts(UNSETTLED_MESSAGES, base.clone())),
            prefetch: KeyedHandle::new(Key::from_parts(CONSUMER_PREFETCH, base.clone())),
            latency: KeyedHandle::new(Key::from_parts(QUEUE_LATENCY, base)),
            process: [const { [const { Lazy::new() }; 1 + PROCESS_ERROR_TYPES.len()] };
                SETTLE_SLOTS],
            settle_duration: [const { [const { Lazy::new() }; 2] }; 3],
            destination,
        }
    }

    pub(crate) fn record_process(
        &self,
        outcome: SettleOutcome,
        error_type: Option<&'static str>,
        seconds: f64,
    ) {
        let slot = match error_type {
            None => 0,
            Some(e) => PROCESS_ERROR_TYPES
                .iter()
                .position(|known| *known == e)
                .map_or(0, |p| p + 1),
        };
        // Only the known error types have a slot; anything else is recorded without error_type.
        let error_type = if slot == 0 {
            None
        } else {
            Some(PROCESS_ERROR_TYPES[slot - 1])
        };
        self.process[outcome.index()][slot]
            .get(|| {
                let mut extra = vec![(OUTCOME, outcome.as_str())];
                if let Some(e) = error_type {
                    extra.push((ERROR_TYPE, e));
                }
                Key::from_parts(PROCESS_DURATION, labels(&self.destination, &extra))
            })
            .record(seconds);
    }

    /// The settle call itself (`ack`, `nack`, `reject`) in `messaging_client_operation_duration_seconds`.
    pub(crate) fn record_settle_call(&self, operation: &'static str, failed: bool, seconds: f64) {
        let op = match operation {
            "ack" => 0,
            "nack" => 1,
            _ => 2,
        };
        self.settle_duration[op][usize::from(failed)]
            .get(|| {
                let mut extra = vec![(MESSAGING_OPERATION_NAME, operation)];
                if failed {
                    extra.push((ERROR_TYPE, "settle_failed"));
                }
                Key::from_parts(OPERATION_DURATION, labels(&self.destination, &extra))
            })
            .record(seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attributes(route: &Route) -> (&str, Option<&str>) {
        (
            route.destination.as_str(),
            route.routing_key_attribute().map(StringValue::as_str),
        )
    }

    #[test]
    fn routes_name_the_destination_per_the_conventions() {
        assert_eq!(attributes(&Route::new("", "work")), ("work", Some("work")));
        assert_eq!(
            attributes(&Route::new("orders", "order.created")),
            ("orders:order.created", Some("order.created"))
        );
        assert_eq!(attributes(&Route::new("orders", "")), ("orders", None));
        assert_eq!(attributes(&Route::new("", "")), ("amq.default", None));
    }

    #[test]
    fn an_exchange_keeps_the_routes_of_its_first_routing_keys() {
        let handles = PublishHandles::new("orders".to_owned(), Some(SpanNames::new("orders")));
        let keys: Vec<String> = (0..=MAX_ROUTES).map(|i| format!("order.{i}")).collect();
        for key in &keys[..MAX_ROUTES] {
            let route = handles.route("orders", key).expect("kept");
            assert_eq!(
                attributes(route),
                (format!("orders:{key}").as_str(), Some(key.as_str()))
            );
        }
        // Kept: the same strings on the next publish, in any order.
        for key in keys[..MAX_ROUTES].iter().rev() {
            let first = handles.route("orders", key).unwrap();
            let again = handles.route("orders", key).unwrap();
            assert!(std::ptr::eq(first, again));
            assert_eq!(first.routing_key_attribute().unwrap().as_str(), key);
        }
        // Past the limit: not kept (the publish builds its own).
        assert!(handles.route("orders", &keys[MAX_ROUTES]).is_none());
    }
}
