//! Handles bound late: registered with the recorder that is current when they record.
//!
//! A `metrics` handle (`Counter`, `Gauge`, `Histogram`) writes into the recorder that was current
//! when it was registered. Instrumentation that registers its handles when it is built (a tower
//! layer, an AMQP channel, a `static` next to a function) would write into the no-op recorder
//! forever when it is built before `orderscope::init` installs the Prometheus recorder, and a
//! test's local recorder would keep receiving what later tests record. [`HandleCell`] is the one
//! place that decides which handles a measurement goes to:
//!
//! - **the global recorder** (`metrics::set_global_recorder`, used by `orderscope::init` and
//!   `PrometheusBuilder::install_recorder`): it is set once per process and never replaced nor
//!   dropped, so its handles are registered on first use and kept for the life of the process;
//! - **any other recorder** (a test's `metrics::with_local_recorder`, or the no-op recorder
//!   before anything is installed): handles are registered for each use (a lookup in that
//!   recorder's registry; free for the no-op recorder), so each recorder sees exactly its own
//!   measurements and the global recorder gets everything from the moment it is installed.
//!
//! Nothing is keyed on a recorder's address: a local recorder dropped and replaced by another at
//! the same address never receives the first one's handles.
//!
//! `metrics` does not expose the global recorder, so it is recognised by address: the first time
//! a recorder that may be the global one shows up, its address is compared with the recorder a
//! short-lived thread sees (a fresh thread has no local recorder). The global recorder is never
//! dropped, so its address is final once learnt: after that, recognising it is two atomic loads
//! and a compare. Zero-sized recorders (the no-op recorder among them) are never cached: their
//! addresses are not unique.

use std::cell::Cell;
use std::fmt;
use std::mem::size_of_val;
use std::ops::Deref;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use metrics::{Counter, Gauge, Histogram, Key, Level, Metadata, Recorder};

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// A `metrics` handle that can be registered with a recorder.
pub trait MetricHandle: Clone + Send + Sync + fmt::Debug + 'static {
    /// Registers `key` with `recorder`.
    fn register_with(recorder: &dyn Recorder, key: &Key) -> Self;

    /// Registers `key` with the current recorder.
    fn register(key: &Key) -> Self {
        metrics::with_recorder(|r| Self::register_with(r, key))
    }
}

impl MetricHandle for Counter {
    fn register_with(recorder: &dyn Recorder, key: &Key) -> Self {
        recorder.register_counter(key, &METADATA)
    }
}

impl MetricHandle for Gauge {
    fn register_with(recorder: &dyn Recorder, key: &Key) -> Self {
        recorder.register_gauge(key, &METADATA)
    }
}

impl MetricHandle for Histogram {
    fn register_with(recorder: &dyn Recorder, key: &Key) -> Self {
        recorder.register_histogram(key, &METADATA)
    }
}

/// State of type `T` (a handle, or a bundle of handles) registered with the current recorder:
/// kept for the global recorder, registered for each use under any other.
///
/// The one handle cache of orderscope: [`LabelCache`](crate::LabelCache),
/// [`IndexedCache`](crate::IndexedCache), [`Overflow`](crate::Overflow),
/// [`FunctionMetrics`](crate::red::FunctionMetrics), the tower layers and the AMQP channels and
/// consumers hold their handles in it. Nothing is keyed on a recorder's address: a local recorder
/// dropped and replaced by another at the same address never receives the first one's handles.
/// `const`-constructible, so it can live in a `static`.
///
/// Cost under the global recorder: the recorder lookup of `metrics` (a thread-local and an
/// atomic load), one more atomic load and a compare, and a `OnceLock` load. No lock, no
/// allocation, no hashing.
///
/// # Example
///
/// ```
/// use metrics::{Counter, Key};
/// use orderscope_metrics::{HandleCell, MetricHandle};
///
/// static JOBS: HandleCell<Counter> = HandleCell::new();
///
/// fn job_done() {
///     JOBS.get(|recorder| Counter::register_with(recorder, &Key::from_static_name("jobs_total")))
///         .increment(1);
/// }
///
/// let recorder = orderscope_metrics::build_recorder();
/// let handle = recorder.handle();
/// metrics::with_local_recorder(&recorder, job_done);
/// assert!(handle.render().contains("jobs_total 1"));
/// ```
pub struct HandleCell<T> {
    global: OnceLock<T>,
}

impl<T> fmt::Debug for HandleCell<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandleCell")
            .field("global", &self.global.get().is_some())
            .finish()
    }
}

impl<T> Default for HandleCell<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> HandleCell<T> {
    /// An empty cell.
    pub const fn new() -> Self {
        HandleCell {
            global: OnceLock::new(),
        }
    }

    /// The state for the current recorder: the one kept for the global recorder (built with
    /// `register` on first use), or a fresh one registered with any other recorder.
    ///
    /// `register` receives the current recorder; register the handles with it.
    #[inline]
    pub fn get(&self, register: impl FnOnce(&dyn Recorder) -> T) -> Bound<'_, T> {
        metrics::with_recorder(|recorder| {
            if is_global(recorder) {
                Bound::Global(self.global.get_or_init(|| register(recorder)))
            } else {
                Bound::Local(register(recorder))
            }
        })
    }

    /// The state kept for the global recorder, if it was registered: for releasing what a
    /// [`Bound::Global`] acquired (a gauge raised) from a thread whose current recorder may
    /// differ.
    #[inline]
    pub fn global(&self) -> Option<&T> {
        self.global.get()
    }
}

impl<H: MetricHandle> HandleCell<H> {
    /// Runs `f` with the handle of `key()` for the current recorder.
    ///
    /// `key` is only called when a handle is registered.
    #[inline]
    pub fn with<R>(&self, key: impl FnOnce() -> Key, f: impl FnOnce(&H) -> R) -> R {
        f(&self.get(|recorder| H::register_with(recorder, &key())))
    }
}

/// State from [`HandleCell::get`]: kept for the global recorder, or registered for one use.
pub enum Bound<'a, T> {
    /// Kept for the global recorder.
    Global(&'a T),
    /// Registered with a local or no-op recorder for this use.
    Local(T),
}

impl<T> Bound<'_, T> {
    /// Whether this is the state kept for the global recorder.
    #[inline]
    pub fn is_global(&self) -> bool {
        matches!(self, Bound::Global(_))
    }
}

impl<T: fmt::Debug> fmt::Debug for Bound<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T> Deref for Bound<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        match self {
            Bound::Global(t) => t,
            Bound::Local(t) => t,
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
    /// Recorders this thread recently found not to be the global one while no global recorder
    /// was known, so a test's recorder is probed once, not on every use.
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

/// Whether `recorder` is the process-wide recorder, whose handles may be kept for the life of
/// the process.
#[inline]
pub(crate) fn is_global(recorder: &dyn Recorder) -> bool {
    let this = address(recorder);
    if this == 0 {
        return false;
    }
    match GLOBAL.load(Ordering::Acquire) {
        0 => probe(this),
        global => global == this,
    }
}

/// The address of the recorder a fresh thread sees: the global one, or 0.
fn probe_global() -> usize {
    std::thread::Builder::new()
        .name("orderscope-recorder-probe".into())
        .spawn(|| metrics::with_recorder(address))
        .ok()
        .and_then(|thread| thread.join().ok())
        .unwrap_or(0)
}

/// Learns the global recorder's address from a fresh thread (which has no local recorder).
#[cold]
fn probe(this: usize) -> bool {
    if NOT_GLOBAL.with(|seen| seen.get().0.contains(&this)) {
        return false;
    }
    let global = probe_global();
    if global != 0 {
        // The global recorder is set once and never replaced: its address is final.
        GLOBAL.store(global, Ordering::Release);
    }
    if global == this {
        return true;
    }
    // Either no global recorder yet (or a zero-sized one), or `this` is a local recorder.
    NOT_GLOBAL.with(|seen| {
        let (mut slots, next) = seen.get();
        slots[next] = this;
        seen.set((slots, (next + 1) % NOT_GLOBAL_SLOTS));
    });
    false
}

/// The handle of one series: its key and a [`HandleCell`], for caches that keep their series in
/// storage of their own (a route's entries, an exchange's outcomes).
///
/// ```
/// use metrics::{Histogram, Key, Label};
/// use orderscope_metrics::KeyedHandle;
///
/// let series: KeyedHandle<Histogram> = KeyedHandle::new(Key::from_parts(
///     "jobs_seconds",
///     vec![Label::new("queue", "orders")],
/// ));
/// series.with(|h| h.record(0.5));
/// ```
#[derive(Debug)]
pub struct KeyedHandle<H> {
    key: Key,
    handle: HandleCell<H>,
}

impl<H: MetricHandle> KeyedHandle<H> {
    /// The series `key`, registered when it first records.
    pub fn new(key: Key) -> Self {
        Self {
            key,
            handle: HandleCell::new(),
        }
    }

    /// The key of the series.
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// Runs `f` with the handle for the current recorder.
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(&H) -> R) -> R {
        f(&self.get())
    }

    /// The handle for the current recorder.
    #[inline]
    pub fn get(&self) -> Bound<'_, H> {
        self.handle
            .get(|recorder| H::register_with(recorder, &self.key))
    }

    /// The handle kept for the global recorder, if registered (see [`HandleCell::global`]).
    #[inline]
    pub fn global(&self) -> Option<&H> {
        self.handle.global()
    }
}

impl KeyedHandle<Counter> {
    /// Adds `value` to the counter in the current recorder.
    #[inline]
    pub fn increment(&self, value: u64) {
        self.get().increment(value);
    }
}

impl KeyedHandle<Gauge> {
    /// Adds `value` to the gauge in the current recorder.
    #[inline]
    pub fn increment(&self, value: f64) {
        self.get().increment(value);
    }

    /// Subtracts `value` from the gauge in the current recorder.
    #[inline]
    pub fn decrement(&self, value: f64) {
        self.get().decrement(value);
    }

    /// Sets the gauge in the current recorder.
    #[inline]
    pub fn set(&self, value: f64) {
        self.get().set(value);
    }
}

impl KeyedHandle<Histogram> {
    /// Records `value` in the histogram of the current recorder.
    #[inline]
    pub fn record(&self, value: f64) {
        self.get().record(value);
    }
}
