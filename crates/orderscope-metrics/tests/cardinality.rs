//! Handle caches: labels resolved once, series limits, overflow series.

use metrics::{Counter, Histogram, Label};
use orderscope_metrics::{
    CounterCache, GaugeCache, HandleCell, HistogramCache, IndexedCache, LabelCache, MetricHandle,
    SeriesLimit, catalogue,
};
use orderscope_testing::capture_metrics;

const OVERFLOW: &str = "orderscope_cardinality_overflow_total";

fn queue_labels(key: &(&'static str, u16)) -> Vec<Label> {
    vec![
        Label::from_static_parts("queue", key.0),
        Label::new("status", key.1.to_string()),
    ]
}

#[test]
fn counter_cache_registers_once_and_overflows_past_the_limit() {
    static JOBS: CounterCache<(&'static str, u16)> =
        CounterCache::new("jobs_total", &["queue", "status"], SeriesLimit::new(2));
    let mut label_calls = 0;
    let ((), snap) = capture_metrics(|| {
        for _ in 0..3 {
            JOBS.increment(&("a", 200), 1, |k| {
                label_calls += 1;
                queue_labels(k)
            });
        }
        JOBS.increment(&("b", 500), 2, queue_labels);
        JOBS.increment(&("c", 200), 5, queue_labels);
        JOBS.increment(&("d", 200), 1, queue_labels);
        assert_eq!(JOBS.len(), 2);
    });
    assert_eq!(label_calls, 1, "labels are built once per series");
    assert_eq!(
        snap.counter("jobs_total", &[("queue", "a"), ("status", "200")]),
        Some(3)
    );
    assert_eq!(
        snap.counter("jobs_total", &[("queue", "b"), ("status", "500")]),
        Some(2)
    );
    assert_eq!(
        snap.counter(
            "jobs_total",
            &[("queue", "_overflow"), ("status", "_overflow")]
        ),
        Some(6)
    );
    assert_eq!(snap.counter(OVERFLOW, &[("metric", "jobs_total")]), Some(2));
    assert_eq!(snap.series("jobs_total").len(), 3);
}

#[test]
fn histogram_and_gauge_caches() {
    static DURATION: HistogramCache<(u8, u16)> = LabelCache::for_def(
        &catalogue::defs::HTTP_SERVER_REQUEST_DURATION,
        SeriesLimit::DEFAULT,
    );
    static ACTIVE: GaugeCache<u8> = GaugeCache::new(
        catalogue::HTTP_SERVER_ACTIVE_REQUESTS,
        &["http_request_method", "http_route"],
        SeriesLimit::new(8),
    );
    let labels = |k: &(u8, u16)| {
        vec![
            Label::from_static_parts("http_request_method", if k.0 == 0 { "GET" } else { "POST" }),
            Label::from_static_parts("http_route", "/orders/{id}"),
            Label::new("http_response_status_code", k.1.to_string()),
        ]
    };
    let gauge_labels = |_: &u8| {
        vec![
            Label::from_static_parts("http_request_method", "GET"),
            Label::from_static_parts("http_route", "/orders/{id}"),
        ]
    };
    let ((), snap) = capture_metrics(|| {
        DURATION.record(&(0, 200), 0.1, labels);
        DURATION.record(&(0, 200), 0.2, labels);
        DURATION.record(&(1, 201), 0.3, labels);
        ACTIVE.increment(&0, 1.0, gauge_labels);
        ACTIVE.increment(&0, 1.0, gauge_labels);
        ACTIVE.decrement(&0, 1.0, gauge_labels);
    });
    let get = [
        ("http_request_method", "GET"),
        ("http_route", "/orders/{id}"),
        ("http_response_status_code", "200"),
    ];
    assert_eq!(
        snap.histogram("http_server_request_duration_seconds", &get),
        Some(vec![0.1, 0.2])
    );
    assert_eq!(
        snap.gauge(
            "http_server_active_requests",
            &[
                ("http_request_method", "GET"),
                ("http_route", "/orders/{id}")
            ]
        ),
        Some(1.0)
    );
}

#[test]
fn overflow_series_of_a_catalogue_metric_carries_all_its_labels() {
    static D: HistogramCache<u16> = LabelCache::for_def(
        &catalogue::defs::HTTP_CLIENT_REQUEST_DURATION,
        SeriesLimit::new(1),
    );
    let labels = |s: &u16| vec![Label::new("http_response_status_code", s.to_string())];
    let ((), snap) = capture_metrics(|| {
        D.record(&200, 0.1, labels);
        D.record(&500, 0.1, labels);
    });
    assert_eq!(
        snap.histogram(
            "http_client_request_duration_seconds",
            &[
                ("http_request_method", "_overflow"),
                ("server_address", "_overflow"),
                ("http_response_status_code", "_overflow"),
                ("error_type", "_overflow"),
            ]
        ),
        Some(vec![0.1])
    );
}

#[test]
fn indexed_cache_is_addressed_by_index() {
    static OUTCOMES: [&str; 3] = ["ack", "nack", "returned"];
    static SENT: IndexedCache<Counter> =
        IndexedCache::new("sent_total", &["outcome"], OUTCOMES.len());
    let ((), snap) = capture_metrics(|| {
        for (i, n) in [(0usize, 3u64), (1, 1), (2, 2), (7, 4)] {
            SENT.with(
                i,
                || vec![Label::from_static_parts("outcome", OUTCOMES[i])],
                |c| c.increment(n),
            );
        }
    });
    assert_eq!(snap.counter("sent_total", &[("outcome", "ack")]), Some(3));
    assert_eq!(
        snap.counter("sent_total", &[("outcome", "returned")]),
        Some(2)
    );
    assert_eq!(
        snap.counter("sent_total", &[("outcome", "_overflow")]),
        Some(4)
    );
    assert_eq!(snap.counter(OVERFLOW, &[("metric", "sent_total")]), Some(1));
    assert_eq!(SENT.capacity(), 3);
}

#[test]
fn caches_follow_the_current_recorder() {
    static C: CounterCache<u8> = CounterCache::new("follow_total", &["k"], SeriesLimit::new(4));
    let labels = |_: &u8| vec![Label::from_static_parts("k", "v")];
    // First use with no recorder (no-op), then two different recorders.
    C.increment(&1, 1, labels);
    let ((), a) = capture_metrics(|| C.increment(&1, 2, labels));
    let ((), b) = capture_metrics(|| C.increment(&1, 3, labels));
    assert_eq!(a.counter("follow_total", &[("k", "v")]), Some(2));
    assert_eq!(b.counter("follow_total", &[("k", "v")]), Some(3));
}

#[test]
fn handle_cell_registers_with_each_local_recorder() {
    static CELL: HandleCell<Histogram> = HandleCell::new();
    let record = |value| {
        CELL.with(
            || metrics::Key::from_static_name("h_seconds"),
            |h| h.record(value),
        );
    };
    // Before any recorder: the no-op recorder, nothing kept.
    record(0.5);
    assert!(CELL.global().is_none());
    let ((), a) = capture_metrics(|| {
        record(1.0);
        record(2.0);
    });
    let ((), b) = capture_metrics(|| record(3.0));
    assert_eq!(a.histogram("h_seconds", &[]), Some(vec![1.0, 2.0]));
    assert_eq!(b.histogram("h_seconds", &[]), Some(vec![3.0]));
    // Local recorders are never kept: the cell stays free for the global recorder.
    assert!(CELL.global().is_none());
}

#[test]
fn a_cache_follows_a_recorder_at_a_dropped_recorders_address() {
    static JOBS: CounterCache<u8> = CounterCache::new("reuse_total", &["k"], SeriesLimit::new(4));
    static ONE: HandleCell<Counter> = HandleCell::new();
    let mut addresses = Vec::new();
    for round in 1..=4u64 {
        // On the stack and dropped at the end of each round: the next round's recorder usually
        // lands on the same address.
        let recorder = orderscope_metrics::build_recorder();
        addresses.push(std::ptr::from_ref(&recorder).addr());
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            for _ in 0..round {
                JOBS.increment(&1, 1, |_| vec![Label::from_static_parts("k", "a")]);
                ONE.get(|r| {
                    Counter::register_with(r, &metrics::Key::from_static_name("one_total"))
                })
                .increment(1);
            }
        });
        let text = handle.render();
        assert!(
            text.contains(&format!("reuse_total{{k=\"a\"}} {round}")),
            "round {round}:\n{text}"
        );
        assert!(
            text.contains(&format!("one_total {round}")),
            "round {round}:\n{text}"
        );
    }
    assert!(
        addresses.windows(2).any(|w| w[0] == w[1]),
        "no address was reused, the case is not exercised: {addresses:?}"
    );
}

#[test]
fn interner_is_bounded() {
    use orderscope_metrics::StrInterner;
    let routes = StrInterner::new(2);
    let a = routes.intern("/a").unwrap();
    let b = routes.intern("/b").unwrap();
    assert_ne!(a, b);
    assert_eq!(routes.intern("/a"), Some(a));
    assert_eq!(routes.intern("/c"), None);
    assert_eq!(routes.len(), 2);
    assert_eq!(routes.resolve(b).as_deref(), Some("/b"));
    assert_eq!(routes.resolve(7), None);
}

#[test]
fn series_budget_and_overflow_handles_count_every_measurement() {
    use metrics::Gauge;
    use orderscope_metrics::{Overflow, SeriesBudget};

    let budget = SeriesBudget::new(SeriesLimit::new(1));
    let durations: Overflow<Histogram> = Overflow::new();
    let active: Overflow<Gauge> = Overflow::new();
    let ((), snap) = capture_metrics(|| {
        assert!(budget.try_acquire());
        assert!(!budget.try_acquire());
        assert_eq!(budget.used(), 1);
        durations.record("op_seconds", &["queue"], |h| h.record(0.5));
        durations.record("op_seconds", &["queue"], |h| h.record(1.5));
        // Another denied label set shares the series and the counter.
        durations.record("op_seconds", &["queue"], |h| h.record(2.0));
        active.record("op_active", &["queue"], |g| g.increment(1.0));
        active.record("op_active", &["queue"], |g| g.decrement(1.0));
    });
    assert_eq!(
        snap.histogram("op_seconds", &[("queue", "_overflow")]),
        Some(vec![0.5, 1.5, 2.0])
    );
    assert_eq!(snap.counter(OVERFLOW, &[("metric", "op_seconds")]), Some(3));
    assert_eq!(
        snap.gauge("op_active", &[("queue", "_overflow")]),
        Some(0.0)
    );
    assert_eq!(snap.counter(OVERFLOW, &[("metric", "op_active")]), Some(2));
}
