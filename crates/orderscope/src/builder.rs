//! [`TelemetryBuilder`]: the settings made in code, and the assembly of the pieces that
//! [`build`](TelemetryBuilder::build) installs and [`build_parts`](TelemetryBuilder::build_parts)
//! hands back.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusRecorder;
use opentelemetry::propagation::{TextMapCompositePropagator, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::{BatchLogProcessor, SdkLoggerProvider};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, SpanExporter,
};
use orderscope_context::OrderSpanProcessor;
use orderscope_logs::LogFormat;
use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::{Layer, Layered, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Registry};

use crate::config::{Compression, LogExport, Protocol, ResolvedConfig, Sampling, TraceExport};
use crate::delivery::Delivery;
use crate::env::{self, CodeSettings};
use crate::error::InitError;
use crate::guard::{Telemetry, TelemetryInner, Upkeep};
use crate::init::INITIALIZED;
use crate::log_export::{BridgeFilter, LogFailureCounter, OrderLogProcessor};
use crate::log_lines::LogLines;
use crate::otlp;
use crate::panic_hook::install_panic_hook;
use crate::parts::TelemetryParts;
use crate::queue::{CountingExporter, QueueGuard, QueueState, batch_processor};
use crate::startup;

/// The instrumentation scope of spans created through `tracing`.
const TRACER_NAME: &str = "orderscope";

type ExporterFactory = Box<
    dyn FnOnce(Arc<QueueState>, Arc<Delivery>, BatchConfigBuilder) -> BatchSpanProcessor + Send,
>;

/// Configures and installs the telemetry pipeline. Created by [`builder`](crate::builder()).
///
/// [`build`](Self::build) installs, in one call:
///
/// - a global `tracing` subscriber: [`EnvFilter`] from `RUST_LOG` (default `info`); log lines as
///   one JSON object per line ([`JsonLayer`](crate::logs::JsonLayer), the default) or human-readable
///   (`ORDERSCOPE_LOG_FORMAT=pretty`); and the `tracing-opentelemetry` layer;
/// - an OpenTelemetry [`SdkTracerProvider`] with [`OrderSpanProcessor`](crate::OrderSpanProcessor) (order
///   fields on every span) and a batch span processor with a bounded queue, exporting by OTLP when
///   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` is set, over
///   `OTEL_EXPORTER_OTLP_PROTOCOL` = `http/protobuf` (the default) or `grpc`; also installed as
///   the global tracer provider;
/// - when `OTEL_LOGS_EXPORTER=otlp` (or [`with_logs_export(true)`](Self::with_logs_export)): an
///   OpenTelemetry [`SdkLoggerProvider`] with a batch log processor and an OTLP log exporter
///   (configured as for spans, with the `LOGS` variables in place of the `TRACES` ones), fed by the `opentelemetry-appender-tracing` layer: every event
///   becomes a log record with the trace and span ids of the current span, the order fields in
///   scope and the same resource as the spans. Log lines are written as well. Not installed as
///   a global. The specification's default for `OTEL_LOGS_EXPORTER` is `otlp`; orderscope's is
///   `none`, because the log lines are usually collected already;
/// - globally, the propagators `OTEL_PROPAGATORS` names (default `tracecontext,baggage`: W3C
///   Trace Context and Baggage with the order in `baggage`, through orderscope's own codecs;
///   also `b3`, `b3multi`, `none`; a WARN names any other), or the one given to
///   [`with_propagator`](Self::with_propagator); orderscope's server, client and AMQP carriers
///   speak the same;
/// - the Prometheus recorder from `orderscope_metrics::prometheus_builder()` (explicit buckets
///   for every histogram of the catalogue), globally, with upkeep every 5 s (unless
///   [`with_prometheus_recorder(false)`](Self::with_prometheus_recorder));
/// - a panic hook that logs the panic as an ERROR event (with the trace ids of the span it
///   happened in) and then calls the previous hook.
///
/// Every step that can fail (certificate files, exporters, threads, the log filter, globals
/// already taken) runs before the first global is set: when `build` fails, nothing is
/// installed and the error names the step. [`build_parts`](Self::build_parts) builds the same
/// pieces and hands them back instead, for a service that has its own subscriber or recorder.
///
/// Then it logs one INFO line with the resolved configuration (header values masked), a WARN
/// line for each ignored environment value, and a WARN line when spans are not exported.
///
/// Variables orderscope reads (the list is [`ENV_VARS`](crate::ENV_VARS)): `OTEL_SDK_DISABLED`,
/// `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_EXPORTER` (`otlp` | `none`,
/// default `otlp`), `OTEL_LOGS_EXPORTER` (`otlp` | `none`, default `none`),
/// `OTEL_TRACES_SAMPLER` (+ `_ARG`), `OTEL_EXPORTER_OTLP_{,TRACES_,LOGS_}{ENDPOINT,PROTOCOL}`,
/// `OTEL_EXPORTER_OTLP_{,TRACES_,LOGS_}{CERTIFICATE,CLIENT_CERTIFICATE,CLIENT_KEY}` (the OTLP
/// exporter reads no certificate variables),
/// `OTEL_BSP_{MAX_QUEUE_SIZE,MAX_EXPORT_BATCH_SIZE,SCHEDULE_DELAY}` (spans),
/// `OTEL_BLRP_{MAX_QUEUE_SIZE,MAX_EXPORT_BATCH_SIZE,SCHEDULE_DELAY}` (log records), `RUST_LOG`,
/// `ORDERSCOPE_LOG_FORMAT`. For each, a value set in code beats the variable, a signal's variable
/// (`_TRACES_`, `_LOGS_`) beats the generic one, and the variable beats the default. The service
/// name given in code beats `OTEL_SERVICE_NAME`, which is used when the name given is empty.
///
/// Variables the OTLP exporter (opentelemetry-otlp) reads itself, from the process environment
/// when it is built; orderscope passes it only what was set in code, and
/// [`with_env`](Self::with_env) does not replace them:
///
/// - `OTEL_EXPORTER_OTLP_{TRACES_,LOGS_}HEADERS`, else (when the signal's variable is not set)
///   `OTEL_EXPORTER_OTLP_HEADERS`: `key=value` pairs, values percent-decoded, merged *over* the
///   headers of [`with_otlp_header`](Self::with_otlp_header): a header of the same name in the
///   variable replaces the one set in code. Malformed entries are skipped without a warning.
/// - `OTEL_EXPORTER_OTLP_{TRACES_,LOGS_}TIMEOUT`, else `OTEL_EXPORTER_OTLP_TIMEOUT`
///   (milliseconds; a value that is not a number is passed over, with a WARN line): used unless
///   [`with_export_timeout`](Self::with_export_timeout) set one. Default 10 s.
/// - `OTEL_EXPORTER_OTLP_{TRACES_,LOGS_}COMPRESSION`, else `OTEL_EXPORTER_OTLP_COMPRESSION`
///   (`gzip` or `none`; another value is passed over, with a WARN line): used unless
///   [`with_otlp_compression`](Self::with_otlp_compression) set one. Default: no compression.
///
/// Export never blocks the caller: spans wait in a bounded queue (spans beyond it are dropped
/// and counted in `orderscope_spans_dropped_total{reason="queue_full"}`); failed exports are
/// counted in `orderscope_export_failures_total{signal="traces"}`. Exported log records wait in
/// a bounded queue of their own (records beyond it are dropped); failed exports are counted in
/// `orderscope_export_failures_total{signal="logs"}`.
pub struct TelemetryBuilder {
    pub(crate) code: CodeSettings,
    pub(crate) env: Option<BTreeMap<String, String>>,
    pub(crate) log_writer: Option<BoxMakeWriter>,
    pub(crate) exporter: Option<ExporterFactory>,
    pub(crate) panic_hook: bool,
    pub(crate) propagator: Option<TextMapCompositePropagator>,
    pub(crate) prometheus: bool,
    pub(crate) use_signals: crate::use_signals::UseSignals,
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
    pub(crate) fn use_signals_mut(&mut self) -> &mut crate::use_signals::UseSignals {
        &mut self.use_signals
    }

    /// Adds a resource attribute. Beats the same key in `OTEL_RESOURCE_ATTRIBUTES`.
    /// `service.name` is ignored here: it is the name given to [`builder`](crate::builder()).
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

    /// Adds a header to every OTLP export, its value sent as written. The same key in
    /// `OTEL_EXPORTER_OTLP_{TRACES_,LOGS_}HEADERS` (else `OTEL_EXPORTER_OTLP_HEADERS`) beats it:
    /// the OTLP exporter merges that variable over the headers set in code, per key. Values never
    /// appear in logs. Defaults to none.
    ///
    /// # Errors
    ///
    /// [`build`](Self::build) returns [`InitError::InvalidHeader`] when the name or the value is
    /// not valid in an HTTP header.
    pub fn with_otlp_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.code.headers.push((name.into(), value.into()));
        self
    }

    /// How long one export may take, retries included; each request is bounded by it too. Beats
    /// `OTEL_EXPORTER_OTLP_{,TRACES_,LOGS_}TIMEOUT` (which the OTLP exporter reads itself).
    /// Defaults to that variable, else 10 s.
    pub fn with_export_timeout(mut self, timeout: Duration) -> Self {
        self.code.export_timeout = Some(timeout);
        self
    }

    /// Compresses export requests. Beats `OTEL_EXPORTER_OTLP_{,TRACES_,LOGS_}COMPRESSION`
    /// (`gzip` or `none`, which the OTLP exporter reads itself). Defaults to that variable, else
    /// no compression.
    pub fn with_otlp_compression(mut self, compression: Compression) -> Self {
        self.code.compression = Some(compression);
        self
    }

    /// The PEM file of the CA that signs the collector's certificate, for an `https://`
    /// endpoint; trusted *instead of* the platform's roots. Beats
    /// `OTEL_EXPORTER_OTLP_{,TRACES_,LOGS_}CERTIFICATE`. Defaults to the platform's roots.
    ///
    /// # Errors
    ///
    /// [`build`](Self::build) returns [`InitError::Certificate`], naming the setting and the
    /// path, when the file is missing, unreadable or holds no PEM certificate.
    pub fn with_otlp_certificate(mut self, path: impl Into<PathBuf>) -> Self {
        self.code.certificate = Some(path.into());
        self
    }

    /// The PEM file of the client certificate (chain) for mutual TLS. Beats
    /// `OTEL_EXPORTER_OTLP_{,TRACES_,LOGS_}CLIENT_CERTIFICATE`. Needs the key too
    /// ([`with_otlp_client_key`](Self::with_otlp_client_key)). Defaults to none.
    ///
    /// # Errors
    ///
    /// As for [`with_otlp_certificate`](Self::with_otlp_certificate); also when the key is missing.
    pub fn with_otlp_client_certificate(mut self, path: impl Into<PathBuf>) -> Self {
        self.code.client_certificate = Some(path.into());
        self
    }

    /// The PEM file of the client certificate's private key (PKCS#8, PKCS#1 or SEC1). Beats
    /// `OTEL_EXPORTER_OTLP_{,TRACES_,LOGS_}CLIENT_KEY`. Defaults to none.
    ///
    /// # Errors
    ///
    /// As for [`with_otlp_certificate`](Self::with_otlp_certificate); also when the certificate
    /// is missing.
    pub fn with_otlp_client_key(mut self, path: impl Into<PathBuf>) -> Self {
        self.code.client_key = Some(path.into());
        self
    }

    /// The propagator installed globally (`opentelemetry::global::set_text_map_propagator`),
    /// spoken by orderscope's carriers, and handed back by [`build_parts`](Self::build_parts).
    /// Beats `OTEL_PROPAGATORS`. Defaults to what `OTEL_PROPAGATORS` names, or W3C Trace Context
    /// and Baggage with the order in `baggage`.
    pub fn with_propagator<P>(mut self, propagator: P) -> Self
    where
        P: TextMapPropagator + Send + Sync + 'static,
    {
        self.propagator = Some(TextMapCompositePropagator::new(vec![Box::new(propagator)]));
        self
    }

    /// Whether to build orderscope's Prometheus recorder (and, with [`build`](Self::build),
    /// install it globally). With `false`, metrics go to whatever recorder the service installs
    /// itself; [`Telemetry::render`] and [`Telemetry::metrics_router`] then serve an empty page.
    /// Defaults to `true`.
    pub fn with_prometheus_recorder(mut self, build: bool) -> Self {
        self.prometheus = build;
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
        self.exporter = Some(Box::new(move |queue, delivery, config| {
            batch_processor(CountingExporter::new(exporter, queue, delivery), config)
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
    ///
    /// It covers the variables orderscope reads ([`ENV_VARS`](crate::ENV_VARS)), not those the
    /// OTLP exporter reads itself from the process environment:
    /// `OTEL_EXPORTER_OTLP_{,TRACES_,LOGS_}{HEADERS,TIMEOUT,COMPRESSION}` (see
    /// [`TelemetryBuilder`]). Set those in code to keep the process environment out.
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
    /// The headers, timeout and compression in it are those set in code: the OTLP exporter
    /// adds what its variables say when it is built (see [`TelemetryBuilder`]).
    pub fn resolve(&self) -> ResolvedConfig {
        let env = self.env.clone().unwrap_or_else(env::process_env);
        env::resolve(&self.code, &env)
    }

    /// Installs the pipeline. See [`TelemetryBuilder`] for what is installed.
    ///
    /// # Errors
    ///
    /// [`InitError::AlreadyInitialized`] when orderscope was initialised before in this
    /// process; the other variants of [`InitError`] for invalid code settings, unreadable
    /// certificate files and globals taken by other libraries. When it fails, nothing is
    /// installed.
    pub fn build(self) -> Result<Telemetry, InitError> {
        if INITIALIZED
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(InitError::AlreadyInitialized);
        }
        let result = self.build_and_install();
        if result.is_err() {
            // Nothing was installed: `init` may be tried again.
            INITIALIZED.store(false, Ordering::Release);
        }
        result
    }

    fn build_and_install(mut self) -> Result<Telemetry, InitError> {
        let panic_hook = self.panic_hook;
        let use_signals = std::mem::take(&mut self.use_signals);
        let Pieces {
            filter,
            log_lines,
            provider,
            bridge,
            propagator,
            recorder,
            mut telemetry,
        } = self.assemble()?;
        let layer = telemetry_layer::<Layered<EnvFilter, Registry>>(
            log_lines,
            provider.as_ref(),
            bridge.as_ref(),
        );

        // Every fallible step is behind us except taking the globals. Of these, only the
        // subscriber can be checked without taking it: check it, then take the recorder (which
        // hands itself back when another is installed), then the rest.
        if global_subscriber_is_set() {
            return Err(InitError::SubscriberAlreadySet);
        }
        if let Some(recorder) = recorder
            && metrics::set_global_recorder(recorder).is_err()
        {
            return Err(InitError::RecorderAlreadySet);
        }
        let subscriber = tracing_subscriber::registry().with(filter).with(layer);
        if tracing::subscriber::set_global_default(subscriber).is_err() {
            // Only when another thread installed a subscriber since the check above.
            return Err(InitError::SubscriberAlreadySet);
        }
        crate::propagators::install(propagator);
        if let Some(provider) = provider {
            orderscope_context::set_sdk_tracer_provider(&provider);
            opentelemetry::global::set_tracer_provider(provider);
        }
        if panic_hook {
            install_panic_hook();
        }
        #[cfg(feature = "tls")]
        crate::tls::install_default_crypto_provider();
        // Into orderscope's recorder, or the service's own one.
        telemetry.describe_metrics();
        startup::log_startup(telemetry.config());
        let (use_ticker, use_warnings) = use_signals.start();
        for warning in use_warnings {
            tracing::warn!("{warning}");
        }
        telemetry.set_use_ticker(use_ticker);
        Ok(telemetry)
    }

    /// Builds every piece of the pipeline and hands them back without installing any of them:
    /// for a service that already has its own `tracing` subscriber, its own `metrics` recorder,
    /// or wants to choose which globals to set.
    ///
    /// The pieces are those [`build`](Self::build) installs: the log filter, one `tracing`
    /// layer (log lines, spans to OpenTelemetry, log records to OTLP when on), the tracer
    /// provider, the propagator, the Prometheus recorder and the [`Telemetry`] guard that
    /// flushes on shutdown. Nothing global is touched, so it can be called more than once.
    ///
    /// # Errors
    ///
    /// The variants of [`InitError`] for invalid code settings, unreadable certificate files
    /// and threads that cannot be started.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use tracing_subscriber::prelude::*;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let parts = orderscope::builder("mes")
    ///     .with_prometheus_recorder(false) // the service keeps its own recorder
    ///     .build_parts()?;
    /// tracing_subscriber::registry()
    ///     .with(parts.layer.with_filter(parts.filter))
    ///     .with(tracing_subscriber::fmt::layer().compact()) // the service's own layer
    ///     .init();
    /// opentelemetry::global::set_text_map_propagator(parts.propagator);
    /// if let Some(provider) = parts.tracer_provider {
    ///     // For orderscope's instrumentation: the SDK's spans without the global provider's box.
    ///     orderscope::context::set_sdk_tracer_provider(&provider);
    ///     opentelemetry::global::set_tracer_provider(provider);
    /// }
    /// let telemetry = parts.telemetry;
    /// tracing::info!("ready");
    /// telemetry.shutdown()?;
    /// # Ok(()) }
    /// ```
    pub fn build_parts<S>(self) -> Result<TelemetryParts<S>, InitError>
    where
        S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync + 'static,
    {
        let Pieces {
            filter,
            log_lines,
            provider,
            bridge,
            propagator,
            recorder,
            telemetry,
        } = self.assemble()?;
        let layer = Box::new(telemetry_layer::<S>(
            log_lines,
            provider.as_ref(),
            bridge.as_ref(),
        ));
        Ok(TelemetryParts {
            filter,
            layer,
            tracer_provider: provider,
            propagator: propagator.into_composite(),
            recorder,
            telemetry,
        })
    }

    /// Resolves the configuration and builds every piece, installing nothing.
    fn assemble(self) -> Result<Pieces, InitError> {
        let env = self.env.unwrap_or_else(env::process_env);
        let mut config = env::resolve(&self.code, &env);
        // The exporter reads these from the process environment whatever `with_env` says.
        config.warnings.extend(env::exporter_variable_warnings(
            &config,
            &self.code,
            |name| std::env::var(name).ok(),
        ));

        // Log filter: invalid code directives are an error; invalid env directives a warning.
        let filter = match EnvFilter::try_new(&config.log_filter) {
            Ok(filter) => filter,
            Err(source) if self.code.log_filter.is_some() => {
                return Err(InitError::InvalidLogFilter {
                    filter: config.log_filter,
                    source,
                });
            }
            Err(_) => {
                config.warnings.push(format!(
                    "RUST_LOG={:?} is not a valid filter; using `{}`",
                    config.log_filter,
                    crate::config::DEFAULT_LOG_FILTER
                ));
                config.log_filter = crate::config::DEFAULT_LOG_FILTER.to_owned();
                EnvFilter::new(crate::config::DEFAULT_LOG_FILTER)
            }
        };

        // The exporters first: building them can fail (certificate files included), and
        // nothing runs yet that would need stopping then (a gRPC runtime stops when dropped).
        let traces_delivery = match &config.traces {
            TraceExport::Otlp(otlp) => Some(otlp.endpoint.clone()),
            TraceExport::Custom => Some("the custom span exporter".to_owned()),
            _ => None,
        }
        .map(|destination| Arc::new(Delivery::new(env::TRACES.name, "span", destination)));
        let logs_delivery = match &config.logs {
            LogExport::Otlp(otlp) => Some(Arc::new(Delivery::new(
                env::LOGS.name,
                "log record",
                otlp.endpoint.clone(),
            ))),
            _ => None,
        };
        let mut otlp_runtime = None;
        let span_exporter = match &config.traces {
            TraceExport::Otlp(otlp) => Some(otlp::otlp_exporter(
                opentelemetry_otlp::SpanExporter::builder(),
                otlp,
                env::TRACES,
                &mut otlp_runtime,
                traces_delivery.clone(),
            )?),
            _ => None,
        };
        let log_exporter = match &config.logs {
            LogExport::Otlp(otlp) => Some(otlp::otlp_exporter(
                opentelemetry_otlp::LogExporter::builder(),
                otlp,
                env::LOGS,
                &mut otlp_runtime,
                logs_delivery.clone(),
            )?),
            _ => None,
        };

        let recorder = self
            .prometheus
            .then(|| orderscope_metrics::prometheus_builder().build_recorder());
        let prometheus = match &recorder {
            Some(recorder) => recorder.handle(),
            // A handle of a recorder that is never installed: it renders an empty page.
            None => orderscope_metrics::prometheus_builder()
                .build_recorder()
                .handle(),
        };
        let upkeep = match &recorder {
            Some(_) => {
                Some(
                    Upkeep::start(prometheus.clone()).map_err(|source| InitError::Thread {
                        what: "metrics upkeep",
                        source,
                    })?,
                )
            }
            None => None,
        };

        // The span pipeline.
        let resource = resource(&config);
        let queue = Arc::new(QueueState::new(config.batch.max_queue_size));
        let batch_config = BatchConfigBuilder::default()
            .with_max_queue_size(config.batch.max_queue_size)
            .with_max_export_batch_size(config.batch.max_export_batch_size)
            .with_scheduled_delay(config.batch.scheduled_delay);
        let exporting: Option<BatchSpanProcessor> =
            match (span_exporter, self.exporter, &traces_delivery) {
                (Some(exporter), _, Some(delivery)) => Some(batch_processor(
                    CountingExporter::new(exporter, queue.clone(), delivery.clone()),
                    batch_config,
                )),
                (None, Some(factory), Some(delivery)) if config.traces == TraceExport::Custom => {
                    Some(factory(queue.clone(), delivery.clone(), batch_config))
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
        let logger_provider = match (log_exporter, &logs_delivery) {
            (Some(exporter), Some(delivery)) => {
                let batch = opentelemetry_sdk::logs::BatchConfigBuilder::default()
                    .with_max_queue_size(config.logs_batch.max_queue_size)
                    .with_max_export_batch_size(config.logs_batch.max_export_batch_size)
                    .with_scheduled_delay(config.logs_batch.scheduled_delay)
                    .build();
                Some(
                    SdkLoggerProvider::builder()
                        .with_resource(resource)
                        // Runs first, so the batch processor queues the record with the order
                        // fields.
                        .with_log_processor(OrderLogProcessor)
                        .with_log_processor(
                            BatchLogProcessor::builder(LogFailureCounter {
                                inner: exporter,
                                delivery: delivery.clone(),
                            })
                            .with_batch_config(batch)
                            .build(),
                        )
                        .build(),
                )
            }
            _ => None,
        };

        // Colours only on a terminal: never in files, pipes or a custom writer.
        let ansi =
            self.log_writer.is_none() && std::io::IsTerminal::is_terminal(&std::io::stdout());
        let writer = self
            .log_writer
            .unwrap_or_else(|| BoxMakeWriter::new(std::io::stdout));
        let log_lines = LogLines {
            format: config.log_format,
            service_name: config.service_name.clone(),
            writer,
            ansi,
        };
        let propagator = crate::propagators::choose(
            self.propagator,
            env.get(crate::propagators::OTEL_PROPAGATORS),
            &mut config.warnings,
        );
        let bridge = logger_provider
            .as_ref()
            .map(|provider| (provider.clone(), logs_shut_down.clone()));

        let telemetry = Telemetry::new(
            TelemetryInner {
                provider: provider.clone(),
                logger_provider,
                logs_shut_down,
                queue,
                traces_delivery,
                logs_delivery,
                otlp_runtime,
                upkeep,
                use_ticker: None,
            },
            prometheus,
            config,
        );
        Ok(Pieces {
            filter,
            log_lines,
            provider,
            bridge,
            propagator,
            recorder,
            telemetry,
        })
    }
}

/// Whether a global `tracing` subscriber is installed. Asked on a thread of its own: on this
/// one, a scoped default (`with_default`, `set_default`) would hide the global one.
fn global_subscriber_is_set() -> bool {
    let probe = || {
        tracing::dispatcher::get_default(|dispatch| {
            !dispatch.is::<tracing::subscriber::NoSubscriber>()
        })
    };
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("orderscope-init-probe".to_owned())
            .spawn_scoped(scope, probe)
            .ok()
            .and_then(|thread| thread.join().ok())
    })
    // Without a thread, `set_global_default` below still refuses a second subscriber.
    .unwrap_or(false)
}

/// The pieces, built and not installed.
struct Pieces {
    filter: EnvFilter,
    log_lines: LogLines,
    provider: Option<SdkTracerProvider>,
    /// The logger provider and the shutdown flag of the bridge, when log records are exported.
    bridge: Option<(SdkLoggerProvider, Arc<AtomicBool>)>,
    propagator: crate::propagators::Chosen,
    recorder: Option<PrometheusRecorder>,
    telemetry: Telemetry,
}

/// The one `tracing` layer: log lines, spans to OpenTelemetry, log records to OTLP.
///
/// Concrete layer types (an absent layer is `None`): no dynamic dispatch per callback.
fn telemetry_layer<S>(
    log_lines: LogLines,
    provider: Option<&SdkTracerProvider>,
    bridge: Option<&(SdkLoggerProvider, Arc<AtomicBool>)>,
) -> impl Layer<S> + Send + Sync + 'static
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync + 'static,
{
    let otel_layer = provider
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer(TRACER_NAME)));
    // The bridge reads trace and span ids from the OpenTelemetry context, which the layer
    // above makes current while a span is entered.
    let logs_layer = bridge.map(|(provider, shut_down)| {
        OpenTelemetryTracingBridge::new(provider).with_filter(BridgeFilter {
            shut_down: shut_down.clone(),
        })
    });
    log_lines
        .layer::<S>()
        .and_then(otel_layer)
        .and_then(logs_layer)
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
