//! Shared helpers: a scoped metrics recorder and a minimal executor.

#![allow(dead_code, unreachable_pub)]

use std::cell::RefCell;
use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use metrics_util::debugging::{DebugValue, DebuggingRecorder};

/// The metrics recorded by `f`, under a recorder local to this thread.
pub fn capture<R>(f: impl FnOnce() -> R) -> (R, Metrics) {
    capture_with(|_| f())
}

/// Like [`capture`], handing `f` a way to look at the metrics while it runs.
///
/// `DebuggingRecorder` snapshots drain the values, so looks are accumulated here: counters and
/// gauges (only ever incremented and decremented) add up, histograms concatenate.
pub fn capture_with<R>(f: impl FnOnce(&dyn Fn() -> Metrics) -> R) -> (R, Metrics) {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let total = RefCell::new(Vec::<Series>::new());
    let peek = || {
        let mut total = total.borrow_mut();
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let key = key.key();
            let mut labels: Vec<(String, String)> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            let name = key.name().to_owned();
            match total
                .iter_mut()
                .find(|s| s.name == name && s.labels == labels)
            {
                Some(series) => series.value = add(&series.value, value),
                None => total.push(Series {
                    name,
                    labels,
                    value,
                }),
            }
        }
        Metrics(
            total
                .iter()
                .map(|s| Series {
                    name: s.name.clone(),
                    labels: s.labels.clone(),
                    value: copy(&s.value),
                })
                .collect(),
        )
    };
    let out = metrics::with_local_recorder(&recorder, || f(&peek));
    let last = peek();
    (out, last)
}

fn copy(v: &DebugValue) -> DebugValue {
    match v {
        DebugValue::Counter(v) => DebugValue::Counter(*v),
        DebugValue::Gauge(v) => DebugValue::Gauge(*v),
        DebugValue::Histogram(v) => DebugValue::Histogram(v.clone()),
    }
}

fn add(a: &DebugValue, b: DebugValue) -> DebugValue {
    match (a, b) {
        (DebugValue::Counter(a), DebugValue::Counter(b)) => DebugValue::Counter(a + b),
        (DebugValue::Gauge(a), DebugValue::Gauge(b)) => {
            DebugValue::Gauge((a.into_inner() + b.into_inner()).into())
        }
        (DebugValue::Histogram(a), DebugValue::Histogram(b)) => {
            DebugValue::Histogram(a.iter().copied().chain(b).collect())
        }
        (DebugValue::Counter(a), _) => DebugValue::Counter(*a),
        (DebugValue::Gauge(a), _) => DebugValue::Gauge(*a),
        (DebugValue::Histogram(a), _) => DebugValue::Histogram(a.clone()),
    }
}

/// One series: name, sorted labels, value.
#[derive(Debug)]
pub struct Series {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: DebugValue,
}

/// A snapshot of every series.
#[derive(Debug)]
pub struct Metrics(pub Vec<Series>);

impl Metrics {
    fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<&DebugValue> {
        let mut want: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        want.sort();
        self.0
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| &s.value)
    }

    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
        match self.find(name, labels)? {
            DebugValue::Counter(v) => Some(*v),
            _ => None,
        }
    }

    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        match self.find(name, labels)? {
            DebugValue::Gauge(v) => Some(v.into_inner()),
            _ => None,
        }
    }

    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Option<Vec<f64>> {
        match self.find(name, labels)? {
            DebugValue::Histogram(v) => Some(v.iter().map(|x| x.into_inner()).collect()),
            _ => None,
        }
    }

    /// Label sets of every series named `name`.
    pub fn series(&self, name: &str) -> Vec<Vec<(String, String)>> {
        self.0
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.labels.clone())
            .collect()
    }
}

/// Labels `function` and `module`, plus `extra`.
pub fn fn_labels<'a>(
    function: &'a str,
    module: &'a str,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut labels = vec![("function", function), ("module", module)];
    labels.extend_from_slice(extra);
    labels
}

/// Polls `future` to completion on this thread (so a thread-local recorder sees it).
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

/// Polls `future` once.
pub fn poll_once<F: Future>(future: Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(Waker::noop()))
}

/// Returns `Pending` once (waking itself), then `Ready`.
#[derive(Debug, Default)]
pub struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// Runs `f`, expecting a panic.
pub fn expect_panic<R>(f: impl FnOnce() -> R) {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    assert!(result.is_err(), "expected a panic");
}
