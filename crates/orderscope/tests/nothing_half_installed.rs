//! When a step of `init` fails, no global is left set and the error names the step; `init` can
//! then be tried again.

use opentelemetry::trace::{Span as _, Tracer as _};
use orderscope::InitError;

#[test]
fn a_taken_recorder_leaves_nothing_installed() {
    metrics::set_global_recorder(metrics_util::debugging::DebuggingRecorder::new())
        .expect("another library's recorder");

    let error = orderscope::builder("mes")
        .with_env(Vec::<(String, String)>::new())
        .with_log_writer(std::io::sink)
        .build()
        .expect_err("the recorder is taken");
    assert!(matches!(error, InitError::RecorderAlreadySet), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("installing the Prometheus recorder"),
        "{error}"
    );

    // No subscriber, no tracer provider, no propagator, no panic hook.
    assert!(!global_subscriber());
    let span = opentelemetry::global::tracer("probe").start("probe");
    assert!(!span.span_context().is_valid());
    let fields =
        opentelemetry::global::get_text_map_propagator(|p| p.fields().map(str::to_owned).count());
    assert_eq!(fields, 0, "the no-op propagator is still installed");

    // Tried again, keeping the other recorder: installed.
    let telemetry = orderscope::builder("mes")
        .with_env(Vec::<(String, String)>::new())
        .with_log_writer(std::io::sink)
        .with_prometheus_recorder(false)
        .build()
        .expect("second attempt");
    assert!(global_subscriber());
    let span = opentelemetry::global::tracer("probe").start("probe");
    assert!(span.span_context().is_valid());
    telemetry.shutdown().expect("shutdown");
}

#[test]
fn a_bad_certificate_is_reported_before_anything_is_installed() {
    // Runs in the same process as the test above, which installs a subscriber; only the error
    // matters here, and that it came from the certificate step.
    let error = orderscope::builder("mes")
        .with_env(Vec::<(String, String)>::new())
        .with_otlp_endpoint("https://127.0.0.1:1")
        .with_otlp_certificate("/nonexistent/orderscope-ca.pem")
        .build_parts::<tracing_subscriber::Registry>()
        .expect_err("missing CA file");
    let message = error.to_string();
    assert!(
        message.contains("with_otlp_certificate=/nonexistent/orderscope-ca.pem"),
        "{message}"
    );
}

/// Whether a global subscriber is installed: asked on a fresh thread, where no scoped default
/// hides it.
fn global_subscriber() -> bool {
    std::thread::spawn(|| {
        tracing::dispatcher::get_default(|d| !d.is::<tracing::subscriber::NoSubscriber>())
    })
    .join()
    .expect("probe")
}
