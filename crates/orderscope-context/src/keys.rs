//! The names of the order fields: W3C baggage keys, span attribute keys and log field names alike.
//!
//! # Example
//!
//! ```
//! use orderscope_context::{keys, OrderContext};
//!
//! let order = OrderContext::new("ORD-2026-000123")?;
//! let mut seen = Vec::new();
//! order.for_each_field(|key, value| seen.push((key, value.to_owned())));
//! assert_eq!(seen, [(keys::ORDER_ID, "ORD-2026-000123".to_owned())]);
//! # Ok::<(), orderscope_context::OrderContextError>(())
//! ```

/// The order's id, as the shop or API issued it (`ORD-2026-000123`).
pub const ORDER_ID: &str = "order.id";
/// Where the order came from: `web`, `api`, `crm`, `phone`, `email`, `edi`.
pub const ORDER_CHANNEL: &str = "order.channel";
/// When the order is promised, RFC 3339 UTC (`2026-11-30T12:00:00Z`).
pub const ORDER_DEADLINE: &str = "order.deadline";
/// `low`, `normal`, `high` or `urgent`.
pub const ORDER_PRIORITY: &str = "order.priority";
/// When the order entered the pipeline, RFC 3339 UTC (`2026-11-24T09:15:02Z`).
pub const ORDER_CREATED_AT: &str = "order.created_at";

/// Every order key, in the order fields are written.
pub const ALL: [&str; 5] = [
    ORDER_ID,
    ORDER_CHANNEL,
    ORDER_DEADLINE,
    ORDER_PRIORITY,
    ORDER_CREATED_AT,
];

/// The AMQP header carrying the order id in plain text, next to `baggage`.
pub const X_ORDER_ID: &str = "x-order-id";

/// Which order field a baggage key names, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Field {
    Id,
    Channel,
    Deadline,
    Priority,
    CreatedAt,
}

impl Field {
    pub(crate) fn from_key(key: &str) -> Option<Self> {
        match key.strip_prefix("order.")? {
            "id" => Some(Self::Id),
            "channel" => Some(Self::Channel),
            "deadline" => Some(Self::Deadline),
            "priority" => Some(Self::Priority),
            "created_at" => Some(Self::CreatedAt),
            _ => None,
        }
    }
}
