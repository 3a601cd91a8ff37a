//! Putting an order in scope: a guard for synchronous code, a wrapper for futures.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use opentelemetry::{Context, ContextGuard};

use crate::order::OrderContext;

/// Keeps an order in scope on the current thread; returned by [`OrderContext::attach`].
///
/// Dropping it restores the context that was current before. It is not `Send`.
#[derive(Debug)]
#[must_use = "the order leaves scope as soon as the guard is dropped"]
pub struct OrderGuard {
    _guard: ContextGuard,
}

impl OrderGuard {
    pub(crate) fn new(guard: ContextGuard) -> Self {
        Self { _guard: guard }
    }
}

/// Runs a future with an order in scope; implemented for every [`Future`].
///
/// # Example
///
/// ```
/// use orderscope_context::{OrderContext, WithOrder};
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let order = OrderContext::new("ORD-2026-000123")?;
/// let id = async { OrderContext::current().map(|o| o.id().to_owned()) }
///     .with_order(order)
///     .await;
/// assert_eq!(id.as_deref(), Some("ORD-2026-000123"));
/// # Ok(())
/// # }
/// ```
///
/// The wrapped future is `Send` when the inner one is, so it can be handed to
/// `tokio::spawn`: the spawned task then runs with the order (and the span that was current
/// when `with_order` was called) in scope.
pub trait WithOrder: Sized {
    /// Wraps `self` so that `order` is in scope while it is polled.
    ///
    /// The context current at this call (active span, baggage) is captured together with the
    /// order, and attached around every poll.
    fn with_order(self, order: OrderContext) -> WithOrderFuture<Self>;
}

impl<F: Future> WithOrder for F {
    fn with_order(self, order: OrderContext) -> WithOrderFuture<Self> {
        WithOrderFuture {
            inner: self,
            cx: Context::current_with_value(order),
        }
    }
}

/// The future returned by [`WithOrder::with_order`].
#[pin_project::pin_project]
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct WithOrderFuture<F> {
    #[pin]
    inner: F,
    cx: Context,
}

impl<F: Future> Future for WithOrderFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, task_cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _guard = this.cx.clone().attach();
        this.inner.poll(task_cx)
    }
}
