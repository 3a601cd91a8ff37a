//! The span processor that copies the order in scope onto every new span.

use std::time::Duration;

use opentelemetry::Context;
use opentelemetry::trace::Span as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};

use crate::order::OrderContext;

/// Adds the order fields (`order.id`, `order.channel`, …) as attributes to every span started
/// while an [`OrderContext`] is in its parent context.
///
/// Register it on the tracer provider next to the exporting processor (as
/// `OrderSpanProcessor` or `OrderSpanProcessor::new()`); it only acts in `on_start`, the other
/// methods do nothing.
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
