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
    /// Another global `tracing` subscriber was installed before `init`. Nothing was installed.
    /// To add orderscope to that subscriber, use
    /// [`build_parts`](crate::TelemetryBuilder::build_parts).
    #[error(
        "installing the tracing subscriber: another global subscriber is already installed (add orderscope's layer to it with `build_parts`)"
    )]
    SubscriberAlreadySet,
    /// Another global `metrics` recorder was installed before `init`. Nothing was installed.
    /// To keep that recorder, turn orderscope's off with
    /// [`with_prometheus_recorder(false)`](crate::TelemetryBuilder::with_prometheus_recorder).
    #[error(
        "installing the Prometheus recorder: another global metrics recorder is already installed (keep it with `with_prometheus_recorder(false)`)"
    )]
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
    #[error("building the OTLP exporter: {0}")]
    Exporter(#[source] opentelemetry_otlp::ExporterBuildError),
    /// A certificate or key file for OTLP over TLS is missing, unreadable or holds no usable
    /// PEM.
    #[error("reading the OTLP TLS settings: {setting}={}: {reason}", path.display())]
    Certificate {
        /// The variable (`OTEL_EXPORTER_OTLP_CERTIFICATE`, …) or builder method that named it.
        setting: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The endpoint is `https://` (or certificates are set) but the crate was built without
    /// its `tls` feature.
    #[error(
        "building the OTLP exporter: the endpoint {endpoint} is https:// but orderscope was built without its `tls` feature"
    )]
    TlsUnavailable {
        /// The endpoint.
        endpoint: String,
    },
    /// The HTTP client for OTLP/HTTP export could not be built.
    #[error("building the OTLP HTTP client: {0}")]
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
/// Only telemetry is lost: a service can log this (shutdown logs it as a WARN line already) and
/// end with success.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShutdownError {
    /// Spans (or log records) were not delivered within the bound: how many, where to, and why,
    /// e.g. "2 span batches (7 spans) not delivered to http://127.0.0.1:4318/v1/traces within
    /// 5s: no answer".
    #[error("{0}")]
    NotDelivered(String),
    /// The pending spans (or log records) were not flushed within the bound.
    #[error("spans or log records were not flushed within {0:?}")]
    Timeout(Duration),
    /// The final export failed (the collector is unreachable or refused the spans or log
    /// records).
    #[error("the final export failed: {0}")]
    Export(String),
}
