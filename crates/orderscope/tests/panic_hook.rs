//! A panic is logged as an ERROR line with the trace ids of the span it happened in, and the
//! previous panic hook still runs.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::TraceContextExt as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

#[test]
fn a_panic_is_logged_with_trace_ids_then_the_previous_hook_runs() {
    let previous_ran = Arc::new(AtomicBool::new(false));
    let flag = previous_ran.clone();
    std::panic::set_hook(Box::new(move |_| flag.store(true, Ordering::SeqCst)));

    let logs = common::Capture::default();
    let telemetry = orderscope::builder("mes")
        .with_env(Vec::<(String, String)>::new())
        .with_log_writer(logs.clone())
        .build()
        .expect("init");

    let span = tracing::info_span!("settle");
    let ids = span.context().span().span_context().clone();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _entered = span.enter();
        panic!("boom \"quoted\"");
    }));
    assert!(result.is_err());
    assert!(previous_ran.load(Ordering::SeqCst), "the previous hook ran");

    let line = logs
        .json()
        .into_iter()
        .find(|v| v["level"] == "ERROR")
        .expect("an ERROR line");
    assert_eq!(line["message"], "panicked: boom \"quoted\"");
    assert_eq!(line["target"], "panic");
    assert_eq!(line["file"], file!());
    assert_eq!(
        line["trace_id"].as_str(),
        Some(ids.trace_id().to_string().as_str())
    );
    assert_eq!(
        line["span_id"].as_str(),
        Some(ids.span_id().to_string().as_str())
    );

    drop(telemetry);
}
