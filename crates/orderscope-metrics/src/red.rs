//! RED (rate, errors, duration) recording for functions, with the autometrics metric names.
//!
//! A [`FunctionMetrics`] lives in a `static` next to the instrumented function (that is what the
//! `#[red]` attribute expands to). Its handles are registered on first use (per recorder, see
//! [`PerRecorder`]), so a call costs the handle operations plus two clock reads:
//!
//! - `function_calls_total{function, module, result="ok"}` or
//!   `function_calls_total{function, module, result="error", error_type}`;
//! - `function_calls_duration_seconds{function, module}`;
//! - `function_calls_concurrent{function, module}`, raised by [`FunctionMetrics::start`] and
//!   lowered when the returned [`CallGuard`] drops, also on panic or when a future is dropped.
//!
//! `error_type` comes from a bounded classification the caller provides (`&'static str`). Each
//! function keeps at most [`MAX_ERROR_TYPES`] distinct error types; beyond that, errors are
//! counted with `error_type="_overflow"` and `orderscope_cardinality_overflow_total` is
//! incremented.
//!
//! # Example
//!
//! ```
//! use orderscope_metrics::red::FunctionMetrics;
//!
//! static LOAD_ORDER: FunctionMetrics = FunctionMetrics::new("load_order", module_path!());
//!
//! fn load_order(id: &str) -> Result<String, std::io::Error> {
//!     let call = LOAD_ORDER.start();
//!     let result = if id.is_empty() {
//!         Err(std::io::Error::other("empty id"))
//!     } else {
//!         Ok(id.to_owned())
//!     };
//!     call.finish(&result, |_e| "invalid_id");
//!     result
//! }
//! # load_order("A-1").unwrap();
//! ```

use std::fmt;
use std::sync::{OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram, Key, Label};

use crate::catalogue::{self, labels, values};
use crate::recorder::{MetricHandle, PerRecorder, Scoped};

/// The most distinct `error_type` values one function records; later ones become `_overflow`.
pub const MAX_ERROR_TYPES: usize = 32;

/// The handles of one function for one recorder.
struct Handles {
    ok: Counter,
    duration: Histogram,
    concurrent: Gauge,
    errors: RwLock<Vec<(&'static str, Counter)>>,
    error_overflow: OnceLock<Counter>,
    overflow_count: OnceLock<Counter>,
}

/// RED metrics of one function; `const`-constructible for use in a `static`.
///
/// See the [module documentation](self).
pub struct FunctionMetrics {
    function: &'static str,
    module: &'static str,
    handles: PerRecorder<Handles>,
}

impl fmt::Debug for FunctionMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FunctionMetrics")
            .field("function", &self.function)
            .field("module", &self.module)
            .finish_non_exhaustive()
    }
}

impl FunctionMetrics {
    /// Metrics for `function` in `module` (usually `module_path!()`).
    pub const fn new(function: &'static str, module: &'static str) -> Self {
        FunctionMetrics {
            function,
            module,
            handles: PerRecorder::new(),
        }
    }

    /// The `function` label.
    pub fn function(&self) -> &'static str {
        self.function
    }

    /// The `module` label.
    pub fn module(&self) -> &'static str {
        self.module
    }

    fn base_labels(&self) -> Vec<Label> {
        vec![
            Label::from_static_parts(labels::FUNCTION, self.function),
            Label::from_static_parts(labels::MODULE, self.module),
        ]
    }

    fn register(&self) -> Handles {
        let mut ok_labels = self.base_labels();
        ok_labels.push(Label::from_static_parts(labels::RESULT, values::OK));
        Handles {
            ok: Counter::register(&Key::from_parts(catalogue::FUNCTION_CALLS, ok_labels)),
            duration: Histogram::register(&Key::from_parts(
                catalogue::FUNCTION_CALLS_DURATION,
                self.base_labels(),
            )),
            concurrent: Gauge::register(&Key::from_parts(
                catalogue::FUNCTION_CALLS_CONCURRENT,
                self.base_labels(),
            )),
            errors: RwLock::new(Vec::new()),
            error_overflow: OnceLock::new(),
            overflow_count: OnceLock::new(),
        }
    }

    #[inline]
    fn handles(&self) -> Scoped<'_, Handles> {
        self.handles.get_or_init(|| self.register())
    }

    /// Starts a call: raises the concurrency gauge and starts the clock.
    ///
    /// Finish with [`CallGuard::ok`], [`CallGuard::error`] or [`CallGuard::finish`]. A guard
    /// dropped unfinished records an error: `error_type="panic"` while the thread panics,
    /// `"cancelled"` otherwise (a future dropped before completion).
    #[inline]
    pub fn start(&self) -> CallGuard<'_> {
        let concurrency = ConcurrencyGuard::new(self, self.handles());
        CallGuard {
            concurrency,
            start: Instant::now(),
            finished: false,
        }
    }

    /// Raises the concurrency gauge until the returned guard drops, without recording a call.
    #[inline]
    pub fn concurrency(&self) -> ConcurrencyGuard<'_> {
        ConcurrencyGuard::new(self, self.handles())
    }

    /// Records a successful call that took `elapsed`.
    #[inline]
    pub fn record_ok(&self, elapsed: Duration) {
        record_ok(&self.handles(), elapsed);
    }

    /// Records a failed call that took `elapsed`, classified as `error_type`.
    #[inline]
    pub fn record_error(&self, error_type: &'static str, elapsed: Duration) {
        self.record_error_with(&self.handles(), error_type, elapsed);
    }

    fn record_error_with(&self, handles: &Handles, error_type: &'static str, elapsed: Duration) {
        self.error_counter(handles, error_type, |c| c.increment(1));
        handles.duration.record(elapsed.as_secs_f64());
    }

    fn error_counter(&self, handles: &Handles, error_type: &'static str, f: impl FnOnce(&Counter)) {
        {
            let errors = handles
                .errors
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some((_, c)) = errors.iter().find(|(t, _)| same_str(t, error_type)) {
                return f(c);
            }
        }
        let mut errors = handles
            .errors
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((_, c)) = errors.iter().find(|(t, _)| same_str(t, error_type)) {
            return f(c);
        }
        if errors.len() >= MAX_ERROR_TYPES {
            drop(errors);
            let overflow = handles
                .error_overflow
                .get_or_init(|| self.error_counter_for(values::OVERFLOW));
            handles
                .overflow_count
                .get_or_init(|| {
                    Counter::register(&Key::from_parts(
                        catalogue::CARDINALITY_OVERFLOW,
                        vec![Label::from_static_parts(
                            labels::METRIC,
                            catalogue::FUNCTION_CALLS,
                        )],
                    ))
                })
                .increment(1);
            return f(overflow);
        }
        let counter = self.error_counter_for(error_type);
        f(&counter);
        errors.push((error_type, counter));
    }

    fn error_counter_for(&self, error_type: &'static str) -> Counter {
        let mut set = self.base_labels();
        set.push(Label::from_static_parts(labels::RESULT, values::ERROR));
        set.push(Label::from_static_parts(labels::ERROR_TYPE, error_type));
        Counter::register(&Key::from_parts(catalogue::FUNCTION_CALLS, set))
    }
}

#[inline]
fn same_str(a: &str, b: &str) -> bool {
    std::ptr::eq(a, b) || a == b
}

#[inline]
fn record_ok(handles: &Handles, elapsed: Duration) {
    handles.ok.increment(1);
    handles.duration.record(elapsed.as_secs_f64());
}

/// Keeps `function_calls_concurrent` raised while alive; lowers it on drop (panic- and
/// cancel-safe). The gauge is lowered on the same recorder it was raised on.
#[must_use = "the gauge is lowered when the guard drops"]
pub struct ConcurrencyGuard<'a> {
    metrics: &'a FunctionMetrics,
    handles: Scoped<'a, Handles>,
}

impl fmt::Debug for ConcurrencyGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyGuard")
            .field("function", &self.metrics.function)
            .finish_non_exhaustive()
    }
}

impl<'a> ConcurrencyGuard<'a> {
    #[inline]
    fn new(metrics: &'a FunctionMetrics, handles: Scoped<'a, Handles>) -> Self {
        handles.concurrent.increment(1.0);
        ConcurrencyGuard { metrics, handles }
    }
}

impl Drop for ConcurrencyGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        self.handles.concurrent.decrement(1.0);
    }
}

/// A call in progress, from [`FunctionMetrics::start`].
#[must_use = "finish the call with ok(), error() or finish(); dropping it records a cancellation"]
pub struct CallGuard<'a> {
    concurrency: ConcurrencyGuard<'a>,
    start: Instant,
    finished: bool,
}

impl fmt::Debug for CallGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallGuard")
            .field("function", &self.concurrency.metrics.function)
            .field("elapsed", &self.start.elapsed())
            .finish_non_exhaustive()
    }
}

impl CallGuard<'_> {
    /// Time since the call started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Records success.
    #[inline]
    pub fn ok(mut self) {
        self.finished = true;
        record_ok(&self.concurrency.handles, self.start.elapsed());
    }

    /// Records failure classified as `error_type` (from a bounded set).
    #[inline]
    pub fn error(mut self, error_type: &'static str) {
        self.finished = true;
        let elapsed = self.start.elapsed();
        self.concurrency
            .metrics
            .record_error_with(&self.concurrency.handles, error_type, elapsed);
    }

    /// Records `result`: success for `Ok`, `classify(err)` as `error_type` for `Err`.
    #[inline]
    pub fn finish<T, E>(self, result: &Result<T, E>, classify: impl FnOnce(&E) -> &'static str) {
        match result {
            Ok(_) => self.ok(),
            Err(e) => {
                let error_type = classify(e);
                self.error(error_type);
            }
        }
    }
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        if !self.finished {
            let error_type = if std::thread::panicking() {
                values::PANIC
            } else {
                values::CANCELLED
            };
            let elapsed = self.start.elapsed();
            self.concurrency.metrics.record_error_with(
                &self.concurrency.handles,
                error_type,
                elapsed,
            );
        }
        // `concurrency` drops after this and lowers the gauge.
    }
}
