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
//! A `metrics` handle writes into the recorder that registered it, so a cache of handles must
//! never hand out handles of a recorder other than the current one.
//!
//! - **Global recorder** (`metrics::set_global_recorder`, which `orderscope::init` and
//!   `PrometheusBuilder::install_recorder` use): the handles are registered on the first call and
//!   kept in the `static` for the life of the process. The global recorder is never replaced nor
//!   dropped, so these handles cannot go stale. This is the production path.
//! - **Thread-local recorder** (`metrics::with_local_recorder`, as in tests) and the no-op
//!   recorder (nothing installed yet): the handles are registered again on every call (the keys
//!   are built once; registering is a lookup in the recorder), so each recorder sees exactly its
//!   own calls, and a function called before `orderscope::init` starts recording as soon as the
//!   global recorder is installed.
//!
//! Handles are deliberately *not* cached per local recorder. A local recorder can only be told
//! apart by its address, and a test's recorder on the stack is dropped at the end of the test;
//! the next test's recorder often lands on the same address, and a cache keyed by address would
//! keep handing out the dropped recorder's handles, silently losing every measurement of the
//! second test. Registering per call under a local recorder costs a lookup in that recorder's
//! registry (well under a microsecond), and only tests pay it.
//!
//! `metrics` does not expose the global recorder, so it is recognised by address: the first time
//! a recorder that may be the global one shows up, its address is compared with the recorder a
//! short-lived thread sees (a fresh thread has no local recorder). Once a global recorder is
//! installed this happens once per process; before that, once per local recorder and thread.
//! Zero-sized recorders (the no-op recorder among them) are never cached: their addresses are not
//! unique, and registering with the no-op recorder is free.
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

use std::cell::Cell;
use std::fmt;
use std::mem::size_of_val;
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata, Recorder};

use crate::catalogue::{self, labels, values};

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
    /// Handles registered with the global recorder.
    global: OnceLock<Handles>,
    /// Admitted `error_type` values (and their global counters), allocated on the first error.
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
    concurrent: Option<Gauge>,
}

/// The `error_type` values a function admitted, in order, each with its counter for the global
/// recorder. Slots fill in order under `admit`; readers scan without a lock.
struct ErrorTable {
    slots: [ErrorSlot; MAX_ERROR_TYPES],
    admit: Mutex<()>,
    overflow: OnceLock<Counter>,
    overflow_count: OnceLock<Counter>,
}

struct ErrorSlot {
    name: OnceLock<&'static str>,
    global: OnceLock<Counter>,
}

impl ErrorTable {
    fn new() -> Self {
        ErrorTable {
            slots: [const {
                ErrorSlot {
                    name: OnceLock::new(),
                    global: OnceLock::new(),
                }
            }; MAX_ERROR_TYPES],
            admit: Mutex::new(()),
            overflow: OnceLock::new(),
            overflow_count: OnceLock::new(),
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
            global: OnceLock::new(),
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
            concurrent: self
                .track_concurrency
                .then(|| self.register_gauge(recorder)),
        }
    }

    fn register_gauge(&self, recorder: &dyn Recorder) -> Gauge {
        recorder.register_gauge(&self.keys().concurrent, &self.metadata)
    }

    /// The handles for the current recorder: cached for the global one, fresh otherwise.
    #[inline]
    fn handles(&self) -> Held<'_, Handles> {
        metrics::with_recorder(|recorder| {
            if is_global(recorder) {
                Held::Global(self.global.get_or_init(|| self.register(recorder)))
            } else {
                Held::Local(self.register(recorder))
            }
        })
    }

    /// Starts a call: raises the concurrency gauge (when tracked) and starts the clock.
    ///
    /// Finish with [`CallGuard::ok`], [`CallGuard::error`] or [`CallGuard::finish`]. A guard
    /// dropped unfinished records an error: `error_type="panic"` while the thread panics,
    /// `"cancelled"` otherwise (a future dropped before completion).
    #[inline]
    pub fn start(&self) -> CallGuard<'_> {
        let handles = self.handles();
        if let Some(gauge) = &handles.concurrent {
            gauge.increment(1.0);
        }
        CallGuard {
            metrics: self,
            handles,
            start: Instant::now(),
            finished: false,
        }
    }

    /// Raises the concurrency gauge until the returned guard drops, without recording a call.
    ///
    /// Does nothing when concurrency is not tracked.
    pub fn concurrency(&self) -> ConcurrencyGuard<'_> {
        let gauge = if self.track_concurrency {
            metrics::with_recorder(|recorder| {
                if is_global(recorder) {
                    let handles = self.global.get_or_init(|| self.register(recorder));
                    handles.concurrent.as_ref().map(Held::Global)
                } else {
                    Some(Held::Local(self.register_gauge(recorder)))
                }
            })
        } else {
            None
        };
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
        self.count_error(handles.is_global(), error_type);
    }

    /// Increments `function_calls_total{result="error", error_type}`, or the overflow series.
    fn count_error(&self, global: bool, error_type: &'static str) {
        let table = self.errors.get_or_init(|| Box::new(ErrorTable::new()));
        match table.slot(error_type) {
            Some(slot) => self.increment(global, &slot.global, || self.error_key(error_type)),
            None => {
                self.increment(global, &table.overflow, || self.error_key(values::OVERFLOW));
                self.increment(global, &table.overflow_count, || {
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

    /// Increments the counter `key`: through `cache` for a call under the global recorder (only
    /// ever filled while the global recorder is current), registered afresh otherwise.
    fn increment(&self, global: bool, cache: &OnceLock<Counter>, key: impl FnOnce() -> Key) {
        if global && let Some(counter) = cache.get() {
            return counter.increment(1);
        }
        metrics::with_recorder(|recorder| {
            if global && is_global(recorder) {
                cache
                    .get_or_init(|| recorder.register_counter(&key(), &self.metadata))
                    .increment(1);
            } else {
                recorder
                    .register_counter(&key(), &self.metadata)
                    .increment(1);
            }
        });
    }
}

#[inline]
fn same_str(a: &str, b: &str) -> bool {
    std::ptr::eq(a, b) || a == b
}

/// Handles cached for the global recorder, or registered for one call.
enum Held<'a, T> {
    Global(&'a T),
    Local(T),
}

impl<T> Held<'_, T> {
    #[inline]
    fn is_global(&self) -> bool {
        matches!(self, Held::Global(_))
    }
}

impl<T> Deref for Held<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        match self {
            Held::Global(t) => t,
            Held::Local(t) => t,
        }
    }
}

/// Keeps `function_calls_concurrent` raised while alive; lowers it on drop (panic- and
/// cancel-safe), on the recorder it was raised on. From [`FunctionMetrics::concurrency`].
#[must_use = "the gauge is lowered when the guard drops"]
pub struct ConcurrencyGuard<'a> {
    function: &'static str,
    gauge: Option<Held<'a, Gauge>>,
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
    handles: Held<'a, Handles>,
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
        self.metrics
            .count_error(self.handles.is_global(), error_type);
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
        if let Some(gauge) = &self.handles.concurrent {
            gauge.decrement(1.0);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Recognising the global recorder
// ---------------------------------------------------------------------------------------------

/// Address of the global recorder once learnt; 0 while unknown.
static GLOBAL: AtomicUsize = AtomicUsize::new(0);

/// Number of recent non-global recorders remembered per thread.
const NOT_GLOBAL_SLOTS: usize = 4;

thread_local! {
    /// Recorders this thread recently found not to be the global one (no global recorder was
    /// installed yet when they were probed).
    static NOT_GLOBAL: Cell<([usize; NOT_GLOBAL_SLOTS], usize)> =
        const { Cell::new(([0; NOT_GLOBAL_SLOTS], 0)) };
}

fn address(recorder: &dyn Recorder) -> usize {
    if size_of_val(recorder) == 0 {
        0
    } else {
        std::ptr::from_ref::<dyn Recorder>(recorder)
            .cast::<()>()
            .addr()
    }
}

/// Whether `recorder` (the current one) is the process-wide recorder, whose handles may be
/// cached for the life of the process.
#[inline]
fn is_global(recorder: &dyn Recorder) -> bool {
    let this = address(recorder);
    if this == 0 {
        return false;
    }
    match GLOBAL.load(Ordering::Acquire) {
        0 => probe(this),
        global => global == this,
    }
}

/// Learns the global recorder's address from a fresh thread (which has no local recorder).
#[cold]
fn probe(this: usize) -> bool {
    if NOT_GLOBAL.with(|seen| seen.get().0.contains(&this)) {
        return false;
    }
    let global = std::thread::Builder::new()
        .name("orderscope-recorder-probe".into())
        .spawn(|| metrics::with_recorder(address))
        .ok()
        .and_then(|thread| thread.join().ok())
        .unwrap_or(0);
    if global != 0 {
        // The global recorder is set once and never replaced: its address is final.
        GLOBAL.store(global, Ordering::Release);
    }
    if global == this {
        return true;
    }
    // Either no global recorder yet (or a zero-sized one), or `this` is a local recorder.
    // Remembered per thread so a test's recorder is probed once, not on every call.
    NOT_GLOBAL.with(|seen| {
        let (mut slots, next) = seen.get();
        slots[next] = this;
        seen.set((slots, (next + 1) % NOT_GLOBAL_SLOTS));
    });
    false
}
