//! Handles bound to the recorder that registered them.
//!
//! A `metrics` handle (`Counter`, `Gauge`, `Histogram`) writes into the recorder that was current
//! when it was registered. A cache that keeps handles must therefore notice when the current
//! recorder changes: a function called before `orderscope::init` installed the Prometheus
//! recorder would otherwise write into the no-op recorder forever, and a test's local recorder
//! would keep receiving what later tests record. [`PerRecorder`] keys cached state by the
//! identity of the current recorder.

use std::fmt;
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use metrics::{Counter, Gauge, Histogram, Key, Level, Metadata, Recorder};

/// Number of recorders whose state is cached lock-free; further recorders share one slot
/// behind a mutex.
const SLOTS: usize = 4;

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// Identity of the recorder current on this thread: the address of the recorder object.
///
/// The global recorder never moves. A local recorder is identified by where it lives, so a
/// recorder dropped and replaced by another at the same address is indistinguishable from it:
/// in tests, keep recorders alive for the whole test binary (e.g. `Box::leak`) or use
/// `orderscope_testing::capture_metrics`, which does.
pub fn recorder_id() -> usize {
    metrics::with_recorder(|r| std::ptr::from_ref::<dyn Recorder>(r).cast::<()>().addr())
}

/// A `metrics` handle that can be registered against the current recorder.
pub trait MetricHandle: Clone + Send + Sync + fmt::Debug + 'static {
    /// Registers `key` with the current recorder.
    fn register(key: &Key) -> Self;
}

impl MetricHandle for Counter {
    fn register(key: &Key) -> Self {
        metrics::with_recorder(|r| r.register_counter(key, &METADATA))
    }
}

impl MetricHandle for Gauge {
    fn register(key: &Key) -> Self {
        metrics::with_recorder(|r| r.register_gauge(key, &METADATA))
    }
}

impl MetricHandle for Histogram {
    fn register(key: &Key) -> Self {
        metrics::with_recorder(|r| r.register_histogram(key, &METADATA))
    }
}

/// State of type `T` (typically a set of registered handles) kept once per recorder.
///
/// [`get_or_init`](Self::get_or_init) returns the `T` built for the recorder current on this
/// thread, building it on first use. `const`-constructible, so it can live in a `static`.
///
/// Cost: the lookup reads the current recorder (a thread-local and an atomic load inside
/// `metrics::with_recorder`) and compares it with up to four cached identities (atomic loads,
/// newest first): a few nanoseconds, no lock, no allocation. The first four recorders a process
/// uses are cached this way; any further recorder (only seen in test binaries) goes through one
/// mutex-protected slot that is rebuilt whenever the recorder changes.
///
/// # Example
///
/// ```
/// use metrics::{Counter, Key};
/// use orderscope_metrics::{MetricHandle, PerRecorder};
///
/// static JOBS: PerRecorder<Counter> = PerRecorder::new();
///
/// fn job_done() {
///     JOBS.get_or_init(|| Counter::register(&Key::from_static_name("jobs_total")))
///         .increment(1);
/// }
/// # job_done();
/// ```
pub struct PerRecorder<T> {
    slots: [OnceLock<(usize, T)>; SLOTS],
    filled: AtomicUsize,
    init: Mutex<()>,
    spill: Mutex<Option<(usize, Arc<T>)>>,
}

impl<T> fmt::Debug for PerRecorder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerRecorder")
            .field("cached_recorders", &self.filled.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<T> Default for PerRecorder<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// A reference to the state for the current recorder, from [`PerRecorder::get_or_init`].
pub enum Scoped<'a, T> {
    /// Cached lock-free.
    Cached(&'a T),
    /// From the shared overflow slot.
    Shared(Arc<T>),
}

impl<T: fmt::Debug> fmt::Debug for Scoped<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T> Deref for Scoped<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        match self {
            Scoped::Cached(t) => t,
            Scoped::Shared(t) => t,
        }
    }
}

impl<T> PerRecorder<T> {
    /// An empty cache.
    pub const fn new() -> Self {
        PerRecorder {
            slots: [const { OnceLock::new() }; SLOTS],
            filled: AtomicUsize::new(0),
            init: Mutex::new(()),
            spill: Mutex::new(None),
        }
    }

    /// The state for the current recorder, built with `init` on first use.
    ///
    /// `init` runs with the same recorder current, so handles it registers belong to it.
    pub fn get_or_init(&self, init: impl FnOnce() -> T) -> Scoped<'_, T> {
        let id = recorder_id();
        let filled = self.filled.load(Ordering::Acquire).min(SLOTS);
        for slot in self.slots[..filled].iter().rev() {
            if let Some((owner, state)) = slot.get()
                && *owner == id
            {
                return Scoped::Cached(state);
            }
        }
        self.get_or_init_slow(id, init)
    }

    #[cold]
    fn get_or_init_slow(&self, id: usize, init: impl FnOnce() -> T) -> Scoped<'_, T> {
        {
            let _guard = self.init.lock().unwrap_or_else(PoisonError::into_inner);
            for slot in &self.slots {
                if let Some((owner, state)) = slot.get()
                    && *owner == id
                {
                    return Scoped::Cached(state);
                }
            }
            let filled = self.filled.load(Ordering::Relaxed);
            if filled < SLOTS {
                let slot = &self.slots[filled];
                let (_, state) = slot.get_or_init(|| (id, init()));
                self.filled.store(filled + 1, Ordering::Release);
                return Scoped::Cached(state);
            }
        }
        let mut spill = self.spill.lock().unwrap_or_else(PoisonError::into_inner);
        match &*spill {
            Some((owner, state)) if *owner == id => Scoped::Shared(state.clone()),
            _ => {
                let state = Arc::new(init());
                *spill = Some((id, state.clone()));
                Scoped::Shared(state)
            }
        }
    }
}
