//! With `OTEL_LOGS_EXPORTER=otlp`, events become OTLP log records (HTTP/protobuf, `/v1/logs`):
//! with the trace and span ids of the span they were logged in, the resource of the spans,
//! severity, body, event fields and the order fields in scope as attributes. The JSON log lines
//! are written as well, and failed log exports are counted.

mod common;

use std::time::Duration;

use orderscope::OrderContext;
use orderscope_testing::{AttrValue, OtlpReceiver, ReceivedLog};

fn find<'a>(logs: &'a [ReceivedLog], body: &str) -> &'a ReceivedLog {
    logs.iter()
        .find(|log| log.body_str() == Some(body))
        .unwrap_or_else(|| {
            let bodies: Vec<_> = logs.iter().map(ReceivedLog::summary).collect();
            panic!("no log record {body:?} in {bodies:#?}")
        })
}

fn resource_str<'a>(log: &'a ReceivedLog, key: &str) -> Option<&'a str> {
    log.resource.get(key).and_then(AttrValue::as_str)
}

fn export_failures(telemetry: &orderscope::Telemetry, signal: &str) -> Option<f64> {
    let text = telemetry.render();
    orderscope_testing::parse_prometheus(&text)
        .expect("valid exposition")
        .iter()
        .find(|s| s.name == orderscope::EXPORT_FAILURES_METRIC && s.label("signal") == Some(signal))
        .map(|s| s.value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_records_reach_the_collector_with_span_ids_resource_and_order_fields() {
    let receiver = OtlpReceiver::start().await.expect("receiver");
    let lines = common::Capture::default();
    let telemetry = orderscope::builder("mes")
        .with_env([
            ("OTEL_LOGS_EXPORTER", "otlp".to_owned()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.http_endpoint()),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment.name=test".to_owned(),
            ),
        ])
        .with_export_timeout(Duration::from_secs(1))
        .with_log_writer(lines.clone())
        .build()
        .expect("init");
    assert!(
        matches!(&telemetry.config().logs, orderscope::LogExport::Otlp(otlp)
            if otlp.endpoint == format!("{}/v1/logs", receiver.http_endpoint())),
        "{:?}",
        telemetry.config().logs
    );
    assert_eq!(export_failures(&telemetry, "logs"), Some(0.0));

    let order = OrderContext::new("ORD-2026-000123").expect("valid order id");
    order.in_scope(|| {
        let span = tracing::info_span!("reserve_stock");
        let _entered = span.enter();
        tracing::info!(sku = "A-1", quantity = 3_u64, "stock reserved");
    });
    tracing::warn!("outside any span");

    tokio::task::block_in_place(|| telemetry.force_flush()).expect("flush");
    let spans = receiver
        .wait_for_spans(1, Duration::from_secs(10))
        .await
        .expect("the span");
    let span = orderscope_testing::find_span(&spans, "reserve_stock").expect("span received");
    // The start-up line is a log record too.
    let logs = receiver
        .wait_for_logs(3, Duration::from_secs(10))
        .await
        .expect("the log records");

    let reserved = find(&logs, "stock reserved");
    assert_eq!(reserved.trace_id.as_deref(), Some(span.trace_id.as_str()));
    assert_eq!(reserved.span_id.as_deref(), Some(span.span_id.as_str()));
    assert_eq!(resource_str(reserved, "service.name"), Some("mes"));
    assert_eq!(
        resource_str(reserved, "deployment.environment.name"),
        Some("test")
    );
    assert_eq!(reserved.severity_number, 9, "{}", reserved.summary());
    assert_eq!(reserved.severity_text, "INFO");
    assert_eq!(reserved.attr_str("order.id"), Some("ORD-2026-000123"));
    assert_eq!(reserved.attr_str("sku"), Some("A-1"));
    assert_eq!(
        reserved.attributes.get("quantity"),
        Some(&AttrValue::Int(3))
    );

    let outside = find(&logs, "outside any span");
    assert_eq!(outside.trace_id, None, "{}", outside.summary());
    assert_eq!(outside.span_id, None);
    assert_eq!(outside.severity_number, 13);
    assert_eq!(outside.severity_text, "WARN");
    assert_eq!(outside.attr_str("order.id"), None);
    assert_eq!(resource_str(outside, "service.name"), Some("mes"));

    // The JSON lines are still written, with the same ids.
    let line = lines.find("stock reserved").expect("the log line");
    assert_eq!(line["trace_id"].as_str(), Some(span.trace_id.as_str()));
    assert_eq!(line["span_id"].as_str(), Some(span.span_id.as_str()));
    let startup = lines.find("orderscope initialised").expect("start-up line");
    assert_eq!(startup["logs_exporter"], "otlp");

    // A failed log export is counted.
    receiver.set_failing(true);
    tracing::info!("while the collector refuses");
    let flushed = tokio::task::block_in_place(|| telemetry.force_flush());
    assert!(flushed.is_err(), "the collector refused the export");
    assert!(
        export_failures(&telemetry, "logs").unwrap_or_default() >= 1.0,
        "{}",
        telemetry.render()
    );
    receiver.set_failing(false);

    tokio::task::block_in_place(|| telemetry.shutdown()).expect("clean shutdown");
}
