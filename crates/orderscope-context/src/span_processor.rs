//! The span processor that copies the order in scope onto every new span (feature `sdk`). The
//! one implementation: the facade re-exports it as `orderscope::OrderSpanProcessor`, the test
//! kit as `orderscope_testing::OrderSpanProcessor`. The instrumentation crates use this crate
//! without the feature and speak the OpenTelemetry API only.

use std::time::Duration;

use opentelemetry::Context;
use opentelemetry::trace::Span as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};

use crate::OrderContext;

/// Adds the order fields (`order.id`, `order.channel`, …) as attributes to every span started
/// while an [`OrderContext`] is in its parent context.
///
/// Register it on the tracer provider next to the exporting processor (as
/// `OrderSpanProcessor` or `OrderSpanProcessor::new()`); it only acts in `on_start`, the other
/// methods do nothing.
///
/// When the provider exports, prefer [`OrderSpanProcessor::wrap`] around the exporting processor:
/// a provider with two or more processors clones every finished span once per processor, a
/// provider with one does not.
///
/// # Example
///
/// ```
/// use opentelemetry::trace::{Tracer, TracerProvider};
/// use opentelemetry_sdk::trace::SdkTracerProvider;
/// use orderscope_context::{OrderContext, OrderSpanProcessor};
///
/// let provider = SdkTracerProvider::builder()
///     .with_span_processor(OrderSpanProcessor::new())
///     .build();
/// let tracer = provider.tracer("example");
/// OrderContext::new("ORD-1")?.in_scope(|| {
///     tracer.in_span("reserve stock", |_cx| { /* this span carries order.id=ORD-1 */ });
/// });
/// # Ok::<(), orderscope_context::OrderContextError>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct OrderSpanProcessor;

impl OrderSpanProcessor {
    /// The processor.
    pub const fn new() -> Self {
        Self
    }

    /// One processor that adds the order fields in `on_start` and then hands every call to
    /// `inner` (typically the batch processor that exports).
    ///
    /// # Example
    ///
    /// ```
    /// use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SimpleSpanProcessor};
    /// use orderscope_context::OrderSpanProcessor;
    ///
    /// let exporting = SimpleSpanProcessor::new(InMemorySpanExporter::default());
    /// let provider = SdkTracerProvider::builder()
    ///     .with_span_processor(OrderSpanProcessor::wrap(exporting))
    ///     .build();
    /// # drop(provider);
    /// ```
    pub const fn wrap<P: SpanProcessor>(inner: P) -> WithOrderFields<P> {
        WithOrderFields { inner }
    }
}

/// A span processor that adds the order fields, then delegates to another processor: see
/// [`OrderSpanProcessor::wrap`].
#[derive(Debug)]
pub struct WithOrderFields<P> {
    inner: P,
}

impl<P> WithOrderFields<P> {
    /// The wrapped processor.
    pub fn get_ref(&self) -> &P {
        &self.inner
    }

    /// The wrapped processor, unwrapped.
    pub fn into_inner(self) -> P {
        self.inner
    }
}

impl<P: SpanProcessor> SpanProcessor for WithOrderFields<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        OrderSpanProcessor.on_start(span, cx);
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

impl SpanProcessor for OrderSpanProcessor {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        if let Some(order) = cx.get::<OrderContext>() {
            for kv in order.attributes() {
                span.set_attribute(kv);
            }
        }
    }

    fn on_end(&self, _span: SpanData) {}

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}
