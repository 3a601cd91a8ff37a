//! What `init` says and registers once the pipeline is installed: the start-up line (TLS mode
//! included), the WARN lines for ignored settings, and the descriptions of its metrics.

use std::time::Duration;

use crate::config::{Compression, LogExport, MaskedHeaders, ResolvedConfig, Sampling, TraceExport};
use crate::delivery::EXPORT_FAILURES_METRIC;
use crate::env;
use crate::queue::SPANS_DROPPED_METRIC;

/// Describes orderscope's metrics (catalogue and export counters) to the installed recorder and
/// registers the export counters at zero (`signal="logs"` only when log records are exported),
/// so dashboards and alerts see them before the first failure.
pub(crate) fn describe_metrics(logs_exported: bool) {
    orderscope_metrics::describe_all();
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

pub(crate) fn log_startup(config: &ResolvedConfig) {
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
    // The headers, timeout and compression set in code; those of the environment variables the
    // exporter reads itself are not known here.
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
        export_timeout_ms = otlp.and_then(|o| o.timeout).map(millis),
        compression = otlp.and_then(|o| o.compression).map(Compression::as_str),
        tls = otlp.map(|o| o.tls_mode().as_str()),
        logs_exporter,
        logs_endpoint = logs_otlp.map(|o| o.endpoint.as_str()),
        logs_protocol = logs_otlp.map(|o| o.protocol.as_str()),
        logs_tls = logs_otlp.map(|o| o.tls_mode().as_str()),
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
