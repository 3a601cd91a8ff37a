//! Carriers: OpenTelemetry [`Injector`](opentelemetry::propagation::Injector) and
//! [`Extractor`](opentelemetry::propagation::Extractor) implementations for HTTP headers
//! (feature `http`) and AMQP header tables (feature `amqp`), with helpers that write a whole
//! context at once.
//!
//! # Example
//!
//! ```
//! # #[cfg(feature = "http")] {
//! use opentelemetry::Context;
//! use orderscope_context::{carrier, OrderContext, Propagation};
//!
//! // Client side: write the order (and the active span, if any) into the request.
//! let order = OrderContext::new("ORD-2026-000123").unwrap();
//! let mut headers = http::HeaderMap::new();
//! carrier::inject_http(&order.to_context(&Context::new()), &mut headers);
//!
//! // Server side: read it back, through the generic extractor or the direct path.
//! let generic = Propagation::trusted().extract(&carrier::HeaderExtractor(&headers));
//! let direct = Propagation::trusted().extract_http(&headers);
//! assert_eq!(generic.order(), Some(&order));
//! assert_eq!(direct.order(), Some(&order));
//! # }
//! ```

/// The W3C `traceparent` header name.
pub const TRACEPARENT: &str = crate::propagation::TRACEPARENT;
/// The W3C `tracestate` header name.
pub const TRACESTATE: &str = crate::propagation::TRACESTATE;
/// The W3C `baggage` header name.
pub const BAGGAGE: &str = crate::propagation::BAGGAGE;

#[cfg(feature = "http")]
mod http;
#[cfg(feature = "http")]
pub use self::http::{HeaderExtractor, HeaderInjector, inject_http};

#[cfg(feature = "amqp")]
mod amqp;
#[cfg(feature = "amqp")]
pub use self::amqp::{
    CORRELATION_CONTEXT, FieldTableExtractor, FieldTableInjector, MT_ACTIVITY_ID, inject_amqp,
    inject_amqp_for_span, inject_amqp_replacing, insert_order_id,
};
