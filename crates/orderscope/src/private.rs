//! Items that macro expansions call. Not a stable API: anything here may change in any release.
//!
//! `#[red]`, `#[order_handler]` and `#[derive(ErrorType)]` (crate `orderscope-macros`) expand to
//! code that names these items by absolute path (`::orderscope::__private::…`, or the path given
//! with `crate = "…"`).

pub use opentelemetry::Context as OtelContext;
pub use opentelemetry::trace::{FutureExt, WithContext};
pub use orderscope_context::OrderContext;
pub use tracing;
pub use tracing::Instrument;

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

/// The RED recording of one annotated function, kept in a `static` by the expansion: the one
/// implementation in `orderscope_metrics::red` (handles cached for the global recorder, resolved
/// per call under a thread-local one; bounded `error_type` values; optional concurrency gauge).
pub use orderscope_metrics::red::{CallGuard, FunctionMetrics};

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

/// Evaluates `fallback_order = …` of `#[order_handler]`: the order in scope (from the request's or
/// message's baggage) when there is one, else `fallback()`.
#[inline]
pub fn current_order_or(fallback: impl FnOnce() -> Option<OrderContext>) -> Option<OrderContext> {
    OrderContext::current().or_else(fallback)
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
