//! OTLP export of log records: the order fields added to each record, failed exports counted,
//! and the filter that keeps the exporting crates' own events (and events after shutdown) out.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::logs::LogRecord as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogExporter, LogProcessor, SdkLogRecord};
use orderscope_context::OrderContext;

use crate::delivery::Delivery;

/// Adds the fields of the order in scope to every log record, as the JSON log layer does for
/// log lines. Runs in the thread that logs, so `Context::current()` is the caller's. Fields the
/// event carries itself (`order_event!`, `stage!`) are not added twice.
#[derive(Debug)]
pub(crate) struct OrderLogProcessor;

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

/// Counts failed log exports in `orderscope_export_failures_total{signal="logs"}` (one WARN line
/// per burst) and keeps track of the batches on their way.
#[derive(Debug)]
pub(crate) struct LogFailureCounter<E> {
    pub(crate) inner: E,
    pub(crate) delivery: Arc<Delivery>,
}

impl<E: LogExporter> LogExporter for LogFailureCounter<E> {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let records = batch.iter().count();
        self.delivery.started(records);
        let result = self.inner.export(batch).await;
        match &result {
            Ok(()) => self.delivery.finished(records, None),
            Err(error) => self.delivery.finished(records, Some(error)),
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn event_enabled(
        &self,
        level: opentelemetry::logs::Severity,
        target: &str,
        name: Option<&str>,
    ) -> bool {
        self.inner.event_enabled(level, target, name)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Which events become OTLP log records: not those of the crates that export them (they would
/// feed back into the export, e.g. with `RUST_LOG=debug`), and none after shutdown.
#[derive(Debug)]
pub(crate) struct BridgeFilter {
    pub(crate) shut_down: Arc<AtomicBool>,
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
