//! Order lifecycle stages and order events.
//!
//! [`stage!`](crate::stage) marks that the order in scope reached a stage of its lifecycle
//! (`"mes.scheduled"`, `"warehouse.picked"`, …); [`order_event!`](crate::order_event) writes a
//! business event that always carries the order's fields. Stage names are a metric label, so a
//! service declares them once at start-up with [`register_stages`]; a name that was not
//! registered is recorded as [`OTHER_STAGE`] (and warned about once).
//!
//! What `stage!` records, for the order in scope ([`OrderContext::current`]):
//!
//! | Prometheus metric | when | labels |
//! | --- | --- | --- |
//! | `order_stage_transitions_total` | always | `stage`, `order_channel` |
//! | `order_age_seconds` | `order.created_at` is known | `stage` |
//! | `order_overdue_total` | `order.deadline` has passed | `stage`, `order_channel` |
//!
//! plus one INFO event (`message="order stage"`, `order.stage`, the order fields and, when
//! overdue, `order.overdue=true`), which is a log line and, inside a span exported through
//! `tracing-opentelemetry`, a span event.
//!
//! `order_channel` is the order's channel, or `"unknown"` when the order has none. With no order
//! in scope at all, the transition is still counted (with `order_channel="unknown"`: a stage was
//! reached, the order context was lost on the way) and the log line written; age and overdue
//! cannot be known and are not recorded.
//!
//! # Example
//!
//! ```
//! use orderscope_context::{Channel, OrderContext};
//! use orderscope_logs::{order_event, register_stages, stage};
//! use tracing::Level;
//!
//! register_stages(&["mes.received", "mes.scheduled"]);
//!
//! let order = OrderContext::builder("ORD-2026-000123").channel(Channel::Api).build()?;
//! order.in_scope(|| {
//!     stage!("mes.scheduled");
//!     order_event!(Level::WARN, "operator reassigned", operator = 17, line = "L2");
//! });
//! # Ok::<(), orderscope_context::OrderContextError>(())
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

/// The `stage` label of a stage name that was not registered with [`register_stages`].
pub const OTHER_STAGE: &str = "other";

/// The `order_channel` label when the order has no channel, or no order is in scope.
pub const UNKNOWN_CHANNEL: &str = "unknown";

/// At most this many distinct unknown stage names are remembered (and warned about).
const MAX_WARNED: usize = 128;

/// Registered stage name → whether it is terminal.
pub(crate) type Stages = BTreeMap<&'static str, bool>;

/// The registered stages. Written at start-up only; read through a per-thread copy that is
/// refreshed when [`GENERATION`] moves, so a stage transition takes no shared lock.
static STAGES: RwLock<Option<Arc<Stages>>> = RwLock::new(None);
static GENERATION: AtomicU64 = AtomicU64::new(1);
static WARNED: Mutex<Option<HashSet<String>>> = Mutex::new(None);

thread_local! {
    static LOCAL_STAGES: RefCell<(u64, Arc<Stages>)> = RefCell::new((0, Arc::default()));
}

fn add_stages(stages: &[&'static str], terminal: bool) {
    let mut guard = STAGES.write().unwrap_or_else(PoisonError::into_inner);
    let mut set: Stages = guard.as_deref().cloned().unwrap_or_default();
    for &name in stages {
        if name.is_empty() || name == OTHER_STAGE {
            continue;
        }
        let entry = set.entry(name).or_insert(false);
        *entry |= terminal;
    }
    *guard = Some(Arc::new(set));
    GENERATION.fetch_add(1, Ordering::Release);
}

/// The registered stages, as this thread last saw them (refreshed when they changed).
pub(crate) fn with_registered<R>(f: impl FnOnce(&Stages) -> R) -> R {
    let generation = GENERATION.load(Ordering::Acquire);
    LOCAL_STAGES.with(|local| {
        let mut local = local.borrow_mut();
        if local.0 != generation {
            let current = STAGES
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
                .unwrap_or_default();
            *local = (generation, current);
        }
        f(&local.1)
    })
}

/// Declares the stage names [`stage!`](crate::stage) may record. Call it at start-up; calling it
/// again adds to the set.
///
/// Names are kept as given (`"mes.scheduled"`); an empty name and [`OTHER_STAGE`] are ignored.
///
/// # Example
///
/// ```
/// orderscope_logs::register_stages(&["shop.accepted", "mes.scheduled", "shipping.handed_over"]);
/// assert!(orderscope_logs::registered_stages().contains(&"mes.scheduled"));
/// ```
pub fn register_stages(stages: &[&'static str]) {
    add_stages(stages, false);
}

/// Declares terminal stages: the last stage of an order's life in this service (shipped,
/// cancelled, handed over to the next service). They are registered like [`register_stages`]
/// does, and an order reaching one leaves the [in-flight tracker](crate::Tracker).
///
/// # Example
///
/// ```
/// orderscope_logs::register_terminal_stages(&["shipping.handed_over", "order.cancelled"]);
/// assert!(orderscope_logs::registered_stages().contains(&"order.cancelled"));
/// ```
pub fn register_terminal_stages(stages: &[&'static str]) {
    add_stages(stages, true);
}

/// The registered stage names (terminal ones included), sorted.
pub fn registered_stages() -> Vec<&'static str> {
    with_registered(|stages| stages.keys().copied().collect())
}

/// The `stage` label for `name`, and whether it is terminal: the registered name, or
/// [`OTHER_STAGE`] (warning once per name, for at most 128 names).
pub(crate) fn stage_label(name: &str) -> (&'static str, bool) {
    if let Some(found) = with_registered(|stages| stages.get_key_value(name).map(|(k, t)| (*k, *t)))
    {
        return found;
    }
    let mut warned = WARNED.lock().unwrap_or_else(PoisonError::into_inner);
    let warned = warned.get_or_insert_with(HashSet::new);
    if warned.len() < MAX_WARNED && !warned.contains(name) {
        warned.insert(name.to_owned());
        tracing::warn!(
            order.stage = name,
            "order stage not registered with `register_stages`; recorded as stage=\"other\""
        );
    }
    (OTHER_STAGE, false)
}

/// Marks that the order in scope reached a lifecycle stage.
///
/// `stage!("mes.scheduled")` takes any `&str` expression. See the [crate docs](crate#order-stages) for what
/// it records; it never fails and never panics.
///
/// # Example
///
/// ```
/// orderscope_logs::register_stages(&["mes.scheduled"]);
/// let order = orderscope_context::OrderContext::new("ORD-1")?;
/// order.in_scope(|| orderscope_logs::stage!("mes.scheduled"));
/// # Ok::<(), orderscope_context::OrderContextError>(())
/// ```
#[macro_export]
macro_rules! stage {
    ($stage:expr $(,)?) => {{
        let __orderscope_stage = $crate::__macro_support::Stage::reached($stage);
        $crate::__macro_support::tracing::info!(
            order.stage = __orderscope_stage.name(),
            order.id = __orderscope_stage.fields().id(),
            order.channel = __orderscope_stage.fields().channel(),
            order.deadline = __orderscope_stage.fields().deadline(),
            order.priority = __orderscope_stage.fields().priority(),
            order.created_at = __orderscope_stage.fields().created_at(),
            order.overdue = __orderscope_stage.overdue(),
            "order stage"
        );
    }};
}

/// Writes a `tracing` event that always carries the fields of the order in scope (`order.id`,
/// `order.channel`, `order.deadline`, `order.priority`, `order.created_at`, those that are set),
/// whether or not a span is open.
///
/// `order_event!(Level, "message", field = value, ...)`: the level is a `tracing::Level`
/// constant, the message a string literal, and the fields use `tracing`'s syntax (`name = value`,
/// `name = %display`, `name = ?debug`, `dotted.name = value`).
///
/// # Example
///
/// ```
/// use tracing::Level;
///
/// let order = orderscope_context::OrderContext::new("ORD-1")?;
/// let operator = 17;
/// order.in_scope(|| {
///     orderscope_logs::order_event!(Level::WARN, "operator reassigned", operator = operator);
/// });
/// // Without an order in scope, the event is written without order fields.
/// orderscope_logs::order_event!(Level::INFO, "nightly planning done");
/// # Ok::<(), orderscope_context::OrderContextError>(())
/// ```
#[macro_export]
macro_rules! order_event {
    ($level:expr, $message:literal, $($fields:tt)*) => {{
        let __orderscope_fields = $crate::__macro_support::OrderFields::current();
        $crate::__macro_support::tracing::event!(
            $level,
            {
                order.id = __orderscope_fields.id(),
                order.channel = __orderscope_fields.channel(),
                order.deadline = __orderscope_fields.deadline(),
                order.priority = __orderscope_fields.priority(),
                order.created_at = __orderscope_fields.created_at(),
                $($fields)*
            },
            $message
        );
    }};
    ($level:expr, $message:literal) => {
        $crate::order_event!($level, $message,)
    };
}

#[doc(hidden)]
/// What `stage!` and `order_event!` expand to. Not a stable API.
pub mod __macro_support {
    pub use tracing;

    use super::{UNKNOWN_CHANNEL, stage_label};
    use orderscope_context::OrderContext;
    use orderscope_metrics::catalogue::{
        ORDER_AGE, ORDER_OVERDUE, ORDER_STAGE_TRANSITIONS, labels,
    };
    use std::time::SystemTime;

    /// RFC 3339 timestamps as the order context formats them (at most 35 bytes).
    #[derive(Debug, Clone, Copy)]
    pub struct Stamp {
        buf: [u8; 40],
        len: u8,
    }

    impl Stamp {
        fn new(s: &str) -> Option<Self> {
            let bytes = s.as_bytes();
            let mut buf = [0u8; 40];
            let n = bytes.len();
            if n > buf.len() {
                return None;
            }
            buf[..n].copy_from_slice(bytes);
            Some(Stamp { buf, len: n as u8 })
        }

        fn as_str(&self) -> &str {
            std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or("")
        }
    }

    /// The fields of the order in scope, ready to be event field values.
    #[derive(Debug, Default)]
    pub struct OrderFields {
        order: Option<OrderContext>,
        deadline: Option<Stamp>,
        created_at: Option<Stamp>,
    }

    impl OrderFields {
        /// The fields of [`OrderContext::current`].
        pub fn current() -> Self {
            Self::of(OrderContext::current())
        }

        pub(crate) fn of(order: Option<OrderContext>) -> Self {
            let mut out = OrderFields::default();
            if let Some(order) = &order {
                order.for_each_field(|key, value| match key {
                    orderscope_context::keys::ORDER_DEADLINE => out.deadline = Stamp::new(value),
                    orderscope_context::keys::ORDER_CREATED_AT => {
                        out.created_at = Stamp::new(value)
                    }
                    _ => {}
                });
            }
            out.order = order;
            out
        }

        /// The order.
        pub fn order(&self) -> Option<&OrderContext> {
            self.order.as_ref()
        }
        /// `order.id`.
        pub fn id(&self) -> Option<&str> {
            self.order.as_ref().map(OrderContext::id)
        }
        /// `order.channel`.
        pub fn channel(&self) -> Option<&'static str> {
            self.order
                .as_ref()
                .and_then(OrderContext::channel)
                .map(|c| c.as_str())
        }
        /// `order.deadline`, RFC 3339.
        pub fn deadline(&self) -> Option<&str> {
            self.deadline.as_ref().map(Stamp::as_str)
        }
        /// `order.priority`.
        pub fn priority(&self) -> Option<&'static str> {
            self.order
                .as_ref()
                .and_then(OrderContext::priority)
                .map(|p| p.as_str())
        }
        /// `order.created_at`, RFC 3339.
        pub fn created_at(&self) -> Option<&str> {
            self.created_at.as_ref().map(Stamp::as_str)
        }
    }

    /// A stage reached by the order in scope; its metrics are recorded on creation.
    #[derive(Debug)]
    pub struct Stage<'a> {
        name: &'a str,
        fields: OrderFields,
        overdue: bool,
    }

    impl<'a> Stage<'a> {
        /// Records the stage's metrics for the order in scope.
        pub fn reached(name: &'a str) -> Self {
            Self::reached_at(name, OrderFields::current(), SystemTime::now())
        }

        fn reached_at(name: &'a str, fields: OrderFields, now: SystemTime) -> Self {
            let (label, terminal) = stage_label(name);
            let channel = fields.channel().unwrap_or(UNKNOWN_CHANNEL);
            metrics::counter!(
                ORDER_STAGE_TRANSITIONS,
                labels::STAGE => label,
                labels::ORDER_CHANNEL => channel
            )
            .increment(1);
            let mut overdue = false;
            if let Some(order) = fields.order() {
                if let Some(created_at) = order.created_at() {
                    let age = now
                        .duration_since(created_at)
                        .map_or(0.0, |age| age.as_secs_f64());
                    metrics::histogram!(ORDER_AGE, labels::STAGE => label).record(age);
                }
                if let Some(deadline) = order.deadline()
                    && now > deadline
                {
                    overdue = true;
                    metrics::counter!(
                        ORDER_OVERDUE,
                        labels::STAGE => label,
                        labels::ORDER_CHANNEL => channel
                    )
                    .increment(1);
                }
                if let Some(tracker) = crate::tracker::tracker() {
                    tracker.transition(order, label, terminal, now);
                }
            }
            Stage {
                name,
                fields,
                overdue,
            }
        }

        /// The stage name as given (the log line keeps unknown names).
        pub fn name(&self) -> &str {
            self.name
        }

        /// The order fields.
        pub fn fields(&self) -> &OrderFields {
            &self.fields
        }

        /// `Some(true)` when the deadline has passed, else `None` (no field).
        pub fn overdue(&self) -> Option<bool> {
            self.overdue.then_some(true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_stage_is_other_and_warned_about_once() {
        register_stages(&["unit.known"]);
        assert_eq!(stage_label("unit.known"), ("unit.known", false));
        assert_eq!(stage_label("unit.unknown"), (OTHER_STAGE, false));
        assert_eq!(stage_label("unit.unknown"), (OTHER_STAGE, false));
        register_terminal_stages(&["unit.done"]);
        assert_eq!(stage_label("unit.done"), ("unit.done", true));
        let warned = WARNED.lock().unwrap();
        assert!(warned.as_ref().unwrap().contains("unit.unknown"));
    }

    #[test]
    fn other_and_empty_are_not_registered() {
        register_stages(&["", OTHER_STAGE]);
        assert!(!registered_stages().contains(&""));
        assert!(!registered_stages().contains(&OTHER_STAGE));
    }
}
