//! The server or consumer operation that work runs under: a route (`GET /orders/{id}`) or a
//! queue (`process orders`).

use std::any::Any;
use std::borrow::Cow;
use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::Context;

/// The operation a request or a message is handled in, stored in the OpenTelemetry
/// [`Context`] next to the server or consumer span.
///
/// The HTTP server layer and the AMQP consumer put one in scope with the span they open; code
/// running under them (a database client, say) reads its [`name`](Self::name) to say where it
/// ran, and may keep per-operation state in its [`extension`](Self::extension), state that lives
/// exactly as long as the request or the message and is never shared with another one.
///
/// Putting one in scope costs a few allocations per request, so the HTTP server layer does it
/// only once some code has said it reads operations, with [`Operation::enable`] (the SQL pool
/// does when it is built).
///
/// # Example
///
/// ```
/// use opentelemetry::Context;
/// use orderscope_context::Operation;
///
/// let cx = Context::current().with_value(Operation::new("GET /orders/{id}"));
/// let _guard = cx.attach();
/// let name = Operation::with_current(|op| op.name().to_owned());
/// assert_eq!(name.as_deref(), Some("GET /orders/{id}"));
/// ```
pub struct Operation {
    name: Cow<'static, str>,
    extension: OnceLock<Box<dyn Any + Send + Sync>>,
}

impl fmt::Debug for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Operation")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Whether some code reads operations: see [`Operation::enable`].
static ENABLED: AtomicBool = AtomicBool::new(false);

impl Operation {
    /// Says that code in this process reads operations (with [`with_current`](Self::with_current)
    /// or `Context::get::<Operation>()`), so the layers that may leave them out to save the cost
    /// put one in scope from now on. Process-wide and permanent; cheap to call again.
    pub fn enable() {
        if !ENABLED.load(Ordering::Relaxed) {
            ENABLED.store(true, Ordering::Relaxed);
        }
    }

    /// Whether [`enable`](Self::enable) was called in this process.
    #[inline]
    pub fn is_enabled() -> bool {
        ENABLED.load(Ordering::Relaxed)
    }

    /// An operation named `name`: the server span's name (`GET /dashboard/orders`) or the
    /// consumer span's (`process orders`).
    pub fn new(name: impl Into<Cow<'static, str>>) -> Self {
        Operation {
            name: name.into(),
            extension: OnceLock::new(),
        }
    }

    /// `cx` with a new operation named `name` in it when code in this process reads operations
    /// (see [`enable`](Self::enable)), and `cx` unchanged otherwise: a context value costs
    /// allocations on every request or message, so instrumentation that starts an operation
    /// (a server request, a consumed message) calls this rather than inserting one itself.
    pub fn in_context(cx: Context, name: impl Into<Cow<'static, str>>) -> Context {
        if Self::is_enabled() {
            cx.with_value(Self::new(name))
        } else {
            cx
        }
    }

    /// The operation's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `f` with the operation of the current context, if there is one.
    pub fn with_current<R>(f: impl FnOnce(&Operation) -> R) -> Option<R> {
        Context::map_current(|cx| cx.get::<Operation>().map(f))
    }

    /// The operation's state of type `T`, created by `init` on first use.
    ///
    /// An operation holds one extension: `None` when another type already took the place.
    pub fn extension<T: Any + Send + Sync>(&self, init: impl FnOnce(&str) -> T) -> Option<&T> {
        self.extension
            .get_or_init(|| Box::new(init(&self.name)))
            .downcast_ref::<T>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_outside_an_operation() {
        assert!(Operation::with_current(|_| ()).is_none());
    }

    #[test]
    fn one_extension_per_operation() {
        let op = Operation::new("process orders");
        assert_eq!(op.extension(|name| name.len()), Some(&14));
        assert_eq!(op.extension(|_| 0usize), Some(&14));
        assert_eq!(op.extension(|_| "other"), None);
    }
}
