//! `init` called outside any tokio runtime still exports over gRPC (orderscope runs the gRPC
//! channel on a private runtime thread), from a plain `fn main`-style program.

mod common;

use std::time::Duration;

use orderscope_testing::OtlpReceiver;

#[test]
fn grpc_export_works_without_a_tokio_runtime() {
    let receiver = OtlpReceiver::start_in_background().expect("receiver");
    assert!(
        tokio::runtime::Handle::try_current().is_err(),
        "no runtime here"
    );
    let logs = common::Capture::default();
    let telemetry = orderscope::builder("mes")
        .with_otlp_endpoint(receiver.grpc_endpoint())
        .with_otlp_protocol(orderscope::Protocol::Grpc)
        .with_resource_attribute("deployment.environment.name", "test")
        .with_resource_attribute("team", "orders")
        .with_env([
            // Code beats these.
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_RESOURCE_ATTRIBUTES", "team=from-env"),
        ])
        .with_log_writer(logs.clone())
        .build()
        .expect("init");

    common::emit_parent_child();
    telemetry.force_flush().expect("flush");
    let spans = receiver
        .wait_for_spans_blocking(2, Duration::from_secs(10))
        .expect("two spans");
    common::check_parent_child(&spans, &logs);
    telemetry.shutdown().expect("clean shutdown");
}
