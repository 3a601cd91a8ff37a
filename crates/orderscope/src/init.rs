//! `init`, the builder, and the pieces of the span pipeline it assembles.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry::logs::LogRecord as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_otlp::{
    ExporterBuildError, HttpExporterBuilderSet, NoExporterBuilderSet, TonicExporterBuilderSet,
    WithExportConfig, WithHttpConfig, WithTonicConfig,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{
    BatchLogProcessor, LogBatch, LogExporter, LogProcessor, SdkLogRecord, SdkLoggerProvider,
};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, SpanData, SpanExporter,
    SpanProcessor,
};
use orderscope_context::{OrderContext, OrderSpanProcessor};
use orderscope_logs::{JsonLayer, LogFormat};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::{Layer as _, SubscriberExt as _};

use crate::env::{
    self, CodeSettings, LogExport, MaskedHeaders, OtlpSettings, Protocol, ResolvedConfig, Sampling,
    Signal, TraceExport,
};
use crate::error::InitError;
use crate::guard::{OtlpRuntime, Telemetry, TelemetryInner, Upkeep};

/// Counter of failed exports, label `signal` (`traces`, `logs`).
pub const EXPORT_FAILURES_METRIC: &str = "orderscope_export_failures_total";
/// Counter of spans that were never exported, label `reason`: `queue_full` (the bounded export
/// queue was full), `export_failed` (the batch they were in failed to export), `shutdown` (ended
/// after shutdown).
pub const SPANS_DROPPED_METRIC: &str = "orderscope_spans_dropped_total";

/// The instrumentation scope of spans created through `tracing`.
const TRACER_NAME: &str = "orderscope";

static INITIALIZED: AtomicBool = AtomicBool::new(false);

/// Installs the whole telemetry pipeline for `service_name`, configured from the environment.
///
/// The same as `builder(service_name).build()`; see [`TelemetryBuilder`] for what is installed
/// and which variables are read.
///
/// # Errors
///
/// See [`InitError`]: a second call returns [`InitError::AlreadyInitialized`].
///
/// # Example
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let telemetry = orderscope::init("mes")?;
/// tracing::info!("ready");
/// telemetry.shutdown()?;
/// # Ok(()) }
/// ```
pub fn init(service_name: &str) -> Result<Telemetry, InitError> {
    builder(service_name).build()
}

/// A builder for the telemetry pipeline of `service_name`. Settings made here beat the
/// corresponding environment variables, which beat the defaults.
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let telemetry = orderscope::builder("mes")
///     .with_resource_attribute("deployment.environment.name", "staging")
///     .with_shutdown_timeout(Duration::from_secs(2))
///     .build()?;
/// # drop(telemetry); Ok(()) }
/// ```
pub fn builder(service_name: &str) -> TelemetryBuilder {
    TelemetryBuilder {
        code: CodeSettings {
            service_name: service_name.to_owned(),
            ..CodeSettings::default()
        },
        env: None,
        log_writer: None,
        exporter: None,
        panic_hook: true,
    }
}

type ExporterFactory =
    Box<dyn FnOnce(Arc<QueueState>, BatchConfigBuilder) -> BatchSpanProcessor + Send>;

/// Configures and installs the telemetry pipeline. Created by [`builder`].
///
/// [`build`](Self::build) installs, in one call:
///
/// - a global `tracing` subscriber: [`EnvFilter`] from `RUST_LOG` (default `info`); log lines as
///   one JSON object per line ([`JsonLayer`], the default) or human-readable
///   (`ORDERSCOPE_LOG_FORMAT=pretty`); and the `tracing-opentelemetry` layer;
/// - an OpenTelemetry [`SdkTracerProvider`] with `orderscope_context::OrderSpanProcessor` (order
///   fields on every span) and a batch span processor with a bounded queue, exporting by OTLP when
///   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` is set, over
///   `OTEL_EXPORTER_OTLP_PROTOCOL` = `http/protobuf` (the default) or `grpc`; also installed as
///   the global tracer provider;
/// - when `OTEL_LOGS_EXPORTER=otlp` (or [`with_logs_export(true)`](Self::with_logs_export)): an
///   OpenTelemetry [`SdkLoggerProvider`] with a batch log processor and an OTLP log exporter
///   (endpoint, protocol, headers and timeout resolved as for spans, with the `LOGS` variables in
///   place of the `TRACES` ones), fed by the `opentelemetry-appender-tracing` layer: every event
///   becomes a log record with the trace and span ids of the current span, the order fields in
///   scope and the same resource as the spans. Log lines are written as well. Not installed as
///   a global. The specification's default for `OTEL_LOGS_EXPORTER` is `otlp`; orderscope's is
///   `none`, because the log lines are usually collected already;
/// - globally, the propagators `OTEL_PROPAGATORS` names (default `tracecontext,baggage`: W3C
///   Trace Context and Baggage with the order in `baggage`, through orderscope's own codecs;
///   also `b3`, `b3multi`, `none`; a WARN names any other), also spoken by orderscope's server,
///   client and AMQP carriers;
/// - the Prometheus recorder from `orderscope_metrics::prometheus_builder()` (explicit buckets
///   for every histogram of the catalogue), globally, with upkeep every 5 s;
/// - a panic hook that logs the panic as an ERROR event (with the trace ids of the span it
///   happened in) and then calls the previous hook.
///
/// Then it logs one INFO line with the resolved configuration (header values masked), a WARN
/// line for each ignored environment value, and a WARN line when spans are not exported.
///
/// Variables read (the list is [`ENV_VARS`](crate::ENV_VARS)): `OTEL_SDK_DISABLED`,
/// `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_EXPORTER` (`otlp` | `none`,
/// default `otlp`), `OTEL_LOGS_EXPORTER` (`otlp` | `none`, default `none`),
/// `OTEL_TRACES_SAMPLER` (+ `_ARG`),
/// `OTEL_EXPORTER_OTLP_{,TRACES_,LOGS_}{ENDPOINT,PROTOCOL,HEADERS,TIMEOUT}`,
/// `OTEL_BSP_{MAX_QUEUE_SIZE,MAX_EXPORT_BATCH_SIZE,SCHEDULE_DELAY}` (spans),
/// `OTEL_BLRP_{MAX_QUEUE_SIZE,MAX_EXPORT_BATCH_SIZE,SCHEDULE_DELAY}` (log records), `RUST_LOG`,
/// `ORDERSCOPE_LOG_FORMAT`. The service name given in code beats `OTEL_SERVICE_NAME`, which is
/// used when the name given is empty.
///
/// Export never blocks the caller: spans wait in a bounded queue (spans beyond it are dropped
/// and counted in `orderscope_spans_dropped_total{reason="queue_full"}`); failed exports are
/// counted in `orderscope_export_failures_total{signal="traces"}`. Exported log records wait in
/// a bounded queue of their own (records beyond it are dropped); failed exports are counted in
/// `orderscope_export_failures_total{signal="logs"}`.
pub struct TelemetryBuilder {
    code: CodeSettings,
    env: Option<BTreeMap<String, String>>,
    log_writer: Option<BoxMakeWriter>,
    exporter: Option<ExporterFactory>,
    panic_hook: bool,
}

impl fmt::Debug for TelemetryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryBuilder")
            .field("service_name", &self.code.service_name)
            .field("custom_exporter", &self.exporter.is_some())
            .field("panic_hook", &self.panic_hook)
            .finish_non_exhaustive()
    }
}

impl TelemetryBuilder {
    /// Adds a resource attribute. Beats the same key in `OTEL_RESOURCE_ATTRIBUTES`.
    /// `service.name` is ignored here: it is the name given to [`builder`].
    pub fn with_resource_attribute(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.code
            .resource_attributes
            .push((key.into(), value.into()));
        self
    }

    /// Exports spans by OTLP to this base endpoint (`http://collector:4318`; for `http/protobuf`
    /// the path `/v1/traces` is appended). Beats `OTEL_EXPORTER_OTLP_{,TRACES_}ENDPOINT`.
    /// Defaults to no export. Log records go there too (`/v1/logs`) when
    /// [`with_logs_export`](Self::with_logs_export) or `OTEL_LOGS_EXPORTER` turn their export on;
    /// the endpoint alone does not.
    pub fn with_otlp_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.code.otlp_endpoint = Some(endpoint.into());
        self
    }

    /// The OTLP transport. Beats `OTEL_EXPORTER_OTLP_{,TRACES_,LOGS_}PROTOCOL`. Defaults to
    /// [`Protocol::HttpProtobuf`].
    pub fn with_otlp_protocol(mut self, protocol: Protocol) -> Self {
        self.code.protocol = Some(protocol);
        self
    }

    /// Adds a header to every OTLP export. Beats the same key in
    /// `OTEL_EXPORTER_OTLP_{,TRACES_,LOGS_}HEADERS`. Values never appear in logs.
    pub fn with_otlp_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.code.headers.push((name.into(), value.into()));
        self
    }

    /// How long one export may take, retries included. Beats
    /// `OTEL_EXPORTER_OTLP_{,TRACES_,LOGS_}TIMEOUT`. Defaults to 10 s.
    pub fn with_export_timeout(mut self, timeout: Duration) -> Self {
        self.code.export_timeout = Some(timeout);
        self
    }

    /// Which traces are sampled. Beats `OTEL_TRACES_SAMPLER`. Defaults to
    /// [`Sampling::ParentBasedAlwaysOn`].
    pub fn with_sampling(mut self, sampling: Sampling) -> Self {
        self.code.sampling = Some(sampling);
        self
    }

    /// Disables (or, with `false`, enables despite `OTEL_SDK_DISABLED=true`) span recording and
    /// the OTLP export of log records. Log lines and metrics stay on. Defaults to
    /// `OTEL_SDK_DISABLED`, else enabled.
    pub fn with_sdk_disabled(mut self, disabled: bool) -> Self {
        self.code.sdk_disabled = Some(disabled);
        self
    }

    /// How log lines are written. Beats `ORDERSCOPE_LOG_FORMAT`. Defaults to [`LogFormat::Json`].
    pub fn with_log_format(mut self, format: LogFormat) -> Self {
        self.code.log_format = Some(format);
        self
    }

    /// `tracing` filter directives (`EnvFilter` syntax, e.g. `info,hyper=warn`). Beats
    /// `RUST_LOG`. Defaults to `info`.
    ///
    /// # Errors
    ///
    /// [`build`](Self::build) returns [`InitError::InvalidLogFilter`] when the directives do not
    /// parse. (An invalid `RUST_LOG` is ignored with a warning instead.)
    pub fn with_log_filter(mut self, directives: impl Into<String>) -> Self {
        self.code.log_filter = Some(directives.into());
        self
    }

    /// Where log lines go. Defaults to standard output.
    pub fn with_log_writer<W>(mut self, make_writer: W) -> Self
    where
        W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
    {
        self.log_writer = Some(BoxMakeWriter::new(make_writer));
        self
    }

    /// Capacity of the span export queue; spans beyond it are dropped and counted. Beats
    /// `OTEL_BSP_MAX_QUEUE_SIZE`. Defaults to 2048.
    pub fn with_max_queue_size(mut self, size: usize) -> Self {
        self.code.max_queue_size = Some(size.max(1));
        self
    }

    /// Spans per export. Beats `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`. Defaults to 512.
    pub fn with_max_export_batch_size(mut self, size: usize) -> Self {
        self.code.max_export_batch_size = Some(size.max(1));
        self
    }

    /// Delay between two scheduled exports. Beats `OTEL_BSP_SCHEDULE_DELAY`. Defaults to 5 s.
    pub fn with_scheduled_delay(mut self, delay: Duration) -> Self {
        self.code.scheduled_delay = Some(delay);
        self
    }

    /// The bound on [`Telemetry::shutdown`] and on the flush when the [`Telemetry`] is dropped.
    /// Defaults to 5 s.
    pub fn with_shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.code.shutdown_timeout = Some(timeout);
        self
    }

    /// Exports spans with this exporter instead of OTLP (through the same bounded, counted
    /// queue). Beats every `OTEL_EXPORTER_OTLP_*` variable.
    pub fn with_span_exporter<E>(mut self, exporter: E) -> Self
    where
        E: SpanExporter + 'static,
    {
        self.code.custom_exporter = true;
        self.exporter = Some(Box::new(move |queue, config| {
            batch_processor(CountingExporter::new(exporter, queue), config)
        }));
        self
    }

    /// Exports log records by OTLP too (`true`) or not (`false`), to the endpoint spans go to
    /// (`/v1/logs` for HTTP) unless `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT` names another. Log lines
    /// are written to the log writer either way. Beats `OTEL_LOGS_EXPORTER`. Defaults to no
    /// export.
    ///
    /// Every event that passes the log filter becomes a log record with the severity, the
    /// message as body, the event fields and the order fields in scope as attributes, and the
    /// trace and span ids of the current span. Records wait in a bounded queue
    /// (`OTEL_BLRP_MAX_QUEUE_SIZE`, default 2048; records beyond it are dropped); failed exports
    /// are counted in `orderscope_export_failures_total{signal="logs"}`.
    pub fn with_logs_export(mut self, export: bool) -> Self {
        self.code.logs_export = Some(export);
        self
    }

    /// Whether to install the panic hook. Defaults to `true`.
    pub fn with_panic_hook(mut self, install: bool) -> Self {
        self.panic_hook = install;
        self
    }

    /// Reads configuration from these variables instead of the process environment. Meant for
    /// tests and for services that load their configuration from elsewhere; variables not in
    /// the map count as unset.
    pub fn with_env<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.env = Some(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        );
        self
    }

    /// Resolves the configuration this builder would install, without installing anything.
    pub fn resolve(&self) -> ResolvedConfig {
        let env = self.env.clone().unwrap_or_else(env::process_env);
        env::resolve(&self.code, &env)
    }

    /// Installs the pipeline. See [`TelemetryBuilder`] for what is installed.
    ///
    /// # Errors
    ///
    /// [`InitError::AlreadyInitialized`] when orderscope was initialised before in this
    /// process; the other variants of [`InitError`] for invalid code settings and globals
    /// taken by other libraries.
    pub fn build(self) -> Result<Telemetry, InitError> {
        if INITIALIZED
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(InitError::AlreadyInitialized);
        }
        match self.build_inner() {
            Ok(telemetry) => Ok(telemetry),
            Err((error, installed_globals)) => {
                if !installed_globals {
                    INITIALIZED.store(false, Ordering::Release);
                }
                Err(error)
            }
        }
    }

    /// Builds everything, then installs the globals. The flag says whether a global was
    /// installed before the error (then `init` cannot be retried).
    fn build_inner(self) -> Result<Telemetry, (InitError, bool)> {
        let env = self.env.unwrap_or_else(env::process_env);
        let mut config = env::resolve(&self.code, &env);
        let before_globals = |e| (e, false);

        // Log filter: invalid code directives are an error; invalid env directives a warning.
        let filter = match EnvFilter::try_new(&config.log_filter) {
            Ok(filter) => filter,
            Err(source) if self.code.log_filter.is_some() => {
                return Err(before_globals(InitError::InvalidLogFilter {
                    filter: config.log_filter,
                    source,
                }));
            }
            Err(_) => {
                config.warnings.push(format!(
                    "RUST_LOG={:?} is not a valid filter; using `{}`",
                    config.log_filter,
                    env::DEFAULT_LOG_FILTER
                ));
                config.log_filter = env::DEFAULT_LOG_FILTER.to_owned();
                EnvFilter::new(env::DEFAULT_LOG_FILTER)
            }
        };

        // The exporters first: building them can fail, and nothing runs yet that would need
        // stopping then (a gRPC runtime stops when dropped).
        let mut otlp_runtime = None;
        let span_exporter = match &config.traces {
            TraceExport::Otlp(otlp) => Some(
                otlp_exporter(
                    opentelemetry_otlp::SpanExporter::builder(),
                    otlp,
                    env::TRACES,
                    &mut otlp_runtime,
                )
                .map_err(before_globals)?,
            ),
            _ => None,
        };
        let log_exporter = match &config.logs {
            LogExport::Otlp(otlp) => Some(
                otlp_exporter(
                    opentelemetry_otlp::LogExporter::builder(),
                    otlp,
                    env::LOGS,
                    &mut otlp_runtime,
                )
                .map_err(before_globals)?,
            ),
            _ => None,
        };

        // The span pipeline.
        let resource = resource(&config);
        let queue = Arc::new(QueueState::new(config.batch.max_queue_size));
        let batch_config = BatchConfigBuilder::default()
            .with_max_queue_size(config.batch.max_queue_size)
            .with_max_export_batch_size(config.batch.max_export_batch_size)
            .with_scheduled_delay(config.batch.scheduled_delay);
        let exporting: Option<BatchSpanProcessor> = match (span_exporter, self.exporter) {
            (Some(exporter), _) => Some(batch_processor(
                CountingExporter::new(exporter, queue.clone()),
                batch_config,
            )),
            (None, Some(factory)) if config.traces == TraceExport::Custom => {
                Some(factory(queue.clone(), batch_config))
            }
            _ => None,
        };

        let provider = match config.traces {
            TraceExport::Disabled => None,
            _ => {
                let builder = SdkTracerProvider::builder()
                    .with_resource(resource.clone())
                    .with_sampler(config.sampling.to_sampler());
                // One processor: with two, the SDK clones every finished span once per processor.
                let builder = match exporting {
                    Some(processor) => {
                        builder.with_span_processor(OrderSpanProcessor::wrap(QueueGuard {
                            inner: processor,
                            queue: queue.clone(),
                        }))
                    }
                    None => builder.with_span_processor(OrderSpanProcessor),
                };
                Some(builder.build())
            }
        };

        // The log record pipeline, when log records are exported.
        let logs_shut_down = Arc::new(AtomicBool::new(false));
        let logger_provider = log_exporter.map(|exporter| {
            let batch = opentelemetry_sdk::logs::BatchConfigBuilder::default()
                .with_max_queue_size(config.logs_batch.max_queue_size)
                .with_max_export_batch_size(config.logs_batch.max_export_batch_size)
                .with_scheduled_delay(config.logs_batch.scheduled_delay)
                .build();
            SdkLoggerProvider::builder()
                .with_resource(resource)
                // Runs first, so the batch processor queues the record with the order fields.
                .with_log_processor(OrderLogProcessor)
                .with_log_processor(
                    BatchLogProcessor::builder(LogFailureCounter(exporter))
                        .with_batch_config(batch)
                        .build(),
                )
                .build()
        });

        // The tracing subscriber.
        // Colours only on a terminal: never in files, pipes or a custom writer.
        let ansi =
            self.log_writer.is_none() && std::io::IsTerminal::is_terminal(&std::io::stdout());
        let writer = self
            .log_writer
            .unwrap_or_else(|| BoxMakeWriter::new(std::io::stdout));
        // Concrete layer types (an absent layer is `None`): no dynamic dispatch per callback.
        let (json_layer, pretty_layer) = match config.log_format {
            LogFormat::Json => (
                Some(JsonLayer::new(&config.service_name).with_writer(writer)),
                None,
            ),
            LogFormat::Pretty => (
                None,
                Some(
                    tracing_subscriber::fmt::layer()
                        .pretty()
                        .with_ansi(ansi)
                        .with_writer(writer),
                ),
            ),
        };
        let otel_layer = provider.as_ref().map(|provider| {
            tracing_opentelemetry::layer().with_tracer(provider.tracer(TRACER_NAME))
        });
        // The bridge reads trace and span ids from the OpenTelemetry context, which the layer
        // above makes current while a span is entered.
        let logs_layer = logger_provider.as_ref().map(|logger_provider| {
            OpenTelemetryTracingBridge::new(logger_provider).with_filter(BridgeFilter {
                shut_down: logs_shut_down.clone(),
            })
        });
        let subscriber = tracing_subscriber::registry()
            .with(filter)
            .with(json_layer)
            .with(pretty_layer)
            .with(otel_layer)
            .with(logs_layer);

        // Globals: the subscriber first (the one most often taken already), then the rest.
        if let Err(error) = tracing::subscriber::set_global_default(subscriber) {
            if let Some(provider) = &provider {
                let _ = provider.shutdown_with_timeout(Duration::from_millis(100));
            }
            if let Some(logger_provider) = &logger_provider {
                let _ = logger_provider.shutdown_with_timeout(Duration::from_millis(100));
            }
            return Err(before_globals(InitError::SubscriberAlreadySet(error)));
        }
        crate::propagators::install(env.get(crate::propagators::OTEL_PROPAGATORS));
        if let Some(provider) = &provider {
            opentelemetry::global::set_tracer_provider(provider.clone());
        }
        if self.panic_hook {
            install_panic_hook();
        }

        let recorder = orderscope_metrics::prometheus_builder().build_recorder();
        let prometheus = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            return Err((InitError::RecorderAlreadySet, true));
        }
        orderscope_metrics::describe_all();
        describe_own_metrics(logger_provider.is_some());
        let upkeep = Upkeep::start(prometheus.clone()).map_err(|source| {
            (
                InitError::Thread {
                    what: "metrics upkeep",
                    source,
                },
                true,
            )
        })?;

        log_startup(&config);

        Ok(Telemetry::new(
            TelemetryInner {
                provider,
                logger_provider,
                logs_shut_down,
                queue,
                otlp_runtime,
                upkeep: Some(upkeep),
            },
            prometheus,
            config,
        ))
    }
}

fn resource(config: &ResolvedConfig) -> Resource {
    Resource::builder_empty()
        .with_detector(Box::new(
            opentelemetry_sdk::resource::TelemetryResourceDetector,
        ))
        .with_attributes(
            config
                .resource_attributes
                .iter()
                .map(|(k, v)| opentelemetry::KeyValue::new(k.clone(), v.clone())),
        )
        .with_service_name(config.service_name.clone())
        .build()
}

fn batch_processor<E>(exporter: E, config: BatchConfigBuilder) -> BatchSpanProcessor
where
    E: SpanExporter + Send + 'static,
{
    BatchSpanProcessor::builder(exporter)
        .with_batch_config(config.build())
        .build()
}

fn describe_own_metrics(logs_exported: bool) {
    metrics::describe_counter!(EXPORT_FAILURES_METRIC, "Exports that failed, by signal.");
    metrics::describe_counter!(
        SPANS_DROPPED_METRIC,
        "Spans that were never exported, by reason (queue_full, export_failed, shutdown)."
    );
    // Register the series at zero so dashboards and alerts see them before the first failure.
    metrics::counter!(EXPORT_FAILURES_METRIC, "signal" => env::TRACES.name).absolute(0);
    if logs_exported {
        metrics::counter!(EXPORT_FAILURES_METRIC, "signal" => env::LOGS.name).absolute(0);
    }
    for reason in ["queue_full", "export_failed", "shutdown"] {
        metrics::counter!(SPANS_DROPPED_METRIC, "reason" => reason).absolute(0);
    }
}

fn log_startup(config: &ResolvedConfig) {
    let otlp = match &config.traces {
        TraceExport::Otlp(otlp) => Some(otlp),
        _ => None,
    };
    let exporter = match config.traces {
        TraceExport::Otlp(_) => "otlp",
        TraceExport::Custom => "custom",
        TraceExport::None => "none",
        TraceExport::Disabled => "disabled",
    };
    let resource = (!config.resource_attributes.is_empty()).then(|| {
        config
            .resource_attributes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    });
    let headers = otlp
        .filter(|o| !o.headers.is_empty())
        .map(|o| MaskedHeaders(&o.headers).to_string());
    let (logs_exporter, logs_otlp) = match &config.logs {
        LogExport::Otlp(otlp) => ("otlp", Some(otlp)),
        LogExport::Disabled => ("disabled", None),
        _ => ("none", None),
    };
    let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    // `service.name` is on every line already; empty settings are left out.
    tracing::info!(
        target: "orderscope",
        resource = resource.as_deref(),
        traces_exporter = exporter,
        endpoint = otlp.map(|o| o.endpoint.as_str()),
        protocol = otlp.map(|o| o.protocol.as_str()),
        headers = headers.as_deref(),
        export_timeout_ms = otlp.map(|o| millis(o.timeout)),
        logs_exporter,
        logs_endpoint = logs_otlp.map(|o| o.endpoint.as_str()),
        logs_protocol = logs_otlp.map(|o| o.protocol.as_str()),
        sampler = %config.sampling,
        queue_size = config.batch.max_queue_size,
        log_format = %config.log_format,
        log_filter = %config.log_filter,
        shutdown_timeout_ms = millis(config.shutdown_timeout),
        "orderscope initialised"
    );
    for warning in &config.warnings {
        tracing::warn!(target: "orderscope", "{warning}");
    }
    match config.traces {
        TraceExport::None => tracing::warn!(
            target: "orderscope",
            "spans are not exported: set OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) to send them to a collector"
        ),
        TraceExport::Disabled => tracing::warn!(
            target: "orderscope",
            "spans are not recorded: the OpenTelemetry SDK is disabled (OTEL_SDK_DISABLED=true)"
        ),
        _ if config.sampling == Sampling::AlwaysOff
            || config.sampling == Sampling::ParentBasedAlwaysOff =>
        {
            tracing::warn!(
                target: "orderscope",
                "spans are exported but new traces are never sampled (OTEL_TRACES_SAMPLER={})",
                config.sampling
            )
        }
        _ => {}
    }
}

fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
            .unwrap_or("Box<dyn Any>");
        match info.location() {
            Some(location) => tracing::error!(
                target: "panic",
                file = location.file(),
                line = location.line(),
                column = location.column(),
                "panicked: {payload}"
            ),
            None => tracing::error!(target: "panic", "panicked: {payload}"),
        }
        previous(info);
    }));
}

/// The OTLP exporter builders of the SDK (spans, log records), so one function sets up both.
trait OtlpExporterBuilder {
    /// What the builder builds.
    type Exporter;
    /// The builder once HTTP is chosen.
    type Http: WithExportConfig + WithHttpConfig;
    /// The builder once gRPC is chosen.
    type Grpc: WithExportConfig + WithTonicConfig;

    fn http(self) -> Self::Http;
    fn grpc(self) -> Self::Grpc;
    fn build_http(builder: Self::Http) -> Result<Self::Exporter, ExporterBuildError>;
    fn build_grpc(builder: Self::Grpc) -> Result<Self::Exporter, ExporterBuildError>;
}

/// Implements [`OtlpExporterBuilder`] for an SDK builder type; the SDK's builders share method
/// names but no trait.
macro_rules! otlp_exporter_builder {
    ($builder:ident => $exporter:ty) => {
        impl OtlpExporterBuilder for opentelemetry_otlp::$builder<NoExporterBuilderSet> {
            type Exporter = $exporter;
            type Http = opentelemetry_otlp::$builder<HttpExporterBuilderSet>;
            type Grpc = opentelemetry_otlp::$builder<TonicExporterBuilderSet>;

            fn http(self) -> Self::Http {
                self.with_http()
            }
            fn grpc(self) -> Self::Grpc {
                self.with_tonic()
            }
            fn build_http(builder: Self::Http) -> Result<Self::Exporter, ExporterBuildError> {
                builder.build()
            }
            fn build_grpc(builder: Self::Grpc) -> Result<Self::Exporter, ExporterBuildError> {
                builder.build()
            }
        }
    };
}

otlp_exporter_builder!(SpanExporterBuilder => opentelemetry_otlp::SpanExporter);
otlp_exporter_builder!(LogExporterBuilder => opentelemetry_otlp::LogExporter);

/// Builds the OTLP exporter of `signal` with the resolved endpoint, protocol, headers and
/// timeout. gRPC exporters get their connection tasks on the private runtime in `runtime`,
/// started by the first of them.
fn otlp_exporter<B: OtlpExporterBuilder>(
    builder: B,
    otlp: &OtlpSettings,
    signal: Signal,
    runtime: &mut Option<OtlpRuntime>,
) -> Result<B::Exporter, InitError> {
    match otlp.protocol {
        Protocol::HttpProtobuf => {
            let client = HttpHeaderOverride {
                headers: http_headers(&otlp.headers)?,
                env_headers: signal.headers,
                inner: blocking_http_client(otlp.timeout)?,
            };
            let builder = builder
                .http()
                .with_endpoint(otlp.endpoint.clone())
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_timeout(otlp.timeout)
                .with_http_client(client);
            B::build_http(builder).map_err(InitError::Exporter)
        }
        Protocol::Grpc => {
            let metadata = grpc_metadata(&otlp.headers)?;
            let runtime = match runtime {
                Some(runtime) => runtime,
                None => {
                    runtime.insert(OtlpRuntime::start().map_err(|source| InitError::Thread {
                        what: "OTLP gRPC runtime",
                        source,
                    })?)
                }
            };
            // tonic's channel spawns its connection tasks on the current runtime: ours, so
            // export works inside or outside the service's runtime and keeps working while that
            // runtime is blocked or shutting down.
            let _entered = runtime.handle().enter();
            let builder = builder
                .grpc()
                .with_endpoint(otlp.endpoint.clone())
                .with_protocol(opentelemetry_otlp::Protocol::Grpc)
                .with_timeout(otlp.timeout)
                .with_interceptor(HeaderOverride {
                    metadata: Arc::new(metadata),
                    env_headers: signal.headers,
                });
            B::build_grpc(builder).map_err(InitError::Exporter)
        }
    }
}

/// gRPC metadata from the resolved headers.
fn grpc_metadata(headers: &[(String, String)]) -> Result<tonic::metadata::MetadataMap, InitError> {
    let mut metadata = tonic::metadata::MetadataMap::new();
    for (name, value) in headers {
        let key = tonic::metadata::MetadataKey::from_bytes(name.as_bytes())
            .map_err(|_| InitError::InvalidHeader { name: name.clone() })?;
        let value = tonic::metadata::MetadataValue::try_from(value.as_str())
            .map_err(|_| InitError::InvalidHeader { name: name.clone() })?;
        metadata.insert(key, value);
    }
    Ok(metadata)
}

/// Sets the resolved headers on every gRPC export, replacing what the exporter read from the
/// process environment behind our back, so code settings keep beating the environment.
#[derive(Clone)]
struct HeaderOverride {
    metadata: Arc<tonic::metadata::MetadataMap>,
    /// The signal's headers variable, which the exporter reads (before the generic one).
    env_headers: &'static str,
}

impl tonic::service::Interceptor for HeaderOverride {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let metadata = request.metadata_mut();
        for name in env_header_names(self.env_headers) {
            metadata.remove(name.as_str());
        }
        for entry in self.metadata.iter() {
            if let tonic::metadata::KeyAndValueRef::Ascii(key, value) = entry {
                metadata.insert(key.clone(), value.clone());
            }
        }
        Ok(request)
    }
}

/// HTTP headers from the resolved headers.
fn http_headers(headers: &[(String, String)]) -> Result<http::HeaderMap, InitError> {
    let mut map = http::HeaderMap::new();
    for (name, value) in headers {
        let invalid = || InitError::InvalidHeader { name: name.clone() };
        let key = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
        let value = http::HeaderValue::from_str(value).map_err(|_| invalid())?;
        map.insert(key, value);
    }
    Ok(map)
}

/// The blocking reqwest client the OTLP exporter uses by default, built the same way: on a
/// thread of its own, because reqwest's blocking client cannot be built inside a tokio runtime.
fn blocking_http_client(timeout: Duration) -> Result<reqwest::blocking::Client, InitError> {
    std::thread::Builder::new()
        .name("orderscope-otlp-http-init".to_owned())
        .spawn(move || {
            reqwest::blocking::Client::builder()
                .timeout(timeout)
                .build()
        })
        .map_err(|source| InitError::Thread {
            what: "OTLP HTTP client",
            source,
        })?
        .join()
        .map_err(|_| InitError::HttpClient("building the client panicked".into()))?
        .map_err(|e| InitError::HttpClient(Box::new(e)))
}

/// Sends OTLP/HTTP requests with exactly the resolved headers: the exporter also adds the
/// headers of the process environment on its own, which would let the environment beat code.
#[derive(Debug)]
struct HttpHeaderOverride {
    inner: reqwest::blocking::Client,
    headers: http::HeaderMap,
    /// The signal's headers variable, which the exporter reads (before the generic one).
    env_headers: &'static str,
}

impl opentelemetry_http::HttpClient for HttpHeaderOverride {
    fn send_bytes<'s, 'f>(
        &'s self,
        mut request: opentelemetry_http::Request<opentelemetry_http::Bytes>,
    ) -> std::pin::Pin<
        Box<
            dyn Future<
                    Output = Result<
                        opentelemetry_http::Response<opentelemetry_http::Bytes>,
                        opentelemetry_http::HttpError,
                    >,
                > + Send
                + 'f,
        >,
    >
    where
        's: 'f,
        Self: 'f,
    {
        let headers = request.headers_mut();
        for name in env_header_names(self.env_headers) {
            headers.remove(name.as_str());
        }
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
        self.inner.send_bytes(request)
    }
}

/// The header names the OTLP exporter reads from the process environment on its own: from the
/// signal's variable `signal_var`, else from the generic one.
fn env_header_names(signal_var: &str) -> Vec<String> {
    let raw = std::env::var(signal_var)
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_HEADERS"))
        .unwrap_or_default();
    raw.split(',')
        .filter_map(|entry| entry.split_once('='))
        .map(|(key, _)| key.trim().to_ascii_lowercase())
        .filter(|key| !key.is_empty())
        .collect()
}

/// How many spans are between [`QueueGuard::on_end`] and the exporter.
#[derive(Debug)]
pub(crate) struct QueueState {
    in_flight: AtomicUsize,
    capacity: usize,
    shut_down: AtomicBool,
}

impl QueueState {
    fn new(capacity: usize) -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            capacity,
            shut_down: AtomicBool::new(false),
        }
    }

    pub(crate) fn mark_shut_down(&self) {
        self.shut_down.store(true, Ordering::Release);
    }
}

/// Fronts the SDK's batch processor with a count of the spans it holds, so a span that would
/// not fit in its bounded queue is dropped *and counted* here. (The SDK counts such drops too,
/// but only in a private field.)
///
/// The count rises in `on_end` and falls when the exporter receives a batch; spans the worker
/// has taken off its channel but not yet handed to the exporter still count, so this queue is
/// never fuller than ours and the SDK's own drop path is not reached.
#[derive(Debug)]
struct QueueGuard {
    inner: BatchSpanProcessor,
    queue: Arc<QueueState>,
}

impl SpanProcessor for QueueGuard {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.queue.shut_down.load(Ordering::Acquire) {
            metrics::counter!(SPANS_DROPPED_METRIC, "reason" => "shutdown").increment(1);
            return;
        }
        let before = self.queue.in_flight.fetch_add(1, Ordering::AcqRel);
        if before >= self.queue.capacity {
            self.queue.in_flight.fetch_sub(1, Ordering::AcqRel);
            metrics::counter!(SPANS_DROPPED_METRIC, "reason" => "queue_full").increment(1);
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.queue.mark_shut_down();
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Wraps an exporter: releases queue slots when a batch arrives, counts failed exports.
#[derive(Debug)]
struct CountingExporter<E> {
    inner: E,
    queue: Arc<QueueState>,
}

impl<E> CountingExporter<E> {
    fn new(inner: E, queue: Arc<QueueState>) -> Self {
        Self { inner, queue }
    }
}

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        let spans = batch.len();
        let _ = self
            .queue
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_sub(spans))
            });
        let export = self.inner.export(batch);
        async move {
            let result = export.await;
            if result.is_err() {
                metrics::counter!(EXPORT_FAILURES_METRIC, "signal" => env::TRACES.name)
                    .increment(1);
                metrics::counter!(SPANS_DROPPED_METRIC, "reason" => "export_failed")
                    .increment(u64::try_from(spans).unwrap_or(u64::MAX));
            }
            result
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Adds the fields of the order in scope to every log record, as the JSON log layer does for
/// log lines. Runs in the thread that logs, so `Context::current()` is the caller's. Fields the
/// event carries itself (`order_event!`, `stage!`) are not added twice.
#[derive(Debug)]
struct OrderLogProcessor;

impl LogProcessor for OrderLogProcessor {
    fn emit(&self, record: &mut SdkLogRecord, _scope: &opentelemetry::InstrumentationScope) {
        let Some(order) = OrderContext::current() else {
            return;
        };
        order.for_each_field(|key, value| {
            if !record.attributes_iter().any(|(k, _)| k.as_str() == key) {
                record.add_attribute(
                    opentelemetry::Key::from_static_str(key),
                    opentelemetry::logs::AnyValue::from(value.to_owned()),
                );
            }
        });
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// Counts failed log exports in `orderscope_export_failures_total{signal="logs"}`.
#[derive(Debug)]
struct LogFailureCounter<E>(E);

impl<E: LogExporter> LogExporter for LogFailureCounter<E> {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let result = self.0.export(batch).await;
        if result.is_err() {
            metrics::counter!(EXPORT_FAILURES_METRIC, "signal" => env::LOGS.name).increment(1);
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn event_enabled(
        &self,
        level: opentelemetry::logs::Severity,
        target: &str,
        name: Option<&str>,
    ) -> bool {
        self.0.event_enabled(level, target, name)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}

/// Which events become OTLP log records: not those of the crates that export them (they would
/// feed back into the export, e.g. with `RUST_LOG=debug`), and none after shutdown.
#[derive(Debug)]
struct BridgeFilter {
    shut_down: Arc<AtomicBool>,
}

impl BridgeFilter {
    /// The crates that OTLP export runs through.
    fn is_export_internal(target: &str) -> bool {
        let krate = target.split("::").next().unwrap_or(target);
        matches!(
            krate,
            "h2" | "hyper"
                | "hyper_util"
                | "reqwest"
                | "tonic"
                | "tower"
                | "opentelemetry"
                | "opentelemetry_sdk"
                | "opentelemetry_otlp"
                | "opentelemetry_http"
        )
    }
}

impl<S> tracing_subscriber::layer::Filter<S> for BridgeFilter {
    fn enabled(
        &self,
        meta: &tracing::Metadata<'_>,
        _cx: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        meta.is_event()
            && !Self::is_export_internal(meta.target())
            && !self.shut_down.load(Ordering::Relaxed)
    }

    fn callsite_enabled(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if meta.is_span() || Self::is_export_internal(meta.target()) {
            tracing::subscriber::Interest::never()
        } else {
            // Decided per event: the shutdown flag changes.
            tracing::subscriber::Interest::sometimes()
        }
    }
}
