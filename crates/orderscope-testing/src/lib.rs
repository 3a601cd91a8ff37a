//! Test kit for orderscope: an in-process OTLP receiver, span capture, metric snapshots and a
//! Prometheus text parser.
//!
//! # Overview
//!
//! - [`OtlpReceiver`] listens on 127.0.0.1 (port chosen by the OS) for OTLP over gRPC and over
//!   HTTP/protobuf, decodes the real protobuf from `opentelemetry-proto` and stores spans
//!   ([`ReceivedSpan`]), log records ([`ReceivedLog`]) and metrics ([`ReceivedMetric`]).
//!   [`OtlpReceiver::wait_for_spans`] wakes on each export (no polling) and, on timeout, fails
//!   with a [`WaitError`] that lists what did arrive.
//! - [`SpanCapture`] is an SDK tracer provider with an in-memory exporter for scoped unit tests;
//!   its spans convert to the same [`ReceivedSpan`] type, so one set of assertions
//!   ([`assert_child_of`], [`SpansExt`]) serves both.
//! - [`capture_metrics`] and [`LocalMetrics`] wrap `metrics_util`'s debugging recorder and
//!   return a [`MetricsSnapshot`] with exact-label-set lookups.
//! - [`LogCapture`] is a `MakeWriter` that keeps formatted log lines in memory
//!   ([`LogCapture::json_lines`] for JSON output).
//! - [`parse_prometheus`] parses the text exposition format (what `/metrics` serves);
//!   [`promtool_check`] runs `promtool check metrics` when it is installed.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use opentelemetry::trace::{Tracer as _, TracerProvider as _};
//! use opentelemetry_otlp::WithExportConfig as _;
//! use orderscope_testing::{OtlpReceiver, assert_child_of};
//!
//! # #[tokio::main(flavor = "multi_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let receiver = OtlpReceiver::start().await?;
//! let exporter = opentelemetry_otlp::SpanExporter::builder()
//!     .with_tonic()
//!     .with_endpoint(receiver.grpc_endpoint())
//!     .build()?;
//! let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
//!     .with_batch_exporter(exporter)
//!     .build();
//! let tracer = provider.tracer("example");
//! tracer.in_span("parent", |_cx| {
//!     tracer.in_span("child", |_cx| {});
//! });
//! provider.force_flush()?;
//!
//! receiver.wait_for_spans(2, Duration::from_secs(5)).await?;
//! let parent = receiver.find("parent").unwrap();
//! let child = receiver.find("child").unwrap();
//! assert_child_of(&child, &parent);
//! # Ok(())
//! # }
//! ```
//!
//! # Feature flags
//!
//! None. The crate always builds the gRPC (tonic) and HTTP (axum) receivers; it is meant for
//! `[dev-dependencies]`.
//!
//! # Supported Rust versions
//!
//! The minimum supported Rust version is the workspace's `rust-version` (1.88). It may be raised
//! in a minor release.

#![deny(missing_docs)]

mod logs;
mod metrics;
mod model;
mod otlp;
mod prometheus;
mod spans;
mod tls;

pub use self::logs::{LogCapture, LogCaptureWriter};
pub use self::metrics::{
    LocalMetrics, MetricType, MetricValue, MetricsSnapshot, SeriesValue, capture_metrics,
};
pub use self::model::{
    AttrValue, MetricDataKind, ReceivedEvent, ReceivedLink, ReceivedLog, ReceivedMetric,
    ReceivedSpan, SpanKind, SpansExt, Status, Transport, assert_child_of, find_span,
    group_by_trace,
};
pub use self::otlp::{ExportRequest, OtlpReceiver, ReceiverTls, Signal, WaitError};
pub use self::prometheus::{
    Exposition, ParseError, ParsePromError, Sample, SamplesExt, parse_exposition, parse_prometheus,
    promtool_check,
};
pub use self::spans::{DroppingExporter, SpanCapture, SpanCaptureBuilder};
pub use self::tls::{CertificateError, TestCertificates, install_crypto_provider};
pub use orderscope_context::{OrderSpanProcessor, WithOrderFields, set_sdk_tracer_provider};

/// The protobuf types the receiver decodes, for tests that inspect raw metric data points.
pub use opentelemetry_proto as proto;
