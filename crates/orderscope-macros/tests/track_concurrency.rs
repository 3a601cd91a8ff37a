//! `#[red(track_concurrency)]`: the `function_calls_concurrent` gauge.

mod common;

use common::{capture, capture_with, expect_panic, fn_labels};

const MODULE: &str = module_path!();
const CONCURRENT: &str = "function_calls_concurrent";

#[orderscope::red(track_concurrency)]
fn tracked(peek: &dyn Fn() -> common::Metrics) -> f64 {
    peek()
        .gauge(CONCURRENT, &fn_labels("tracked", MODULE, &[]))
        .unwrap()
}

#[orderscope::red(track_concurrency = true)]
fn tracked_panics() {
    panic!("tracked")
}

#[orderscope::red(track_concurrency = false)]
fn untracked() {}

#[orderscope::red]
fn default_untracked() {}

#[test]
fn gauge_is_one_inside_and_zero_after() {
    let (inside, m) = capture_with(tracked);
    assert_eq!(inside, 1.0);
    assert_eq!(
        m.gauge(CONCURRENT, &fn_labels("tracked", MODULE, &[])),
        Some(0.0)
    );
}

#[test]
fn gauge_returns_to_zero_after_a_panic() {
    let (_, m) = capture(|| expect_panic(tracked_panics));
    assert_eq!(
        m.gauge(CONCURRENT, &fn_labels("tracked_panics", MODULE, &[])),
        Some(0.0)
    );
}

#[test]
fn off_by_default_and_with_false() {
    let (_, m) = capture(|| {
        untracked();
        default_untracked();
    });
    assert!(m.series(CONCURRENT).is_empty());
    assert_eq!(m.series("function_calls_total").len(), 2);
}
