//! Decoded telemetry: the types the receiver and the span capture hand to tests.

use std::collections::BTreeMap;
use std::fmt;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{Span, span, status};

/// An attribute value as it came over the wire.
///
/// OTLP's `AnyValue`, flattened into an enum that is easy to compare in assertions.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    /// A string.
    Str(String),
    /// A signed 64-bit integer.
    Int(i64),
    /// A double.
    Double(f64),
    /// A boolean.
    Bool(bool),
    /// A homogeneous or heterogeneous array.
    Array(Vec<AttrValue>),
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// A nested key/value list.
    Map(BTreeMap<String, AttrValue>),
    /// An `AnyValue` without a value.
    Empty,
}

impl AttrValue {
    /// The string, if this is [`AttrValue::Str`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            AttrValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is [`AttrValue::Int`].
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            AttrValue::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The number, if this is [`AttrValue::Double`] or [`AttrValue::Int`].
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            AttrValue::Double(d) => Some(*d),
            AttrValue::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    /// The boolean, if this is [`AttrValue::Bool`].
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            AttrValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The elements, if this is [`AttrValue::Array`].
    pub fn as_array(&self) -> Option<&[AttrValue]> {
        match self {
            AttrValue::Array(a) => Some(a),
            _ => None,
        }
    }
}

impl fmt::Display for AttrValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttrValue::Str(s) => f.write_str(s),
            AttrValue::Int(i) => write!(f, "{i}"),
            AttrValue::Double(d) => write!(f, "{d}"),
            AttrValue::Bool(b) => write!(f, "{b}"),
            AttrValue::Array(a) => {
                f.write_str("[")?;
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            AttrValue::Bytes(b) => f.write_str(&hex(b)),
            AttrValue::Map(m) => {
                f.write_str("{")?;
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}: {v}")?;
                }
                f.write_str("}")
            }
            AttrValue::Empty => f.write_str("<empty>"),
        }
    }
}

impl From<&str> for AttrValue {
    fn from(v: &str) -> Self {
        AttrValue::Str(v.to_owned())
    }
}

impl From<String> for AttrValue {
    fn from(v: String) -> Self {
        AttrValue::Str(v)
    }
}

impl From<i64> for AttrValue {
    fn from(v: i64) -> Self {
        AttrValue::Int(v)
    }
}

impl From<f64> for AttrValue {
    fn from(v: f64) -> Self {
        AttrValue::Double(v)
    }
}

impl From<bool> for AttrValue {
    fn from(v: bool) -> Self {
        AttrValue::Bool(v)
    }
}

impl From<&AnyValue> for AttrValue {
    fn from(v: &AnyValue) -> Self {
        match &v.value {
            None => AttrValue::Empty,
            Some(any_value::Value::StringValue(s)) => AttrValue::Str(s.clone()),
            Some(any_value::Value::BoolValue(b)) => AttrValue::Bool(*b),
            Some(any_value::Value::IntValue(i)) => AttrValue::Int(*i),
            Some(any_value::Value::DoubleValue(d)) => AttrValue::Double(*d),
            Some(any_value::Value::ArrayValue(a)) => {
                AttrValue::Array(a.values.iter().map(AttrValue::from).collect())
            }
            Some(any_value::Value::KvlistValue(kv)) => AttrValue::Map(attributes(&kv.values)),
            Some(any_value::Value::BytesValue(b)) => AttrValue::Bytes(b.clone()),
            Some(any_value::Value::StringValueStrindex(i)) => AttrValue::Int(i64::from(*i)),
        }
    }
}

/// Converts OTLP key/values into a sorted map; a repeated key keeps its last value.
pub(crate) fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, AttrValue> {
    kvs.iter()
        .map(|kv| {
            let value = kv.value.as_ref().map_or(AttrValue::Empty, AttrValue::from);
            (kv.key.clone(), value)
        })
        .collect()
}

pub(crate) fn resource_attributes(resource: Option<&Resource>) -> BTreeMap<String, AttrValue> {
    resource
        .map(|r| attributes(&r.attributes))
        .unwrap_or_default()
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}

/// `None` for an absent or all-zero id, the hex otherwise.
fn optional_id(bytes: &[u8]) -> Option<String> {
    if bytes.iter().all(|b| *b == 0) {
        None
    } else {
        Some(hex(bytes))
    }
}

/// The kind of a span, as OTLP encodes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpanKind {
    /// `SPAN_KIND_UNSPECIFIED` (or a value this crate does not know).
    Unspecified,
    /// `SPAN_KIND_INTERNAL`.
    Internal,
    /// `SPAN_KIND_SERVER`.
    Server,
    /// `SPAN_KIND_CLIENT`.
    Client,
    /// `SPAN_KIND_PRODUCER`.
    Producer,
    /// `SPAN_KIND_CONSUMER`.
    Consumer,
}

impl From<i32> for SpanKind {
    fn from(v: i32) -> Self {
        match span::SpanKind::try_from(v) {
            Ok(span::SpanKind::Internal) => SpanKind::Internal,
            Ok(span::SpanKind::Server) => SpanKind::Server,
            Ok(span::SpanKind::Client) => SpanKind::Client,
            Ok(span::SpanKind::Producer) => SpanKind::Producer,
            Ok(span::SpanKind::Consumer) => SpanKind::Consumer,
            Ok(span::SpanKind::Unspecified) | Err(_) => SpanKind::Unspecified,
        }
    }
}

/// The status of a span.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// `STATUS_CODE_UNSET` (also used when the span carries no status).
    Unset,
    /// `STATUS_CODE_OK`.
    Ok,
    /// `STATUS_CODE_ERROR` with its description (may be empty).
    Error {
        /// The status description.
        message: String,
    },
}

impl Status {
    /// Whether this is [`Status::Error`].
    pub fn is_error(&self) -> bool {
        matches!(self, Status::Error { .. })
    }
}

/// How a signal reached the receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP with protobuf bodies.
    Http,
    /// Not over the wire: captured in process ([`SpanCapture`](crate::SpanCapture)).
    InProcess,
}

/// A link from a span to another span context.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedLink {
    /// Linked trace id, 32 lower-case hex digits.
    pub trace_id: String,
    /// Linked span id, 16 lower-case hex digits.
    pub span_id: String,
    /// Link attributes.
    pub attributes: BTreeMap<String, AttrValue>,
}

/// A span event.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedEvent {
    /// Event name.
    pub name: String,
    /// Event time, nanoseconds since the Unix epoch.
    pub time_unix_nano: u64,
    /// Event attributes.
    pub attributes: BTreeMap<String, AttrValue>,
}

impl ReceivedEvent {
    /// The string value of attribute `key`, if present and a string.
    pub fn attr_str(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).and_then(AttrValue::as_str)
    }
}

/// One decoded span.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedSpan {
    /// Span name.
    pub name: String,
    /// Span kind.
    pub kind: SpanKind,
    /// Trace id, 32 lower-case hex digits.
    pub trace_id: String,
    /// Span id, 16 lower-case hex digits.
    pub span_id: String,
    /// Parent span id (16 hex digits), `None` for a root span.
    pub parent_span_id: Option<String>,
    /// W3C `tracestate` of the span, empty when none.
    pub trace_state: String,
    /// Span attributes.
    pub attributes: BTreeMap<String, AttrValue>,
    /// Attributes of the resource that reported the span.
    pub resource: BTreeMap<String, AttrValue>,
    /// Name of the instrumentation scope.
    pub scope_name: String,
    /// Version of the instrumentation scope, empty when none.
    pub scope_version: String,
    /// Links to other spans.
    pub links: Vec<ReceivedLink>,
    /// Span events.
    pub events: Vec<ReceivedEvent>,
    /// Span status.
    pub status: Status,
    /// Start, nanoseconds since the Unix epoch.
    pub start_unix_nano: u64,
    /// End, nanoseconds since the Unix epoch.
    pub end_unix_nano: u64,
    /// How the span arrived.
    pub transport: Transport,
}

impl ReceivedSpan {
    pub(crate) fn from_proto(
        span: &Span,
        resource: &BTreeMap<String, AttrValue>,
        scope_name: &str,
        scope_version: &str,
        transport: Transport,
    ) -> Self {
        let status = match span.status.as_ref() {
            None => Status::Unset,
            Some(s) => match status::StatusCode::try_from(s.code) {
                Ok(status::StatusCode::Ok) => Status::Ok,
                Ok(status::StatusCode::Error) => Status::Error {
                    message: s.message.clone(),
                },
                Ok(status::StatusCode::Unset) | Err(_) => Status::Unset,
            },
        };
        ReceivedSpan {
            name: span.name.clone(),
            kind: SpanKind::from(span.kind),
            trace_id: hex(&span.trace_id),
            span_id: hex(&span.span_id),
            parent_span_id: optional_id(&span.parent_span_id),
            trace_state: span.trace_state.clone(),
            attributes: attributes(&span.attributes),
            resource: resource.clone(),
            scope_name: scope_name.to_owned(),
            scope_version: scope_version.to_owned(),
            links: span
                .links
                .iter()
                .map(|l| ReceivedLink {
                    trace_id: hex(&l.trace_id),
                    span_id: hex(&l.span_id),
                    attributes: attributes(&l.attributes),
                })
                .collect(),
            events: span
                .events
                .iter()
                .map(|e| ReceivedEvent {
                    name: e.name.clone(),
                    time_unix_nano: e.time_unix_nano,
                    attributes: attributes(&e.attributes),
                })
                .collect(),
            status,
            start_unix_nano: span.start_time_unix_nano,
            end_unix_nano: span.end_time_unix_nano,
            transport,
        }
    }

    /// The attribute `key`, if present.
    pub fn attr(&self, key: &str) -> Option<&AttrValue> {
        self.attributes.get(key)
    }

    /// The string value of attribute `key`, if present and a string.
    pub fn attr_str(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).and_then(AttrValue::as_str)
    }

    /// The integer value of attribute `key`, if present and an integer.
    pub fn attr_i64(&self, key: &str) -> Option<i64> {
        self.attributes.get(key).and_then(AttrValue::as_i64)
    }

    /// The string value of resource attribute `key` (e.g. `service.name`).
    pub fn resource_str(&self, key: &str) -> Option<&str> {
        self.resource.get(key).and_then(AttrValue::as_str)
    }

    /// The first event named `name`.
    pub fn event(&self, name: &str) -> Option<&ReceivedEvent> {
        self.events.iter().find(|e| e.name == name)
    }

    /// Whether the span has no parent.
    pub fn is_root(&self) -> bool {
        self.parent_span_id.is_none()
    }

    /// Whether `self` is a direct child of `parent` (same trace, parent id matches).
    pub fn is_child_of(&self, parent: &ReceivedSpan) -> bool {
        self.trace_id == parent.trace_id
            && self.parent_span_id.as_deref() == Some(parent.span_id.as_str())
    }

    /// Whether `self` links to `other`'s span context.
    pub fn links_to(&self, other: &ReceivedSpan) -> bool {
        self.links
            .iter()
            .any(|l| l.trace_id == other.trace_id && l.span_id == other.span_id)
    }

    /// End minus start, in nanoseconds (0 if the clock went backwards).
    pub fn duration_nanos(&self) -> u64 {
        self.end_unix_nano.saturating_sub(self.start_unix_nano)
    }

    /// A one-line summary, used in failure messages.
    pub fn summary(&self) -> String {
        format!(
            "{:?} {:?} trace={} span={} parent={} status={:?}",
            self.name,
            self.kind,
            self.trace_id,
            self.span_id,
            self.parent_span_id.as_deref().unwrap_or("-"),
            self.status,
        )
    }
}

/// Panics with a readable message unless `child` is a direct child of `parent`.
///
/// # Panics
///
/// When the trace ids differ or `child`'s parent span id is not `parent`'s span id.
#[track_caller]
pub fn assert_child_of(child: &ReceivedSpan, parent: &ReceivedSpan) {
    assert!(
        child.is_child_of(parent),
        "expected span {} to be a child of {}\n  child:  {}\n  parent: {}",
        child.name,
        parent.name,
        child.summary(),
        parent.summary(),
    );
}

/// The first span named `name`.
pub fn find_span<'a>(spans: &'a [ReceivedSpan], name: &str) -> Option<&'a ReceivedSpan> {
    spans.iter().find(|s| s.name == name)
}

/// Spans grouped by trace id (each group in arrival order).
pub fn group_by_trace(spans: &[ReceivedSpan]) -> BTreeMap<String, Vec<ReceivedSpan>> {
    let mut out: BTreeMap<String, Vec<ReceivedSpan>> = BTreeMap::new();
    for s in spans {
        out.entry(s.trace_id.clone()).or_default().push(s.clone());
    }
    out
}

/// Query helpers on a list of spans.
///
/// ```
/// use orderscope_testing::{ReceivedSpan, SpansExt};
///
/// fn check(spans: &[ReceivedSpan]) {
///     let server = spans.find_span("GET /orders/{id}").expect("server span");
///     for child in spans.children_of(server) {
///         assert_eq!(child.trace_id, server.trace_id);
///     }
/// }
/// ```
pub trait SpansExt {
    /// The first span named `name`.
    fn find_span(&self, name: &str) -> Option<&ReceivedSpan>;
    /// All spans named `name`.
    fn find_all(&self, name: &str) -> Vec<&ReceivedSpan>;
    /// The direct children of `parent`.
    fn children_of(&self, parent: &ReceivedSpan) -> Vec<&ReceivedSpan>;
    /// The spans grouped by trace id.
    fn traces(&self) -> BTreeMap<String, Vec<ReceivedSpan>>;
    /// The span names, in order.
    fn names(&self) -> Vec<&str>;
}

impl SpansExt for [ReceivedSpan] {
    fn find_span(&self, name: &str) -> Option<&ReceivedSpan> {
        find_span(self, name)
    }

    fn find_all(&self, name: &str) -> Vec<&ReceivedSpan> {
        self.iter().filter(|s| s.name == name).collect()
    }

    fn children_of(&self, parent: &ReceivedSpan) -> Vec<&ReceivedSpan> {
        self.iter().filter(|s| s.is_child_of(parent)).collect()
    }

    fn traces(&self) -> BTreeMap<String, Vec<ReceivedSpan>> {
        group_by_trace(self)
    }

    fn names(&self) -> Vec<&str> {
        self.iter().map(|s| s.name.as_str()).collect()
    }
}

/// One decoded log record.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedLog {
    /// The body, if any.
    pub body: Option<AttrValue>,
    /// OTLP severity number (`9` = INFO, `13` = WARN, `17` = ERROR, ...); 0 when unspecified.
    pub severity_number: i32,
    /// Severity text as sent (e.g. `INFO`), empty when none.
    pub severity_text: String,
    /// Log record attributes.
    pub attributes: BTreeMap<String, AttrValue>,
    /// Attributes of the resource that reported the record.
    pub resource: BTreeMap<String, AttrValue>,
    /// Name of the instrumentation scope.
    pub scope_name: String,
    /// Event name, empty when none.
    pub event_name: String,
    /// Trace id (32 hex digits) when the record was emitted inside a span.
    pub trace_id: Option<String>,
    /// Span id (16 hex digits) when the record was emitted inside a span.
    pub span_id: Option<String>,
    /// Event time, nanoseconds since the Unix epoch (0 when unknown).
    pub time_unix_nano: u64,
    /// Observed time, nanoseconds since the Unix epoch.
    pub observed_time_unix_nano: u64,
    /// How the record arrived.
    pub transport: Transport,
}

impl ReceivedLog {
    pub(crate) fn from_proto(
        rec: &LogRecord,
        resource: &BTreeMap<String, AttrValue>,
        scope_name: &str,
        transport: Transport,
    ) -> Self {
        ReceivedLog {
            body: rec.body.as_ref().map(AttrValue::from),
            severity_number: rec.severity_number,
            severity_text: rec.severity_text.clone(),
            attributes: attributes(&rec.attributes),
            resource: resource.clone(),
            scope_name: scope_name.to_owned(),
            event_name: rec.event_name.clone(),
            trace_id: optional_id(&rec.trace_id),
            span_id: optional_id(&rec.span_id),
            time_unix_nano: rec.time_unix_nano,
            observed_time_unix_nano: rec.observed_time_unix_nano,
            transport,
        }
    }

    /// The body as a string, if it is one.
    pub fn body_str(&self) -> Option<&str> {
        self.body.as_ref().and_then(AttrValue::as_str)
    }

    /// The string value of attribute `key`, if present and a string.
    pub fn attr_str(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).and_then(AttrValue::as_str)
    }

    /// A one-line summary, used in failure messages.
    pub fn summary(&self) -> String {
        format!(
            "{} {:?} trace={} span={}",
            self.severity_text,
            self.body
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            self.trace_id.as_deref().unwrap_or("-"),
            self.span_id.as_deref().unwrap_or("-"),
        )
    }
}

/// The shape of a received metric's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricDataKind {
    /// A gauge.
    Gauge,
    /// A sum (counter or up-down counter).
    Sum,
    /// An explicit-bucket histogram.
    Histogram,
    /// An exponential histogram.
    ExponentialHistogram,
    /// A summary.
    Summary,
    /// No data.
    Empty,
}

/// One decoded metric (all its data points).
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedMetric {
    /// Instrument name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Unit (UCUM), empty when none.
    pub unit: String,
    /// Attributes of the resource that reported the metric.
    pub resource: BTreeMap<String, AttrValue>,
    /// Name of the instrumentation scope.
    pub scope_name: String,
    /// The data, as decoded from the wire; inspect data points through it.
    pub data: Option<metric::Data>,
    /// How the metric arrived.
    pub transport: Transport,
}

impl ReceivedMetric {
    pub(crate) fn from_proto(
        m: &Metric,
        resource: &BTreeMap<String, AttrValue>,
        scope_name: &str,
        transport: Transport,
    ) -> Self {
        ReceivedMetric {
            name: m.name.clone(),
            description: m.description.clone(),
            unit: m.unit.clone(),
            resource: resource.clone(),
            scope_name: scope_name.to_owned(),
            data: m.data.clone(),
            transport,
        }
    }

    /// The shape of the data.
    pub fn kind(&self) -> MetricDataKind {
        match &self.data {
            Some(metric::Data::Gauge(_)) => MetricDataKind::Gauge,
            Some(metric::Data::Sum(_)) => MetricDataKind::Sum,
            Some(metric::Data::Histogram(_)) => MetricDataKind::Histogram,
            Some(metric::Data::ExponentialHistogram(_)) => MetricDataKind::ExponentialHistogram,
            Some(metric::Data::Summary(_)) => MetricDataKind::Summary,
            None => MetricDataKind::Empty,
        }
    }
}
