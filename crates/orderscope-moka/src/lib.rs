//! Metrics and spans for moka's async cache.
//!
//! # Overview
//!
//! [`InstrumentedCache`] wraps a [`moka::future::Cache`] and records, named after the .NET and
//! Micrometer cache metrics (semconv has none yet):
//!
//! - `cache_requests_total{cache_name, result}`: lookups, `result` is `hit` or `miss`;
//! - `cache_evictions_total{cache_name, reason}`: entries removed, `reason` is `size`,
//!   `expired`, `explicit` or `replaced`;
//! - `cache_entries{cache_name}`: entries in the cache (moka's estimate), after each change;
//! - `cache_load_duration_seconds{cache_name, error_type}`: time to load a missing entry;
//! - an INTERNAL span `cache.load {cache.name}` around the loader on a miss, with the loader
//!   running under it, so the database spans of a load show where a page waits. Spans go
//!   through the OpenTelemetry API (the global tracer provider).
//!
//! Cache names are metric labels: each comes from a [`CacheName`] constant declared in code,
//! never from data.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use orderscope_moka::{CacheName, InstrumentedCache};
//!
//! const ORDER_COUNT: CacheName = CacheName::new("order_count");
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let cache: InstrumentedCache<&'static str, i64> = InstrumentedCache::new(
//!     ORDER_COUNT,
//!     moka::future::Cache::builder().max_capacity(16).time_to_live(Duration::from_secs(30)),
//! );
//! // A miss runs the loader under a `cache.load order_count` span; a hit does not.
//! let total = cache.get_with("open", async { 200_000 }).await;
//! assert_eq!(cache.get_with("open", async { unreachable!() }).await, total);
//! # }
//! ```
//!
//! # Feature flags
//!
//! None.
//!
//! # Supported Rust versions
//!
//! The minimum supported Rust version is the workspace's `rust-version` (1.88). It may be raised
//! in a minor release.

#![deny(missing_docs)]

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use metrics::{Counter, Key, Label};
use moka::future::{Cache, CacheBuilder};
use moka::notification::RemovalCause;
use opentelemetry::global::BoxedTracer;
use opentelemetry::trace::{
    FutureExt as _, SpanBuilder, SpanKind, Status, TraceContextExt, Tracer,
};
use opentelemetry::{Context, InstrumentationScope, KeyValue};
use orderscope_metrics::catalogue::{defs, labels as l};
use orderscope_metrics::{CounterCache, GaugeCache, HistogramCache, KeyedHandle, SeriesLimit};

/// The name of a cache, declared in code: `const ORDERS: CacheName = CacheName::new("orders");`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CacheName(&'static str);

impl CacheName {
    /// A cache name; use a short `snake_case` name that says what the cache holds.
    pub const fn new(name: &'static str) -> Self {
        CacheName(name)
    }

    /// The name.
    pub const fn as_str(&self) -> &'static str {
        self.0
    }
}

const LIMIT: SeriesLimit = SeriesLimit::new(256);

static EVICTIONS: CounterCache<(&'static str, &'static str)> =
    CounterCache::for_def(&defs::CACHE_EVICTIONS, LIMIT);
static ENTRIES: GaugeCache<&'static str> = GaugeCache::for_def(&defs::CACHE_ENTRIES, LIMIT);
static LOAD_DURATION: HistogramCache<(&'static str, bool)> =
    HistogramCache::for_def(&defs::CACHE_LOAD_DURATION, LIMIT);

fn name_label(name: &'static str) -> Label {
    Label::from_static_parts(l::CACHE_NAME, name)
}

fn reason(cause: RemovalCause) -> &'static str {
    match cause {
        RemovalCause::Expired => "expired",
        RemovalCause::Explicit => "explicit",
        RemovalCause::Replaced => "replaced",
        RemovalCause::Size => "size",
    }
}

fn tracer() -> &'static BoxedTracer {
    static TRACER: OnceLock<BoxedTracer> = OnceLock::new();
    TRACER.get_or_init(|| {
        let scope = InstrumentationScope::builder("orderscope-moka")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        opentelemetry::global::tracer_with_scope(scope)
    })
}

/// A [`moka::future::Cache`] whose lookups, loads and evictions are measured.
///
/// Cloning is cheap and shares the cache. See the [crate documentation](crate) for what is
/// recorded.
pub struct InstrumentedCache<K, V> {
    cache: Cache<K, V>,
    name: &'static str,
    span_name: Arc<str>,
    requests: Arc<Requests>,
}

/// The cache's two `cache_requests_total` series, bound once: a lookup costs one counter
/// increment, no label lookup.
struct Requests {
    hit: KeyedHandle<Counter>,
    miss: KeyedHandle<Counter>,
}

impl Requests {
    fn new(name: &'static str) -> Self {
        let key = |result: &'static str| {
            Key::from_parts(
                defs::CACHE_REQUESTS.name,
                vec![
                    name_label(name),
                    Label::from_static_parts(l::RESULT, result),
                ],
            )
        };
        Requests {
            hit: KeyedHandle::new(key("hit")),
            miss: KeyedHandle::new(key("miss")),
        }
    }
}

impl<K, V> Clone for InstrumentedCache<K, V> {
    fn clone(&self) -> Self {
        InstrumentedCache {
            cache: self.cache.clone(),
            name: self.name,
            span_name: self.span_name.clone(),
            requests: self.requests.clone(),
        }
    }
}

impl<K, V> fmt::Debug for InstrumentedCache<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstrumentedCache")
            .field("name", &self.name)
            .field("entries", &self.cache.entry_count())
            .finish()
    }
}

impl<K, V> InstrumentedCache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Builds the cache from `builder` (capacity, time to live, …), adding the eviction
    /// listener that counts evictions. A listener set on `builder` is replaced.
    pub fn new(name: CacheName, builder: CacheBuilder<K, V, Cache<K, V>>) -> Self {
        let name = name.as_str();
        let cache = builder
            .eviction_listener(move |_key, _value, cause| {
                EVICTIONS.increment(&(name, reason(cause)), 1, |(name, reason)| {
                    vec![
                        name_label(name),
                        Label::from_static_parts(l::REASON, reason),
                    ]
                });
            })
            .build();
        InstrumentedCache {
            cache,
            name,
            span_name: Arc::from(format!("cache.load {name}")),
            requests: Arc::new(Requests::new(name)),
        }
    }

    /// The cache's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The moka cache underneath; lookups made on it directly are not counted.
    pub fn inner(&self) -> &Cache<K, V> {
        &self.cache
    }

    #[inline]
    fn count(&self, hit: bool) {
        if hit {
            self.requests.hit.increment(1);
        } else {
            self.requests.miss.increment(1);
        }
    }

    fn record_entries(&self) {
        ENTRIES.set(&self.name, self.cache.entry_count() as f64, |name| {
            vec![name_label(name)]
        });
    }

    /// Runs moka's pending maintenance (evictions, expirations) now, and refreshes
    /// `cache_entries`, which otherwise follows moka's estimate as of the last change.
    pub async fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks().await;
        self.record_entries();
    }

    /// The value for `key`, counted as a hit or a miss.
    pub async fn get<Q>(&self, key: &Q) -> Option<V>
    where
        Q: moka::Equivalent<K> + Hash + ?Sized,
    {
        let value = self.cache.get(key).await;
        self.count(value.is_some());
        value
    }

    /// Inserts `value` for `key` (replacing a value counts as an eviction, `replaced`).
    pub async fn insert(&self, key: K, value: V) {
        self.cache.insert(key, value).await;
        self.record_entries();
    }

    /// Removes the value for `key` (counted as an eviction, `explicit`).
    pub async fn invalidate<Q>(&self, key: &Q)
    where
        Q: moka::Equivalent<K> + Hash + ?Sized,
    {
        self.cache.invalidate(key).await;
        self.record_entries();
    }

    /// The value for `key`, loaded by `init` on a miss under a `cache.load {name}` span.
    ///
    /// Concurrent misses for one key run one loader (moka coalesces them); the others count
    /// as hits.
    pub async fn get_with(&self, key: K, init: impl Future<Output = V>) -> V {
        let parent = Context::current();
        let loader = async {
            let load = Load::start(self, &parent);
            let value = init.with_context(load.cx.clone()).await;
            load.finish(None);
            value
        };
        let entry = self.cache.entry(key).or_insert_with(loader).await;
        self.count(!entry.is_fresh());
        if entry.is_fresh() {
            self.record_entries();
        }
        entry.into_value()
    }

    /// As [`get_with`](Self::get_with) with a loader that may fail: an error is not cached,
    /// is recorded on the span and in `cache_load_duration_seconds{error_type="error"}`, and
    /// is returned to every caller waiting on that load.
    ///
    /// # Errors
    ///
    /// The loader's error.
    pub async fn try_get_with<F, E>(&self, key: K, init: F) -> Result<V, Arc<E>>
    where
        F: Future<Output = Result<V, E>>,
        E: fmt::Display + Send + Sync + 'static,
    {
        let parent = Context::current();
        let loader = async {
            let load = Load::start(self, &parent);
            let result = init.with_context(load.cx.clone()).await;
            load.finish(result.as_ref().err().map(|e| e.to_string()));
            result
        };
        let result = self.cache.entry(key).or_try_insert_with(loader).await;
        match &result {
            Ok(entry) => {
                self.count(!entry.is_fresh());
                if entry.is_fresh() {
                    self.record_entries();
                }
            }
            Err(_) => self.count(false),
        }
        result.map(moka::Entry::into_value)
    }
}

/// The span and clock of one load, started when the loader runs.
struct Load {
    name: &'static str,
    cx: Context,
    start: Instant,
}

impl Load {
    fn start<K, V>(cache: &InstrumentedCache<K, V>, parent: &Context) -> Self {
        let builder = SpanBuilder::from_name(Cow::Owned(cache.span_name.to_string()))
            .with_kind(SpanKind::Internal)
            .with_attributes([KeyValue::new("cache.name", cache.name)]);
        let span = tracer().build_with_context(builder, parent);
        Load {
            name: cache.name,
            cx: parent.with_span(span),
            start: Instant::now(),
        }
    }

    fn finish(&self, error: Option<String>) {
        let elapsed = self.start.elapsed().as_secs_f64();
        let failed = error.is_some();
        LOAD_DURATION.record(&(self.name, failed), elapsed, |(name, failed)| {
            let mut labels = vec![name_label(name)];
            if *failed {
                labels.push(Label::from_static_parts(l::ERROR_TYPE, "error"));
            }
            labels
        });
        let span = self.cx.span();
        if let Some(error) = error {
            span.set_attribute(KeyValue::new("error.type", "error"));
            span.set_status(Status::error(error));
        }
        span.end();
    }
}
