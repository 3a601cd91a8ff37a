//! Handle caches with a series limit (documented in the crate root).

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher as _, BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use metrics::{Counter, Gauge, Histogram, Key, Label};

use crate::catalogue::{self, MetricDef, values};
use crate::recorder::{HandleCell, MetricHandle};

/// The maximum number of series a cache registers for one metric (per recorder).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SeriesLimit(usize);

impl SeriesLimit {
    /// The default limit: 2,000 series per metric.
    pub const DEFAULT: SeriesLimit = SeriesLimit(2_000);

    /// The largest accepted limit, 2^20 series; larger values are capped to it.
    pub const MAX: SeriesLimit = SeriesLimit(1 << 20);

    /// A limit of `max_series`, clamped to `1..=SeriesLimit::MAX`.
    pub const fn new(max_series: usize) -> Self {
        SeriesLimit(if max_series == 0 {
            1
        } else if max_series > Self::MAX.0 {
            Self::MAX.0
        } else {
            max_series
        })
    }

    /// The limit.
    pub const fn get(self) -> usize {
        self.0
    }
}

impl Default for SeriesLimit {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A small, fast, non-cryptographic hasher (the `rustc-hash` algorithm) for cache keys.
///
/// Keys are produced by instrumentation code and bounded by the series limit, so resistance to
/// hash flooding is not needed.
#[derive(Clone, Copy, Debug, Default)]
pub struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0xf135_7aea_2e62_a9c5;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 56));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // The multiply leaves the best-mixed bits at the top; tables index with the low bits.
        self.hash.rotate_left(26)
    }
}

type FxBuild = BuildHasherDefault<FxHasher>;

fn overflow_key(metric: &'static str, label_keys: &[&'static str]) -> Key {
    let labels: Vec<Label> = label_keys
        .iter()
        .map(|k| Label::from_static_parts(k, values::OVERFLOW))
        .collect();
    Key::from_parts(metric, labels)
}

/// The overflow series of one metric and the counter of measurements redirected to it, both
/// held in [`HandleCell`]s (bound to the recorder current when they record).
///
/// The building block behind [`LabelCache`] and [`IndexedCache`], public for caches with a shape
/// of their own (per-route entries that hold their handles in their own storage, say): they
/// decide when a label set is over the limit (a [`SeriesBudget`]), and this type supplies the
/// `_overflow` series and keeps `orderscope_cardinality_overflow_total{metric}` counting once per
/// redirected measurement. `const`-constructible.
///
/// ```
/// use metrics::Histogram;
/// use orderscope_metrics::{Overflow, SeriesBudget, SeriesLimit};
///
/// static BUDGET: SeriesBudget = SeriesBudget::new(SeriesLimit::new(1));
/// static OVERFLOW: Overflow<Histogram> = Overflow::new();
///
/// // The second label set is over the limit: it records into
/// // `jobs_seconds{queue="_overflow"}`, and the measurement is counted.
/// assert!(BUDGET.try_acquire());
/// assert!(!BUDGET.try_acquire());
/// OVERFLOW.record("jobs_seconds", &["queue"], |h| h.record(0.25));
/// ```
pub struct Overflow<H> {
    series: HandleCell<H>,
    count: HandleCell<Counter>,
}

impl<H> fmt::Debug for Overflow<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Overflow").finish_non_exhaustive()
    }
}

impl<H: MetricHandle> Default for Overflow<H> {
    fn default() -> Self {
        Self::new()
    }
}

impl<H: MetricHandle> Overflow<H> {
    /// An overflow whose series and counter are not registered yet.
    pub const fn new() -> Self {
        Overflow {
            series: HandleCell::new(),
            count: HandleCell::new(),
        }
    }

    /// Counts one measurement of `metric` redirected to the overflow series.
    #[cold]
    pub fn count(&self, metric: &'static str) {
        self.count
            .with(|| overflow_counter_key(metric), |c| c.increment(1));
    }

    /// Counts one redirected measurement and runs `f` with the overflow series of `metric`,
    /// whose labels are `label_keys`, all with the value `_overflow`.
    #[cold]
    pub fn record<R>(
        &self,
        metric: &'static str,
        label_keys: &[&'static str],
        f: impl FnOnce(&H) -> R,
    ) -> R {
        self.count(metric);
        self.series.with(|| overflow_key(metric, label_keys), f)
    }
}

/// A budget of series under a [`SeriesLimit`], for caches that register handles themselves.
///
/// Each new label set takes one series with [`try_acquire`](Self::try_acquire); once the limit
/// is spent, label sets go to the [`Overflow`] series. Lock-free, `const`-constructible; it only
/// counts, so the caller keeps its own (possibly specialised) storage of handles.
#[derive(Debug)]
pub struct SeriesBudget {
    limit: SeriesLimit,
    used: AtomicUsize,
}

impl SeriesBudget {
    /// A budget of `limit` series, none used.
    pub const fn new(limit: SeriesLimit) -> Self {
        SeriesBudget {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    /// Takes one series from the budget; `false` (and nothing taken) once it is spent.
    pub fn try_acquire(&self) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used < self.limit.get()).then_some(used + 1)
            })
            .is_ok()
    }

    /// Series taken so far.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// The limit.
    pub fn limit(&self) -> SeriesLimit {
        self.limit
    }
}

/// The key of `orderscope_cardinality_overflow_total{metric}`.
fn overflow_counter_key(metric: &'static str) -> Key {
    Key::from_parts(
        catalogue::CARDINALITY_OVERFLOW,
        vec![Label::from_static_parts(catalogue::labels::METRIC, metric)],
    )
}

/// One admitted label set: its key, the metric key built from its labels, and its handle.
struct Entry<K, H> {
    key: K,
    metric_key: Key,
    handle: HandleCell<H>,
}

/// An append-only open-addressing table: slots are only ever filled, never changed or removed,
/// so a hit is a few atomic loads and no lock.
struct Table<K, H> {
    slots: Box<[OnceLock<Entry<K, H>>]>,
    mask: usize,
    /// Series admitted; grows only under `insert_lock`.
    len: AtomicUsize,
    insert_lock: Mutex<()>,
}

impl<K, H> Table<K, H> {
    fn new(limit: SeriesLimit) -> Self {
        // At most half full: every probe sequence reaches an empty slot quickly.
        let size = (limit.get() * 2).next_power_of_two().max(8);
        Table {
            slots: (0..size).map(|_| OnceLock::new()).collect(),
            mask: size - 1,
            len: AtomicUsize::new(0),
            insert_lock: Mutex::new(()),
        }
    }
}

/// Registered handles of one metric keyed by a small label key, with a series limit.
///
/// See the [crate documentation](crate#handle-caches-and-series-limits) for cost and overflow
/// behaviour. `const`-constructible (it can live in a `static`) and `Sync`: share one cache
/// between everything that records the same metric, since the limit is per cache.
///
/// The set of admitted label sets belongs to the cache, not to a recorder: every recorder sees
/// the same label values, and handles go to the recorder current when they record
/// ([`HandleCell`]).
///
/// The table behind it is allocated on first use with room for twice the limit.
pub struct LabelCache<K, H> {
    metric: &'static str,
    label_keys: &'static [&'static str],
    limit: SeriesLimit,
    table: OnceLock<Table<K, H>>,
    overflow: Overflow<H>,
}

/// A [`LabelCache`] of counters.
pub type CounterCache<K> = LabelCache<K, Counter>;
/// A [`LabelCache`] of gauges.
pub type GaugeCache<K> = LabelCache<K, Gauge>;
/// A [`LabelCache`] of histograms.
pub type HistogramCache<K> = LabelCache<K, Histogram>;

impl<K, H> fmt::Debug for LabelCache<K, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LabelCache")
            .field("metric", &self.metric)
            .field("label_keys", &self.label_keys)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl<K, H: MetricHandle> LabelCache<K, H> {
    /// A cache for `metric`; `label_keys` name the labels of its overflow series.
    pub const fn new(
        metric: &'static str,
        label_keys: &'static [&'static str],
        limit: SeriesLimit,
    ) -> Self {
        LabelCache {
            metric,
            label_keys,
            limit,
            table: OnceLock::new(),
            overflow: Overflow::new(),
        }
    }

    /// A cache for a catalogue metric; the overflow series carries all of `def.labels`.
    pub const fn for_def(def: &'static MetricDef, limit: SeriesLimit) -> Self {
        Self::new(def.name, def.labels, limit)
    }
}

impl<K, H> LabelCache<K, H> {
    /// The metric name.
    pub fn metric(&self) -> &'static str {
        self.metric
    }

    /// The series limit.
    pub fn limit(&self) -> SeriesLimit {
        self.limit
    }
}

impl<K, H> LabelCache<K, H>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    H: MetricHandle,
{
    /// Runs `f` with the handle for `key`, admitting it on first use with the labels
    /// `labels(key)` returns (only called then).
    #[inline]
    pub fn with<R>(
        &self,
        key: &K,
        labels: impl FnOnce(&K) -> Vec<Label>,
        f: impl FnOnce(&H) -> R,
    ) -> R {
        let table = self.table.get_or_init(|| Table::new(self.limit));
        let mut index = FxBuild::default().hash_one(key) as usize & table.mask;
        for _ in 0..table.slots.len() {
            match table.slots[index].get() {
                Some(entry) if entry.key == *key => return entry.record(f),
                Some(_) => index = (index + 1) & table.mask,
                None => return self.insert(table, index, key, labels, f),
            }
        }
        self.overflow.record(self.metric, self.label_keys, f)
    }

    #[cold]
    fn insert<R>(
        &self,
        table: &Table<K, H>,
        mut index: usize,
        key: &K,
        labels: impl FnOnce(&K) -> Vec<Label>,
        f: impl FnOnce(&H) -> R,
    ) -> R {
        // `len` only grows, under `insert_lock`: once full, a table stays full and a key denied
        // once is denied for good (no lock taken on that path).
        if table.len.load(Ordering::Acquire) >= self.limit.get() {
            return self.overflow.record(self.metric, self.label_keys, f);
        }
        let guard = table
            .insert_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for _ in 0..table.slots.len() {
            let slot = &table.slots[index];
            match slot.get() {
                // Inserted by another thread since our probe.
                Some(entry) if entry.key == *key => {
                    drop(guard);
                    return entry.record(f);
                }
                Some(_) => index = (index + 1) & table.mask,
                None => {
                    if table.len.load(Ordering::Acquire) >= self.limit.get() {
                        break;
                    }
                    let entry = slot.get_or_init(|| Entry {
                        key: key.clone(),
                        metric_key: Key::from_parts(self.metric, labels(key)),
                        handle: HandleCell::new(),
                    });
                    table.len.fetch_add(1, Ordering::Release);
                    drop(guard);
                    return entry.record(f);
                }
            }
        }
        drop(guard);
        self.overflow.record(self.metric, self.label_keys, f)
    }

    /// Number of label sets admitted (the overflow series excluded).
    pub fn len(&self) -> usize {
        self.table
            .get()
            .map_or(0, |table| table.len.load(Ordering::Acquire))
    }

    /// Whether no label set is admitted yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K, H: MetricHandle> Entry<K, H> {
    #[inline]
    fn record<R>(&self, f: impl FnOnce(&H) -> R) -> R {
        self.handle.with(|| self.metric_key.clone(), f)
    }
}

impl<K> LabelCache<K, Counter>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// Adds `value` to the counter for `key`.
    #[inline]
    pub fn increment(&self, key: &K, value: u64, labels: impl FnOnce(&K) -> Vec<Label>) {
        self.with(key, labels, |c| c.increment(value));
    }
}

impl<K> LabelCache<K, Histogram>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// Records `value` into the histogram for `key`.
    #[inline]
    pub fn record(&self, key: &K, value: f64, labels: impl FnOnce(&K) -> Vec<Label>) {
        self.with(key, labels, |h| h.record(value));
    }
}

impl<K> LabelCache<K, Gauge>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// Adds `value` to the gauge for `key`.
    #[inline]
    pub fn increment(&self, key: &K, value: f64, labels: impl FnOnce(&K) -> Vec<Label>) {
        self.with(key, labels, |g| g.increment(value));
    }

    /// Subtracts `value` from the gauge for `key`.
    #[inline]
    pub fn decrement(&self, key: &K, value: f64, labels: impl FnOnce(&K) -> Vec<Label>) {
        self.with(key, labels, |g| g.decrement(value));
    }

    /// Sets the gauge for `key`.
    #[inline]
    pub fn set(&self, key: &K, value: f64, labels: impl FnOnce(&K) -> Vec<Label>) {
        self.with(key, labels, |g| g.set(value));
    }
}

/// One slot of an [`IndexedCache`]: the metric key, built on first use, and the handle.
struct IndexedSlot<H> {
    key: OnceLock<Key>,
    handle: HandleCell<H>,
}

/// Registered handles of one metric addressed by a dense index in `0..capacity`.
///
/// The lock-free variant of [`LabelCache`] for keys the caller can number: a route table
/// (`route_id * METHOD_COUNT + method_index`), a fixed set of outcomes. Indices at or beyond
/// `capacity` go to the overflow series. See the [crate documentation](crate#handle-caches-and-series-limits).
///
/// ```
/// use metrics::Label;
/// use orderscope_metrics::{IndexedCache, catalogue};
///
/// const METHODS: [&str; 2] = ["GET", "POST"];
/// const ROUTES: [&str; 2] = ["/orders", "/orders/{id}"];
/// static ACTIVE: IndexedCache<metrics::Gauge> = IndexedCache::new(
///     catalogue::HTTP_SERVER_ACTIVE_REQUESTS,
///     &[catalogue::labels::HTTP_REQUEST_METHOD, catalogue::labels::HTTP_ROUTE],
///     METHODS.len() * ROUTES.len(),
/// );
///
/// let (route, method) = (1, 0);
/// let index = route * METHODS.len() + method;
/// let labels = || vec![
///     Label::from_static_parts("http_request_method", METHODS[method]),
///     Label::from_static_parts("http_route", ROUTES[route]),
/// ];
/// ACTIVE.with(index, labels, |g| g.increment(1.0));
/// ACTIVE.with(index, labels, |g| g.decrement(1.0));
/// ```
pub struct IndexedCache<H> {
    metric: &'static str,
    label_keys: &'static [&'static str],
    capacity: usize,
    slots: OnceLock<Box<[IndexedSlot<H>]>>,
    overflow: Overflow<H>,
}

impl<H> fmt::Debug for IndexedCache<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IndexedCache")
            .field("metric", &self.metric)
            .field("label_keys", &self.label_keys)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl<H: MetricHandle> IndexedCache<H> {
    /// A cache with `capacity` slots for `metric`; `label_keys` name the labels of its overflow
    /// series.
    pub const fn new(
        metric: &'static str,
        label_keys: &'static [&'static str],
        capacity: usize,
    ) -> Self {
        IndexedCache {
            metric,
            label_keys,
            capacity,
            slots: OnceLock::new(),
            overflow: Overflow::new(),
        }
    }

    /// The number of slots.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Runs `f` with the handle at `index`, registering it on first use with `labels()`.
    #[inline]
    pub fn with<R>(
        &self,
        index: usize,
        labels: impl FnOnce() -> Vec<Label>,
        f: impl FnOnce(&H) -> R,
    ) -> R {
        let slots = self.slots.get_or_init(|| {
            (0..self.capacity)
                .map(|_| IndexedSlot {
                    key: OnceLock::new(),
                    handle: HandleCell::new(),
                })
                .collect()
        });
        match slots.get(index) {
            Some(slot) => slot.handle.with(
                || {
                    slot.key
                        .get_or_init(|| Key::from_parts(self.metric, labels()))
                        .clone()
                },
                f,
            ),
            None => self.overflow.record(self.metric, self.label_keys, f),
        }
    }
}

/// Bounded string interning: maps strings such as route templates to small ids that make cheap
/// cache keys, without allocating on a hit.
///
/// Lookups hash the string (FxHash) under a read lock. Once `limit` strings are known, unknown
/// strings get `None`: map them to the overflow series (or to a fixed fallback such as
/// `http_route="unmatched"`).
///
/// ```
/// use orderscope_metrics::StrInterner;
///
/// static ROUTES: StrInterner = StrInterner::new(256);
/// let id = ROUTES.intern("/orders/{id}").unwrap();
/// assert_eq!(ROUTES.intern("/orders/{id}"), Some(id));
/// assert_eq!(ROUTES.resolve(id).as_deref(), Some("/orders/{id}"));
/// ```
pub struct StrInterner {
    limit: usize,
    inner: RwLock<Interned>,
}

struct Interned {
    ids: HashMap<Arc<str>, u32, FxBuild>,
    strings: Vec<Arc<str>>,
}

impl fmt::Debug for StrInterner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StrInterner")
            .field("limit", &self.limit)
            .field("len", &self.len())
            .finish()
    }
}

impl StrInterner {
    /// An interner that accepts at most `limit` distinct strings (capped at `u32::MAX`).
    pub const fn new(limit: usize) -> Self {
        StrInterner {
            limit: if limit > u32::MAX as usize {
                u32::MAX as usize
            } else {
                limit
            },
            inner: RwLock::new(Interned {
                ids: HashMap::with_hasher(FxBuild::new()),
                strings: Vec::new(),
            }),
        }
    }

    /// The id of `s`, interning it if there is room; `None` once the limit is reached.
    #[inline]
    pub fn intern(&self, s: &str) -> Option<u32> {
        {
            let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(id) = inner.ids.get(s) {
                return Some(*id);
            }
            if inner.strings.len() >= self.limit {
                return None;
            }
        }
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(id) = inner.ids.get(s) {
            return Some(*id);
        }
        let id = u32::try_from(inner.strings.len()).ok()?;
        if inner.strings.len() >= self.limit {
            return None;
        }
        let shared: Arc<str> = Arc::from(s);
        inner.ids.insert(shared.clone(), id);
        inner.strings.push(shared);
        Some(id)
    }

    /// The string of `id`.
    pub fn resolve(&self, id: u32) -> Option<Arc<str>> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        inner.strings.get(usize::try_from(id).ok()?).cloned()
    }

    /// Number of interned strings.
    pub fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .strings
            .len()
    }

    /// Whether nothing is interned.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
