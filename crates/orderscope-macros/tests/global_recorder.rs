//! Handles cached for the global recorder: calls before the recorder is installed go nowhere,
//! calls after it are counted, and a thread-local recorder still takes precedence. Installs a
//! global recorder, hence its own test binary.

mod common;

use common::{capture, fn_labels};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

#[orderscope::red(track_concurrency)]
fn reserve(fail: bool) -> Result<(), std::io::Error> {
    if fail {
        Err(std::io::Error::other("x"))
    } else {
        Ok(())
    }
}

#[test]
fn global_recorder_handles_are_cached_and_local_recorders_win() {
    // Before any recorder: recorded into the no-op recorder, nothing cached.
    reserve(false).unwrap();

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::set_global_recorder(recorder).unwrap();

    for _ in 0..3 {
        reserve(false).unwrap();
    }
    let _ = reserve(true);
    // From another thread, too (the cache is process-wide).
    std::thread::spawn(|| reserve(false).unwrap())
        .join()
        .unwrap();

    // A local recorder sees its own call, and the global one does not.
    let (_, local) = capture(|| reserve(false).unwrap());
    let module = module_path!();
    assert_eq!(
        local.counter(
            "function_calls_total",
            &fn_labels("reserve", module, &[("result", "ok")])
        ),
        Some(1)
    );

    let global: Vec<_> = snapshotter.snapshot().into_vec();
    let value = |name: &str, extra: &[(&str, &str)]| {
        let mut want: Vec<(String, String)> = fn_labels("reserve", module, extra)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        want.sort();
        global
            .iter()
            .find(|(key, ..)| {
                let mut labels: Vec<(String, String)> = key
                    .key()
                    .labels()
                    .map(|l| (l.key().to_owned(), l.value().to_owned()))
                    .collect();
                labels.sort();
                key.key().name() == name && labels == want
            })
            .map(|(_, _, _, v)| match v {
                DebugValue::Counter(c) => *c as f64,
                DebugValue::Gauge(g) => g.into_inner(),
                DebugValue::Histogram(h) => h.len() as f64,
            })
    };
    assert_eq!(
        value("function_calls_total", &[("result", "ok")]),
        Some(4.0)
    );
    assert_eq!(
        value(
            "function_calls_total",
            &[("result", "error"), ("error_type", "error")]
        ),
        Some(1.0)
    );
    assert_eq!(value("function_calls_duration_seconds", &[]), Some(5.0));
    assert_eq!(value("function_calls_concurrent", &[]), Some(0.0));
}
