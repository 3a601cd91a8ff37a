//! What `#[red]` costs per call, against the same function bare and against hand-written
//! `metrics::counter!` + `histogram!` with the same labels.
//!
//! A real recorder is installed globally (metrics-exporter-prometheus, with histogram buckets,
//! upkeep running), as in a service.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use metrics_exporter_prometheus::PrometheusBuilder;

#[derive(Debug)]
struct Overflow;

#[inline(never)]
fn plain_fn(x: u64) -> Result<u64, Overflow> {
    black_box(x).checked_add(1).ok_or(Overflow)
}

#[orderscope::red]
#[inline(never)]
fn macro_fn(x: u64) -> Result<u64, Overflow> {
    black_box(x).checked_add(1).ok_or(Overflow)
}

#[inline(never)]
fn manual_fn(x: u64) -> Result<u64, Overflow> {
    let start = Instant::now();
    let out = black_box(x).checked_add(1).ok_or(Overflow);
    // Literal labels only: the `metrics` macros keep such keys in statics, the best a
    // hand-written version can do.
    if out.is_ok() {
        metrics::counter!(
            "function_calls_total",
            "function" => "manual_fn",
            "module" => module_path!(),
            "result" => "ok"
        )
        .increment(1);
    } else {
        metrics::counter!(
            "function_calls_total",
            "function" => "manual_fn",
            "module" => module_path!(),
            "result" => "error",
            "error_type" => "error"
        )
        .increment(1);
    }
    metrics::histogram!(
        "function_calls_duration_seconds",
        "function" => "manual_fn",
        "module" => module_path!()
    )
    .record(start.elapsed().as_secs_f64());
    out
}

fn install_recorder() {
    let handle = PrometheusBuilder::new()
        .set_buckets(&[
            0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
        ])
        .expect("buckets")
        .install_recorder()
        .expect("no other recorder installed");
    // Histogram samples are drained by upkeep, as the exporter's scrape path does.
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(200));
            handle.run_upkeep();
        }
    });
}

fn red(c: &mut Criterion) {
    install_recorder();
    let mut group = c.benchmark_group("red");
    group.bench_function("plain_fn", |b| b.iter(|| plain_fn(black_box(1))));
    group.bench_function("macro", |b| b.iter(|| macro_fn(black_box(1))));
    group.bench_function("manual", |b| b.iter(|| manual_fn(black_box(1))));
    group.finish();
}

criterion_group!(benches, red);
criterion_main!(benches);
