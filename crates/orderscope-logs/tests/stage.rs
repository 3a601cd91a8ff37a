//! `stage!`, `order_event!` and `register_stages`: metrics, overdue, age, unknown stages, and the
//! fields of the events they write.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use orderscope_context::{Channel, OrderContext, Priority};
use orderscope_logs::{order_event, register_stages, stage};
use tracing::Level;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};

const TRANSITIONS: &str = "order_stage_transitions_total";
const AGE: &str = "order_age_seconds";
const OVERDUE: &str = "order_overdue_total";

/// Series recorded by `f`: (name, sorted labels, value).
type Series = Vec<(String, Vec<(String, String)>, DebugValue)>;

fn capture<R>(f: impl FnOnce() -> R) -> (R, Series) {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let out = metrics::with_local_recorder(&recorder, f);
    let series = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let mut labels: Vec<(String, String)> = key
                .key()
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            (key.key().name().to_owned(), labels, value)
        })
        .collect();
    (out, series)
}

fn find<'a>(series: &'a Series, name: &str, labels: &[(&str, &str)]) -> Option<&'a DebugValue> {
    let mut want: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    want.sort();
    series
        .iter()
        .find(|(n, l, _)| n == name && *l == want)
        .map(|(_, _, v)| v)
}

fn counter(series: &Series, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
    match find(series, name, labels)? {
        DebugValue::Counter(v) => Some(*v),
        _ => None,
    }
}

fn histogram(series: &Series, name: &str, labels: &[(&str, &str)]) -> Option<Vec<f64>> {
    match find(series, name, labels)? {
        DebugValue::Histogram(v) => Some(v.iter().map(|x| x.into_inner()).collect()),
        _ => None,
    }
}

fn names(series: &Series, name: &str) -> usize {
    series.iter().filter(|(n, _, _)| n == name).count()
}

/// One event: its level and fields (`message` included).
type Event = (Level, Vec<(String, String)>);

/// Events as a `tracing` subscriber sees them.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<Event>>>);

struct Collect<'a>(&'a mut Vec<(String, String)>);

impl Visit for Collect<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.push((field.name().to_owned(), value.to_string()));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.push((field.name().to_owned(), value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
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

impl Events {
    fn with<R>(f: impl FnOnce() -> R) -> (R, Vec<Event>) {
        let events = Events::default();
        let subscriber = tracing_subscriber::registry().with(events.clone());
        let out = tracing::subscriber::with_default(subscriber, f);
        let events = events.0.lock().unwrap().clone();
        (out, events)
    }
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn register() {
    register_stages(&["test.received", "test.scheduled", "test.shipped"]);
}

#[test]
fn transition_is_counted_by_stage_and_channel() {
    register();
    let order = OrderContext::builder("ORD-1")
        .channel(Channel::Web)
        .build()
        .unwrap();
    let (_, m) = capture(|| {
        order.in_scope(|| {
            stage!("test.received");
            stage!("test.scheduled");
            stage!("test.scheduled");
        })
    });
    assert_eq!(
        counter(
            &m,
            TRANSITIONS,
            &[("stage", "test.received"), ("order_channel", "web")]
        ),
        Some(1)
    );
    assert_eq!(
        counter(
            &m,
            TRANSITIONS,
            &[("stage", "test.scheduled"), ("order_channel", "web")]
        ),
        Some(2)
    );
    // No created_at, no deadline: neither age nor overdue.
    assert_eq!(names(&m, AGE), 0);
    assert_eq!(names(&m, OVERDUE), 0);
}

#[test]
fn deadline_in_the_past_counts_as_overdue() {
    register();
    let now = SystemTime::now();
    let late = OrderContext::builder("ORD-LATE")
        .channel(Channel::Api)
        .deadline(now - Duration::from_secs(3600))
        .build()
        .unwrap();
    let on_time = OrderContext::builder("ORD-ON-TIME")
        .channel(Channel::Api)
        .deadline(now + Duration::from_secs(3600))
        .build()
        .unwrap();
    let ((_, events), m) = capture(|| {
        Events::with(|| {
            late.in_scope(|| stage!("test.shipped"));
            on_time.in_scope(|| stage!("test.shipped"));
        })
    });
    assert_eq!(
        counter(
            &m,
            OVERDUE,
            &[("stage", "test.shipped"), ("order_channel", "api")]
        ),
        Some(1)
    );
    assert_eq!(
        counter(
            &m,
            TRANSITIONS,
            &[("stage", "test.shipped"), ("order_channel", "api")]
        ),
        Some(2)
    );
    let (level, late_line) = &events[0];
    assert_eq!(*level, Level::INFO);
    assert_eq!(field(late_line, "order.id"), Some("ORD-LATE"));
    assert_eq!(field(late_line, "order.overdue"), Some("true"));
    assert!(field(late_line, "order.deadline").unwrap().ends_with('Z'));
    assert_eq!(field(&events[1].1, "order.overdue"), None);
}

#[test]
fn age_histogram_observes_the_age_at_the_stage() {
    register();
    let order = OrderContext::builder("ORD-AGE")
        .created_at(SystemTime::now() - Duration::from_secs(90))
        .build()
        .unwrap();
    let (_, m) = capture(|| order.in_scope(|| stage!("test.scheduled")));
    let ages = histogram(&m, AGE, &[("stage", "test.scheduled")]).unwrap();
    assert_eq!(ages.len(), 1);
    // Created 90 s ago (RFC 3339 keeps whole seconds at least): 90 s, give or take the
    // sub-second part and the test's own run time.
    assert!((89.0..92.0).contains(&ages[0]), "age {}", ages[0]);
    // No channel on the order.
    assert_eq!(
        counter(
            &m,
            TRANSITIONS,
            &[("stage", "test.scheduled"), ("order_channel", "unknown")]
        ),
        Some(1)
    );
}

#[test]
fn unknown_stage_is_recorded_as_other_and_logged_by_name() {
    register();
    let order = OrderContext::builder("ORD-2")
        .channel(Channel::Phone)
        .build()
        .unwrap();
    let ((_, events), m) = capture(|| {
        Events::with(|| {
            order.in_scope(|| {
                stage!("test.teleported");
                stage!("test.teleported");
            })
        })
    });
    assert_eq!(
        counter(
            &m,
            TRANSITIONS,
            &[("stage", "other"), ("order_channel", "phone")]
        ),
        Some(2)
    );
    assert_eq!(names(&m, TRANSITIONS), 1);
    let stage_lines: Vec<_> = events
        .iter()
        .filter(|(_, f)| field(f, "message") == Some("order stage"))
        .collect();
    assert_eq!(stage_lines.len(), 2);
    assert_eq!(
        field(&stage_lines[0].1, "order.stage"),
        Some("test.teleported")
    );
    // Warned about once per name at most (the warning may have come from another test first).
    let warnings = events.iter().filter(|(l, _)| *l == Level::WARN).count();
    assert!(warnings <= 1, "{warnings} warnings");
}

#[test]
fn without_an_order_the_transition_counts_as_unknown_channel() {
    register();
    let ((_, events), m) = capture(|| Events::with(|| stage!("test.received")));
    assert_eq!(
        counter(
            &m,
            TRANSITIONS,
            &[("stage", "test.received"), ("order_channel", "unknown")]
        ),
        Some(1)
    );
    assert_eq!(names(&m, AGE), 0);
    assert_eq!(names(&m, OVERDUE), 0);
    let (_, fields) = &events[0];
    assert_eq!(field(fields, "order.stage"), Some("test.received"));
    assert_eq!(field(fields, "order.id"), None);
}

#[test]
fn order_event_carries_the_order_fields_with_or_without_a_span() {
    let order = OrderContext::builder("ORD-3")
        .channel(Channel::Crm)
        .priority(Priority::Urgent)
        .build()
        .unwrap();
    let operator = 17_u64;
    let (_, events) = Events::with(|| {
        order.in_scope(|| {
            order_event!(Level::WARN, "operator reassigned", operator = operator, line = %"L2");
            let _span = tracing::info_span!("work").entered();
            order_event!(Level::INFO, "inside a span", reason = ?Some(1),);
        });
        order_event!(Level::INFO, "no order");
    });
    assert_eq!(events.len(), 3);
    let (level, first) = &events[0];
    assert_eq!(*level, Level::WARN);
    assert_eq!(field(first, "message"), Some("operator reassigned"));
    assert_eq!(field(first, "order.id"), Some("ORD-3"));
    assert_eq!(field(first, "order.channel"), Some("crm"));
    assert_eq!(field(first, "order.priority"), Some("urgent"));
    assert_eq!(field(first, "order.deadline"), None);
    assert_eq!(field(first, "operator"), Some("17"));
    assert_eq!(field(first, "line"), Some("L2"));
    assert_eq!(field(&events[1].1, "order.id"), Some("ORD-3"));
    assert_eq!(field(&events[1].1, "reason"), Some("Some(1)"));
    assert_eq!(field(&events[2].1, "order.id"), None);
    assert_eq!(field(&events[2].1, "message"), Some("no order"));
}
