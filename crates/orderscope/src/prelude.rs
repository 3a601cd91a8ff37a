//! The names most services use, for a glob import.
//!
//! # Example
//!
//! ```
//! use orderscope::prelude::*;
//!
//! let order = OrderContext::new("ORD-2026-000123").unwrap();
//! order.in_scope(|| assert_eq!(OrderContext::current().as_ref().map(OrderContext::id), Some("ORD-2026-000123")));
//! ```

pub use crate::{Telemetry, TelemetryBuilder};
pub use orderscope_context::{Channel, OrderContext, Priority, WithOrder};
pub use orderscope_logs::{order_event, stage};
#[cfg(feature = "macros")]
pub use orderscope_macros::{order_handler, red};
pub use tracing_opentelemetry::OpenTelemetrySpanExt as _;
