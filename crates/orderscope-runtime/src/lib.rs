//! USE signals (utilisation, saturation, errors) sampled on a tick: the process and the Tokio
//! runtime.
//!
//! # Overview
//!
//! A [`Ticker`] runs samplers on a thread of its own, every 5 s by default, and never on the
//! scrape path or a request path. Each sampler reads its source and sets its metrics through the
//! `metrics` facade:
//!
//! - [`ProcessSampler`]: `process_cpu_seconds_total`, `process_resident_memory_bytes`,
//!   `process_open_fds`, `process_max_fds`, `process_threads`, `process_start_time_seconds` — the
//!   names the Prometheus client libraries use — read from `/proc/self` on Linux. On other systems
//!   [`ProcessSampler::new`] returns `None` and nothing is recorded. The CPU counter holds
//!   fractional seconds, which `metrics` counters cannot: a `/metrics` renderer appends it with
//!   [`append_process_counters`].
//! - [`RuntimeSampler`]: `tokio_workers`, `tokio_alive_tasks`, `tokio_global_queue_depth`,
//!   `tokio_busy_ratio` (busy ÷ elapsed ÷ workers over the last interval, 0–1) and
//!   `tokio_parks_total`, through tokio-metrics' `RuntimeMonitor`, from Tokio's stable runtime
//!   metrics (no `tokio_unstable` needed).
//!
//! Any `FnMut() + Send` closure is a sampler too (the `orderscope` facade adds the in-flight order
//! tracker's `sample` that way).
//!
//! Most services turn these on through the facade's builder (`with_process_metrics()`,
//! `with_runtime_metrics()`) rather than building a ticker themselves.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use orderscope_runtime::{ProcessSampler, RuntimeSampler, Ticker};
//!
//! let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build()?;
//! let mut ticker = Ticker::builder().interval(Duration::from_secs(5));
//! if let Some(process) = ProcessSampler::new() {
//!     ticker = ticker.sampler(process);
//! }
//! let ticker = ticker.sampler(RuntimeSampler::new(runtime.handle().clone())).spawn()?;
//! // … the service runs; dropping the ticker stops its thread.
//! drop(ticker);
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Feature flags
//!
//! This crate has no optional features.
//!
//! # Supported Rust versions
//!
//! The minimum supported Rust version is the workspace's `rust-version` (1.88).

#![deny(missing_docs)]

mod process;
mod runtime;
mod ticker;

pub use self::process::{ProcessSampler, append_process_counters, process_cpu_seconds};
pub use self::runtime::RuntimeSampler;
pub use self::ticker::{DEFAULT_INTERVAL, Sample, Ticker, TickerBuilder};
