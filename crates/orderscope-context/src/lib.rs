//! The order in scope, and its propagation over HTTP and AMQP headers.
//!
//! # Overview
//!
//! One order, followed across every hop. An [`OrderContext`] holds the order's id and the
//! optional fields of the telemetry contract (`order.channel`, `order.deadline`,
//! `order.priority`, `order.created_at`, see [`keys`]). It is stored as a value in the
//! OpenTelemetry [`Context`](opentelemetry::Context), next to the active span, so it flows
//! wherever that context flows:
//!
//! - [`OrderContext::current`] reads it; [`OrderContext::attach`], [`OrderContext::in_scope`]
//!   and [`WithOrder::with_order`] (for futures, including spawned ones) put it in scope.
//! - [`OrderContext::attributes`] gives the order fields as span attributes; the span processor
//!   that adds them to every span, `OrderSpanProcessor`, needs the OpenTelemetry SDK and is
//!   behind the `sdk` feature (the facade turns it on and re-exports it as
//!   `orderscope::OrderSpanProcessor`). Without it this crate depends on the OpenTelemetry API
//!   only, as instrumentation should.
//! - [`inject`] writes `traceparent`, `tracestate` and `baggage` (with the order fields) into
//!   any OpenTelemetry [`Injector`](opentelemetry::propagation::Injector);
//!   [`Propagation::extract`] reads them back under a [`TrustPolicy`]. The W3C codecs are
//!   written for this crate: a round trip carrying a five-field order costs less than 1.5× what
//!   the stock opentelemetry propagators cost for the trace context alone, and a fraction of
//!   what they cost when the same fields travel as plain baggage (`benches/propagation.rs`).
//! - [`carrier`] has the carriers for `http::HeaderMap` and lapin's AMQP `FieldTable`.
//!
//! Reading never fails: a malformed `traceparent`, oversized baggage, an invalid order field
//! or an AMQP header of the wrong type is dropped and counted in the
//! [`PROPAGATION_DROPPED_METRIC`] counter, labelled with a [`DropReason`].
//!
//! # Example
//!
//! ```
//! # #[cfg(feature = "http")] {
//! use opentelemetry::Context;
//! use orderscope_context::{carrier, Channel, OrderContext, Propagation};
//!
//! // The shop's API receives an order and calls the warehouse.
//! let order = OrderContext::builder("ORD-2026-000123")
//!     .channel(Channel::Api)
//!     .build()
//!     .expect("valid order");
//! let mut request = http::HeaderMap::new();
//! order.in_scope(|| carrier::inject_http(&Context::current(), &mut request));
//! assert_eq!(request["baggage"], "order.id=ORD-2026-000123,order.channel=api");
//!
//! // The warehouse (an internal service) reads it and works with the order in scope.
//! let incoming = Propagation::trusted().extract_http(&request);
//! let _guard = incoming.context().clone().attach();
//! assert_eq!(OrderContext::current(), Some(order));
//! # }
//! ```
//!
//! # Feature flags
//!
//! - `http` (default): `carrier::HeaderInjector`, `carrier::HeaderExtractor`,
//!   `carrier::inject_http` and `Propagation::extract_http`, for `http::HeaderMap`.
//! - `amqp`: `carrier::FieldTableInjector`, `carrier::FieldTableExtractor`,
//!   `carrier::inject_amqp` and `Propagation::extract_amqp`, for lapin's `FieldTable`.
//! - `full`: both carriers.
//! - `sdk` (off by default, not in `full`): `OrderSpanProcessor` and `WithOrderFields`, the
//!   span processor that adds the order fields to every span. Adds a dependency on
//!   `opentelemetry_sdk`; only the crate that builds the pipeline (the facade, the test kit)
//!   turns it on.
//!
//! # Supported Rust versions
//!
//! The minimum supported Rust version is 1.88 (edition 2024), as for the whole workspace.
//! It is raised only in a minor release.
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod baggage;
pub mod carrier;
mod drops;
mod error;
mod intern;
pub mod keys;
mod operation;
mod order;
mod propagation;
mod propagator;
mod scope;
#[cfg(feature = "sdk")]
mod span_processor;
mod time;
mod traceparent;
mod tracer;

pub use crate::drops::{
    DropReason, PROPAGATION_DROPPED_METRIC, PROPAGATION_DROPPED_REASON_LABEL,
    PROPAGATION_DROPPED_REASONS,
};
pub use crate::error::OrderContextError;
pub use crate::intern::{MAX_INTERNED, intern};
pub use crate::operation::Operation;
pub use crate::order::{Channel, OrderContext, OrderContextBuilder, Priority};
pub use crate::propagation::{Extracted, Propagation, TrustPolicy, inject};
pub use crate::propagator::{OrderPropagator, set_carrier_propagator};
pub use crate::scope::{OrderGuard, WithOrder, WithOrderFuture};
#[cfg(feature = "sdk")]
#[cfg_attr(docsrs, doc(cfg(feature = "sdk")))]
pub use crate::span_processor::{OrderSpanProcessor, WithOrderFields};
pub use crate::tracer::LateTracer;
#[cfg(feature = "sdk")]
#[cfg_attr(docsrs, doc(cfg(feature = "sdk")))]
pub use crate::tracer::set_sdk_tracer_provider;

/// The schema URL of the OpenTelemetry semantic conventions version the spans of orderscope's
/// instrumentation crates follow (HTTP server and client, RabbitMQ); `docs/conventions.md` names
/// the same version.
pub const SEMCONV_SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.44.0";

#[cfg(test)]
mod tests {
    use super::SEMCONV_SCHEMA_URL;

    #[test]
    fn the_schema_url_is_the_version_the_conventions_claim() {
        let version = SEMCONV_SCHEMA_URL.rsplit('/').next().unwrap();
        let conventions = include_str!("../../../docs/conventions.md");
        assert!(
            conventions.contains(&format!("v{version}")),
            "docs/conventions.md does not name semantic conventions v{version}"
        );
        assert!(
            conventions.contains(&format!(
                "`{SEMCONV_SCHEMA_URL}` of the HTTP and AMQP spans'"
            )),
            "docs/conventions.md does not give {SEMCONV_SCHEMA_URL} as the spans' schema URL"
        );
    }
}
