//! Cost of recording through the `metrics` macros with labels given per call versus through
//! the cached handles of this crate, with the Prometheus recorder installed globally.
//!
//! `cargo bench -p orderscope-metrics --bench handles`

use std::hint::black_box;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use metrics::{Counter, Histogram, Label};
use metrics_exporter_prometheus::PrometheusHandle;
use orderscope_metrics::red::FunctionMetrics;
use orderscope_metrics::{CounterCache, HistogramCache, IndexedCache, SeriesLimit};

static COUNTER_CACHE: CounterCache<(u8, u16, u16)> = CounterCache::new(
    "bench_cache_total",
    &["method", "route", "status"],
    SeriesLimit::DEFAULT,
);
static HISTOGRAM_CACHE: HistogramCache<(u8, u16, u16)> = HistogramCache::new(
    "bench_cache_seconds",
    &["method", "route", "status"],
    SeriesLimit::DEFAULT,
);
static INDEXED: IndexedCache<Counter> =
    IndexedCache::new("bench_indexed_total", &["method", "route", "status"], 64);
static FUNCTION: FunctionMetrics =
    FunctionMetrics::new("bench_fn", "bench").track_concurrency(true);

fn labels(key: &(u8, u16, u16)) -> Vec<Label> {
    vec![
        Label::from_static_parts("method", if key.0 == 0 { "GET" } else { "POST" }),
        Label::from_static_parts("route", "/orders/{id}"),
        Label::new("status", key.2.to_string()),
    ]
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = orderscope_metrics::build_recorder();
        let handle = recorder.handle();
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Times `iters` runs of `f`, then drains histogram samples (untimed) so memory stays flat.
fn timed(handle: &PrometheusHandle, iters: u64, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    let elapsed = start.elapsed();
    handle.run_upkeep();
    elapsed
}

fn counters(c: &mut Criterion) {
    install();
    let key = (0u8, 3u16, 200u16);
    c.bench_function("counter/macro_3_static_labels", |b| {
        b.iter(|| {
            metrics::counter!(
                "bench_macro_total",
                "method" => "GET",
                "route" => "/orders/{id}",
                "status" => "200",
            )
            .increment(black_box(1));
        });
    });
    let handle: Counter = metrics::counter!("bench_handle_total", "method" => "GET");
    c.bench_function("counter/handle", |b| {
        b.iter(|| handle.increment(black_box(1)));
    });
    c.bench_function("counter/label_cache", |b| {
        b.iter(|| COUNTER_CACHE.increment(black_box(&key), 1, labels));
    });
    c.bench_function("counter/indexed_cache", |b| {
        b.iter(|| {
            INDEXED.with(
                black_box(5),
                || labels(&key),
                |counter| counter.increment(1),
            );
        });
    });
}

fn histograms(c: &mut Criterion) {
    let prom = install();
    let key = (0u8, 3u16, 200u16);
    c.bench_function("histogram/macro_3_static_labels", |b| {
        b.iter_custom(|iters| {
            timed(prom, iters, || {
                metrics::histogram!(
                    "bench_macro_seconds",
                    "method" => "GET",
                    "route" => "/orders/{id}",
                    "status" => "200",
                )
                .record(black_box(0.012));
            })
        });
    });
    let handle: Histogram = metrics::histogram!("bench_handle_seconds");
    c.bench_function("histogram/handle", |b| {
        b.iter_custom(|iters| timed(prom, iters, || handle.record(black_box(0.012))));
    });
    c.bench_function("histogram/label_cache", |b| {
        b.iter_custom(|iters| {
            timed(prom, iters, || {
                HISTOGRAM_CACHE.record(black_box(&key), 0.012, labels);
            })
        });
    });
}

fn red(c: &mut Criterion) {
    let prom = install();
    c.bench_function("red/clock_pair", |b| {
        b.iter(|| black_box(Instant::now()).elapsed());
    });
    c.bench_function("red/recorder_lookup", |b| {
        static CELL: orderscope_metrics::HandleCell<Counter> =
            orderscope_metrics::HandleCell::new();
        b.iter(|| {
            CELL.with(
                || metrics::Key::from_static_name("bench_lookup_total"),
                |c| {
                    black_box(c);
                },
            );
        });
    });
    c.bench_function("red/function_call", |b| {
        b.iter_custom(|iters| timed(prom, iters, || FUNCTION.start().ok()));
    });
}

criterion_group!(benches, counters, histograms, red);
criterion_main!(benches);
