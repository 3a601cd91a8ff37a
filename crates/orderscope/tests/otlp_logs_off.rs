//! Without `OTEL_LOGS_EXPORTER`, log records are not exported (the default is `none`): spans
//! reach the collector, log lines are written, and no log record arrives.

mod common;

use std::time::Duration;

use orderscope_testing::OtlpReceiver;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_records_are_not_exported_by_default() {
    let receiver = OtlpReceiver::start().await.expect("receiver");
    let lines = common::Capture::default();
    let telemetry = orderscope::builder("mes")
        .with_env([
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.http_endpoint()),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment.name=test,team=orders".to_owned(),
            ),
        ])
        .with_log_writer(lines.clone())
        .build()
        .expect("init");
    assert_eq!(telemetry.config().logs, orderscope::LogExport::None);

    common::emit_parent_child();
    tokio::task::block_in_place(|| telemetry.force_flush()).expect("flush");
    receiver
        .wait_for_spans(2, Duration::from_secs(10))
        .await
        .expect("two spans");
    common::check_parent_child(&receiver.spans(), &lines);

    tokio::task::block_in_place(|| telemetry.shutdown()).expect("clean shutdown");
    assert!(
        receiver.logs().is_empty(),
        "no log record expected: {:?}",
        receiver.logs()
    );
    let startup = lines.find("orderscope initialised").expect("start-up line");
    assert_eq!(startup["logs_exporter"], "none");
}
