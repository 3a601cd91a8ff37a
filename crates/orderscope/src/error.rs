//! Errors of `init` and `shutdown`.

use std::time::Duration;

/// Why [`init`](crate::init) or [`TelemetryBuilder::build`](crate::TelemetryBuilder::build) failed.
///
/// Invalid *environment* values never cause an error: they are ignored and reported as WARN lines
/// after start-up. Errors come from settings made in code and from globals that are already taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// orderscope was already initialised in this process. Telemetry is process-wide: keep the
    /// first [`Telemetry`](crate::Telemetry) and pass it (or its `PrometheusHandle`) around.
    #[error("orderscope is already initialised in this process")]
    AlreadyInitialized,
    /// Another global `tracing` subscriber was installed before `init`.
    #[error("a global tracing subscriber is already installed")]
    SubscriberAlreadySet(#[source] tracing::subscriber::SetGlobalDefaultError),
    /// Another global `metrics` recorder was installed before `init`. The tracing subscriber
    /// was installed already; logs and spans work, metrics go to the other recorder.
    #[error("a global metrics recorder is already installed")]
    RecorderAlreadySet,
    /// The log filter given in code is not valid `tracing_subscriber::EnvFilter` syntax.
    #[error("invalid log filter {filter:?}")]
    InvalidLogFilter {
        /// The filter as given.
        filter: String,
        /// What is wrong with it.
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    /// An OTLP header given in code is not a valid HTTP header name or value.
    #[error("invalid OTLP header {name:?}")]
    InvalidHeader {
        /// The header name as given.
        name: String,
    },
    /// An OTLP exporter (of spans or of log records) could not be built (for example an
    /// endpoint that is not a URL).
    #[error("cannot build the OTLP exporter")]
    Exporter(#[source] opentelemetry_otlp::ExporterBuildError),
    /// The HTTP client for OTLP/HTTP export could not be built.
    #[error("cannot build the OTLP HTTP client")]
    HttpClient(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A background thread (OTLP gRPC runtime, OTLP HTTP client set-up, metrics upkeep) could not be started.
    #[error("cannot start the {what} thread")]
    Thread {
        /// Which thread.
        what: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

/// Why [`Telemetry::shutdown`](crate::Telemetry::shutdown) did not finish cleanly.
///
/// Shutdown never blocks longer than its bound; whatever could not be flushed within it is lost.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShutdownError {
    /// The pending spans (or log records) were not flushed within the bound.
    #[error("spans or log records were not flushed within {0:?}")]
    Timeout(Duration),
    /// The final export failed (the collector is unreachable or refused the spans or log
    /// records).
    #[error("the final export failed: {0}")]
    Export(String),
}
