//! OTLP export over TLS, to the in-process receiver serving a CA and certificates generated in
//! the test: gRPC and HTTP/protobuf, a custom CA, mutual TLS, compression, and the certificate
//! files that cannot be used.
//!
//! Each pipeline is built with `build_parts` under a scoped subscriber: nothing global is
//! installed, so the cases run side by side in one process.

use std::time::Duration;

use orderscope::{Compression, InitError, Protocol, Telemetry, TelemetryBuilder, TlsMode};
use orderscope_testing::{OtlpReceiver, ReceiverTls, TestCertificates};
use tracing_subscriber::prelude::*;

const WAIT: Duration = Duration::from_secs(10);

/// Builds the pipeline, runs `emit` under its layer, shuts it down (which flushes).
fn export_with(builder: TelemetryBuilder, emit: impl FnOnce()) -> Result<(), String> {
    let parts = builder
        .with_env(Vec::<(String, String)>::new())
        .with_log_writer(std::io::sink)
        .with_prometheus_recorder(false)
        .with_shutdown_timeout(Duration::from_secs(3))
        .build_parts()
        .map_err(|e| e.to_string())?;
    let subscriber = tracing_subscriber::registry().with(parts.layer.with_filter(parts.filter));
    let telemetry: Telemetry = parts.telemetry;
    tracing::subscriber::with_default(subscriber, emit);
    telemetry.shutdown().map_err(|e| e.to_string())
}

fn one_span(name: &'static str) -> impl FnOnce() {
    move || {
        let span = tracing::info_span!("tls", otel.name = name);
        let _entered = span.enter();
        tracing::info!("inside");
    }
}

fn builder(endpoint: String, protocol: Protocol) -> TelemetryBuilder {
    orderscope::builder("tls-test")
        .with_otlp_endpoint(endpoint)
        .with_otlp_protocol(protocol)
}

fn endpoint(receiver: &OtlpReceiver, protocol: Protocol) -> String {
    match protocol {
        Protocol::Grpc => receiver.grpc_endpoint(),
        _ => receiver.http_endpoint(),
    }
}

#[test]
fn a_custom_ca_is_trusted_over_grpc_and_http() {
    let certs = TestCertificates::generate().expect("certificates");
    let receiver =
        OtlpReceiver::start_tls_in_background(ReceiverTls::server(&certs)).expect("receiver");
    assert!(receiver.grpc_endpoint().starts_with("https://"));
    for (protocol, name) in [
        (Protocol::Grpc, "over-grpc"),
        (Protocol::HttpProtobuf, "over-http"),
    ] {
        let builder =
            builder(endpoint(&receiver, protocol), protocol).with_otlp_certificate(certs.ca_path());
        assert_eq!(traces_tls_mode(&builder), TlsMode::CustomCa, "{protocol}");
        export_with(builder, one_span(name)).expect("shutdown");
    }
    receiver
        .wait_for_spans_blocking(2, WAIT)
        .expect("both spans");
    assert!(receiver.find("over-grpc").is_some());
    assert!(receiver.find("over-http").is_some());
    assert_eq!(receiver.grpc_requests(), 1);
    assert_eq!(receiver.http_requests(), 1);
}

#[test]
fn the_environment_names_the_ca_and_code_asks_for_gzip() {
    let certs = TestCertificates::generate().expect("certificates");
    let receiver =
        OtlpReceiver::start_tls_in_background(ReceiverTls::server(&certs)).expect("receiver");
    let ca = certs.ca_path().display().to_string();
    for (protocol, name) in [("grpc", "env-grpc"), ("http/protobuf", "env-http")] {
        let endpoint = if protocol == "grpc" {
            receiver.grpc_endpoint()
        } else {
            receiver.http_endpoint()
        };
        let parts = orderscope::builder("tls-test")
            .with_env([
                ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
                ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", ca.as_str()),
            ])
            .with_otlp_compression(Compression::Gzip)
            .with_log_writer(std::io::sink)
            .with_prometheus_recorder(false)
            .build_parts()
            .expect("parts");
        let orderscope::TraceExport::Otlp(otlp) = &parts.telemetry.config().traces else {
            panic!("expected OTLP export");
        };
        assert_eq!(otlp.compression, Some(Compression::Gzip));
        assert_eq!(otlp.tls_mode(), TlsMode::CustomCa);
        assert_eq!(
            otlp.tls.certificate.as_ref().map(|c| c.setting),
            Some("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE")
        );
        let subscriber = tracing_subscriber::registry().with(parts.layer.with_filter(parts.filter));
        tracing::subscriber::with_default(subscriber, one_span(name));
        parts.telemetry.shutdown().expect("shutdown");
    }
    receiver
        .wait_for_spans_blocking(2, WAIT)
        .expect("both spans");
    assert_eq!(receiver.compressed_requests(), 2, "both exports gzipped");
}

#[test]
fn mutual_tls_needs_the_client_certificate() {
    let certs = TestCertificates::generate().expect("certificates");
    let receiver =
        OtlpReceiver::start_tls_in_background(ReceiverTls::mutual(&certs)).expect("receiver");
    for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
        let with_client = builder(endpoint(&receiver, protocol), protocol)
            .with_otlp_certificate(certs.ca_path())
            .with_otlp_client_certificate(certs.client_cert_path())
            .with_otlp_client_key(certs.client_key_path());
        assert_eq!(traces_tls_mode(&with_client), TlsMode::MutualTls);
        export_with(with_client, one_span("mutual")).expect("shutdown");

        // The same without a client certificate: refused by the receiver, reported at shutdown.
        let without = builder(endpoint(&receiver, protocol), protocol)
            .with_otlp_certificate(certs.ca_path())
            .with_export_timeout(Duration::from_secs(2));
        assert!(export_with(without, one_span("anonymous")).is_err());
    }
    receiver
        .wait_for_spans_blocking(2, WAIT)
        .expect("mutual spans");
    assert!(
        receiver.spans().iter().all(|s| s.name == "mutual"),
        "{:?}",
        receiver.spans()
    );
}

#[test]
fn another_ca_is_not_trusted() {
    let certs = TestCertificates::generate().expect("certificates");
    let other = TestCertificates::generate().expect("other certificates");
    let receiver =
        OtlpReceiver::start_tls_in_background(ReceiverTls::server(&certs)).expect("receiver");
    for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
        let builder = builder(endpoint(&receiver, protocol), protocol)
            .with_otlp_certificate(other.ca_path())
            .with_export_timeout(Duration::from_secs(2));
        let started = std::time::Instant::now();
        let error = export_with(builder, one_span("untrusted")).expect_err("not delivered");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{protocol}: bounded"
        );
        assert!(
            error.contains("not delivered to https://127.0.0.1:"),
            "{protocol}: {error}"
        );
    }
    assert!(receiver.spans().is_empty());
}

#[test]
fn a_missing_certificate_file_names_the_setting_and_the_path() {
    let missing = std::env::temp_dir().join("orderscope-no-such-ca.pem");
    let error = orderscope::builder("tls-test")
        .with_otlp_endpoint("https://127.0.0.1:4318")
        .with_otlp_certificate(&missing)
        .with_env(Vec::<(String, String)>::new())
        .build_parts::<tracing_subscriber::Registry>()
        .expect_err("missing file");
    let InitError::Certificate { setting, path, .. } = &error else {
        panic!("expected a certificate error, got {error:?}");
    };
    assert_eq!(*setting, "with_otlp_certificate");
    assert_eq!(path, &missing);
    let message = error.to_string();
    assert!(message.contains("orderscope-no-such-ca.pem"), "{message}");

    // Named by a variable: the error names the variable.
    let missing_key = missing.with_file_name("orderscope-no-such-key.pem");
    let certs = TestCertificates::generate().expect("certificates");
    let error = orderscope::builder("tls-test")
        .with_env([
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://127.0.0.1:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            (
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                certs.client_cert_path().to_str().expect("path"),
            ),
            (
                "OTEL_EXPORTER_OTLP_CLIENT_KEY",
                missing_key.to_str().expect("path"),
            ),
        ])
        .build_parts::<tracing_subscriber::Registry>()
        .expect_err("missing key");
    let message = error.to_string();
    assert!(
        message.contains("OTEL_EXPORTER_OTLP_CLIENT_KEY")
            && message.contains("orderscope-no-such-key.pem"),
        "{message}"
    );

    // A file that is not PEM.
    let error = orderscope::builder("tls-test")
        .with_otlp_endpoint("https://127.0.0.1:4318")
        .with_otlp_certificate(certs.dir())
        .with_env(Vec::<(String, String)>::new())
        .build_parts::<tracing_subscriber::Registry>()
        .expect_err("a directory");
    assert!(matches!(error, InitError::Certificate { .. }), "{error:?}");
}

#[test]
fn https_at_a_plain_text_port_fails_within_the_bound() {
    let receiver = OtlpReceiver::start_in_background().expect("plain receiver");
    for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
        let plain = endpoint(&receiver, protocol);
        let https = plain.replacen("http://", "https://", 1);
        let builder = builder(https, protocol).with_export_timeout(Duration::from_secs(2));
        assert_eq!(traces_tls_mode(&builder), TlsMode::SystemRoots);
        let started = std::time::Instant::now();
        assert!(export_with(builder, one_span("https-at-plain")).is_err());
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{protocol}: bounded"
        );
    }
    assert!(receiver.spans().is_empty());
}

fn traces_tls_mode(builder: &TelemetryBuilder) -> TlsMode {
    match &builder.resolve().traces {
        orderscope::TraceExport::Otlp(otlp) => otlp.tls_mode(),
        other => panic!("expected OTLP export, got {other:?}"),
    }
}
