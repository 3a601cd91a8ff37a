//! RED recording: exact label sets, error classification, guards on panic and cancellation,
//! recorder changes.

use std::future::Future as _;
use std::pin::pin;
use std::task::{Context, Waker};
use std::time::Duration;

use orderscope_metrics::red::{FunctionMetrics, MAX_ERROR_TYPES};
use orderscope_testing::{LocalMetrics, capture_metrics};

const CALLS: &str = "function_calls_total";
const DURATION: &str = "function_calls_duration_seconds";
const CONCURRENT: &str = "function_calls_concurrent";

fn base(function: &'static str) -> [(&'static str, &'static str); 2] {
    [("function", function), ("module", "red_tests")]
}

#[test]
fn ok_and_error_calls_have_exact_label_sets() {
    static F: FunctionMetrics = FunctionMetrics::new("f", "red_tests").track_concurrency(true);
    let ((), snap) = capture_metrics(|| {
        F.start().ok();
        F.start().ok();
        F.start().error("not_found");
        F.start().finish(&Err::<(), _>(7), |_| "timeout");
        F.start().finish(&Ok::<_, ()>(1), |_| "unused");
    });
    let [f, m] = base("f");
    assert_eq!(snap.counter(CALLS, &[f, m, ("result", "ok")]), Some(3));
    assert_eq!(
        snap.counter(
            CALLS,
            &[f, m, ("result", "error"), ("error_type", "not_found")]
        ),
        Some(1)
    );
    assert_eq!(
        snap.counter(
            CALLS,
            &[f, m, ("result", "error"), ("error_type", "timeout")]
        ),
        Some(1)
    );
    assert_eq!(snap.series(CALLS).len(), 3);
    assert_eq!(snap.histogram(DURATION, &[f, m]).map(|h| h.len()), Some(5));
    assert_eq!(snap.gauge(CONCURRENT, &[f, m]), Some(0.0));
}

#[test]
fn record_without_guard() {
    static G: FunctionMetrics = FunctionMetrics::new("g", "red_tests").track_concurrency(true);
    let ((), snap) = capture_metrics(|| {
        G.record_ok(Duration::from_millis(20));
        G.record_error("boom", Duration::from_millis(30));
        let _c = G.concurrency();
    });
    let [f, m] = base("g");
    assert_eq!(snap.counter(CALLS, &[f, m, ("result", "ok")]), Some(1));
    assert_eq!(snap.histogram(DURATION, &[f, m]), Some(vec![0.02, 0.03]));
    assert_eq!(snap.gauge(CONCURRENT, &[f, m]), Some(0.0));
}

#[test]
fn panicking_call_is_recorded_as_panic() {
    static P: FunctionMetrics = FunctionMetrics::new("p", "red_tests").track_concurrency(true);
    let ((), snap) = capture_metrics(|| {
        let result = std::panic::catch_unwind(|| {
            let _call = P.start();
            panic!("handler failed");
        });
        assert!(result.is_err());
    });
    let [f, m] = base("p");
    assert_eq!(
        snap.counter(CALLS, &[f, m, ("result", "error"), ("error_type", "panic")]),
        Some(1)
    );
    assert_eq!(snap.gauge(CONCURRENT, &[f, m]), Some(0.0));
}

#[test]
fn dropped_future_is_recorded_as_cancelled() {
    static C: FunctionMetrics = FunctionMetrics::new("c", "red_tests").track_concurrency(true);
    let ((), snap) = capture_metrics(|| {
        let fut = async {
            let call = C.start();
            std::future::pending::<()>().await;
            call.ok();
        };
        let mut fut = pin!(fut);
        let mut cx = Context::from_waker(Waker::noop());
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        // `fut` dropped here, mid-call.
    });
    let [f, m] = base("c");
    assert_eq!(
        snap.counter(
            CALLS,
            &[f, m, ("result", "error"), ("error_type", "cancelled")]
        ),
        Some(1)
    );
    assert_eq!(snap.counter(CALLS, &[f, m, ("result", "ok")]), Some(0));
    assert_eq!(snap.gauge(CONCURRENT, &[f, m]), Some(0.0));
}

#[test]
fn guard_finished_on_another_thread_records_to_the_starting_recorder() {
    static T: FunctionMetrics = FunctionMetrics::new("t", "red_tests").track_concurrency(true);
    let local = LocalMetrics::new();
    let call = local.in_scope(|| T.start());
    std::thread::spawn(move || call.ok()).join().unwrap();
    let snap = local.snapshot();
    let [f, m] = base("t");
    assert_eq!(snap.counter(CALLS, &[f, m, ("result", "ok")]), Some(1));
    assert_eq!(snap.gauge(CONCURRENT, &[f, m]), Some(0.0));
}

#[test]
fn each_recorder_gets_its_own_calls() {
    static R: FunctionMetrics = FunctionMetrics::new("r", "red_tests").track_concurrency(true);
    // Before any recorder: the no-op recorder.
    R.start().ok();
    let [f, m] = base("r");
    for round in 1..=7u64 {
        let ((), snap) = capture_metrics(|| {
            for _ in 0..round {
                R.start().ok();
            }
        });
        assert_eq!(
            snap.counter(CALLS, &[f, m, ("result", "ok")]),
            Some(round),
            "round {round}"
        );
    }
    // Alternating between two recorders keeps them apart.
    let (a, b) = (LocalMetrics::new(), LocalMetrics::new());
    for _ in 0..3 {
        a.in_scope(|| R.start().ok());
        b.in_scope(|| R.start().error("x"));
    }
    assert_eq!(
        a.snapshot().counter(CALLS, &[f, m, ("result", "ok")]),
        Some(3)
    );
    assert_eq!(
        b.snapshot()
            .counter(CALLS, &[f, m, ("result", "error"), ("error_type", "x")]),
        Some(3)
    );
}

#[test]
fn error_types_beyond_the_limit_overflow() {
    static E: FunctionMetrics = FunctionMetrics::new("e", "red_tests").track_concurrency(true);
    let types: Vec<&'static str> = (0..MAX_ERROR_TYPES + 3)
        .map(|i| &*Box::leak(format!("e{i}").into_boxed_str()))
        .collect();
    let ((), snap) = capture_metrics(|| {
        for t in &types {
            E.start().error(t);
        }
        // A known type still has its own series.
        E.start().error(types[0]);
    });
    let [f, m] = base("e");
    // ok + MAX_ERROR_TYPES error types + the overflow series
    assert_eq!(snap.series(CALLS).len(), MAX_ERROR_TYPES + 2);
    assert_eq!(
        snap.counter(CALLS, &[f, m, ("result", "error"), ("error_type", "e0")]),
        Some(2)
    );
    assert_eq!(
        snap.counter(
            CALLS,
            &[f, m, ("result", "error"), ("error_type", "_overflow")]
        ),
        Some(3)
    );
    assert_eq!(
        snap.counter(
            "orderscope_cardinality_overflow_total",
            &[("metric", "function_calls_total")]
        ),
        Some(3)
    );
}

#[test]
fn concurrency_is_not_recorded_unless_tracked() {
    static U: FunctionMetrics = FunctionMetrics::new("u", "red_tests");
    assert!(!U.tracks_concurrency());
    let ((), snap) = capture_metrics(|| {
        U.start().ok();
        U.start().error("e");
        drop(U.start());
        let _c = U.concurrency();
        U.record_ok(Duration::from_millis(1));
    });
    let [f, m] = base("u");
    assert!(snap.series(CONCURRENT).is_empty());
    assert_eq!(snap.counter(CALLS, &[f, m, ("result", "ok")]), Some(2));
    assert_eq!(snap.histogram(DURATION, &[f, m]).map(|h| h.len()), Some(4));
}

#[test]
fn a_recorder_at_a_dropped_recorders_address_sees_its_own_calls() {
    static A: FunctionMetrics = FunctionMetrics::new("a", "red_tests").track_concurrency(true);
    let mut addresses = Vec::new();
    for round in 1..=4u64 {
        // On the stack and dropped at the end of each round: the next round's recorder
        // usually lands on the same address.
        let recorder = orderscope_metrics::build_recorder();
        addresses.push(std::ptr::from_ref(&recorder).addr());
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            for _ in 0..round {
                A.start().ok();
            }
            A.start().error("late");
        });
        let text = handle.render();
        assert!(
            text.contains(&format!(
                "function_calls_total{{function=\"a\",module=\"red_tests\",result=\"ok\"}} {round}"
            )),
            "round {round}:\n{text}"
        );
        assert!(
            text.contains(
                "function_calls_total{function=\"a\",module=\"red_tests\",result=\"error\",error_type=\"late\"} 1"
            ),
            "round {round}:\n{text}"
        );
        assert!(
            text.contains("function_calls_concurrent{function=\"a\",module=\"red_tests\"} 0"),
            "round {round}:\n{text}"
        );
    }
    assert!(
        addresses.windows(2).any(|w| w[0] == w[1]),
        "no address was reused, the case is not exercised: {addresses:?}"
    );
}

#[test]
fn guards_can_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<orderscope_metrics::red::CallGuard<'static>>();
    send_sync::<orderscope_metrics::red::ConcurrencyGuard<'static>>();
    send_sync::<FunctionMetrics>();
}
