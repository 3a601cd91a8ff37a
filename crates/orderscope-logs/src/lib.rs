//! JSON log lines correlated with the trace and the order in scope; order events and stages.
//!
//! # Overview
//!
//! [`JsonLayer`] is a [`tracing_subscriber::Layer`] that writes each `tracing` event as one JSON
//! object per line, with exactly the fields of the orderscope telemetry contract (CONVENTIONS.md,
//! "Logs"): `timestamp` (RFC 3339 UTC with microseconds), `level`, `message`, `target`,
//! `service.name`; inside a span `trace_id`, `span_id` and every order field in scope (`order.id`,
//! …); then the event's own fields, typed. Trace and order are read from
//! [`opentelemetry::Context::current`] when the event is written, so lines inside spans opened by
//! `tracing-opentelemetry` and inside spans the orderscope HTTP/AMQP layers attach directly are
//! correlated alike, and nothing is formatted up front for spans.
//!
//! Most services never build the layer themselves: `orderscope::init` installs it (or the
//! human-readable [`LogFormat::Pretty`] output when `ORDERSCOPE_LOG_FORMAT=pretty`).
//!
//! # Example
//!
//! ```
//! use orderscope_logs::JsonLayer;
//! use tracing_subscriber::layer::SubscriberExt as _;
//!
//! let subscriber = tracing_subscriber::registry().with(JsonLayer::new("mes").with_writer(std::io::stderr));
//! tracing::subscriber::with_default(subscriber, || {
//!     // {"timestamp":"…","level":"INFO","message":"order accepted","target":"…","service.name":"mes","items":3}
//!     tracing::info!(items = 3, "order accepted");
//! });
//! ```
//!
//! # Order stages
//!
//! [`stage!`] marks that the order in scope reached a stage of its lifecycle and records, for that
//! order:
//!
//! | Prometheus metric | when | labels |
//! | --- | --- | --- |
//! | `order_stage_transitions_total` | always | `stage`, `order_channel` |
//! | `order_age_seconds` | `order.created_at` is known | `stage` |
//! | `order_overdue_total` | `order.deadline` has passed | `stage`, `order_channel` |
//!
//! plus one INFO event (`message="order stage"`, `order.stage`, the order fields and, when
//! overdue, `order.overdue=true`). Stage names are a metric label: a service declares them at
//! start-up with [`register_stages`]; any other name is recorded as [`OTHER_STAGE`] and warned
//! about once. `order_channel` is `"unknown"` when no order (or no channel) is in scope.
//! [`order_event!`] writes a business event that always carries the order's fields.
//!
//! # Orders in flight
//!
//! Once a [`Tracker`] is installed (the `orderscope` facade's `with_order_tracker` does it),
//! `stage!` also records each order's current stage; terminal stages
//! ([`register_terminal_stages`]) remove it. Sampled on a tick, the tracker sets
//! `order_in_flight`, `order_overdue_in_flight` and `order_oldest_age_seconds` per stage and
//! reports stalled orders once (`order_stalled_total` and a WARN line with the order's trace id).
//!
//! # Feature flags
//!
//! This crate has no optional features.
//!
//! # Supported Rust versions
//!
//! The minimum supported Rust version is the workspace's `rust-version` (1.88). Raising it is not
//! a breaking change, and is noted in the changelog.

#![deny(missing_docs)]

mod json;
mod stage;
mod tracker;

pub use self::json::*;
pub use self::stage::*;
pub use self::tracker::*;
