//! A collector whose certificate is not trusted: the service is unaffected, every failed export
//! is counted, one WARN line per burst says so, and shutdown keeps its bound.

use std::time::{Duration, Instant};

use orderscope_testing::{LogCapture, OtlpReceiver, ReceiverTls, TestCertificates};

/// `orderscope_export_failures_total{signal="traces"}` as rendered.
fn failures(render: &str) -> u64 {
    render
        .lines()
        .find(|l| l.starts_with("orderscope_export_failures_total{signal=\"traces\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn an_untrusted_collector_is_counted_and_warned_once_per_burst() {
    let certs = TestCertificates::generate().expect("certificates");
    let receiver =
        OtlpReceiver::start_tls_in_background(ReceiverTls::server(&certs)).expect("receiver");
    let logs = LogCapture::new();
    // No CA given: the platform's roots do not know the test CA.
    let telemetry = orderscope::builder("untrusted")
        .with_env(Vec::<(String, String)>::new())
        .with_otlp_endpoint(receiver.http_endpoint())
        .with_scheduled_delay(Duration::from_millis(20))
        .with_shutdown_timeout(Duration::from_secs(2))
        .with_log_writer(logs.clone())
        .build()
        .expect("init");
    let line = logs
        .json_lines()
        .expect("JSON")
        .into_iter()
        .find(|l| l["message"] == "orderscope initialised")
        .expect("start-up line");
    assert_eq!(line["tls"], "system roots");

    // Several batches, each failing; the service's own work is never held up.
    let deadline = Instant::now() + Duration::from_secs(20);
    while failures(&telemetry.render()) < 3 {
        assert!(Instant::now() < deadline, "{}", telemetry.render());
        let started = Instant::now();
        for _ in 0..10 {
            let span = tracing::info_span!("work");
            let _entered = span.enter();
        }
        assert!(started.elapsed() < Duration::from_millis(200));
        // Polls the counter; the exports run on their own thread meanwhile.
        std::thread::sleep(Duration::from_millis(10));
    }
    let warnings: Vec<String> = logs
        .json_lines()
        .expect("JSON")
        .into_iter()
        .filter(|l| l["level"] == "WARN" && l["signal"] == "traces")
        .map(|l| l["error"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(warnings.len(), 1, "one WARN for the burst: {warnings:?}");
    assert!(warnings[0].contains("certificate"), "{warnings:?}");
    assert!(receiver.spans().is_empty());

    let started = Instant::now();
    let _ = telemetry.shutdown();
    assert!(started.elapsed() < Duration::from_secs(3));
}
