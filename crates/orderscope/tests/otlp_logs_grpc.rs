//! Log records over gRPC (`OTEL_EXPORTER_OTLP_LOGS_PROTOCOL=grpc`) while spans go over
//! HTTP/protobuf, turned on in code: the logs variables apply to log records only, and the ids
//! match the span the collector got.

mod common;

use std::time::Duration;

use orderscope::{OrderContext, Protocol};
use orderscope_testing::OtlpReceiver;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_records_over_grpc_next_to_spans_over_http() {
    let receiver = OtlpReceiver::start().await.expect("receiver");
    let telemetry = orderscope::builder("mes")
        .with_env([
            // Code beats this.
            ("OTEL_LOGS_EXPORTER", "none".to_owned()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.http_endpoint()),
            ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", receiver.grpc_endpoint()),
            ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "grpc".to_owned()),
        ])
        .with_logs_export(true)
        .with_log_writer(std::io::sink)
        .build()
        .expect("init");
    let orderscope::LogExport::Otlp(logs) = &telemetry.config().logs else {
        panic!("expected OTLP log export: {:?}", telemetry.config().logs);
    };
    assert_eq!(logs.protocol, Protocol::Grpc);
    let orderscope::TraceExport::Otlp(traces) = &telemetry.config().traces else {
        panic!("expected OTLP span export: {:?}", telemetry.config().traces);
    };
    assert_eq!(traces.protocol, Protocol::HttpProtobuf);

    let order = OrderContext::new("ORD-2026-000777").expect("valid order id");
    order.in_scope(|| {
        let span = tracing::info_span!("schedule");
        let _entered = span.enter();
        tracing::error!(line = 4_u64, "machine down");
    });

    tokio::task::block_in_place(|| telemetry.force_flush()).expect("flush");
    let spans = receiver
        .wait_for_spans(1, Duration::from_secs(10))
        .await
        .expect("the span");
    let span = orderscope_testing::find_span(&spans, "schedule").expect("span received");
    receiver
        .wait_for_logs(1, Duration::from_secs(10))
        .await
        .expect("log records");
    let logs = receiver.logs();
    let record = logs
        .iter()
        .find(|log| log.body_str() == Some("machine down"))
        .unwrap_or_else(|| panic!("no record in {logs:#?}"));
    assert_eq!(record.transport, orderscope_testing::Transport::Grpc);
    assert_eq!(record.trace_id.as_deref(), Some(span.trace_id.as_str()));
    assert_eq!(record.span_id.as_deref(), Some(span.span_id.as_str()));
    assert_eq!(record.severity_text, "ERROR");
    assert_eq!(record.severity_number, 17);
    assert_eq!(record.attr_str("order.id"), Some("ORD-2026-000777"));
    assert!(receiver.grpc_requests() >= 1);
    assert!(receiver.http_requests() >= 1);

    tokio::task::block_in_place(|| telemetry.shutdown()).expect("clean shutdown");
}
