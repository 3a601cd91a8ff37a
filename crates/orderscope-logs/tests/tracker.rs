//! The in-flight tracker fed by `stage!`: current stage, terminal stages, the gauges, stall
//! reports (once, with the order fields and the trace id of the span that entered the stage),
//! the order listing.
//!
//! One tracker per process: every test installs the same one and uses stage names of its own.
//! A sample visits every order (and reports each stall once), so the tests take turns.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use orderscope_context::{Channel, OrderContext, Priority};
use orderscope_logs::{Tracker, register_stages, register_terminal_stages, stage};
use tracing::Level;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};

/// Taken by each test for its whole run: one test's sample must not report another's stall.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn tracker() -> &'static Tracker {
    static ONCE: OnceLock<&'static Tracker> = OnceLock::new();
    ONCE.get_or_init(|| {
        Tracker::builder()
            .stage_limit("tr.limit.wait", Duration::from_secs(10))
            .build()
            .install()
            .expect("installed once")
    })
}

/// (name, labels, value) of every series recorded.
type Series = Vec<(String, Vec<(String, String)>, DebugValue)>;

fn capture(f: impl FnOnce()) -> Series {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, f);
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let labels = key
                .key()
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            (key.key().name().to_owned(), labels, value)
        })
        .collect()
}

fn value(series: &Series, name: &str, stage: &str) -> Option<f64> {
    series
        .iter()
        .find(|(n, l, _)| n == name && l.iter().any(|(k, v)| k == "stage" && v == stage))
        .map(|(_, _, v)| match v {
            DebugValue::Counter(c) => *c as f64,
            DebugValue::Gauge(g) => g.into_inner(),
            DebugValue::Histogram(_) => f64::NAN,
        })
}

type Event = (Level, Vec<(String, String)>);

#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<Event>>>);

struct Collect<'a>(&'a mut Vec<(String, String)>);

impl Visit for Collect<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.push((field.name().to_owned(), value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
}

impl<S: tracing::Subscriber> Layer<S> for Events {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut fields = Vec::new();
        event.record(&mut Collect(&mut fields));
        self.0
            .lock()
            .unwrap()
            .push((*event.metadata().level(), fields));
    }
}

/// WARN "order stalled" lines written by `f`, for orders whose id starts with `prefix`.
fn stalls(prefix: &str, f: impl FnOnce()) -> Vec<Vec<(String, String)>> {
    let events = Events::default();
    let subscriber = tracing_subscriber::registry().with(events.clone());
    tracing::subscriber::with_default(subscriber, f);
    let events = events.0.lock().unwrap().clone();
    events
        .into_iter()
        .filter(|(level, fields)| {
            *level == Level::WARN
                && field(fields, "message") == Some("order stalled")
                && field(fields, "order.id").is_some_and(|id| id.starts_with(prefix))
        })
        .map(|(_, fields)| fields)
        .collect()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Runs `f` inside a span of trace `trace_id`, as the orderscope layers attach one.
fn in_trace<R>(trace_id: TraceId, f: impl FnOnce() -> R) -> R {
    let sc = SpanContext::new(
        trace_id,
        SpanId::from_bytes([7; 8]),
        TraceFlags::SAMPLED,
        false,
        TraceState::NONE,
    );
    let _guard = opentelemetry::Context::current()
        .with_remote_span_context(sc)
        .attach();
    f()
}

#[test]
fn stage_records_the_current_stage_and_a_terminal_stage_removes_the_order() {
    let _serial = serial();
    let tracker = tracker();
    register_stages(&["tr.path.received", "tr.path.scheduled"]);
    register_terminal_stages(&["tr.path.shipped"]);
    let deadline = SystemTime::now() + Duration::from_secs(3600);
    let order = OrderContext::builder("ORD-PATH-1")
        .channel(Channel::Web)
        .deadline(deadline)
        .build()
        .unwrap();
    let before = SystemTime::now();
    order.in_scope(|| stage!("tr.path.received"));
    let tracked = tracker.get("ORD-PATH-1").expect("tracked");
    assert_eq!(tracked.stage, "tr.path.received");
    assert!(tracked.entered_at >= before);
    assert_eq!(tracked.order.channel(), Some(Channel::Web));
    assert!(!tracked.overdue(SystemTime::now()));
    assert_eq!(tracked.trace_id, None);

    let trace_id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
    in_trace(trace_id, || order.in_scope(|| stage!("tr.path.scheduled")));
    let tracked = tracker.get("ORD-PATH-1").expect("still tracked");
    assert_eq!(tracked.stage, "tr.path.scheduled");
    assert_eq!(tracked.trace_id, Some(trace_id));

    order.in_scope(|| stage!("tr.path.shipped"));
    assert!(tracker.get("ORD-PATH-1").is_none());
}

#[test]
fn without_an_order_in_scope_nothing_is_tracked_and_unknown_stages_are_other() {
    let _serial = serial();
    let tracker = tracker();
    let before = tracker.orders(Some("ORD-OTHER"), 100, SystemTime::now());
    assert!(before.is_empty());
    stage!("tr.nobody");
    let order = OrderContext::new("ORD-OTHER-1").unwrap();
    order.in_scope(|| stage!("tr.never.registered"));
    assert_eq!(tracker.get("ORD-OTHER-1").unwrap().stage, "other");
}

#[test]
fn gauges_count_in_flight_overdue_and_the_oldest_per_stage() {
    let _serial = serial();
    let tracker = tracker();
    register_stages(&["tr.gauge.wait", "tr.gauge.empty"]);
    let now = SystemTime::now();
    let late = OrderContext::builder("ORD-GAUGE-LATE")
        .deadline(now - Duration::from_secs(60))
        .build()
        .unwrap();
    late.in_scope(|| stage!("tr.gauge.wait"));
    for i in 0..2 {
        let order = OrderContext::builder(format!("ORD-GAUGE-{i}"))
            .deadline(now + Duration::from_secs(3600))
            .build()
            .unwrap();
        order.in_scope(|| stage!("tr.gauge.wait"));
    }
    let m = capture(|| tracker.sample_at(now + Duration::from_secs(30)));
    assert_eq!(value(&m, "order_in_flight", "tr.gauge.wait"), Some(3.0));
    assert_eq!(
        value(&m, "order_overdue_in_flight", "tr.gauge.wait"),
        Some(1.0)
    );
    let oldest = value(&m, "order_oldest_age_seconds", "tr.gauge.wait").unwrap();
    assert!((29.0..=31.0).contains(&oldest), "oldest {oldest}");
    // A registered stage with no order reads 0, not absent: the series exists.
    assert_eq!(value(&m, "order_in_flight", "tr.gauge.empty"), Some(0.0));
    assert_eq!(
        value(&m, "order_oldest_age_seconds", "tr.gauge.empty"),
        Some(0.0)
    );

    let counts = tracker.counts(now + Duration::from_secs(30));
    let wait = counts.iter().find(|c| c.stage == "tr.gauge.wait").unwrap();
    assert_eq!((wait.in_flight, wait.overdue), (3, 1));
}

#[test]
fn a_stall_is_reported_once_with_the_order_fields_and_the_trace_id() {
    let _serial = serial();
    let tracker = tracker();
    register_stages(&["tr.stall.accepted", "tr.stall.next"]);
    let now = SystemTime::now();
    let order = OrderContext::builder("ORD-STALL-1")
        .channel(Channel::Api)
        .priority(Priority::High)
        .deadline(now + Duration::from_secs(5))
        .build()
        .unwrap();
    let trace_id = TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap();
    in_trace(trace_id, || order.in_scope(|| stage!("tr.stall.accepted")));

    // Before the deadline: nothing to report.
    let mut m = Vec::new();
    let lines = stalls("ORD-STALL", || m = capture(|| tracker.sample_at(now)));
    assert!(lines.is_empty());
    assert_eq!(value(&m, "order_stalled_total", "tr.stall.accepted"), None);

    // Past it: one WARN line and one count.
    let later = now + Duration::from_secs(60);
    let lines = stalls("ORD-STALL", || m = capture(|| tracker.sample_at(later)));
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert_eq!(field(line, "order.id"), Some("ORD-STALL-1"));
    assert_eq!(field(line, "order.channel"), Some("api"));
    assert_eq!(field(line, "order.priority"), Some("high"));
    assert!(field(line, "order.deadline").unwrap().ends_with('Z'));
    assert_eq!(field(line, "order.stage"), Some("tr.stall.accepted"));
    assert_eq!(
        field(line, "trace_id"),
        Some("0af7651916cd43dd8448eb211c80319c")
    );
    let age: f64 = field(line, "order.stage_age_seconds")
        .unwrap()
        .parse()
        .unwrap();
    assert!((59.0..=61.0).contains(&age), "age {age}");
    assert_eq!(
        value(&m, "order_stalled_total", "tr.stall.accepted"),
        Some(1.0)
    );
    assert!(tracker.get("ORD-STALL-1").unwrap().stalled);

    // Still stuck on the next tick: not reported again.
    let lines = stalls("ORD-STALL", || {
        m = capture(|| tracker.sample_at(later + Duration::from_secs(5)))
    });
    assert!(lines.is_empty());
    assert_eq!(value(&m, "order_stalled_total", "tr.stall.accepted"), None);

    // Reaching another stage (still late): reported once more, for that stage.
    order.in_scope(|| stage!("tr.stall.next"));
    let lines = stalls("ORD-STALL", || {
        m = capture(|| tracker.sample_at(later + Duration::from_secs(10)))
    });
    assert_eq!(lines.len(), 1);
    assert_eq!(field(&lines[0], "order.stage"), Some("tr.stall.next"));
    assert_eq!(field(&lines[0], "trace_id"), None);
    assert_eq!(value(&m, "order_stalled_total", "tr.stall.next"), Some(1.0));
}

#[test]
fn a_stage_limit_stalls_an_order_without_a_deadline() {
    let _serial = serial();
    let tracker = tracker();
    register_stages(&["tr.limit.wait"]);
    let now = SystemTime::now();
    let order = OrderContext::new("ORD-LIMIT-1").unwrap();
    order.in_scope(|| stage!("tr.limit.wait"));
    assert!(
        stalls("ORD-LIMIT", || tracker
            .sample_at(now + Duration::from_secs(5)))
        .is_empty()
    );
    let lines = stalls("ORD-LIMIT", || {
        tracker.sample_at(now + Duration::from_secs(15))
    });
    assert_eq!(lines.len(), 1);
    assert_eq!(field(&lines[0], "order.deadline"), None);
    // Not overdue (no deadline), but stalled.
    let tracked = tracker.get("ORD-LIMIT-1").unwrap();
    assert!(tracked.stalled && !tracked.overdue(now + Duration::from_secs(15)));
}

#[test]
fn orders_lists_late_orders_first_and_searches_by_id() {
    let _serial = serial();
    let tracker = tracker();
    register_stages(&["tr.list.a", "tr.list.b"]);
    let now = SystemTime::now();
    let on_time = OrderContext::builder("ORD-LIST-ON-TIME")
        .deadline(now + Duration::from_secs(3600))
        .build()
        .unwrap();
    on_time.in_scope(|| stage!("tr.list.a"));
    let late = OrderContext::builder("ORD-LIST-LATE")
        .deadline(now - Duration::from_secs(1))
        .build()
        .unwrap();
    late.in_scope(|| stage!("tr.list.b"));
    let listed = tracker.orders(Some("ORD-LIST-"), 10, SystemTime::now());
    let ids: Vec<&str> = listed.iter().map(|o| o.order.id()).collect();
    assert_eq!(ids, ["ORD-LIST-LATE", "ORD-LIST-ON-TIME"]);
    let one = tracker.orders(Some("LIST-ON"), 10, SystemTime::now());
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].order.id(), "ORD-LIST-ON-TIME");
    // Bounded output.
    assert_eq!(
        tracker
            .orders(Some("ORD-LIST-"), 1, SystemTime::now())
            .len(),
        1
    );
}
