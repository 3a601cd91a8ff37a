//! What both sampler tests share: one sample under a local recorder, read back by name.

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use orderscope_runtime::Sample;

/// Runs `sampler` once under a local recorder; the value of each series by name.
pub(crate) fn sample(sampler: &mut dyn Sample) -> Vec<(String, f64)> {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || sampler.sample());
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let v = match value {
                DebugValue::Counter(c) => c as f64,
                DebugValue::Gauge(g) => g.into_inner(),
                DebugValue::Histogram(_) => f64::NAN,
            };
            (key.key().name().to_owned(), v)
        })
        .collect()
}

pub(crate) fn get(values: &[(String, f64)], name: &str) -> f64 {
    values
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{name} not recorded: {values:?}"))
        .1
}
