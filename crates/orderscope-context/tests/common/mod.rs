//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use orderscope_context::PROPAGATION_DROPPED_METRIC;

/// Runs `f` under a local debugging recorder and returns the dropped counts by reason.
pub fn dropped<R>(f: impl FnOnce() -> R) -> (R, BTreeMap<String, u64>) {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let out = metrics::with_local_recorder(&recorder, f);
    let mut counts = BTreeMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        assert_eq!(key.name(), PROPAGATION_DROPPED_METRIC);
        let labels: Vec<_> = key.labels().collect();
        assert_eq!(labels.len(), 1);
        assert_eq!(labels[0].key(), "reason");
        if let DebugValue::Counter(n) = value
            && n > 0
        {
            counts.insert(labels[0].value().to_owned(), n);
        }
    }
    (out, counts)
}

/// `[(reason, n)]` as the map [`dropped`] returns.
pub fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}
