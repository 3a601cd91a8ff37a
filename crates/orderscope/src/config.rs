//! The settings `init` resolves, as a service sees them: where spans and log records go, over
//! what transport, with which certificates; the queues; the defaults.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use orderscope_logs::LogFormat;

/// The export timeout when neither code nor `OTEL_EXPORTER_OTLP_{,TRACES_,LOGS_}TIMEOUT` set one
/// (the specification's default, which the OTLP exporter applies): 10 s.
pub const DEFAULT_EXPORT_TIMEOUT: Duration = opentelemetry_otlp::OTEL_EXPORTER_OTLP_TIMEOUT_DEFAULT;
/// The default bound on [`Telemetry::shutdown`](crate::Telemetry::shutdown) and on the flush at drop: 5 s.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// The default capacity of the span export queue (`OTEL_BSP_MAX_QUEUE_SIZE`'s spec default).
pub const DEFAULT_MAX_QUEUE_SIZE: usize = 2048;
/// The default export batch size (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`'s spec default).
pub const DEFAULT_MAX_EXPORT_BATCH_SIZE: usize = 512;
/// The default delay between two scheduled exports (`OTEL_BSP_SCHEDULE_DELAY`'s spec default).
pub const DEFAULT_SCHEDULED_DELAY: Duration = Duration::from_millis(5000);
/// The default delay between two scheduled exports of log records (`OTEL_BLRP_SCHEDULE_DELAY`'s
/// spec default).
pub const DEFAULT_LOGS_SCHEDULED_DELAY: Duration = Duration::from_millis(1000);
/// The default `tracing` filter when `RUST_LOG` is not set.
pub const DEFAULT_LOG_FILTER: &str = "info";

/// The OTLP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Protocol {
    /// OTLP over gRPC (`grpc`), usually port 4317.
    Grpc,
    /// OTLP over HTTP with protobuf bodies (`http/protobuf`), usually port 4318. The spec's default.
    HttpProtobuf,
}

impl Protocol {
    /// The name used in `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::HttpProtobuf => "http/protobuf",
        }
    }

    pub(crate) fn parse(value: &str) -> Option<Self> {
        match value.trim() {
            "grpc" => Some(Self::Grpc),
            "http/protobuf" => Some(Self::HttpProtobuf),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which traces are sampled; the values of `OTEL_TRACES_SAMPLER`.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Sampling {
    /// `always_on`: every trace.
    AlwaysOn,
    /// `always_off`: no trace.
    AlwaysOff,
    /// `traceidratio`: this fraction of traces, by trace id.
    TraceIdRatio(f64),
    /// `parentbased_always_on`: follow the parent; sample every root. The default.
    ParentBasedAlwaysOn,
    /// `parentbased_always_off`: follow the parent; sample no root.
    ParentBasedAlwaysOff,
    /// `parentbased_traceidratio`: follow the parent; sample this fraction of roots.
    ParentBasedTraceIdRatio(f64),
}

impl Sampling {
    pub(crate) fn to_sampler(self) -> opentelemetry_sdk::trace::Sampler {
        use opentelemetry_sdk::trace::Sampler;
        match self {
            Self::AlwaysOn => Sampler::AlwaysOn,
            Self::AlwaysOff => Sampler::AlwaysOff,
            Self::TraceIdRatio(ratio) => Sampler::TraceIdRatioBased(ratio),
            Self::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            Self::ParentBasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
            Self::ParentBasedTraceIdRatio(ratio) => {
                Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio)))
            }
        }
    }
}

impl fmt::Display for Sampling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AlwaysOn => f.write_str("always_on"),
            Self::AlwaysOff => f.write_str("always_off"),
            Self::TraceIdRatio(ratio) => write!(f, "traceidratio({ratio})"),
            Self::ParentBasedAlwaysOn => f.write_str("parentbased_always_on"),
            Self::ParentBasedAlwaysOff => f.write_str("parentbased_always_off"),
            Self::ParentBasedTraceIdRatio(ratio) => write!(f, "parentbased_traceidratio({ratio})"),
        }
    }
}

/// Where spans go.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum TraceExport {
    /// Exported by OTLP.
    Otlp(OtlpSettings),
    /// Given to the exporter passed to [`TelemetryBuilder::with_span_exporter`](crate::TelemetryBuilder::with_span_exporter).
    Custom,
    /// Nowhere: no endpoint is configured (or `OTEL_TRACES_EXPORTER=none`). Spans still get ids, so
    /// log lines stay correlated, but they are not exported.
    None,
    /// The SDK is disabled (`OTEL_SDK_DISABLED=true`): no spans are recorded at all.
    Disabled,
}

/// Where log records go, besides the log lines that are always written.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum LogExport {
    /// Exported by OTLP too (`OTEL_LOGS_EXPORTER=otlp` or
    /// [`TelemetryBuilder::with_logs_export`](crate::TelemetryBuilder::with_logs_export)).
    Otlp(OtlpSettings),
    /// Not exported by OTLP: the default, or log export is on but no endpoint is configured.
    None,
    /// The SDK is disabled (`OTEL_SDK_DISABLED=true`).
    Disabled,
}

/// How spans or log records are exported by OTLP.
///
/// The headers, the timeout and the compression here are those set in code. The OTLP exporter
/// reads `OTEL_EXPORTER_OTLP_{TRACES_,LOGS_}HEADERS` (else `OTEL_EXPORTER_OTLP_HEADERS`),
/// `_TIMEOUT` and `_COMPRESSION` from the process environment itself, when it is built: the
/// headers variable is merged over these headers, per key; the timeout and the compression set
/// here beat their variables.
#[derive(Clone, PartialEq)]
pub struct OtlpSettings {
    /// The URL the signal is sent to. For `http/protobuf` this includes the signal path
    /// (`/v1/traces`, `/v1/logs`).
    pub endpoint: String,
    /// The transport.
    pub protocol: Protocol,
    /// Headers set in code for every export (keys lower-case); a header of the same name in
    /// the headers variable replaces one of these. Shown masked by `Debug`.
    pub headers: Vec<(String, String)>,
    /// The time one export may take, retries included, when set in code; `None`: the
    /// exporter's, from `OTEL_EXPORTER_OTLP_{,TRACES_,LOGS_}TIMEOUT` or
    /// [`DEFAULT_EXPORT_TIMEOUT`].
    pub timeout: Option<Duration>,
    /// How export requests are compressed, when set in code; `None`: as
    /// `OTEL_EXPORTER_OTLP_{,TRACES_,LOGS_}COMPRESSION` says, else not at all.
    pub compression: Option<Compression>,
    /// The certificates for an `https://` endpoint.
    pub tls: TlsSettings,
}

impl OtlpSettings {
    /// How the connection to the endpoint is secured.
    pub fn tls_mode(&self) -> TlsMode {
        if !self
            .endpoint
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("https://")
        {
            TlsMode::Plaintext
        } else if self.tls.client_certificate.is_some() {
            TlsMode::MutualTls
        } else if self.tls.certificate.is_some() {
            TlsMode::CustomCa
        } else {
            TlsMode::SystemRoots
        }
    }
}

/// How export requests are compressed (as `OTEL_EXPORTER_OTLP_COMPRESSION=gzip` does).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Compression {
    /// `gzip`.
    Gzip,
}

impl Compression {
    /// The name used in `OTEL_EXPORTER_OTLP_COMPRESSION`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A PEM file named in code or in a variable, kept with where it was named so that an error can
/// say which setting to fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PemFile {
    /// The file.
    pub path: PathBuf,
    /// The variable that named it (`OTEL_EXPORTER_OTLP_CERTIFICATE`, …), or the builder method.
    pub setting: &'static str,
}

/// The certificates of an OTLP connection over TLS. Used only for `https://` endpoints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsSettings {
    /// The CA that signs the collector's certificate (`OTEL_EXPORTER_OTLP_CERTIFICATE`). When
    /// set, it is trusted *instead of* the platform's roots.
    pub certificate: Option<PemFile>,
    /// The client certificate for mutual TLS (`OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`).
    pub client_certificate: Option<PemFile>,
    /// The client certificate's private key (`OTEL_EXPORTER_OTLP_CLIENT_KEY`).
    pub client_key: Option<PemFile>,
}

/// How an OTLP connection is secured; named on the start-up line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsMode {
    /// `http://`: no TLS.
    Plaintext,
    /// `https://`, the collector's certificate checked against the platform's roots.
    SystemRoots,
    /// `https://`, the collector's certificate checked against the CA given.
    CustomCa,
    /// `https://` with a client certificate.
    MutualTls,
}

impl TlsMode {
    /// `none`, `system roots`, `custom CA` or `mutual TLS`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "none",
            Self::SystemRoots => "system roots",
            Self::CustomCa => "custom CA",
            Self::MutualTls => "mutual TLS",
        }
    }
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for OtlpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpSettings")
            .field("endpoint", &self.endpoint)
            .field("protocol", &self.protocol)
            .field("headers", &MaskedHeaders(&self.headers))
            .field("timeout", &self.timeout)
            .field("compression", &self.compression)
            .field("tls", &self.tls)
            .finish()
    }
}

/// Header names with their values masked: `authorization=***,x-tenant=***`.
pub(crate) struct MaskedHeaders<'a>(pub(crate) &'a [(String, String)]);

impl fmt::Display for MaskedHeaders<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (key, _)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{key}=***")?;
        }
        Ok(())
    }
}

impl fmt::Debug for MaskedHeaders<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// An export queue (of spans or of log records).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchSettings {
    /// Items that may wait for export; more are dropped.
    pub max_queue_size: usize,
    /// Items per export.
    pub max_export_batch_size: usize,
    /// Delay between two scheduled exports.
    pub scheduled_delay: Duration,
}

/// The configuration `init` resolved from code, environment and defaults.
///
/// Its `Debug` output masks header values.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ResolvedConfig {
    /// `service.name`.
    pub service_name: String,
    /// Resource attributes other than `service.name`, sorted by key.
    pub resource_attributes: Vec<(String, String)>,
    /// Where spans go.
    pub traces: TraceExport,
    /// Which traces are sampled.
    pub sampling: Sampling,
    /// The span export queue.
    pub batch: BatchSettings,
    /// Where log records go by OTLP. Log lines are written to the log writer either way.
    pub logs: LogExport,
    /// The log record export queue (`OTEL_BLRP_*`), used when [`logs`](Self::logs) is OTLP.
    pub logs_batch: BatchSettings,
    /// How log lines are written.
    pub log_format: LogFormat,
    /// The `tracing` filter directives.
    pub log_filter: String,
    /// The bound on [`Telemetry::shutdown`](crate::Telemetry::shutdown) and on the flush at drop.
    pub shutdown_timeout: Duration,
    /// Environment values that were ignored, and why. `init` logs each as a WARN line.
    pub warnings: Vec<String>,
}
