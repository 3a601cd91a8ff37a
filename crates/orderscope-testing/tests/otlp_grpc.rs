//! Spans, logs and metrics exported over OTLP/gRPC reach the receiver and decode correctly.

use std::time::Duration;

use opentelemetry::trace::{
    Link, Span as _, SpanKind as ApiSpanKind, Status as ApiStatus, TraceContextExt as _,
    Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{WithExportConfig as _, WithTonicConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use orderscope_testing::proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use orderscope_testing::proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use orderscope_testing::proto::tonic::common::v1::{AnyValue, KeyValue as PKeyValue, any_value};
use orderscope_testing::proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use orderscope_testing::proto::tonic::resource::v1::Resource as PResource;
use orderscope_testing::{
    AttrValue, MetricDataKind, OtlpReceiver, Signal, SpanKind, SpansExt as _, Status, Transport,
    assert_child_of,
};

const WAIT: Duration = Duration::from_secs(10);

fn grpc_provider(receiver: &OtlpReceiver) -> SdkTracerProvider {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(receiver.grpc_endpoint())
        .with_metadata({
            let mut metadata = tonic::metadata::MetadataMap::new();
            metadata.insert("x-tenant", "acme".parse().expect("ASCII"));
            metadata
        })
        .build()
        .expect("exporter");
    SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder_empty()
                .with_service_name("grpc-test")
                .with_attribute(KeyValue::new("deployment.environment.name", "test"))
                .build(),
        )
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_over_grpc_decode_with_all_fields() {
    let receiver = OtlpReceiver::start().await.expect("receiver");
    let provider = grpc_provider(&receiver);
    let tracer = provider.tracer("orderscope-test-scope");

    let linked = tracer.start("linked");
    let linked_cx = linked.span_context().clone();
    drop(linked);

    let parent = tracer
        .span_builder("GET /orders/{id}")
        .with_kind(ApiSpanKind::Server)
        .with_attributes([
            KeyValue::new("http.route", "/orders/{id}"),
            KeyValue::new("http.response.status_code", 500_i64),
            KeyValue::new("ratio", 0.5),
            KeyValue::new("retry", true),
            KeyValue::new(
                "tags",
                opentelemetry::Value::Array(opentelemetry::Array::String(vec![
                    "a".into(),
                    "b".into(),
                ])),
            ),
        ])
        .with_links(vec![Link::with_context(linked_cx.clone())])
        .start(&tracer);
    let parent_cx = Context::current_with_span(parent);
    {
        let child = tracer
            .span_builder("SELECT orders")
            .with_kind(ApiSpanKind::Client)
            .start_with_context(&tracer, &parent_cx);
        drop(child);
    }
    let span = parent_cx.span();
    span.add_event("retrying", vec![KeyValue::new("attempt", 2_i64)]);
    span.set_status(ApiStatus::error("boom"));
    span.end();

    provider.force_flush().expect("flush");
    let spans = receiver.wait_for_spans(3, WAIT).await.expect("3 spans");
    assert_eq!(spans.len(), 3, "{:?}", spans.names());

    let server = spans.find_span("GET /orders/{id}").expect("server span");
    let client = spans.find_span("SELECT orders").expect("client span");
    let linked = spans.find_span("linked").expect("linked span");
    assert_child_of(client, server);
    assert!(server.is_root());
    assert_eq!(server.kind, SpanKind::Server);
    assert_eq!(client.kind, SpanKind::Client);
    assert_eq!(linked.kind, SpanKind::Internal);
    assert_eq!(server.trace_id.len(), 32);
    assert_eq!(server.span_id.len(), 16);
    assert_ne!(
        server.trace_id, linked.trace_id,
        "the linked span is its own root"
    );
    assert_eq!(linked.trace_id, linked_cx.trace_id().to_string());
    assert_eq!(linked.span_id, linked_cx.span_id().to_string());
    assert_eq!(server.attr_str("http.route"), Some("/orders/{id}"));
    assert_eq!(server.attr_i64("http.response.status_code"), Some(500));
    assert_eq!(server.attr("ratio"), Some(&AttrValue::Double(0.5)));
    assert_eq!(server.attr("retry"), Some(&AttrValue::Bool(true)));
    assert_eq!(
        server.attr("tags"),
        Some(&AttrValue::Array(vec!["a".into(), "b".into()]))
    );
    assert_eq!(
        server.status,
        Status::Error {
            message: "boom".into()
        }
    );
    assert!(server.links_to(linked));
    let event = server.event("retrying").expect("event");
    assert_eq!(event.attributes.get("attempt"), Some(&AttrValue::Int(2)));
    assert!(server.start_unix_nano > 0 && server.end_unix_nano >= server.start_unix_nano);
    assert!(event.time_unix_nano >= server.start_unix_nano);
    assert_eq!(server.resource_str("service.name"), Some("grpc-test"));
    assert_eq!(
        server.resource_str("deployment.environment.name"),
        Some("test")
    );
    assert_eq!(server.scope_name, "orderscope-test-scope");
    assert_eq!(server.transport, Transport::Grpc);
    assert!(receiver.grpc_requests() >= 1);
    assert_eq!(receiver.http_requests(), 0);
    // The metadata of each request, as it came.
    let requests = receiver.export_requests();
    assert_eq!(requests.len(), receiver.grpc_requests());
    for request in &requests {
        assert_eq!(request.signal, Signal::Traces);
        assert_eq!(request.transport, Transport::Grpc);
        assert_eq!(request.header("x-tenant"), ["acme"], "{request:?}");
        assert!(!request.compressed);
    }

    let traces = receiver.traces();
    assert_eq!(traces.len(), 2, "linked alone; parent and child together");
    assert_eq!(traces[&server.trace_id].len(), 2);
    assert_eq!(traces[&linked.trace_id].len(), 1);

    provider.shutdown().expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_times_out_listing_what_arrived() {
    let receiver = OtlpReceiver::start().await.expect("receiver");
    let err = receiver
        .wait_for_spans(1, Duration::from_millis(50))
        .await
        .expect_err("nothing was sent");
    assert_eq!(err.expected, 1);
    assert!(err.received.is_empty());

    let provider = grpc_provider(&receiver);
    provider.tracer("t").in_span("only-one", |_| {});
    provider.force_flush().expect("flush");
    receiver.wait_for_spans(1, WAIT).await.expect("one span");
    let err = receiver
        .wait_for_spans(3, Duration::from_millis(50))
        .await
        .expect_err("only one span");
    assert_eq!(err.received.len(), 1);
    let message = err.to_string();
    assert!(message.contains("waiting for 3 spans"), "{message}");
    assert!(message.contains("only-one"), "{message}");
    provider.shutdown().expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiter_is_woken_by_a_later_export() {
    let receiver = OtlpReceiver::start().await.expect("receiver");
    let provider = grpc_provider(&receiver);
    let waiter = receiver.wait_for_spans(1, WAIT);
    let export = async {
        provider.tracer("t").in_span("late", |_| {});
        let p = provider.clone();
        tokio::task::spawn_blocking(move || p.force_flush())
            .await
            .expect("join")
            .expect("flush");
    };
    let (spans, ()) = tokio::join!(waiter, export);
    assert_eq!(spans.expect("woken").names(), ["late"]);
    provider.shutdown().expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_logs_over_grpc_are_stored() {
    let receiver = OtlpReceiver::start().await.expect("receiver");

    // Metrics: a hand-made export request through the generated client.
    let mut client = MetricsServiceClient::connect(receiver.grpc_endpoint())
        .await
        .expect("connect");
    let kv = |k: &str, v: &str| PKeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    };
    let request = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(PResource {
                attributes: vec![kv("service.name", "metrics-test")],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "queue_depth".into(),
                    unit: "{message}".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            value: Some(number_data_point::Value::AsInt(7)),
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    client.export(request).await.expect("export");
    let metrics = receiver.wait_for_metrics(1, WAIT).await.expect("metric");
    assert_eq!(metrics[0].name, "queue_depth");
    assert_eq!(metrics[0].unit, "{message}");
    assert_eq!(metrics[0].kind(), MetricDataKind::Gauge);
    assert_eq!(
        metrics[0].resource.get("service.name"),
        Some(&AttrValue::from("metrics-test"))
    );

    // Logs: through the SDK logger provider and the OTLP gRPC log exporter.
    use opentelemetry::logs::{
        AnyValue as LogValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity,
    };
    let exporter = opentelemetry_otlp::LogExporter::builder()
        .with_tonic()
        .with_endpoint(receiver.grpc_endpoint())
        .build()
        .expect("log exporter");
    let provider = opentelemetry_sdk::logs::SdkLoggerProvider::builder()
        .with_batch_exporter(exporter)
        .build();
    let logger = provider.logger("log-scope");
    let mut record = logger.create_log_record();
    record.set_body(LogValue::from("order accepted"));
    record.set_severity_number(Severity::Warn);
    record.set_severity_text("WARN");
    record.add_attribute("order.id", "ORD-1");
    let trace_id = opentelemetry::TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap();
    let span_id = opentelemetry::SpanId::from_hex("b7ad6b7169203331").unwrap();
    record.set_trace_context(trace_id, span_id, None);
    logger.emit(record);
    let p = provider.clone();
    tokio::task::spawn_blocking(move || p.force_flush())
        .await
        .expect("join")
        .expect("flush");
    let logs = receiver.wait_for_logs(1, WAIT).await.expect("log");
    let log = &logs[0];
    assert_eq!(log.body_str(), Some("order accepted"));
    assert_eq!(log.severity_number, 13);
    assert_eq!(log.severity_text, "WARN");
    assert_eq!(log.attr_str("order.id"), Some("ORD-1"));
    assert_eq!(
        log.trace_id.as_deref(),
        Some("0af7651916cd43dd8448eb211c80319c")
    );
    assert_eq!(log.span_id.as_deref(), Some("b7ad6b7169203331"));
    assert_eq!(log.scope_name, "log-scope");
    assert_eq!(log.transport, Transport::Grpc);
    let p = provider.clone();
    tokio::task::spawn_blocking(move || p.shutdown())
        .await
        .expect("join")
        .expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_receiver_answers_unavailable_over_grpc() {
    let receiver = OtlpReceiver::start().await.expect("receiver");
    receiver.set_failing(true);
    let mut client = MetricsServiceClient::connect(receiver.grpc_endpoint())
        .await
        .expect("connect");
    let status = client
        .export(ExportMetricsServiceRequest::default())
        .await
        .expect_err("refused");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(receiver.failed_requests(), 1);
    assert_eq!(receiver.requests(), 0);
}
