//! `#[red]` on async functions: ok, error, panic and a cancelled call.

mod common;

use std::pin::pin;
use std::task::Poll;

use common::{YieldOnce, block_on, capture, capture_with, expect_panic, fn_labels, poll_once};
use orderscope::{ErrorType, red};

const MODULE: &str = module_path!();
const CALLS: &str = "function_calls_total";
const DURATION: &str = "function_calls_duration_seconds";
const CONCURRENT: &str = "function_calls_concurrent";

#[derive(Debug, ErrorType)]
enum MesError {
    NoCapacity,
}

#[red(track_concurrency)]
async fn schedule(slots: u32) -> Result<u32, MesError> {
    YieldOnce::default().await;
    if slots == 0 {
        return Err(MesError::NoCapacity);
    }
    Ok(slots)
}

#[red(track_concurrency)]
async fn hang() -> u32 {
    std::future::pending::<()>().await;
    0
}

#[red(track_concurrency)]
async fn explode() -> Result<(), MesError> {
    YieldOnce::default().await;
    panic!("explode")
}

fn concurrent(m: &common::Metrics, f: &str) -> Option<f64> {
    m.gauge(CONCURRENT, &fn_labels(f, MODULE, &[]))
}

#[test]
fn ok_and_error() {
    let ((ok, err), m) = capture(|| (block_on(schedule(2)), block_on(schedule(0))));
    assert_eq!(ok.unwrap(), 2);
    assert!(matches!(err, Err(MesError::NoCapacity)));
    assert_eq!(
        m.counter(CALLS, &fn_labels("schedule", MODULE, &[("result", "ok")])),
        Some(1)
    );
    assert_eq!(
        m.counter(
            CALLS,
            &fn_labels(
                "schedule",
                MODULE,
                &[("result", "error"), ("error_type", "no_capacity")]
            )
        ),
        Some(1)
    );
    assert_eq!(
        m.histogram(DURATION, &fn_labels("schedule", MODULE, &[]))
            .unwrap()
            .len(),
        2
    );
    assert_eq!(concurrent(&m, "schedule"), Some(0.0));
}

#[test]
fn gauge_counts_calls_in_flight() {
    let ((), m) = capture_with(|peek| {
        let mut a = pin!(schedule(1));
        let mut b = pin!(schedule(1));
        assert!(poll_once(a.as_mut()).is_pending());
        assert!(poll_once(b.as_mut()).is_pending());
        assert_eq!(concurrent(&peek(), "schedule"), Some(2.0));
        assert!(matches!(poll_once(a.as_mut()), Poll::Ready(Ok(1))));
        assert_eq!(concurrent(&peek(), "schedule"), Some(1.0));
        assert!(matches!(poll_once(b.as_mut()), Poll::Ready(Ok(1))));
    });
    assert_eq!(concurrent(&m, "schedule"), Some(0.0));
    assert_eq!(
        m.counter(CALLS, &fn_labels("schedule", MODULE, &[("result", "ok")])),
        Some(2)
    );
}

#[test]
fn cancelled_call_is_recorded_and_the_gauge_returns_to_zero() {
    let ((), m) = capture_with(|peek| {
        let mut fut = Box::pin(hang());
        assert!(poll_once(fut.as_mut()).is_pending());
        assert_eq!(concurrent(&peek(), "hang"), Some(1.0));
        drop(fut);
    });
    assert_eq!(
        m.counter(
            CALLS,
            &fn_labels(
                "hang",
                MODULE,
                &[("result", "error"), ("error_type", "cancelled")]
            )
        ),
        Some(1)
    );
    assert_eq!(
        m.histogram(DURATION, &fn_labels("hang", MODULE, &[]))
            .unwrap()
            .len(),
        1
    );
    assert_eq!(concurrent(&m, "hang"), Some(0.0));
}

#[test]
fn never_polled_call_records_nothing() {
    let ((), m) = capture(|| drop(hang()));
    assert!(m.series(CALLS).is_empty());
}

#[test]
fn panicking_call_is_recorded_and_the_gauge_returns_to_zero() {
    let ((), m) = capture(|| expect_panic(|| block_on(explode())));
    assert_eq!(
        m.counter(
            CALLS,
            &fn_labels(
                "explode",
                MODULE,
                &[("result", "error"), ("error_type", "panic")]
            )
        ),
        Some(1)
    );
    assert_eq!(concurrent(&m, "explode"), Some(0.0));
}

struct Line;

trait Plan {
    async fn plan(&self, n: u32) -> Result<u32, MesError>;
}

impl Plan for Line {
    #[red]
    async fn plan(&self, n: u32) -> Result<u32, MesError> {
        Ok(n * 2)
    }
}

impl Line {
    #[red]
    async fn borrow<'a>(&self, s: &'a str) -> &'a str {
        YieldOnce::default().await;
        s
    }
}

#[test]
fn async_methods() {
    let (_, m) = capture(|| {
        assert_eq!(block_on(Line.plan(2)).unwrap(), 4);
        assert_eq!(block_on(Line.borrow("x")), "x");
    });
    assert_eq!(
        m.counter(CALLS, &fn_labels("plan", MODULE, &[("result", "ok")])),
        Some(1)
    );
    assert_eq!(
        m.counter(CALLS, &fn_labels("borrow", MODULE, &[("result", "ok")])),
        Some(1)
    );
}
