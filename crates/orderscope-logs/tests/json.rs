//! The JSON log layer: field set and order, typing, escaping, trace and order correlation.

use std::io;
use std::sync::{Arc, Mutex};

use opentelemetry::trace::{TraceContextExt as _, Tracer as _, TracerProvider as _};
use orderscope_context::{Channel, OrderContext, Priority};
use orderscope_logs::JsonLayer;
use serde_json::Value;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;

/// A `MakeWriter` that appends to a shared buffer.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().unwrap().clone();
        let text = String::from_utf8(bytes).expect("log output is UTF-8");
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "every line ends with a newline"
        );
        text.lines().map(str::to_owned).collect()
    }

    fn json(&self) -> Vec<Value> {
        self.lines()
            .iter()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }
}

struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl io::Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = CaptureWriter;

    fn make_writer(&'a self) -> Self::Writer {
        CaptureWriter(self.0.clone())
    }
}

/// Runs `f` with only the JSON layer installed (no OpenTelemetry layer).
fn with_json<R>(f: impl FnOnce() -> R) -> (R, Capture) {
    let capture = Capture::default();
    let subscriber =
        tracing_subscriber::registry().with(JsonLayer::new("mes").with_writer(capture.clone()));
    let result = tracing::subscriber::with_default(subscriber, f);
    (result, capture)
}

/// Runs `f` with the JSON layer and `tracing-opentelemetry` over an SDK provider.
fn with_json_and_otel<R>(
    f: impl FnOnce(&opentelemetry_sdk::trace::SdkTracer) -> R,
) -> (R, Capture) {
    let capture = Capture::default();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let tracer = provider.tracer("test");
    let subscriber = tracing_subscriber::registry()
        .with(JsonLayer::new("mes").with_writer(capture.clone()))
        .with(tracing_opentelemetry::layer().with_tracer(tracer.clone()));
    let result = tracing::subscriber::with_default(subscriber, || f(&tracer));
    (result, capture)
}

fn redact(mut value: Value) -> Value {
    let object = value.as_object_mut().expect("a JSON object");
    for key in ["timestamp", "trace_id", "span_id"] {
        if let Some(v) = object.get_mut(key) {
            *v = Value::String(format!("[{key}]"));
        }
    }
    value
}

fn keys(value: &Value) -> Vec<String> {
    // serde_json's map is sorted; take the order from the raw line instead.
    value.as_object().unwrap().keys().cloned().collect()
}

#[test]
fn outside_a_span_the_fixed_fields_come_first_in_order() {
    let (_, capture) = with_json(|| {
        tracing::info!(target: "mes::orders", items = 3, "order accepted");
    });
    let lines = capture.lines();
    assert_eq!(lines.len(), 1);
    let line = &lines[0];
    let order: Vec<usize> = [
        "\"timestamp\"",
        "\"level\"",
        "\"message\"",
        "\"target\"",
        "\"service.name\"",
        "\"items\"",
    ]
    .iter()
    .map(|key| {
        line.find(key)
            .unwrap_or_else(|| panic!("{key} missing in {line}"))
    })
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "field order: {line}");

    let value: Value = serde_json::from_str(line).unwrap();
    assert_eq!(keys(&value).len(), 6, "nothing else is added: {line}");
    assert!(value.get("trace_id").is_none());
    let timestamp = value["timestamp"].as_str().unwrap();
    assert_eq!(
        timestamp.len(),
        "2026-11-24T09:15:02.123456Z".len(),
        "{timestamp}"
    );
    assert!(
        timestamp.ends_with('Z')
            && timestamp.as_bytes()[10] == b'T'
            && timestamp.as_bytes()[19] == b'.'
    );
    insta::assert_json_snapshot!("outside_span", redact(value));
}

#[test]
fn event_fields_keep_their_types() {
    let error = io::Error::other("disk full");
    let (_, capture) = with_json(|| {
        tracing::warn!(
            count = 3_i64,
            big = u64::MAX,
            huge = i128::MIN,
            ratio = 0.25_f64,
            nan = f64::NAN,
            urgent = true,
            customer = "ACME \"GmbH\"",
            debug = ?vec![1, 2],
            display = %"shown",
            error = &error as &(dyn std::error::Error + 'static),
            "typed"
        );
    });
    let values = capture.json();
    let v = &values[0];
    assert_eq!(v["level"], "WARN");
    assert_eq!(v["message"], "typed");
    assert_eq!(v["count"], 3);
    assert_eq!(v["big"], u64::MAX);
    assert!(capture.lines()[0].contains(&format!("\"huge\":{}", i128::MIN)));
    assert_eq!(v["ratio"], 0.25);
    assert_eq!(v["nan"], Value::Null);
    assert_eq!(v["urgent"], true);
    assert_eq!(v["customer"], "ACME \"GmbH\"");
    assert_eq!(v["debug"], "[1, 2]");
    assert_eq!(v["display"], "shown");
    assert_eq!(v["error"], "disk full");
    // (serde_json reads `huge` as a float; the exact digits are checked on the raw line above.)
    let mut snapshot = redact(v.clone());
    snapshot.as_object_mut().unwrap().remove("huge");
    insta::assert_json_snapshot!("typed_fields", snapshot);
}

#[test]
fn hostile_messages_stay_one_valid_line() {
    let lossy = String::from_utf8_lossy(b"bad \xff\xfe bytes").into_owned();
    assert!(lossy.contains('\u{fffd}'));
    let messages = [
        "quote \" and backslash \\".to_owned(),
        "first line\nsecond line\r\nthird\ttabbed".to_owned(),
        lossy,
        "control \u{0} \u{1b}[31m escape \u{7f} and \u{2028} separator".to_owned(),
        String::new(),
    ];
    let (_, capture) = with_json(|| {
        for message in &messages {
            tracing::error!(detail = message.as_str(), "{message}");
        }
        // A message given as a field, with a newline in a field name's value.
        tracing::info!(message = "as a field\nwith newline");
    });
    let lines = capture.lines();
    assert_eq!(lines.len(), messages.len() + 1, "{lines:#?}");
    for (line, message) in lines.iter().zip(&messages) {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["message"].as_str(), Some(message.as_str()));
        assert_eq!(v["detail"].as_str(), Some(message.as_str()));
    }
    let last: Value = serde_json::from_str(&lines[messages.len()]).unwrap();
    assert_eq!(last["message"], "as a field\nwith newline");
}

#[test]
fn an_event_without_a_message_gets_an_empty_one() {
    let (_, capture) = with_json(|| tracing::info!(order_total = 12.5));
    let v = &capture.json()[0];
    assert_eq!(v["message"], "");
    assert_eq!(v["order_total"], 12.5);
}

#[test]
fn inside_a_tracing_span_ids_match_the_span() {
    let ((trace_id, span_id), capture) = with_json_and_otel(|_| {
        let span = tracing::info_span!("schedule");
        let _entered = span.enter();
        tracing::info!("scheduled");
        let cx = span.context();
        let sc = cx.span().span_context().clone();
        (sc.trace_id().to_string(), sc.span_id().to_string())
    });
    let v = &capture.json()[0];
    assert_eq!(v["trace_id"].as_str(), Some(trace_id.as_str()));
    assert_eq!(v["span_id"].as_str(), Some(span_id.as_str()));
    assert_eq!(trace_id.len(), 32);
    assert_eq!(span_id.len(), 16);
    insta::assert_json_snapshot!("inside_span", redact(v.clone()));
}

#[test]
fn a_child_span_logs_its_own_span_id_and_the_parents_trace_id() {
    let (ids, capture) = with_json_and_otel(|_| {
        let parent = tracing::info_span!("parent");
        let _p = parent.enter();
        let child = tracing::info_span!("child");
        let _c = child.enter();
        tracing::info!("in child");
        let p = parent.context().span().span_context().clone();
        let c = child.context().span().span_context().clone();
        (p, c)
    });
    let (parent, child) = ids;
    let v = &capture.json()[0];
    assert_eq!(parent.trace_id(), child.trace_id());
    assert_eq!(
        v["trace_id"].as_str(),
        Some(child.trace_id().to_string().as_str())
    );
    assert_eq!(
        v["span_id"].as_str(),
        Some(child.span_id().to_string().as_str())
    );
}

#[test]
fn an_sdk_span_attached_without_a_tracing_span_is_correlated() {
    // What the HTTP server layer does: start a span with the SDK and attach its context.
    let (ids, capture) = with_json_and_otel(|tracer| {
        let span = tracer.start("GET /orders/{id}");
        let cx = opentelemetry::Context::current_with_span(span);
        let sc = cx.span().span_context().clone();
        let _guard = cx.attach();
        tracing::info!("handled");
        sc
    });
    let v = &capture.json()[0];
    assert_eq!(
        v["trace_id"].as_str(),
        Some(ids.trace_id().to_string().as_str())
    );
    assert_eq!(
        v["span_id"].as_str(),
        Some(ids.span_id().to_string().as_str())
    );
}

#[test]
fn order_fields_in_scope_are_written_with_or_without_a_span() {
    let order = OrderContext::builder("ORD-2026-000123")
        .channel(Channel::Api)
        .priority(Priority::High)
        .build()
        .unwrap();
    let (_, capture) = with_json_and_otel(|_| {
        order.in_scope(|| tracing::info!("no span"));
        order.in_scope(|| {
            let inner = tracing::info_span!("inner");
            let _i = inner.enter();
            tracing::info!("in span");
        });
    });
    let values = capture.json();
    assert_eq!(values.len(), 2);
    for v in &values {
        assert_eq!(v["order.id"], "ORD-2026-000123");
        assert_eq!(v["order.channel"], "api");
        assert_eq!(v["order.priority"], "high");
    }
    assert!(values[0].get("trace_id").is_none());
    assert!(values[1].get("trace_id").is_some());
    insta::assert_json_snapshot!("order_in_scope", redact(values[1].clone()));
}

#[test]
fn service_name_is_escaped() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry()
        .with(JsonLayer::new("odd \"name\"\n").with_writer(capture.clone()));
    tracing::subscriber::with_default(subscriber, || tracing::info!("x"));
    assert_eq!(capture.json()[0]["service.name"], "odd \"name\"\n");
}

#[test]
fn a_field_that_logs_while_being_formatted_does_not_deadlock() {
    struct Chatty;
    impl std::fmt::Debug for Chatty {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            tracing::info!("from inside Debug");
            f.write_str("chatty")
        }
    }
    let (_, capture) = with_json(|| tracing::info!(value = ?Chatty, "outer"));
    // tracing-core drops the nested event (no re-entrant dispatch); the outer line is intact.
    let values = capture.json();
    assert!(
        values
            .iter()
            .any(|v| v["message"] == "outer" && v["value"] == "chatty"),
        "{values:#?}"
    );
}

#[test]
fn order_events_and_stages_write_each_order_field_once() {
    let order = OrderContext::builder("ORD-2026-000777")
        .channel(Channel::Web)
        .build()
        .unwrap();
    let (_, capture) = with_json(|| {
        order.in_scope(|| {
            orderscope_logs::order_event!(
                tracing::Level::WARN,
                "operator reassigned",
                operator = 7
            );
            orderscope_logs::stage!("mes.scheduled");
        });
    });
    // The event, the one-time warning about the unregistered stage, and the stage line.
    let lines = capture.lines();
    assert_eq!(lines.len(), 3, "{lines:?}");
    for line in &lines {
        assert_eq!(line.matches("\"order.id\"").count(), 1, "{line}");
        assert_eq!(line.matches("\"order.channel\"").count(), 1, "{line}");
    }
    let event: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(event["order.id"], "ORD-2026-000777");
    assert_eq!(event["operator"], 7);
    let stage: Value = serde_json::from_str(&lines[2]).unwrap();
    assert_eq!(stage["message"], "order stage");
    assert_eq!(stage["order.stage"], "mes.scheduled");
}
