//! The order in scope: [`OrderContext`], its builder and its enumerated fields.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::SystemTime;

use opentelemetry::{Context, KeyValue};

use crate::error::OrderContextError;
use crate::keys;
use crate::scope::OrderGuard;
use crate::time::Stamp;

/// Where an order came from (`order.channel`).
///
/// Parsed from its lower-case name with [`FromStr`] (ASCII case is ignored), written with
/// [`Channel::as_str`].
///
/// # Example
///
/// ```
/// use orderscope_context::Channel;
///
/// assert_eq!("api".parse::<Channel>(), Ok(Channel::Api));
/// assert_eq!(Channel::Web.as_str(), "web");
/// assert!("fax".parse::<Channel>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    /// The web shop (`web`).
    Web,
    /// A public or partner API (`api`).
    Api,
    /// Entered by staff in the CRM (`crm`).
    Crm,
    /// Taken by phone (`phone`).
    Phone,
    /// Received by e-mail (`email`).
    Email,
    /// Electronic data interchange (`edi`).
    Edi,
}

impl Channel {
    /// Every channel, in declaration order.
    pub const ALL: [Channel; 6] = [
        Channel::Web,
        Channel::Api,
        Channel::Crm,
        Channel::Phone,
        Channel::Email,
        Channel::Edi,
    ];

    /// The wire and attribute value: `web`, `api`, `crm`, `phone`, `email` or `edi`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Channel::Web => "web",
            Channel::Api => "api",
            Channel::Crm => "crm",
            Channel::Phone => "phone",
            Channel::Email => "email",
            Channel::Edi => "edi",
        }
    }
}

impl Channel {
    /// Parses a wire value: the exact lower-case name first, then ignoring ASCII case.
    pub(crate) fn from_wire(s: &str) -> Option<Self> {
        match s {
            "web" => Some(Channel::Web),
            "api" => Some(Channel::Api),
            "crm" => Some(Channel::Crm),
            "phone" => Some(Channel::Phone),
            "email" => Some(Channel::Email),
            "edi" => Some(Channel::Edi),
            _ => Channel::ALL
                .into_iter()
                .find(|c| c.as_str().eq_ignore_ascii_case(s)),
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Channel {
    type Err = OrderContextError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Channel::from_wire(s).ok_or_else(|| OrderContextError::UnknownChannel(s.to_owned()))
    }
}

/// How urgent an order is (`order.priority`).
///
/// # Example
///
/// ```
/// use orderscope_context::Priority;
///
/// assert_eq!("urgent".parse::<Priority>(), Ok(Priority::Urgent));
/// assert!(Priority::Urgent > Priority::Normal);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Priority {
    /// `low`
    Low,
    /// `normal`
    Normal,
    /// `high`
    High,
    /// `urgent`
    Urgent,
}

impl Priority {
    /// Every priority, lowest first.
    pub const ALL: [Priority; 4] = [
        Priority::Low,
        Priority::Normal,
        Priority::High,
        Priority::Urgent,
    ];

    /// The wire and attribute value: `low`, `normal`, `high` or `urgent`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Urgent => "urgent",
        }
    }
}

impl Priority {
    /// Parses a wire value: the exact lower-case name first, then ignoring ASCII case.
    pub(crate) fn from_wire(s: &str) -> Option<Self> {
        match s {
            "low" => Some(Priority::Low),
            "normal" => Some(Priority::Normal),
            "high" => Some(Priority::High),
            "urgent" => Some(Priority::Urgent),
            _ => Priority::ALL
                .into_iter()
                .find(|p| p.as_str().eq_ignore_ascii_case(s)),
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Priority {
    type Err = OrderContextError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Priority::from_wire(s).ok_or_else(|| OrderContextError::UnknownPriority(s.to_owned()))
    }
}

#[derive(PartialEq, Eq, Hash)]
struct Inner {
    id: Arc<str>,
    channel: Option<Channel>,
    deadline: Option<Stamp>,
    priority: Option<Priority>,
    created_at: Option<Stamp>,
}

/// The order being worked on: its id and the optional fields of the telemetry contract.
///
/// An `OrderContext` lives in the OpenTelemetry [`Context`] (`cx.with_value(order)`), so it
/// follows the active span: [`OrderContext::current`] reads it, [`attach`](Self::attach),
/// [`in_scope`](Self::in_scope) and [`with_order`](crate::WithOrder::with_order) put it in scope,
/// and [`inject`](crate::inject) writes it as W3C baggage (`order.id`, `order.channel`, …).
///
/// Cloning is a reference-count increment.
///
/// # Example
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use orderscope_context::{Channel, OrderContext, Priority};
///
/// let order = OrderContext::builder("ORD-2026-000123")
///     .channel(Channel::Api)
///     .priority(Priority::High)
///     .deadline(SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_040_000))
///     .build()?;
///
/// order.in_scope(|| {
///     let current = OrderContext::current().expect("in scope");
///     assert_eq!(current.id(), "ORD-2026-000123");
///     assert_eq!(current.channel(), Some(Channel::Api));
/// });
/// assert!(OrderContext::current().is_none());
/// # Ok::<(), orderscope_context::OrderContextError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct OrderContext {
    inner: Arc<Inner>,
}

impl fmt::Debug for OrderContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("OrderContext");
        d.field("id", &&*self.inner.id);
        if let Some(c) = self.inner.channel {
            d.field("channel", &c.as_str());
        }
        if let Some(t) = &self.inner.deadline {
            d.field("deadline", &t.as_str());
        }
        if let Some(p) = self.inner.priority {
            d.field("priority", &p.as_str());
        }
        if let Some(t) = &self.inner.created_at {
            d.field("created_at", &t.as_str());
        }
        d.finish()
    }
}

/// The ASCII bytes an order id may hold: graphic characters but `,`, `;` and `=`.
static ID_ASCII: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0x21;
    while b < 0x7f {
        table[b] = !matches!(b as u8, b',' | b';' | b'=');
        b += 1;
    }
    table
};

/// Checks an order id: 1–128 characters, none of them a control character, white space,
/// `,`, `;` or `=`.
pub(crate) fn validate_id(id: &str) -> Result<(), OrderContextError> {
    if id.is_empty() {
        return Err(OrderContextError::EmptyId);
    }
    // Fast path: short ASCII ids (the common case) need no char decoding, one table load per
    // byte. The first byte that is not an allowed ASCII character is the first bad character
    // when it is ASCII; a non-ASCII one takes the char path.
    if id.len() <= OrderContext::MAX_ID_CHARS {
        match id.bytes().find(|&b| !ID_ASCII[usize::from(b)]) {
            None => return Ok(()),
            Some(b) if b.is_ascii() => {
                return Err(OrderContextError::InvalidIdChar { ch: char::from(b) });
            }
            Some(_) => {}
        }
    }
    let mut chars = 0usize;
    for ch in id.chars() {
        if ch.is_control() || ch.is_whitespace() || matches!(ch, ',' | ';' | '=') {
            return Err(OrderContextError::InvalidIdChar { ch });
        }
        chars += 1;
    }
    if chars > OrderContext::MAX_ID_CHARS {
        return Err(OrderContextError::IdTooLong { chars });
    }
    Ok(())
}

fn stamp(time: SystemTime, field: &'static str) -> Result<Stamp, OrderContextError> {
    Stamp::new(time).ok_or(OrderContextError::TimestampOutOfRange { field })
}

impl OrderContext {
    /// The longest order id accepted, in characters.
    pub const MAX_ID_CHARS: usize = 128;

    /// An order with only an id.
    ///
    /// # Errors
    ///
    /// [`OrderContextError::EmptyId`], [`IdTooLong`](OrderContextError::IdTooLong) or
    /// [`InvalidIdChar`](OrderContextError::InvalidIdChar) when `id` is not 1–128 printable
    /// characters (no control characters, no white space, none of `,` `;` `=`).
    pub fn new(id: impl Into<String>) -> Result<Self, OrderContextError> {
        Self::builder(id).build()
    }

    /// Starts an order with all optional fields unset.
    pub fn builder(id: impl Into<String>) -> OrderContextBuilder {
        OrderContextBuilder {
            id: id.into(),
            channel: None,
            deadline: None,
            priority: None,
            created_at: None,
        }
    }

    /// Builds from already-checked wire values (extraction path).
    pub(crate) fn from_parts(
        id: &str,
        channel: Option<Channel>,
        deadline: Option<Stamp>,
        priority: Option<Priority>,
        created_at: Option<Stamp>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                id: Arc::from(id),
                channel,
                deadline,
                priority,
                created_at,
            }),
        }
    }

    /// This order with only the fields whose key `keep` accepts; `None` when it refuses
    /// `order.id`.
    pub(crate) fn restricted(&self, keep: impl Fn(&str) -> bool) -> Option<Self> {
        if !keep(keys::ORDER_ID) {
            return None;
        }
        let i = &*self.inner;
        if keep(keys::ORDER_CHANNEL)
            && keep(keys::ORDER_DEADLINE)
            && keep(keys::ORDER_PRIORITY)
            && keep(keys::ORDER_CREATED_AT)
        {
            return Some(self.clone());
        }
        Some(Self::from_parts(
            &i.id,
            i.channel.filter(|_| keep(keys::ORDER_CHANNEL)),
            i.deadline.filter(|_| keep(keys::ORDER_DEADLINE)),
            i.priority.filter(|_| keep(keys::ORDER_PRIORITY)),
            i.created_at.filter(|_| keep(keys::ORDER_CREATED_AT)),
        ))
    }

    /// The order id (`order.id`).
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// Where the order came from (`order.channel`).
    pub fn channel(&self) -> Option<Channel> {
        self.inner.channel
    }

    /// When the order is promised (`order.deadline`).
    pub fn deadline(&self) -> Option<SystemTime> {
        self.inner.deadline.as_ref().map(Stamp::time)
    }

    /// How urgent the order is (`order.priority`).
    pub fn priority(&self) -> Option<Priority> {
        self.inner.priority
    }

    /// When the order entered the pipeline (`order.created_at`).
    pub fn created_at(&self) -> Option<SystemTime> {
        self.inner.created_at.as_ref().map(Stamp::time)
    }

    /// The order in the current OpenTelemetry context, if any.
    pub fn current() -> Option<OrderContext> {
        Context::map_current(Self::from_context)
    }

    /// The order stored in `cx`, if any.
    pub fn from_context(cx: &Context) -> Option<OrderContext> {
        cx.get::<OrderContext>().cloned()
    }

    /// A copy of `cx` carrying this order (`cx.with_value(self.clone())`).
    pub fn to_context(&self, cx: &Context) -> Context {
        cx.with_value(self.clone())
    }

    /// Puts this order in scope on the current thread until the guard is dropped.
    ///
    /// The current context (active span, baggage) stays as it is; only the order is added.
    /// The guard is not `Send`: drop it on the thread that created it, and do not hold it across
    /// an `.await` (use [`WithOrder::with_order`](crate::WithOrder::with_order) for futures).
    #[must_use = "the order leaves scope as soon as the guard is dropped"]
    pub fn attach(&self) -> OrderGuard {
        OrderGuard::new(Context::current_with_value(self.clone()).attach())
    }

    /// Runs `f` with this order in scope.
    pub fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        let _guard = self.attach();
        f()
    }

    /// The order fields as OpenTelemetry attributes, keyed as in [`keys`](crate::keys).
    ///
    /// Timestamps are RFC 3339 strings; unset fields are skipped.
    pub fn attributes(&self) -> impl Iterator<Item = KeyValue> + '_ {
        let inner = &*self.inner;
        // One counter over the five fields: cheaper to step through than a chain of options,
        // and this runs for every span started with an order in scope.
        let mut field = 0u8;
        std::iter::from_fn(move || {
            loop {
                let attribute = match field {
                    0 => Some(KeyValue::new(keys::ORDER_ID, Arc::clone(&inner.id))),
                    1 => inner
                        .channel
                        .map(|c| KeyValue::new(keys::ORDER_CHANNEL, c.as_str())),
                    2 => inner
                        .deadline
                        .as_ref()
                        .map(|t| KeyValue::new(keys::ORDER_DEADLINE, t.as_str().to_owned())),
                    3 => inner
                        .priority
                        .map(|p| KeyValue::new(keys::ORDER_PRIORITY, p.as_str())),
                    4 => inner
                        .created_at
                        .as_ref()
                        .map(|t| KeyValue::new(keys::ORDER_CREATED_AT, t.as_str().to_owned())),
                    _ => return None,
                };
                field += 1;
                if attribute.is_some() {
                    return attribute;
                }
            }
        })
    }

    /// Calls `f` with each set field's key and text value, without allocating.
    ///
    /// Fields come in the order of [`keys::ALL`](crate::keys::ALL); timestamps are RFC 3339 UTC.
    pub fn for_each_field(&self, mut f: impl FnMut(&'static str, &str)) {
        let inner = &*self.inner;
        f(keys::ORDER_ID, &inner.id);
        if let Some(c) = inner.channel {
            f(keys::ORDER_CHANNEL, c.as_str());
        }
        if let Some(t) = &inner.deadline {
            f(keys::ORDER_DEADLINE, t.as_str());
        }
        if let Some(p) = inner.priority {
            f(keys::ORDER_PRIORITY, p.as_str());
        }
        if let Some(t) = &inner.created_at {
            f(keys::ORDER_CREATED_AT, t.as_str());
        }
    }
}

/// Builds an [`OrderContext`]; start with [`OrderContext::builder`].
///
/// Every optional field defaults to unset.
///
/// # Example
///
/// ```
/// use orderscope_context::OrderContext;
///
/// // Parsing user input: unknown values are errors, not silently dropped.
/// let order = OrderContext::builder("ORD-7").channel_str("phone")?.priority_str("low")?.build()?;
/// assert_eq!(order.channel().map(|c| c.as_str()), Some("phone"));
/// assert!(OrderContext::builder("ORD-7").channel_str("carrier-pigeon").is_err());
/// # Ok::<(), orderscope_context::OrderContextError>(())
/// ```
#[derive(Clone, Debug)]
#[must_use = "call .build() to get the OrderContext"]
pub struct OrderContextBuilder {
    id: String,
    channel: Option<Channel>,
    deadline: Option<SystemTime>,
    priority: Option<Priority>,
    created_at: Option<SystemTime>,
}

impl OrderContextBuilder {
    /// Sets where the order came from. Defaults to unset.
    pub fn channel(mut self, channel: Channel) -> Self {
        self.channel = Some(channel);
        self
    }

    /// Parses and sets the channel (`web`, `api`, `crm`, `phone`, `email`, `edi`; ASCII case
    /// is ignored).
    ///
    /// # Errors
    ///
    /// [`OrderContextError::UnknownChannel`] for any other value.
    pub fn channel_str(self, channel: &str) -> Result<Self, OrderContextError> {
        Ok(self.channel(channel.parse()?))
    }

    /// Sets when the order is promised. Defaults to unset.
    pub fn deadline(mut self, deadline: SystemTime) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Sets how urgent the order is. Defaults to unset.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Parses and sets the priority (`low`, `normal`, `high`, `urgent`; ASCII case is ignored).
    ///
    /// # Errors
    ///
    /// [`OrderContextError::UnknownPriority`] for any other value.
    pub fn priority_str(self, priority: &str) -> Result<Self, OrderContextError> {
        Ok(self.priority(priority.parse()?))
    }

    /// Sets when the order entered the pipeline. Defaults to unset.
    pub fn created_at(mut self, created_at: SystemTime) -> Self {
        self.created_at = Some(created_at);
        self
    }

    /// Checks the fields and builds the order.
    ///
    /// # Errors
    ///
    /// - [`OrderContextError::EmptyId`], [`IdTooLong`](OrderContextError::IdTooLong),
    ///   [`InvalidIdChar`](OrderContextError::InvalidIdChar): the id is not 1–128 printable
    ///   characters without white space, `,`, `;` or `=`.
    /// - [`OrderContextError::TimestampOutOfRange`]: a timestamp outside the years 0000–9999.
    pub fn build(self) -> Result<OrderContext, OrderContextError> {
        validate_id(&self.id)?;
        let deadline = self.deadline.map(|t| stamp(t, "deadline")).transpose()?;
        let created_at = self
            .created_at
            .map(|t| stamp(t, "created_at"))
            .transpose()?;
        Ok(OrderContext {
            inner: Arc::new(Inner {
                id: Arc::from(self.id),
                channel: self.channel,
                deadline,
                priority: self.priority,
                created_at,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn id_rules() {
        assert!(OrderContext::new("ORD-2026-000123").is_ok());
        assert!(OrderContext::new("Bestellung-ÄÖÜ-€").is_ok());
        assert!(OrderContext::new("x".repeat(128)).is_ok());
        assert!(OrderContext::new("é".repeat(128)).is_ok());
        assert_eq!(OrderContext::new(""), Err(OrderContextError::EmptyId));
        assert_eq!(
            OrderContext::new("x".repeat(129)),
            Err(OrderContextError::IdTooLong { chars: 129 })
        );
        assert_eq!(
            OrderContext::new("é".repeat(129)),
            Err(OrderContextError::IdTooLong { chars: 129 })
        );
        for (id, ch) in [
            ("a b", ' '),
            ("a\tb", '\t'),
            ("a\u{7f}", '\u{7f}'),
            ("a,b", ','),
            ("a;b", ';'),
            ("a=b", '='),
            ("ä\u{2028}", '\u{2028}'),
            ("ä\u{85}", '\u{85}'),
            ("a,ä", ','),
            ("ä,b", ','),
            ("ä b", ' '),
        ] {
            assert_eq!(
                OrderContext::new(id),
                Err(OrderContextError::InvalidIdChar { ch }),
                "{id:?}"
            );
        }
    }

    #[test]
    fn builder_sets_fields() {
        let t = UNIX_EPOCH + Duration::from_secs(1_796_040_000);
        let o = OrderContext::builder("A")
            .channel(Channel::Edi)
            .deadline(t)
            .priority(Priority::Urgent)
            .created_at(t)
            .build()
            .unwrap();
        assert_eq!(o.channel(), Some(Channel::Edi));
        assert_eq!(o.deadline(), Some(t));
        assert_eq!(o.priority(), Some(Priority::Urgent));
        assert_eq!(o.created_at(), Some(t));
        let mut fields = Vec::new();
        o.for_each_field(|k, v| fields.push(format!("{k}={v}")));
        assert_eq!(
            fields,
            [
                "order.id=A",
                "order.channel=edi",
                "order.deadline=2026-11-30T12:00:00Z",
                "order.priority=urgent",
                "order.created_at=2026-11-30T12:00:00Z"
            ]
        );
        let attrs: Vec<_> = o
            .attributes()
            .map(|kv| format!("{}={}", kv.key, kv.value))
            .collect();
        assert_eq!(attrs, fields);
        assert_eq!(
            format!("{o:?}"),
            "OrderContext { id: \"A\", channel: \"edi\", deadline: \"2026-11-30T12:00:00Z\", \
             priority: \"urgent\", created_at: \"2026-11-30T12:00:00Z\" }"
        );
    }

    #[test]
    fn builder_rejects_bad_input() {
        assert_eq!(
            OrderContext::builder("A").channel_str("fax").err(),
            Some(OrderContextError::UnknownChannel("fax".into()))
        );
        assert_eq!(
            OrderContext::builder("A").priority_str("asap").err(),
            Some(OrderContextError::UnknownPriority("asap".into()))
        );
        assert_eq!(
            OrderContext::builder("A")
                .deadline(UNIX_EPOCH + Duration::from_secs(300_000_000_000))
                .build(),
            Err(OrderContextError::TimestampOutOfRange { field: "deadline" })
        );
        assert_eq!("API".parse::<Channel>(), Ok(Channel::Api));
        for c in Channel::ALL {
            assert_eq!(c.as_str().parse::<Channel>(), Ok(c));
        }
        for p in Priority::ALL {
            assert_eq!(p.to_string().parse::<Priority>(), Ok(p));
        }
    }

    #[test]
    fn clone_shares_and_compares_by_value() {
        let a = OrderContext::new("A").unwrap();
        let b = a.clone();
        assert!(Arc::ptr_eq(&a.inner, &b.inner));
        assert_eq!(a, OrderContext::new("A").unwrap());
        assert_ne!(a, OrderContext::new("B").unwrap());
    }

    #[test]
    fn context_round_trip() {
        let o = OrderContext::new("A").unwrap();
        let cx = o.to_context(&Context::new());
        assert_eq!(OrderContext::from_context(&cx), Some(o.clone()));
        assert_eq!(OrderContext::from_context(&Context::new()), None);
        assert_eq!(OrderContext::current(), None);
        {
            let _g = o.attach();
            assert_eq!(OrderContext::current(), Some(o.clone()));
            let inner = OrderContext::new("B").unwrap();
            inner.in_scope(|| assert_eq!(OrderContext::current(), Some(inner.clone())));
            assert_eq!(OrderContext::current(), Some(o.clone()));
        }
        assert_eq!(OrderContext::current(), None);
    }
}
