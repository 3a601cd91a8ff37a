//! RED (rate, errors, duration) recording for functions, with the autometrics metric names.
//!
//! A [`FunctionMetrics`] lives in a `static` next to the instrumented function; this is what the
//! `#[red]` and `#[order_handler]` attributes of `orderscope` expand to. Each call records:
//!
//! - `function_calls_total{function, module, result="ok"}` or
//!   `function_calls_total{function, module, result="error", error_type}`;
//! - `function_calls_duration_seconds{function, module}`;
//! - with [`track_concurrency`](FunctionMetrics::track_concurrency) only (off by default, as for
//!   `#[red]`): `function_calls_concurrent{function, module}`, raised by
//!   [`FunctionMetrics::start`] and lowered when the returned [`CallGuard`] drops, also on panic
//!   or when a future is dropped. With tracking off the series does not exist.
//!
//! # Error types
//!
//! `error_type` comes from a bounded classification the caller provides (`&'static str`, e.g. an
//! enum's variant name; never an error's `Display` text). Each function admits at most
//! [`MAX_ERROR_TYPES`] distinct values, the first ones seen in the process; later ones are
//! counted with `error_type="_overflow"`, and each such call increments
//! `orderscope_cardinality_overflow_total{metric="function_calls_total"}`. The admitted set
//! belongs to the function, not to a recorder: every recorder sees the same label values.
//!
//! # Which recorder, and what is cached
//!
//! The handles live in a [`HandleCell`], orderscope's one handle cache: kept
//! for the global recorder (`orderscope::init`, `PrometheusBuilder::install_recorder`) from the
//! first call on, registered per call under a thread-local recorder (`metrics::with_local_recorder`,
//! as in tests) or the no-op recorder. A function called before `orderscope::init` starts
//! recording as soon as the global recorder is installed, and each test's recorder sees exactly
//! its own calls, whatever address it lives at.
//!
//! Per call under the global recorder, [`FunctionMetrics::start`] plus [`CallGuard::ok`] cost:
//! one thread-local read and three atomic loads to find the cached handles, two clock reads, a
//! counter increment and a histogram record (plus two gauge updates with concurrency tracking).
//! No lock, no allocation, no hashing of label values.
//!
//! Error counters are resolved when a call fails. A call that fails on a thread whose current
//! recorder differs from the one it started under (a guard moved to another thread under a
//! thread-local recorder) counts its error in the recorder current where it fails; its duration
//! and gauge update go to the recorder it started under.
//!
//! # Example
//!
//! ```
//! use orderscope_metrics::red::FunctionMetrics;
//!
//! static LOAD_ORDER: FunctionMetrics =
//!     FunctionMetrics::new("load_order", module_path!()).track_concurrency(true);
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
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata, Recorder};

use crate::catalogue::{self, labels, values};
use crate::recorder::{Bound, HandleCell};

/// The most distinct `error_type` values one function records; later ones become `_overflow`.
pub const MAX_ERROR_TYPES: usize = 32;

/// RED metrics of one function; `const`-constructible for use in a `static`.
///
/// See the [module documentation](self) for what is recorded and what it costs.
pub struct FunctionMetrics {
    function: &'static str,
    module: &'static str,
    track_concurrency: bool,
    metadata: Metadata<'static>,
    /// The keys of the ok counter, the histogram and the gauge, built on first use.
    keys: OnceLock<Keys>,
    /// The handles, kept for the global recorder.
    handles: HandleCell<Handles>,
    /// The concurrency gauge, kept for the global recorder.
    concurrent: HandleCell<Gauge>,
    /// Admitted `error_type` values (and their counters), allocated on the first error.
    errors: OnceLock<Box<ErrorTable>>,
}

impl fmt::Debug for FunctionMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FunctionMetrics")
            .field("function", &self.function)
            .field("module", &self.module)
            .field("track_concurrency", &self.track_concurrency)
            .finish_non_exhaustive()
    }
}

struct Keys {
    ok: Key,
    duration: Key,
    concurrent: Key,
}

/// The handles of one function for one recorder.
struct Handles {
    ok: Counter,
    duration: Histogram,
}

/// The `error_type` values a function admitted, in order, each with its counter. Slots fill in
/// order under `admit`; readers scan without a lock.
struct ErrorTable {
    slots: [ErrorSlot; MAX_ERROR_TYPES],
    admit: Mutex<()>,
    overflow: HandleCell<Counter>,
    overflow_count: HandleCell<Counter>,
}

struct ErrorSlot {
    name: OnceLock<&'static str>,
    counter: HandleCell<Counter>,
}

impl ErrorTable {
    fn new() -> Self {
        ErrorTable {
            slots: [const {
                ErrorSlot {
                    name: OnceLock::new(),
                    counter: HandleCell::new(),
                }
            }; MAX_ERROR_TYPES],
            admit: Mutex::new(()),
            overflow: HandleCell::new(),
            overflow_count: HandleCell::new(),
        }
    }

    /// The slot of `error_type`, admitting it if there is room; `None` means overflow.
    #[inline]
    fn slot(&self, error_type: &'static str) -> Option<&ErrorSlot> {
        for slot in &self.slots {
            match slot.name.get() {
                Some(name) if same_str(name, error_type) => return Some(slot),
                Some(_) => {}
                None => return self.admit(error_type),
            }
        }
        None
    }

    #[cold]
    fn admit(&self, error_type: &'static str) -> Option<&ErrorSlot> {
        let _guard = self.admit.lock().unwrap_or_else(PoisonError::into_inner);
        for slot in &self.slots {
            match slot.name.get() {
                Some(name) if same_str(name, error_type) => return Some(slot),
                Some(_) => {}
                None => {
                    // Only writer: the lock is held.
                    let _ = slot.name.set(error_type);
                    return Some(slot);
                }
            }
        }
        None
    }
}

impl FunctionMetrics {
    /// Metrics for `function` in `module` (usually `module_path!()`), without
    /// `function_calls_concurrent`.
    pub const fn new(function: &'static str, module: &'static str) -> Self {
        FunctionMetrics {
            function,
            module,
            track_concurrency: false,
            metadata: Metadata::new(module, Level::INFO, Some(module)),
            keys: OnceLock::new(),
            handles: HandleCell::new(),
            concurrent: HandleCell::new(),
            errors: OnceLock::new(),
        }
    }

    /// Whether to record `function_calls_concurrent` (off by default). With `false`, the gauge
    /// is never registered, so the series does not exist.
    #[must_use]
    pub const fn track_concurrency(mut self, track: bool) -> Self {
        self.track_concurrency = track;
        self
    }

    /// The `function` label.
    pub fn function(&self) -> &'static str {
        self.function
    }

    /// The `module` label.
    pub fn module(&self) -> &'static str {
        self.module
    }

    /// Whether `function_calls_concurrent` is recorded.
    pub fn tracks_concurrency(&self) -> bool {
        self.track_concurrency
    }

    fn labels(&self, extra: &[Label]) -> Vec<Label> {
        let mut set = Vec::with_capacity(2 + extra.len());
        set.push(Label::from_static_parts(labels::FUNCTION, self.function));
        set.push(Label::from_static_parts(labels::MODULE, self.module));
        set.extend_from_slice(extra);
        set
    }

    fn keys(&self) -> &Keys {
        self.keys.get_or_init(|| Keys {
            ok: Key::from_parts(
                catalogue::FUNCTION_CALLS,
                self.labels(&[Label::from_static_parts(labels::RESULT, values::OK)]),
            ),
            duration: Key::from_parts(catalogue::FUNCTION_CALLS_DURATION, self.labels(&[])),
            concurrent: Key::from_parts(catalogue::FUNCTION_CALLS_CONCURRENT, self.labels(&[])),
        })
    }

    fn register(&self, recorder: &dyn Recorder) -> Handles {
        let keys = self.keys();
        Handles {
            ok: recorder.register_counter(&keys.ok, &self.metadata),
            duration: recorder.register_histogram(&keys.duration, &self.metadata),
        }
    }

    fn register_gauge(&self, recorder: &dyn Recorder) -> Gauge {
        recorder.register_gauge(&self.keys().concurrent, &self.metadata)
    }

    /// The concurrency gauge for the current recorder, `None` when concurrency is not tracked.
    #[inline]
    fn gauge(&self) -> Option<Bound<'_, Gauge>> {
        self.track_concurrency.then(|| {
            self.concurrent
                .get(|recorder| self.register_gauge(recorder))
        })
    }

    /// The handles for the current recorder.
    #[inline]
    fn handles(&self) -> Bound<'_, Handles> {
        self.handles.get(|recorder| self.register(recorder))
    }

    /// Starts a call: raises the concurrency gauge (when tracked) and starts the clock.
    ///
    /// Finish with [`CallGuard::ok`], [`CallGuard::error`] or [`CallGuard::finish`]. A guard
    /// dropped unfinished records an error: `error_type="panic"` while the thread panics,
    /// `"cancelled"` otherwise (a future dropped before completion).
    #[inline]
    pub fn start(&self) -> CallGuard<'_> {
        let handles = self.handles();
        let gauge = self.gauge();
        if let Some(gauge) = &gauge {
            gauge.increment(1.0);
        }
        CallGuard {
            metrics: self,
            handles,
            gauge,
            start: Instant::now(),
            finished: false,
        }
    }

    /// Raises the concurrency gauge until the returned guard drops, without recording a call.
    ///
    /// Does nothing when concurrency is not tracked.
    pub fn concurrency(&self) -> ConcurrencyGuard<'_> {
        let gauge = self.gauge();
        if let Some(gauge) = &gauge {
            gauge.increment(1.0);
        }
        ConcurrencyGuard {
            function: self.function,
            gauge,
        }
    }

    /// Records a successful call that took `elapsed`.
    pub fn record_ok(&self, elapsed: Duration) {
        let handles = self.handles();
        handles.ok.increment(1);
        handles.duration.record(elapsed.as_secs_f64());
    }

    /// Records a failed call that took `elapsed`, classified as `error_type`.
    pub fn record_error(&self, error_type: &'static str, elapsed: Duration) {
        let handles = self.handles();
        handles.duration.record(elapsed.as_secs_f64());
        self.count_error(error_type);
    }

    /// Increments `function_calls_total{result="error", error_type}`, or the overflow series.
    fn count_error(&self, error_type: &'static str) {
        let table = self.errors.get_or_init(|| Box::new(ErrorTable::new()));
        match table.slot(error_type) {
            Some(slot) => self.increment(&slot.counter, || self.error_key(error_type)),
            None => {
                self.increment(&table.overflow, || self.error_key(values::OVERFLOW));
                self.increment(&table.overflow_count, || {
                    Key::from_parts(
                        catalogue::CARDINALITY_OVERFLOW,
                        vec![Label::from_static_parts(
                            labels::METRIC,
                            catalogue::FUNCTION_CALLS,
                        )],
                    )
                });
            }
        }
    }

    fn error_key(&self, error_type: &'static str) -> Key {
        Key::from_parts(
            catalogue::FUNCTION_CALLS,
            self.labels(&[
                Label::from_static_parts(labels::RESULT, values::ERROR),
                Label::from_static_parts(labels::ERROR_TYPE, error_type),
            ]),
        )
    }

    /// Increments the counter `key` of the current recorder.
    fn increment(&self, cell: &HandleCell<Counter>, key: impl FnOnce() -> Key) {
        cell.get(|recorder| recorder.register_counter(&key(), &self.metadata))
            .increment(1);
    }
}

#[inline]
fn same_str(a: &str, b: &str) -> bool {
    std::ptr::eq(a, b) || a == b
}

/// Keeps `function_calls_concurrent` raised while alive; lowers it on drop (panic- and
/// cancel-safe), on the recorder it was raised on. From [`FunctionMetrics::concurrency`].
#[must_use = "the gauge is lowered when the guard drops"]
pub struct ConcurrencyGuard<'a> {
    function: &'static str,
    gauge: Option<Bound<'a, Gauge>>,
}

impl fmt::Debug for ConcurrencyGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyGuard")
            .field("function", &self.function)
            .field("tracked", &self.gauge.is_some())
            .finish()
    }
}

impl Drop for ConcurrencyGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        if let Some(gauge) = &self.gauge {
            gauge.decrement(1.0);
        }
    }
}

/// A call in progress, from [`FunctionMetrics::start`].
///
/// Dropping it unfinished records an error (`"panic"` while panicking, `"cancelled"`
/// otherwise); in every case the duration is recorded and the concurrency gauge lowered, on the
/// recorder the call started under.
#[must_use = "finish the call with ok(), error() or finish(); dropping it records a cancellation"]
pub struct CallGuard<'a> {
    metrics: &'a FunctionMetrics,
    handles: Bound<'a, Handles>,
    gauge: Option<Bound<'a, Gauge>>,
    start: Instant,
    finished: bool,
}

impl fmt::Debug for CallGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallGuard")
            .field("function", &self.metrics.function)
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
        self.handles
            .duration
            .record(self.start.elapsed().as_secs_f64());
        self.handles.ok.increment(1);
    }

    /// Records failure classified as `error_type` (from a bounded set).
    #[inline]
    pub fn error(mut self, error_type: &'static str) {
        self.finished = true;
        self.fail(error_type);
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

    fn fail(&self, error_type: &'static str) {
        self.handles
            .duration
            .record(self.start.elapsed().as_secs_f64());
        self.metrics.count_error(error_type);
    }
}

impl Drop for CallGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        if !self.finished {
            self.fail(if std::thread::panicking() {
                values::PANIC
            } else {
                values::CANCELLED
            });
        }
        if let Some(gauge) = &self.gauge {
            gauge.decrement(1.0);
        }
    }
}
