//! Spans made with `tracing` reach an OTLP collector over gRPC, with the resource from the
//! environment and parent/child intact; the log line in the child carries the same ids.

mod common;

use std::time::Duration;

use orderscope_testing::OtlpReceiver;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_and_log_ids_reach_the_collector_over_grpc() {
    let receiver = OtlpReceiver::start().await.expect("receiver");
    let logs = common::Capture::default();
    let telemetry = orderscope::builder("mes")
        .with_env([
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.grpc_endpoint()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment.name=test,team=orders".to_owned(),
            ),
        ])
        .with_otlp_header("authorization", "Bearer s3cr3t")
        .with_log_writer(logs.clone())
        .build()
        .expect("init");

    common::emit_parent_child();
    tokio::task::block_in_place(|| telemetry.force_flush()).expect("flush");

    let spans = receiver
        .wait_for_spans(2, Duration::from_secs(10))
        .await
        .expect("two spans");
    assert!(receiver.grpc_requests() >= 1);
    common::check_parent_child(&spans, &logs);

    // The start-up line shows the configuration with the header value masked.
    let startup = logs.find("orderscope initialised").expect("start-up line");
    assert_eq!(startup["protocol"], "grpc");
    assert_eq!(startup["endpoint"], receiver.grpc_endpoint());
    assert_eq!(startup["headers"], "authorization=***");
    assert!(!logs.text().contains("s3cr3t"));
    // The collector got the header with every export.
    for request in receiver.export_requests() {
        assert_eq!(
            request.header("authorization"),
            ["Bearer s3cr3t"],
            "{request:?}"
        );
    }

    tokio::task::block_in_place(|| telemetry.shutdown()).expect("clean shutdown");
}
