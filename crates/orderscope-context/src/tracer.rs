//! [`LateTracer`]: a tracer resolved from the global provider when spans start, not when the
//! instrumentation is built.

use std::fmt;
#[cfg(feature = "sdk")]
use std::sync::RwLock;
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
/// With the `sdk` feature, a provider given to `set_sdk_tracer_provider` (as `orderscope::init`
/// does beside the global one) is used instead of the global provider: [`start`](Self::start)
/// then puts the SDK's own span in the context, without the global provider's boxed span around
/// it — one allocation and one dynamic call fewer per span.
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
    bound: OnceLock<Bound>,
}

/// The tracer a [`LateTracer`] resolved.
enum Bound {
    /// The global provider's.
    Global(BoxedTracer),
    /// The provider given to [`set_sdk_tracer_provider`]: its tracer, and the same boxed for
    /// [`LateTracer::build_with_context`].
    #[cfg(feature = "sdk")]
    Sdk(opentelemetry_sdk::trace::SdkTracer, BoxedTracer),
}

#[cfg(feature = "sdk")]
static SDK_PROVIDER: RwLock<Option<opentelemetry_sdk::trace::SdkTracerProvider>> =
    RwLock::new(None);

/// Whether [`SDK_PROVIDER`] was ever set: spans started while no tracer is resolved (no provider
/// installed at all) then skip its lock.
#[cfg(feature = "sdk")]
static SDK_PROVIDER_SET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Gives the SDK tracer provider that is also installed as the global one to [`LateTracer`]s
/// (feature `sdk`): those that resolve their tracer from now on use `provider` directly, so a
/// span started with [`LateTracer::start`] is the SDK's own span in the context rather than the
/// global provider's box around it. `orderscope::init` calls it with the provider it installs;
/// call it yourself only when you install the provider with
/// `opentelemetry::global::set_tracer_provider`, with the same provider, and before that call: a
/// `LateTracer` that resolves its tracer from the global provider keeps it.
///
/// # Example
///
/// ```
/// use opentelemetry_sdk::trace::SdkTracerProvider;
///
/// let provider = SdkTracerProvider::builder().build();
/// orderscope_context::set_sdk_tracer_provider(&provider);
/// opentelemetry::global::set_tracer_provider(provider.clone());
/// ```
#[cfg(feature = "sdk")]
#[cfg_attr(docsrs, doc(cfg(feature = "sdk")))]
pub fn set_sdk_tracer_provider(provider: &opentelemetry_sdk::trace::SdkTracerProvider) {
    let mut slot = SDK_PROVIDER
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *slot = Some(provider.clone());
    SDK_PROVIDER_SET.store(true, std::sync::atomic::Ordering::Release);
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
        match self.bound.get() {
            Some(Bound::Global(tracer)) => tracer.build_with_context(builder, parent),
            #[cfg(feature = "sdk")]
            Some(Bound::Sdk(_, boxed)) => boxed.build_with_context(builder, parent),
            None => self.build_unbound(builder, parent),
        }
    }

    /// Starts a span from `builder` under `parent` and returns `parent` with it as the active
    /// span: what `parent.with_span(self.build_with_context(builder, parent))` gives, with one
    /// allocation fewer when the tracer is the SDK's (see `set_sdk_tracer_provider`).
    ///
    /// # Example
    ///
    /// ```
    /// use opentelemetry::trace::{SpanBuilder, TraceContextExt as _};
    /// use opentelemetry::{Context, InstrumentationScope};
    /// use orderscope_context::LateTracer;
    ///
    /// let tracer = LateTracer::global(InstrumentationScope::builder("my-integration").build());
    /// let cx = tracer.start(SpanBuilder::from_name("work"), &Context::new());
    /// cx.span().end();
    /// ```
    #[inline]
    pub fn start(&self, builder: SpanBuilder, parent: &Context) -> Context {
        // Only a tracer without a fixed one resolves (`bound` stays empty otherwise).
        #[cfg(feature = "sdk")]
        if let Some(Bound::Sdk(tracer, _)) = self.bound.get() {
            return parent.with_span(tracer.build_with_context(builder, parent));
        }
        parent.with_span(self.build_with_context(builder, parent))
    }

    #[cold]
    fn build_unbound(&self, builder: SpanBuilder, parent: &Context) -> BoxedSpan {
        #[cfg(feature = "sdk")]
        if SDK_PROVIDER_SET.load(std::sync::atomic::Ordering::Acquire) {
            let provider = SDK_PROVIDER
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            if let Some(provider) = provider {
                use opentelemetry::trace::TracerProvider as _;
                let tracer = provider.tracer_with_scope(self.scope.clone());
                let boxed = BoxedTracer::new(Box::new(tracer.clone()));
                let span = boxed.build_with_context(builder, parent);
                let _ = self.bound.set(Bound::Sdk(tracer, boxed));
                return span;
            }
        }
        let tracer = opentelemetry::global::tracer_with_scope(self.scope.clone());
        let span = tracer.build_with_context(builder, parent);
        let own = span.span_context();
        if own.is_valid() && own.span_id() != parent.span().span_context().span_id() {
            let _ = self.bound.set(Bound::Global(tracer));
        }
        span
    }
}
