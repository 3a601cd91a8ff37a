//! The orderscope metric catalogue, RED recording, cardinality guard and Prometheus recorder
//! set-up.
//!
//! # Overview
//!
//! - [`catalogue`]: every metric orderscope emits, with its final Prometheus name, kind, unit,
//!   help, labels and buckets (one `const` per name), as CONVENTIONS.md lists them.
//! - [`prometheus_builder`] / [`build_recorder`]: a `metrics-exporter-prometheus` recorder with
//!   explicit buckets for every catalogue histogram (never summaries); [`describe_all`] sends the
//!   help texts and units.
//! - Handle caches that resolve labels once per series and cap the number of series per metric:
//!   [`LabelCache`] (hash-keyed), [`IndexedCache`] (dense index, lock-free), and the one cell
//!   under every cached handle in orderscope, [`HandleCell`]: handles bound to the recorder
//!   current when they record (kept for the global recorder, registered per use under a local
//!   one), so instrumentation built before the recorder is installed records into it.
//! - [`red`]: [`FunctionMetrics`](red::FunctionMetrics), the RED metrics of one function in a
//!   `static`, with a panic- and cancel-safe concurrency guard.
//!
//! This crate depends on `metrics` and `metrics-exporter-prometheus` only: no web framework, no
//! broker client, no tracing.
//!
//! # Example
//!
//! ```
//! use orderscope_metrics::{catalogue, red::FunctionMetrics};
//!
//! static SHIP: FunctionMetrics = FunctionMetrics::new("ship", module_path!());
//!
//! let recorder = orderscope_metrics::build_recorder();
//! let handle = recorder.handle();
//! metrics::with_local_recorder(&recorder, || {
//!     orderscope_metrics::describe_all();
//!     SHIP.start().ok();
//! });
//! let text = handle.render();
//! assert!(text.contains("function_calls_total{function=\"ship\""));
//! assert!(text.contains("function_calls_duration_seconds_bucket{function=\"ship\""));
//! # let _ = catalogue::CATALOGUE;
//! ```
//!
//! # Handle caches and series limits
//!
//! Labels are resolved once per series, and a metric never grows past its series limit.
//!
//! Two shapes, both holding their handles in [`HandleCell`]s:
//!
//! - [`LabelCache`]: any small hashable key (e.g. `(method index, route id, status code)`)
//!   mapped to a handle, in an append-only open-addressing table. Hot path: an FxHash of the
//!   key, one or two atomic loads and key comparisons, the recorder check of [`HandleCell`], the
//!   handle operation. No lock, no allocation, no label formatting; reads share no written cache
//!   line, so they scale across cores.
//! - [`IndexedCache`]: keys the caller already turned into a dense index
//!   (`route_id * METHODS + method`). Hot path: one `OnceLock` load, the recorder check, the
//!   handle operation; no lock at all.
//! - [`StrInterner`] turns bounded strings (route templates) into small ids for such keys.
//! - [`SeriesBudget`] and [`Overflow`], the parts both caches are built on, for a cache that
//!   must keep its own storage (the tower server keeps [`HandleCell`]s in its per-route
//!   entries): the budget decides, the overflow supplies the `_overflow` series and the counter.
//!
//! When a new label set would exceed the limit, the measurement goes to the metric's overflow
//! series, whose label values are all [`OVERFLOW`](crate::catalogue::values::OVERFLOW)
//! (`_overflow`), and `orderscope_cardinality_overflow_total{metric="<name>"}` is incremented
//! once per redirected measurement.
//!
//! ## Example
//!
//! ```
//! use metrics::Label;
//! use orderscope_metrics::{CounterCache, SeriesLimit};
//!
//! static JOBS: CounterCache<(&'static str, u16)> =
//!     CounterCache::new("jobs_total", &["queue", "status"], SeriesLimit::new(100));
//!
//! fn job_done(queue: &'static str, status: u16) {
//!     JOBS.increment(&(queue, status), 1, |(queue, status)| {
//!         vec![Label::from_static_parts("queue", queue), Label::new("status", status.to_string())]
//!     });
//! }
//! # job_done("orders", 200);
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

mod cardinality;
pub mod catalogue;
mod prometheus;
mod recorder;
pub mod red;

pub use self::cardinality::{
    CounterCache, FxHasher, GaugeCache, HistogramCache, IndexedCache, LabelCache, Overflow,
    SeriesBudget, SeriesLimit, StrInterner,
};
pub use self::prometheus::{build_recorder, describe_all, describe_all_to, prometheus_builder};
pub use self::recorder::{Bound, HandleCell, KeyedHandle, MetricHandle};
