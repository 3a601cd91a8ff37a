//! Spans and logs exported over OTLP/HTTP (protobuf) reach a receiver running on its own thread.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::{Tracer as _, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use orderscope_testing::{OtlpReceiver, Signal, SpansExt as _, Transport, assert_child_of};

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn spans_over_http_protobuf_with_background_receiver() {
    orderscope_testing::install_crypto_provider();
    let receiver = OtlpReceiver::start_in_background().expect("receiver");
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(receiver.http_traces_endpoint())
        .with_headers([("x-tenant".to_owned(), "acme".to_owned())].into())
        .build()
        .expect("exporter");
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter)
        .with_resource(
            Resource::builder_empty()
                .with_service_name("http-test")
                .build(),
        )
        .build();
    let tracer = provider.tracer("http-scope");
    tracer.in_span("outer", |_cx| {
        tracer.in_span("inner", |cx| {
            use opentelemetry::trace::TraceContextExt as _;
            cx.span().set_attribute(KeyValue::new("order.id", "ORD-7"));
        });
    });

    let spans = receiver
        .wait_for_spans_blocking(2, WAIT)
        .expect("two spans");
    let outer = spans.find_span("outer").expect("outer");
    let inner = spans.find_span("inner").expect("inner");
    assert_child_of(inner, outer);
    assert_eq!(inner.attr_str("order.id"), Some("ORD-7"));
    assert_eq!(outer.resource_str("service.name"), Some("http-test"));
    assert_eq!(outer.scope_name, "http-scope");
    assert!(spans.iter().all(|s| s.transport == Transport::Http));
    assert_eq!(receiver.grpc_requests(), 0);
    assert_eq!(
        receiver.http_requests(),
        2,
        "simple processor: one request per span"
    );
    assert_eq!(receiver.requests(), 2);
    // Each request as it came, with its headers.
    let requests = receiver.export_requests();
    assert_eq!(requests.len(), 2);
    for request in &requests {
        assert_eq!(request.signal, Signal::Traces);
        assert_eq!(request.transport, Transport::Http);
        assert_eq!(request.header("X-Tenant"), ["acme"], "{request:?}");
        assert_eq!(
            request.header("content-type"),
            ["application/x-protobuf"],
            "{request:?}"
        );
        assert!(!request.compressed);
    }
    provider.shutdown().expect("shutdown");
}

#[test]
fn logs_over_http_protobuf() {
    orderscope_testing::install_crypto_provider();
    use opentelemetry::logs::{
        AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity,
    };
    let receiver = OtlpReceiver::start_in_background().expect("receiver");
    let exporter = opentelemetry_otlp::LogExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(receiver.http_logs_endpoint())
        .build()
        .expect("exporter");
    let provider = opentelemetry_sdk::logs::SdkLoggerProvider::builder()
        .with_simple_exporter(exporter)
        .build();
    let logger = provider.logger("logs");
    let mut record = logger.create_log_record();
    record.set_body(AnyValue::from("hello"));
    record.set_severity_number(Severity::Info);
    logger.emit(record);
    let logs = receiver.wait_for_logs_blocking(1, WAIT).expect("one log");
    assert_eq!(logs[0].body_str(), Some("hello"));
    assert_eq!(logs[0].severity_number, 9);
    assert_eq!(logs[0].trace_id, None);
    assert_eq!(logs[0].transport, Transport::Http);
    provider.shutdown().expect("shutdown");
}

/// Sends a raw HTTP/1.1 request and returns the status code.
fn raw_post(addr: SocketAddr, path: &str, content_type: &str, body: &[u8]) -> u16 {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("write head");
    stream.write_all(body).expect("write body");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"))
}

#[test]
fn bad_http_input_is_rejected_not_fatal() {
    orderscope_testing::install_crypto_provider();
    let receiver = OtlpReceiver::start_in_background().expect("receiver");
    let addr = receiver.http_addr();
    assert_eq!(raw_post(addr, "/v1/traces", "application/json", b"{}"), 415);
    assert_eq!(
        raw_post(
            addr,
            "/v1/traces",
            "application/x-protobuf",
            &[0xff, 0xff, 0xff]
        ),
        400
    );
    assert_eq!(
        raw_post(addr, "/v1/logs", "application/x-protobuf", b""),
        200
    );
    assert_eq!(receiver.rejected_requests(), 2);
    assert_eq!(receiver.requests(), 1);
    assert!(receiver.spans().is_empty());

    // Still serving after the bad input.
    assert_eq!(
        raw_post(addr, "/v1/metrics", "application/x-protobuf", b""),
        200
    );
}

#[test]
fn drop_stops_the_background_servers() {
    orderscope_testing::install_crypto_provider();
    let receiver = OtlpReceiver::start_in_background().expect("receiver");
    let (grpc, http) = (receiver.grpc_addr(), receiver.http_addr());
    assert!(TcpStream::connect(http).is_ok());
    drop(receiver);
    assert!(TcpStream::connect(http).is_err(), "HTTP port still open");
    assert!(TcpStream::connect(grpc).is_err(), "gRPC port still open");
}

#[test]
fn clear_forgets_everything() {
    orderscope_testing::install_crypto_provider();
    let receiver = OtlpReceiver::start_in_background().expect("receiver");
    assert_eq!(
        raw_post(
            receiver.http_addr(),
            "/v1/traces",
            "application/x-protobuf",
            b""
        ),
        200
    );
    assert_eq!(receiver.requests(), 1);
    assert_eq!(receiver.export_requests().len(), 1);
    receiver.clear();
    assert_eq!(receiver.requests(), 0);
    assert!(receiver.export_requests().is_empty());
    assert!(receiver.spans().is_empty());
}

#[test]
fn failing_receiver_refuses_exports() {
    orderscope_testing::install_crypto_provider();
    let receiver = OtlpReceiver::start_in_background().expect("receiver");
    receiver.set_failing(true);
    assert_eq!(
        raw_post(
            receiver.http_addr(),
            "/v1/traces",
            "application/x-protobuf",
            b""
        ),
        503
    );
    assert_eq!(receiver.failed_requests(), 1);
    assert_eq!(receiver.requests(), 0);
    receiver.set_failing(false);
    assert_eq!(
        raw_post(
            receiver.http_addr(),
            "/v1/traces",
            "application/x-protobuf",
            b""
        ),
        200
    );
}
