//! Items that macro expansions call. Not a stable API: anything here may change in any release.
//!
//! `#[red]`, `#[order_handler]` and `#[derive(ErrorType)]` (crate `orderscope-macros`) expand to
//! code that names these items by absolute path (`::orderscope::__private::…`, or the path given
//! with `crate = "…"`).

use std::mem::size_of_val;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata, Recorder};

pub use opentelemetry::Context as OtelContext;
pub use opentelemetry::trace::{FutureExt, WithContext};
pub use orderscope_context::OrderContext;
pub use tracing;
pub use tracing::Instrument;

use orderscope_metrics::catalogue::{
    FUNCTION_CALLS, FUNCTION_CALLS_CONCURRENT, FUNCTION_CALLS_DURATION, labels, values,
};

/// The `error_type` of an error without a classification.
pub const DEFAULT_ERROR_TYPE: &str = "error";

// ---------------------------------------------------------------------------------------------
// Error classification
// ---------------------------------------------------------------------------------------------

/// Classifies an error for the `error_type` label of `function_calls_total`.
///
/// `#[red]` and `#[order_handler]` use it when the error type of a function's `Result`
/// implements it; errors of other types are recorded as `error_type="error"`. The value must come
/// from a small, fixed set (it is a metric label): an enum's variant name is the usual choice,
/// and `#[derive(ErrorType)]` writes exactly that, in snake case. Never derive it from an
/// error's `Display` text.
///
/// # Example
///
/// ```
/// use orderscope::ErrorType;
///
/// enum StockError {
///     OutOfStock,
///     Warehouse(std::io::Error),
/// }
///
/// impl ErrorType for StockError {
///     fn error_type(&self) -> &'static str {
///         match self {
///             StockError::OutOfStock => "out_of_stock",
///             StockError::Warehouse(_) => "warehouse",
///         }
///     }
/// }
/// # assert_eq!(StockError::OutOfStock.error_type(), "out_of_stock");
/// # let _ = StockError::Warehouse(std::io::Error::other("x"));
/// ```
pub trait ErrorType {
    /// The `error_type` label value for this error.
    fn error_type(&self) -> &'static str;
}

impl<T: ErrorType + ?Sized> ErrorType for &T {
    fn error_type(&self) -> &'static str {
        (**self).error_type()
    }
}

impl<T: ErrorType + ?Sized> ErrorType for Box<T> {
    fn error_type(&self) -> &'static str {
        (**self).error_type()
    }
}

/// A return type that `#[red]` classifies as a result: implemented for `Result<T, E>`.
#[diagnostic::on_unimplemented(
    message = "`#[red]` treats `{Self}` as a `Result` because its name ends in `Result`",
    label = "not a `Result`",
    note = "write `#[red(result = false)]` to record every call of this function as ok"
)]
pub trait RedResult {
    /// The error type.
    type Error;
    /// The error, if this is one.
    fn red_error(&self) -> Option<&Self::Error>;
}

impl<T, E> RedResult for Result<T, E> {
    type Error = E;
    #[inline]
    fn red_error(&self) -> Option<&E> {
        self.as_ref().err()
    }
}

/// Wraps an error for the `error_type` look-up (autoref specialisation: [`ViaErrorType`] wins
/// over [`ViaDefault`] when the error implements [`ErrorType`]).
#[derive(Debug)]
pub struct ErrorWrap<'a, E: ?Sized>(pub &'a E);

/// Chosen when the error implements [`ErrorType`].
pub trait ViaErrorType {
    /// The classification.
    fn __orderscope_error_type(&self) -> &'static str;
}

impl<E: ErrorType + ?Sized> ViaErrorType for ErrorWrap<'_, E> {
    #[inline]
    fn __orderscope_error_type(&self) -> &'static str {
        self.0.error_type()
    }
}

/// Chosen when the error has no classification: `"error"`.
pub trait ViaDefault {
    /// The classification.
    fn __orderscope_error_type(&self) -> &'static str;
}

impl<E: ?Sized> ViaDefault for &ErrorWrap<'_, E> {
    #[inline]
    fn __orderscope_error_type(&self) -> &'static str {
        DEFAULT_ERROR_TYPE
    }
}

// ---------------------------------------------------------------------------------------------
// RED metrics
// ---------------------------------------------------------------------------------------------

/// The metric keys of one annotated function, built at compile time and kept in a `static`.
///
/// Handles are resolved once against the global recorder and cached; under a thread-local
/// recorder (`metrics::with_local_recorder`, as in tests) they are resolved per call, so each
/// test's recorder sees its own calls.
#[derive(Debug)]
pub struct RedFn {
    metadata: Metadata<'static>,
    labels: [Label; 2],
    ok_labels: [Label; 3],
    function: &'static str,
    module: &'static str,
    track_concurrency: bool,
    cached: OnceLock<Handles>,
}

#[derive(Debug, Clone)]
struct Handles {
    ok: Counter,
    duration: Histogram,
    concurrent: Option<Gauge>,
}

impl RedFn {
    /// Keys for `function` in `module`.
    pub const fn new(
        function: &'static str,
        module: &'static str,
        track_concurrency: bool,
    ) -> Self {
        Self {
            metadata: Metadata::new(module, Level::INFO, Some(module)),
            labels: [
                Label::from_static_parts(labels::FUNCTION, function),
                Label::from_static_parts(labels::MODULE, module),
            ],
            ok_labels: [
                Label::from_static_parts(labels::FUNCTION, function),
                Label::from_static_parts(labels::MODULE, module),
                Label::from_static_parts(labels::RESULT, values::OK),
            ],
            function,
            module,
            track_concurrency,
            cached: OnceLock::new(),
        }
    }

    fn register(&'static self, recorder: &dyn Recorder) -> Handles {
        let labels: &'static [Label] = &self.labels;
        let ok_labels: &'static [Label] = &self.ok_labels;
        Handles {
            ok: recorder.register_counter(
                &Key::from_static_parts(FUNCTION_CALLS, ok_labels),
                &self.metadata,
            ),
            duration: recorder.register_histogram(
                &Key::from_static_parts(FUNCTION_CALLS_DURATION, labels),
                &self.metadata,
            ),
            concurrent: self.track_concurrency.then(|| {
                recorder.register_gauge(
                    &Key::from_static_parts(FUNCTION_CALLS_CONCURRENT, labels),
                    &self.metadata,
                )
            }),
        }
    }

    /// Starts a call: the returned guard records it when dropped (or finished).
    #[inline]
    pub fn enter(&'static self) -> RedCall {
        let handles = metrics::with_recorder(|recorder| {
            if recorder_is_global(recorder) {
                HandleRef::Cached(self.cached.get_or_init(|| self.register(recorder)))
            } else {
                HandleRef::Owned(self.register(recorder))
            }
        });
        if let Some(gauge) = handles.get().concurrent.as_ref() {
            gauge.increment(1.0);
        }
        RedCall {
            red: self,
            handles,
            start: Instant::now(),
            outcome: None,
        }
    }

    fn record_error(&'static self, error_type: &'static str) {
        let key = Key::from_parts(
            FUNCTION_CALLS,
            vec![
                Label::from_static_parts(labels::FUNCTION, self.function),
                Label::from_static_parts(labels::MODULE, self.module),
                Label::from_static_parts(labels::RESULT, values::ERROR),
                Label::from_static_parts(labels::ERROR_TYPE, error_type),
            ],
        );
        metrics::with_recorder(|recorder| recorder.register_counter(&key, &self.metadata))
            .increment(1);
    }
}

#[derive(Debug)]
enum HandleRef {
    Cached(&'static Handles),
    Owned(Handles),
}

impl HandleRef {
    #[inline]
    fn get(&self) -> &Handles {
        match self {
            HandleRef::Cached(h) => h,
            HandleRef::Owned(h) => h,
        }
    }
}

/// One call of an annotated function. Records on drop: a call dropped without [`RedCall::ok`]
/// or [`RedCall::error`] panicked (`error_type="panic"`) or, for an async function, was
/// cancelled (`error_type="cancelled"`). Either way the concurrency gauge goes back down.
#[derive(Debug)]
#[must_use]
pub struct RedCall {
    red: &'static RedFn,
    handles: HandleRef,
    start: Instant,
    outcome: Option<Option<&'static str>>,
}

impl RedCall {
    /// The call returned successfully.
    #[inline]
    pub fn ok(mut self) {
        self.outcome = Some(None);
    }

    /// The call returned an error of the given type.
    #[inline]
    pub fn error(mut self, error_type: &'static str) {
        self.outcome = Some(Some(error_type));
    }
}

impl Drop for RedCall {
    #[inline]
    fn drop(&mut self) {
        let handles = self.handles.get();
        handles.duration.record(self.start.elapsed().as_secs_f64());
        if let Some(gauge) = handles.concurrent.as_ref() {
            gauge.decrement(1.0);
        }
        match self.outcome {
            Some(None) => handles.ok.increment(1),
            Some(Some(error_type)) => self.red.record_error(error_type),
            None if std::thread::panicking() => self.red.record_error(values::PANIC),
            None => self.red.record_error(values::CANCELLED),
        }
    }
}

/// Whether `recorder` is the process-wide recorder (`metrics::set_global_recorder`), whose
/// handles may be cached for the life of the process.
///
/// The `metrics` crate does not say whether a thread-local recorder is set, so the global
/// recorder's address is learnt once, from a short-lived thread (where no thread-local recorder
/// can be set), the first time a recorder that may be it shows up. Zero-sized recorders (the
/// no-op recorder among them) are never cached: their addresses are not unique.
fn recorder_is_global(recorder: &dyn Recorder) -> bool {
    static GLOBAL: AtomicUsize = AtomicUsize::new(0);
    static LAST_NOT_GLOBAL: AtomicUsize = AtomicUsize::new(0);

    fn address(recorder: &dyn Recorder) -> usize {
        if size_of_val(recorder) == 0 {
            0
        } else {
            (recorder as *const dyn Recorder).cast::<()>() as usize
        }
    }

    let this = address(recorder);
    if this == 0 {
        return false;
    }
    let global = GLOBAL.load(Ordering::Acquire);
    if global != 0 {
        return global == this;
    }
    if LAST_NOT_GLOBAL.load(Ordering::Relaxed) == this {
        return false;
    }
    let probed = std::thread::Builder::new()
        .name("orderscope-recorder-probe".into())
        .spawn(|| metrics::with_recorder(address))
        .ok()
        .and_then(|handle| handle.join().ok())
        .unwrap_or(0);
    if probed != 0 {
        GLOBAL.store(probed, Ordering::Release);
    }
    if probed == this {
        true
    } else {
        LAST_NOT_GLOBAL.store(this, Ordering::Relaxed);
        false
    }
}

/// Classifies the error of a `Result` (used by the expansion, which owns the autoref look-up).
#[inline]
pub fn result_error<R: RedResult>(result: &R) -> Option<&R::Error> {
    result.red_error()
}

// ---------------------------------------------------------------------------------------------
// Order in scope
// ---------------------------------------------------------------------------------------------

/// What `#[order_handler(order = …)]` accepts: an order id (`&str`, `String`, …), an
/// [`OrderContext`], or an `Option`/`Result` of one.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be used as the order of `#[order_handler]`",
    note = "`order = …` takes an order id (`&str`, `String`), an `OrderContext`, or an `Option` or `Result` of one"
)]
pub trait AsOrder {
    /// The order, or `None` (nothing attached) when there is none or the id is invalid.
    fn as_order(&self) -> Option<OrderContext>;
}

impl AsOrder for OrderContext {
    fn as_order(&self) -> Option<OrderContext> {
        Some(self.clone())
    }
}

impl AsOrder for str {
    fn as_order(&self) -> Option<OrderContext> {
        match OrderContext::new(self) {
            Ok(order) => Some(order),
            Err(_) => {
                count_invalid_order();
                None
            }
        }
    }
}

impl AsOrder for String {
    fn as_order(&self) -> Option<OrderContext> {
        self.as_str().as_order()
    }
}

impl AsOrder for std::borrow::Cow<'_, str> {
    fn as_order(&self) -> Option<OrderContext> {
        (**self).as_order()
    }
}

impl AsOrder for std::sync::Arc<str> {
    fn as_order(&self) -> Option<OrderContext> {
        (**self).as_order()
    }
}

impl AsOrder for Box<str> {
    fn as_order(&self) -> Option<OrderContext> {
        (**self).as_order()
    }
}

impl<T: AsOrder + ?Sized> AsOrder for &T {
    fn as_order(&self) -> Option<OrderContext> {
        (**self).as_order()
    }
}

impl<T: AsOrder> AsOrder for Option<T> {
    fn as_order(&self) -> Option<OrderContext> {
        self.as_ref().and_then(T::as_order)
    }
}

impl<T: AsOrder, E> AsOrder for Result<T, E> {
    fn as_order(&self) -> Option<OrderContext> {
        match self {
            Ok(order) => order.as_order(),
            Err(_) => {
                count_invalid_order();
                None
            }
        }
    }
}

/// An order id that failed validation: `orderscope_propagation_dropped_total{reason="order_field_invalid"}`.
fn count_invalid_order() {
    metrics::counter!(
        orderscope_context::PROPAGATION_DROPPED_METRIC,
        orderscope_context::PROPAGATION_DROPPED_REASON_LABEL =>
            orderscope_context::DropReason::OrderFieldInvalid.as_str()
    )
    .increment(1);
}

/// Evaluates `order = …` of `#[order_handler]`.
#[inline]
pub fn as_order<T: AsOrder + ?Sized>(value: &T) -> Option<OrderContext> {
    value.as_order()
}

/// Records the order fields on the handler's span (declared with `Empty` values).
pub fn record_order(span: &tracing::Span, order: Option<&OrderContext>) {
    if let Some(order) = order
        && !span.is_disabled()
    {
        order.for_each_field(|key, value| {
            span.record(key, value);
        });
    }
}

/// Puts `order` in scope on this thread, on top of the current context (which, inside the
/// handler's span, holds that span).
#[inline]
pub fn attach_order(order: Option<&OrderContext>) -> Option<opentelemetry::ContextGuard> {
    order.map(|order| order.to_context(&OtelContext::current()).attach())
}

/// Wraps the body of an async handler: polled inside `span`, with `order` in scope on top of
/// the span's context (so child spans and log lines get both).
pub fn scope_future<F: std::future::Future>(
    future: F,
    span: tracing::Span,
    order: Option<&OrderContext>,
) -> tracing::instrument::Instrumented<WithContext<F>> {
    let cx = {
        // The span's own context, captured once, with the order on top.
        let _entered = span.enter();
        match order {
            Some(order) => order.to_context(&OtelContext::current()),
            None => OtelContext::current(),
        }
    };
    Instrument::instrument(FutureExt::with_context(future, cx), span)
}
