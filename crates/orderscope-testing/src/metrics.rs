//! Metric snapshots from a `metrics_util` debugging recorder.

use std::collections::BTreeSet;
use std::fmt;

use metrics::Unit;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

/// Kind of a recorded metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MetricType {
    /// A counter.
    Counter,
    /// A gauge.
    Gauge,
    /// A histogram.
    Histogram,
}

/// The recorded value of one series.
#[derive(Clone, Debug, PartialEq)]
pub enum MetricValue {
    /// Counter total (since the previous snapshot).
    Counter(u64),
    /// Gauge value.
    Gauge(f64),
    /// Histogram samples (since the previous snapshot), in recording order.
    Histogram(Vec<f64>),
}

/// One series in a [`MetricsSnapshot`].
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesValue {
    /// Metric name.
    pub name: String,
    /// Labels, sorted by key.
    pub labels: Vec<(String, String)>,
    /// Unit given by `describe_*`, if any.
    pub unit: Option<Unit>,
    /// Description given by `describe_*`, if any.
    pub description: Option<String>,
    /// The value.
    pub value: MetricValue,
}

impl SeriesValue {
    /// The kind of this series.
    pub fn kind(&self) -> MetricType {
        match self.value {
            MetricValue::Counter(_) => MetricType::Counter,
            MetricValue::Gauge(_) => MetricType::Gauge,
            MetricValue::Histogram(_) => MetricType::Histogram,
        }
    }

    fn matches(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        if self.name != name || self.labels.len() != labels.len() {
            return false;
        }
        let mut wanted: Vec<(&str, &str)> = labels.to_vec();
        wanted.sort_unstable();
        self.labels
            .iter()
            .zip(wanted)
            .all(|((k, v), (wk, wv))| k == wk && v == wv)
    }
}

/// A point-in-time view of everything a [`DebuggingRecorder`] saw.
///
/// Lookups take the exact label set, in any order: `&[("method", "GET"), ("route", "/x")]`
/// matches a series with exactly these two labels. Counters and histograms hold what was
/// recorded since the previous snapshot of the same recorder: the debugging recorder's
/// snapshots drain counters and histograms and reset gauges to 0.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricsSnapshot {
    series: Vec<SeriesValue>,
}

impl MetricsSnapshot {
    /// Takes a snapshot through `snapshotter`.
    pub fn from_snapshotter(snapshotter: &Snapshotter) -> Self {
        let series = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, unit, description, value)| {
                let (_kind, key) = key.into_parts();
                let (name, labels) = key.into_parts();
                let mut labels: Vec<(String, String)> = labels
                    .into_iter()
                    .map(|l| {
                        let (k, v) = l.into_parts();
                        (k.to_string(), v.to_string())
                    })
                    .collect();
                labels.sort();
                let value = match value {
                    DebugValue::Counter(c) => MetricValue::Counter(c),
                    DebugValue::Gauge(g) => MetricValue::Gauge(g.0),
                    DebugValue::Histogram(h) => {
                        MetricValue::Histogram(h.into_iter().map(|v| v.0).collect())
                    }
                };
                SeriesValue {
                    name: name.as_str().to_owned(),
                    labels,
                    unit,
                    description: description.map(|d| d.to_string()),
                    value,
                }
            })
            .collect();
        MetricsSnapshot { series }
    }

    /// All series.
    pub fn all(&self) -> &[SeriesValue] {
        &self.series
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// The series `name` with exactly `labels` (any order).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<&SeriesValue> {
        self.series.iter().find(|s| s.matches(name, labels))
    }

    /// The counter `name` with exactly `labels`.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
        self.series
            .iter()
            .filter(|s| s.matches(name, labels))
            .find_map(|s| match s.value {
                MetricValue::Counter(c) => Some(c),
                _ => None,
            })
    }

    /// The sum of counter `name` over all its series.
    pub fn counter_sum(&self, name: &str) -> u64 {
        self.series
            .iter()
            .filter(|s| s.name == name)
            .map(|s| match s.value {
                MetricValue::Counter(c) => c,
                _ => 0,
            })
            .sum()
    }

    /// The gauge `name` with exactly `labels`.
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.series
            .iter()
            .filter(|s| s.matches(name, labels))
            .find_map(|s| match s.value {
                MetricValue::Gauge(g) => Some(g),
                _ => None,
            })
    }

    /// The histogram samples of `name` with exactly `labels`.
    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Option<Vec<f64>> {
        self.series
            .iter()
            .filter(|s| s.matches(name, labels))
            .find_map(|s| match &s.value {
                MetricValue::Histogram(h) => Some(h.clone()),
                _ => None,
            })
    }

    /// The label sets (each sorted by key) of every series named `name`, sorted.
    pub fn series(&self, name: &str) -> Vec<Vec<(String, String)>> {
        let mut out: Vec<Vec<(String, String)>> = self
            .series
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.labels.clone())
            .collect();
        out.sort();
        out
    }

    /// All metric names, sorted, without duplicates.
    pub fn names(&self) -> Vec<String> {
        self.series
            .iter()
            .map(|s| s.name.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// The description given for `name` by a `describe_*` call, if any was seen.
    pub fn description(&self, name: &str) -> Option<&str> {
        self.series
            .iter()
            .filter(|s| s.name == name)
            .find_map(|s| s.description.as_deref())
    }

    /// The unit given for `name` by a `describe_*` call, if any was seen.
    pub fn unit(&self, name: &str) -> Option<Unit> {
        self.series
            .iter()
            .filter(|s| s.name == name)
            .find_map(|s| s.unit)
    }
}

impl fmt::Display for MetricsSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.series {
            write!(f, "{}{{", s.name)?;
            for (i, (k, v)) in s.labels.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{k}={v:?}")?;
            }
            writeln!(f, "}} {:?}", s.value)?;
        }
        Ok(())
    }
}

/// A fresh debugging recorder with a unique, never reused address.
///
/// Handle caches (orderscope-metrics) tell recorders apart by address; a recorder that is
/// dropped and replaced by one at the same address would be mistaken for the old one. The
/// recorder is therefore leaked: a few hundred bytes per capture, acceptable in tests.
fn leaked_recorder() -> &'static DebuggingRecorder {
    Box::leak(Box::new(DebuggingRecorder::new()))
}

/// Runs `f` with a fresh debugging recorder installed for the current thread and returns
/// what it recorded.
///
/// Only metrics recorded on this thread, inside `f`, are seen. For async code on a
/// multi-thread runtime use [`LocalMetrics`] with a global install.
///
/// ```
/// use orderscope_testing::capture_metrics;
///
/// let ((), snapshot) = capture_metrics(|| {
///     metrics::counter!("jobs_total", "queue" => "orders", "result" => "ok").increment(2);
/// });
/// assert_eq!(snapshot.counter("jobs_total", &[("result", "ok"), ("queue", "orders")]), Some(2));
/// assert_eq!(snapshot.counter("jobs_total", &[("queue", "orders")]), None); // exact label set
/// ```
pub fn capture_metrics<R>(f: impl FnOnce() -> R) -> (R, MetricsSnapshot) {
    let local = LocalMetrics::new();
    let result = local.in_scope(f);
    (result, local.snapshot())
}

/// A debugging recorder plus its snapshotter, for tests that need more than one closure.
///
/// Use [`in_scope`](Self::in_scope) around synchronous code, or
/// [`install_global`](Self::install_global) in a test binary of its own (the global recorder
/// can be set once per process) for async code on several threads.
///
/// ```
/// use orderscope_testing::LocalMetrics;
///
/// let metrics = LocalMetrics::new();
/// metrics.in_scope(|| metrics::gauge!("queue_depth").set(3.0));
/// assert_eq!(metrics.snapshot().gauge("queue_depth", &[]), Some(3.0));
/// ```
pub struct LocalMetrics {
    recorder: &'static DebuggingRecorder,
    snapshotter: Snapshotter,
}

impl fmt::Debug for LocalMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalMetrics").finish_non_exhaustive()
    }
}

impl Default for LocalMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalMetrics {
    /// A fresh recorder (leaked, so its address is never reused; see [`capture_metrics`]).
    pub fn new() -> Self {
        let recorder = leaked_recorder();
        let snapshotter = recorder.snapshotter();
        LocalMetrics {
            recorder,
            snapshotter,
        }
    }

    /// The recorder.
    pub fn recorder(&self) -> &'static DebuggingRecorder {
        self.recorder
    }

    /// A snapshotter for the recorder.
    pub fn snapshotter(&self) -> Snapshotter {
        self.snapshotter.clone()
    }

    /// Runs `f` with this recorder as the current thread's recorder.
    pub fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        metrics::with_local_recorder(self.recorder, f)
    }

    /// Installs this recorder as the process-wide recorder.
    ///
    /// # Errors
    ///
    /// When a global recorder is already installed.
    pub fn install_global(
        &self,
    ) -> Result<(), metrics::SetRecorderError<&'static DebuggingRecorder>> {
        metrics::set_global_recorder(self.recorder)
    }

    /// Takes a snapshot (draining counters and histograms).
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot::from_snapshotter(&self.snapshotter)
    }
}
