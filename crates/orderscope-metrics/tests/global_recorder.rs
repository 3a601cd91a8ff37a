//! Caches shared by many threads under a global recorder (own test binary: the global recorder
//! can be installed once per process).

use std::sync::Arc;
use std::thread;

use metrics::Label;
use orderscope_metrics::red::FunctionMetrics;
use orderscope_metrics::{CounterCache, SeriesLimit};
use orderscope_testing::LocalMetrics;

static JOBS: CounterCache<u8> = CounterCache::new("jobs_total", &["kind"], SeriesLimit::new(2));
static WORK: FunctionMetrics = FunctionMetrics::new("work", "global_tests").track_concurrency(true);

const KINDS: [&str; 3] = ["a", "b", "c"];

#[test]
fn concurrent_recording_is_exact_and_bounded() {
    let metrics = Arc::new(LocalMetrics::new());
    metrics.install_global().expect("first global recorder");

    // Used before any thread: registration races below must not lose counts either.
    let threads: Vec<_> = (0..4)
        .map(|t| {
            thread::spawn(move || {
                for i in 0..1_000u32 {
                    let kind = ((i + t) % 3) as u8;
                    JOBS.increment(&kind, 1, |k| {
                        vec![Label::from_static_parts("kind", KINDS[usize::from(*k)])]
                    });
                    let call = WORK.start();
                    if i % 10 == 0 {
                        call.error("rare");
                    } else {
                        call.ok();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("worker");
    }

    let snap = metrics.snapshot();
    let total: u64 = snap.counter_sum("jobs_total");
    assert_eq!(total, 4_000);
    assert_eq!(snap.series("jobs_total").len(), 3, "two series + overflow");
    let overflowed = snap
        .counter("jobs_total", &[("kind", "_overflow")])
        .expect("overflow series");
    assert_eq!(
        snap.counter(
            "orderscope_cardinality_overflow_total",
            &[("metric", "jobs_total")]
        ),
        Some(overflowed)
    );
    let fm = [("function", "work"), ("module", "global_tests")];
    assert_eq!(
        snap.counter("function_calls_total", &[fm[0], fm[1], ("result", "ok")]),
        Some(3_600)
    );
    assert_eq!(
        snap.counter(
            "function_calls_total",
            &[fm[0], fm[1], ("result", "error"), ("error_type", "rare")]
        ),
        Some(400)
    );
    assert_eq!(
        snap.histogram("function_calls_duration_seconds", &fm)
            .map(|h| h.len()),
        Some(4_000)
    );
    assert_eq!(snap.gauge("function_calls_concurrent", &fm), Some(0.0));
}
