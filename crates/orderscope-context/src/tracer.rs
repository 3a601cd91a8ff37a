//! [`LateTracer`]: a tracer resolved from the global provider when spans start, not when the
//! instrumentation is built.

use std::fmt;
use std::sync::{Arc, OnceLock};

use opentelemetry::global::{BoxedSpan, BoxedTracer};
use opentelemetry::trace::{Span as _, SpanBuilder, TraceContextExt, Tracer};
use opentelemetry::{Context, InstrumentationScope};

/// The tracer of an integration (tower layer, AMQP channel or consumer): a fixed one, or the
/// global provider's, looked up when spans start until a real provider is installed.
///
/// `opentelemetry::global::tracer(..)` taken while no provider is installed is a no-op tracer
/// forever, so instrumentation built before `orderscope::init` would never produce a span. A
/// `LateTracer` asks the global provider again for every span until one comes back from a real
/// provider (a span with an id of its own: the no-op tracer only passes the parent's on), then
/// keeps that tracer: from then on, starting a span costs a `OnceLock` load more than with the
/// tracer itself. A provider replaced after that is not followed (install it once, as `init`
/// does).
///
/// # Example
///
/// ```
/// use opentelemetry::trace::{Span as _, SpanBuilder};
/// use opentelemetry::{Context, InstrumentationScope};
/// use orderscope_context::LateTracer;
///
/// let tracer = LateTracer::global(InstrumentationScope::builder("my-integration").build());
/// // Built before any provider: spans are no-ops now, real once a provider is installed.
/// let mut span = tracer.build_with_context(SpanBuilder::from_name("work"), &Context::new());
/// span.end();
/// ```
pub struct LateTracer {
    fixed: Option<Arc<BoxedTracer>>,
    scope: InstrumentationScope,
    bound: OnceLock<BoxedTracer>,
}

impl fmt::Debug for LateTracer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LateTracer")
            .field("scope", &self.scope.name())
            .field("fixed", &self.fixed.is_some())
            .field("bound", &self.bound.get().is_some())
            .finish()
    }
}

impl LateTracer {
    /// The global provider's tracer for `scope`, resolved when spans start.
    pub fn global(scope: InstrumentationScope) -> Self {
        Self {
            fixed: None,
            scope,
            bound: OnceLock::new(),
        }
    }

    /// Always `tracer` (a `BoxedTracer`, or one shared in an `Arc`).
    pub fn fixed(tracer: impl Into<Arc<BoxedTracer>>) -> Self {
        Self {
            fixed: Some(tracer.into()),
            scope: InstrumentationScope::builder("").build(),
            bound: OnceLock::new(),
        }
    }

    /// Starts a span from `builder` under `parent`.
    #[inline]
    pub fn build_with_context(&self, builder: SpanBuilder, parent: &Context) -> BoxedSpan {
        if let Some(tracer) = &self.fixed {
            return tracer.build_with_context(builder, parent);
        }
        if let Some(tracer) = self.bound.get() {
            return tracer.build_with_context(builder, parent);
        }
        self.build_unbound(builder, parent)
    }

    #[cold]
    fn build_unbound(&self, builder: SpanBuilder, parent: &Context) -> BoxedSpan {
        let tracer = opentelemetry::global::tracer_with_scope(self.scope.clone());
        let span = tracer.build_with_context(builder, parent);
        let own = span.span_context();
        if own.is_valid() && own.span_id() != parent.span().span_context().span_id() {
            let _ = self.bound.set(tracer);
        }
        span
    }
}
