//! See every customer order end to end: traces, RED metrics and logs across HTTP and RabbitMQ.
//!
//! # Overview
//!
//! orderscope makes one customer order visible from the web shop or B2B API, through the CRM,
//! across RabbitMQ and into the MES, in telemetry any OpenTelemetry / Prometheus / Loki back end
//! understands. This crate is the facade: one call installs the whole pipeline, and it
//! re-exports the pinned versions of the OpenTelemetry, `tracing-opentelemetry` and `metrics`
//! crates so a service depends on one coherent set.
//!
//! [`init`] (or [`builder`]`(..).with_*().build()`) installs:
//!
//! - a `tracing` subscriber: `EnvFilter` from `RUST_LOG` (default `info`), log lines as one JSON
//!   object per line carrying `trace_id`, `span_id` and the order fields ([`logs::JsonLayer`]),
//!   or human-readable with `ORDERSCOPE_LOG_FORMAT=pretty`;
//! - the OpenTelemetry tracer provider behind `tracing-opentelemetry`, exporting by OTLP (gRPC
//!   or HTTP/protobuf) when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, through a bounded queue whose
//!   drops are counted;
//! - optionally (`OTEL_LOGS_EXPORTER=otlp` or
//!   [`with_logs_export`](TelemetryBuilder::with_logs_export)), OTLP export of log records too,
//!   through `opentelemetry-appender-tracing`, with the trace and span ids and the order fields;
//!   the log lines are written either way;
//! - the propagators `OTEL_PROPAGATORS` names (default W3C Trace Context and Baggage, the order
//!   in `baggage`), globally and on every orderscope carrier;
//! - the Prometheus recorder, served by [`Telemetry::metrics_router`] (`GET /metrics`);
//! - a panic hook that logs panics with their trace ids.
//!
//! Settings made in code beat `OTEL_*` variables, which beat the defaults; see
//! [`TelemetryBuilder`] and [`ResolvedConfig`]. The returned [`Telemetry`] flushes on
//! [`shutdown`](Telemetry::shutdown) and on drop, within a bound (5 s by default).
//!
//! # Example
//!
//! ```no_run
//! use axum::{Router, routing::get};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let telemetry = orderscope::init("mes")?;
//!     let app = Router::new()
//!         .route("/orders/{id}", get(|| async { "ok" }))
//!         .merge(telemetry.metrics_router());
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//!     axum::serve(listener, app).await?;
//!     telemetry.shutdown()?;
//!     Ok(())
//! }
//! ```
//!
//! # Feature flags
//!
//! - `tower` (default): the HTTP server and client layers, as `orderscope::tower`.
//! - `macros` (default): the `#[red]` and `#[order_handler]` attributes.
//! - `amqp`: RabbitMQ instrumentation over lapin, as `orderscope::amqp`.
//! - `reqwest`: [`ReqwestMiddleware`], the client instrumentation for `reqwest-middleware`.
//! - `sqlx`: PostgreSQL instrumentation over sqlx 0.9, as `orderscope::sqlx` (needs Rust 1.94).
//! - `moka`: moka cache instrumentation, as `orderscope::moka`.
//! - `full`: all of the above.
//!
//! # Supported Rust versions
//!
//! The minimum supported Rust version is the workspace's `rust-version` (1.88). Raising it is not
//! a breaking change, and is noted in the changelog.

#![deny(missing_docs)]

// One module per piece a service can take; `init` assembles them all.
mod builder; // TelemetryBuilder: code settings, assembly, build / build_parts
mod config; // the resolved settings
mod delivery; // export failures counted, one WARN per burst, what was not delivered
mod env; // the settings: code beats OTEL_* variables beats defaults
mod error;
mod guard; // Telemetry: flush on shutdown and drop
mod init; // init, builder
mod log_export; // OTLP log records
mod log_lines; // JSON or pretty log lines
mod order_page; // the in-flight orders page, /debug/orders
mod otlp; // the OTLP exporters
mod panic_hook;
mod parts; // TelemetryParts: the pieces, not installed
pub mod prelude;
mod propagators; // the propagators OTEL_PROPAGATORS names, spoken by every carrier
mod queue; // the bounded, counted span queue
mod startup; // the start-up line, metric descriptions
mod tls; // certificates and rustls configurations
mod use_signals; // USE samplers and the order tracker on one tick thread

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use self::builder::TelemetryBuilder;
pub use self::config::{
    BatchSettings, Compression, DEFAULT_EXPORT_TIMEOUT, DEFAULT_LOG_FILTER,
    DEFAULT_LOGS_SCHEDULED_DELAY, DEFAULT_MAX_EXPORT_BATCH_SIZE, DEFAULT_MAX_QUEUE_SIZE,
    DEFAULT_SCHEDULED_DELAY, DEFAULT_SHUTDOWN_TIMEOUT, LogExport, OtlpSettings, PemFile, Protocol,
    ResolvedConfig, Sampling, TlsMode, TlsSettings, TraceExport,
};
pub use self::delivery::EXPORT_FAILURES_METRIC;
pub use self::env::ENV_VARS;
pub use self::error::{InitError, ShutdownError};
pub use self::guard::Telemetry;
pub use self::init::{builder, init};
pub use self::order_page::{DEFAULT_ORDER_PAGE_LIMIT, OrderPage};
pub use self::panic_hook::install_panic_hook;
pub use self::parts::TelemetryParts;
pub use self::queue::SPANS_DROPPED_METRIC;

/// Order context and W3C propagation (`orderscope-context`), with the order span processor.
pub mod context {
    #[doc(no_inline)]
    pub use orderscope_context::*;
    #[doc(inline)]
    pub use orderscope_context::{OrderSpanProcessor, WithOrderFields};
}
pub use orderscope_context::{
    Channel, OrderContext, OrderSpanProcessor, Priority, WithOrder, WithOrderFields,
};
pub use orderscope_logs as logs;
pub use orderscope_logs::{LogFormat, order_event, register_stages, stage};
pub use orderscope_metrics as metrics_catalogue;

#[cfg(feature = "amqp")]
pub use orderscope_amqp as amqp;
#[cfg(feature = "moka")]
pub use orderscope_moka as moka;
#[cfg(feature = "sqlx")]
pub use orderscope_sqlx as sqlx;
#[cfg(feature = "tower")]
pub use orderscope_tower as tower;
/// The HTTP client instrumentation for `reqwest-middleware` clients (feature `reqwest`):
/// `orderscope::tower::reqwest::ClientMiddleware`.
#[cfg(feature = "reqwest")]
pub use orderscope_tower::reqwest::ClientMiddleware as ReqwestMiddleware;

pub use self::__private::ErrorType;
#[cfg(feature = "macros")]
pub use orderscope_macros::{ErrorType, order_handler, red};

pub use metrics;
pub use metrics_exporter_prometheus;
pub use opentelemetry;
pub use opentelemetry_otlp;
pub use opentelemetry_sdk;
pub use tracing;
pub use tracing_opentelemetry;

/// The README's code compiles.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
