//! [`TelemetryParts`]: the pieces of the pipeline, built and not installed.

use std::fmt;

use metrics_exporter_prometheus::PrometheusRecorder;
use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::guard::Telemetry;

/// The pieces of the telemetry pipeline, returned by
/// [`TelemetryBuilder::build_parts`](crate::TelemetryBuilder::build_parts) instead of being
/// installed. A service adds them to its own subscriber and sets the globals it wants.
///
/// [`init`](crate::init) installs the same pieces: `registry().with(filter).with(layer)` as the
/// global subscriber, the propagator and the tracer provider as OpenTelemetry's globals, the
/// recorder as the `metrics` global, and the panic hook
/// ([`install_panic_hook`](crate::install_panic_hook)).
///
/// `S` is the subscriber the layer is added to: [`Registry`] when it is the first layer; the
/// compiler infers it from where the layer goes.
///
/// # Example
///
/// ```no_run
/// use tracing_subscriber::prelude::*;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let parts = orderscope::builder("mes").build_parts()?;
/// tracing_subscriber::registry()
///     .with(parts.layer.with_filter(parts.filter))
///     .with(tracing_subscriber::fmt::layer().compact().with_filter(
///         tracing_subscriber::filter::LevelFilter::WARN,
///     ))
///     .init();
/// if let Some(recorder) = parts.recorder {
///     metrics::set_global_recorder(recorder)?;
///     parts.telemetry.describe_metrics();
/// }
/// opentelemetry::global::set_text_map_propagator(parts.propagator);
/// if let Some(provider) = parts.tracer_provider {
///     // For orderscope's instrumentation: the SDK's spans without the global provider's box.
///     orderscope::context::set_sdk_tracer_provider(&provider);
///     opentelemetry::global::set_tracer_provider(provider);
/// }
/// orderscope::install_panic_hook();
/// let telemetry = parts.telemetry;
/// // ... serve, merging telemetry.metrics_router() ...
/// telemetry.shutdown()?;
/// # Ok(()) }
/// ```
#[non_exhaustive]
pub struct TelemetryParts<S = Registry> {
    /// The `tracing` filter resolved from `RUST_LOG` or
    /// [`with_log_filter`](crate::TelemetryBuilder::with_log_filter). `init` installs it for the
    /// whole subscriber; give it to [`layer`](Self::layer) alone with `Layer::with_filter` to
    /// leave the service's other layers unfiltered.
    pub filter: EnvFilter,
    /// One `tracing` layer: log lines (JSON or pretty) with `trace_id`, `span_id` and the order
    /// fields; spans to OpenTelemetry (`tracing-opentelemetry`, with the order span processor);
    /// and, when on, log records to OTLP.
    pub layer: Box<dyn Layer<S> + Send + Sync + 'static>,
    /// The tracer provider the layer exports through; `None` when the SDK is disabled. `init`
    /// sets it as OpenTelemetry's global tracer provider and gives it to
    /// [`set_sdk_tracer_provider`](crate::context::set_sdk_tracer_provider), so orderscope's
    /// layers, channels and consumers start its spans without the global provider's box.
    pub tracer_provider: Option<SdkTracerProvider>,
    /// The propagator: W3C Trace Context and Baggage unless
    /// [`with_propagator`](crate::TelemetryBuilder::with_propagator) named another.
    pub propagator: TextMapCompositePropagator,
    /// The Prometheus recorder (`None` with
    /// [`with_prometheus_recorder(false)`](crate::TelemetryBuilder::with_prometheus_recorder)).
    /// [`telemetry`](Self::telemetry) renders what it records.
    pub recorder: Option<PrometheusRecorder>,
    /// The guard: flushes spans and log records on shutdown and on drop, renders metrics, serves
    /// `GET /metrics`.
    pub telemetry: Telemetry,
}

impl<S> fmt::Debug for TelemetryParts<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryParts")
            .field("filter", &self.filter)
            .field("tracer_provider", &self.tracer_provider.is_some())
            .field("recorder", &self.recorder.is_some())
            .field("telemetry", &self.telemetry)
            .finish_non_exhaustive()
    }
}
