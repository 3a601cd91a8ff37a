//! Caches used before the global recorder exists record into it once it is installed (own test
//! binary: installs the global recorder).

use metrics::{Counter, Label};
use orderscope_metrics::red::FunctionMetrics;
use orderscope_metrics::{CounterCache, IndexedCache, SeriesLimit};

static JOBS: CounterCache<u8> = CounterCache::new("late_jobs_total", &["k"], SeriesLimit::new(4));
static SENT: IndexedCache<Counter> = IndexedCache::new("late_sent_total", &["outcome"], 2);
static SHIP: FunctionMetrics = FunctionMetrics::new("ship", "late").track_concurrency(true);

fn use_everything() {
    JOBS.increment(&1, 1, |_| vec![Label::from_static_parts("k", "a")]);
    SENT.with(
        0,
        || vec![Label::from_static_parts("outcome", "ack")],
        |c| c.increment(1),
    );
    SHIP.start().ok();
    SHIP.start().error("late");
}

#[test]
fn caches_used_before_the_global_recorder_record_into_it() {
    // First uses go to the no-op recorder.
    use_everything();
    use_everything();

    let recorder = orderscope_metrics::build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).expect("no global recorder yet");

    use_everything();
    // From another thread too: the handles are shared, not per thread.
    std::thread::spawn(use_everything).join().unwrap();

    let text = handle.render();
    for expected in [
        "late_jobs_total{k=\"a\"} 2",
        "late_sent_total{outcome=\"ack\"} 2",
        "function_calls_total{function=\"ship\",module=\"late\",result=\"ok\"} 2",
        "function_calls_total{function=\"ship\",module=\"late\",result=\"error\",error_type=\"late\"} 2",
        "function_calls_concurrent{function=\"ship\",module=\"late\"} 0",
        "function_calls_duration_seconds_count{function=\"ship\",module=\"late\"} 4",
    ] {
        assert!(text.contains(expected), "missing {expected}:\n{text}");
    }
}
