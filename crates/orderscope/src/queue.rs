//! The span export queue: a bounded batch processor whose drops are counted
//! ([`QueueGuard`]), and the exporter wrapper that counts failed exports ([`CountingExporter`]).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SpanData, SpanExporter, SpanProcessor,
};

use crate::delivery::Delivery;
/// Counter of spans that were never exported, label `reason`: `queue_full` (the bounded export
/// queue was full), `export_failed` (the batch they were in failed to export), `shutdown` (ended
/// after shutdown).
pub const SPANS_DROPPED_METRIC: &str = "orderscope_spans_dropped_total";

pub(crate) fn batch_processor<E>(exporter: E, config: BatchConfigBuilder) -> BatchSpanProcessor
where
    E: SpanExporter + Send + 'static,
{
    BatchSpanProcessor::builder(exporter)
        .with_batch_config(config.build())
        .build()
}

/// How many spans are between [`QueueGuard::on_end`] and the exporter.
#[derive(Debug)]
pub(crate) struct QueueState {
    in_flight: AtomicUsize,
    capacity: usize,
    shut_down: AtomicBool,
}

impl QueueState {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            capacity,
            shut_down: AtomicBool::new(false),
        }
    }

    pub(crate) fn mark_shut_down(&self) {
        self.shut_down.store(true, Ordering::Release);
    }

    /// Spans ended but not yet handed to the exporter.
    pub(crate) fn queued(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
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
pub(crate) struct QueueGuard {
    pub(crate) inner: BatchSpanProcessor,
    pub(crate) queue: Arc<QueueState>,
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

/// Wraps an exporter: releases queue slots when a batch arrives, counts failed exports (one
/// WARN line per burst) and keeps track of the batches on their way.
#[derive(Debug)]
pub(crate) struct CountingExporter<E> {
    inner: E,
    queue: Arc<QueueState>,
    delivery: Arc<Delivery>,
}

impl<E> CountingExporter<E> {
    pub(crate) fn new(inner: E, queue: Arc<QueueState>, delivery: Arc<Delivery>) -> Self {
        Self {
            inner,
            queue,
            delivery,
        }
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
        self.delivery.started(spans);
        let export = self.inner.export(batch);
        let delivery = self.delivery.clone();
        async move {
            let result = export.await;
            match &result {
                Ok(()) => delivery.finished(spans, None),
                Err(error) => {
                    delivery.finished(spans, Some(error));
                    metrics::counter!(SPANS_DROPPED_METRIC, "reason" => "export_failed")
                        .increment(u64::try_from(spans).unwrap_or(u64::MAX));
                }
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
