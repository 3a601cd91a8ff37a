//! In-memory span capture for scoped unit tests.

use std::collections::BTreeMap;
use std::fmt;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_proto::tonic::common::v1::AnyValue;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    InMemorySpanExporter, SdkTracer, SdkTracerProvider, SimpleSpanProcessor, SpanData,
    SpanProcessor, TracerProviderBuilder,
};
use tracing_subscriber::layer::SubscriberExt as _;

use crate::model::{AttrValue, ReceivedSpan, Transport};

/// An SDK tracer provider that keeps finished spans in memory.
///
/// Each span is handed to the in-memory exporter by a simple (synchronous) processor when it
/// ends, so spans are visible right after they close: no flush, no timing. Nothing is installed
/// globally; use [`tracer`](Self::tracer) directly, or [`subscriber`](Self::subscriber) with
/// `tracing::subscriber::with_default` for spans created through `tracing`.
///
/// # Example
///
/// ```
/// use opentelemetry::trace::{Tracer as _, TraceContextExt as _};
/// use orderscope_testing::{SpanCapture, SpansExt, assert_child_of};
///
/// let capture = SpanCapture::new();
/// let tracer = capture.tracer("test");
/// tracer.in_span("parent", |cx| {
///     let _child = tracer.start_with_context("child", &cx);
/// });
/// let spans = capture.spans();
/// assert_child_of(spans.find_span("child").unwrap(), spans.find_span("parent").unwrap());
///
/// // spans created with `tracing`
/// tracing::subscriber::with_default(capture.subscriber(), || {
///     let _span = tracing::info_span!("work").entered();
/// });
/// assert!(capture.spans().find_span("work").is_some());
/// ```
pub struct SpanCapture {
    provider: SdkTracerProvider,
    exporter: InMemorySpanExporter,
    resource: BTreeMap<String, AttrValue>,
}

impl fmt::Debug for SpanCapture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpanCapture")
            .field("resource", &self.resource)
            .finish_non_exhaustive()
    }
}

impl Default for SpanCapture {
    fn default() -> Self {
        Self::new()
    }
}

/// Builds a [`SpanCapture`] with extra span processors or a resource.
///
/// ```
/// use opentelemetry_sdk::Resource;
/// use orderscope_testing::SpanCapture;
///
/// let capture = SpanCapture::builder()
///     .with_resource(Resource::builder_empty().with_service_name("svc").build())
///     .build();
/// # let _ = capture;
/// ```
pub struct SpanCaptureBuilder {
    builder: TracerProviderBuilder,
    resource: Option<Resource>,
}

impl fmt::Debug for SpanCaptureBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpanCaptureBuilder")
            .field("resource", &self.resource)
            .finish_non_exhaustive()
    }
}

impl SpanCaptureBuilder {
    /// Adds a span processor. Processors added here see `on_start` before the capture's own
    /// exporting processor sees `on_end`, so attributes they add in `on_start` are captured.
    pub fn with_processor<P: SpanProcessor + 'static>(mut self, processor: P) -> Self {
        self.builder = self.builder.with_span_processor(processor);
        self
    }

    /// Sets the resource. Defaults to the SDK's default resource.
    pub fn with_resource(mut self, resource: Resource) -> Self {
        self.resource = Some(resource);
        self
    }

    /// Sets the sampler. Defaults to the SDK's default (parent-based, always on).
    pub fn with_sampler(
        mut self,
        sampler: impl Into<Box<dyn opentelemetry_sdk::trace::ShouldSample>>,
    ) -> Self {
        self.builder = self.builder.with_sampler(sampler);
        self
    }

    /// Builds the capture.
    pub fn build(self) -> SpanCapture {
        let exporter = InMemorySpanExporter::default();
        let resource = self.resource.unwrap_or_else(|| Resource::builder().build());
        let resource_map = resource
            .iter()
            .map(|(k, v)| {
                let any = AnyValue::from(v.clone());
                (k.to_string(), AttrValue::from(&any))
            })
            .collect();
        let provider = self
            .builder
            .with_span_processor(SimpleSpanProcessor::new(exporter.clone()))
            .with_resource(resource)
            .build();
        SpanCapture {
            provider,
            exporter,
            resource: resource_map,
        }
    }
}

impl SpanCapture {
    /// A capture with the default resource and no extra processor.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder for extra processors, a resource or a sampler.
    pub fn builder() -> SpanCaptureBuilder {
        SpanCaptureBuilder {
            builder: SdkTracerProvider::builder(),
            resource: None,
        }
    }

    /// The provider (e.g. to install it globally in a test of its own process).
    pub fn provider(&self) -> &SdkTracerProvider {
        &self.provider
    }

    /// A tracer with the given instrumentation scope name.
    pub fn tracer(&self, name: &'static str) -> SdkTracer {
        self.provider.tracer(name)
    }

    /// A `tracing-opentelemetry` layer exporting into this capture.
    pub fn layer<S>(&self) -> tracing_opentelemetry::OpenTelemetryLayer<S, SdkTracer>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        tracing_opentelemetry::layer().with_tracer(self.tracer("orderscope-testing"))
    }

    /// A `tracing` subscriber (registry + [`layer`](Self::layer)) exporting into this capture,
    /// for `tracing::subscriber::with_default`.
    pub fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + 'static {
        let registry = tracing_subscriber::registry();
        let layer = self.layer();
        registry.with(layer)
    }

    /// Finished spans as the SDK produced them, in the order they ended.
    pub fn finished_spans(&self) -> Vec<SpanData> {
        self.exporter.get_finished_spans().unwrap_or_default()
    }

    /// Finished spans converted into [`ReceivedSpan`] (through the OTLP protobuf mapping), so
    /// the same assertions work on captured and received spans.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.finished_spans()
            .into_iter()
            .map(|data| {
                let scope_name = data.instrumentation_scope.name().to_owned();
                let scope_version = data
                    .instrumentation_scope
                    .version()
                    .unwrap_or_default()
                    .to_owned();
                let proto = opentelemetry_proto::tonic::trace::v1::Span::from(data);
                ReceivedSpan::from_proto(
                    &proto,
                    &self.resource,
                    &scope_name,
                    &scope_version,
                    Transport::InProcess,
                )
            })
            .collect()
    }

    /// Forgets all finished spans.
    pub fn reset(&self) {
        self.exporter.reset();
    }
}

impl Drop for SpanCapture {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

/// A span exporter that accepts every batch and drops it: the pipeline's own cost without a collector's,
/// for benches and load examples.
///
/// ```
/// use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider};
/// use orderscope_testing::{DroppingExporter, OrderSpanProcessor};
///
/// let provider = SdkTracerProvider::builder()
///     .with_span_processor(OrderSpanProcessor::wrap(
///         BatchSpanProcessor::builder(DroppingExporter).build(),
///     ))
///     .build();
/// # drop(provider);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct DroppingExporter;

impl opentelemetry_sdk::trace::SpanExporter for DroppingExporter {
    async fn export(&self, batch: Vec<SpanData>) -> opentelemetry_sdk::error::OTelSdkResult {
        drop(std::hint::black_box(batch));
        Ok(())
    }
}
