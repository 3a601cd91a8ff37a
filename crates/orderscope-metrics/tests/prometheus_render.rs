//! The Prometheus recorder from `build_recorder` renders catalogue histograms with the
//! catalogue's buckets, the catalogue's help texts, and names without added suffixes.

use metrics::Label;
use metrics_exporter_prometheus::PrometheusRecorder;
use orderscope_metrics::catalogue::{self, defs};
use orderscope_metrics::red::FunctionMetrics;
use orderscope_metrics::{HistogramCache, LabelCache, SeriesLimit, build_recorder, describe_all};
use orderscope_testing::{SamplesExt as _, parse_exposition, promtool_check};

static HTTP: HistogramCache<u16> =
    LabelCache::for_def(&defs::HTTP_SERVER_REQUEST_DURATION, SeriesLimit::DEFAULT);
static SHIP: FunctionMetrics = FunctionMetrics::new("ship", "render_tests").track_concurrency(true);

fn http_labels(status: &u16) -> Vec<Label> {
    vec![
        Label::from_static_parts("http_request_method", "GET"),
        Label::from_static_parts("http_route", "/orders/{id}"),
        Label::new("http_response_status_code", status.to_string()),
    ]
}

#[test]
fn render_shows_catalogue_buckets_and_help() {
    // Leaked: handle caches identify recorders by address, which must not be reused.
    let recorder: &'static PrometheusRecorder = Box::leak(Box::new(build_recorder()));
    let handle = recorder.handle();
    let in_flight = metrics::with_local_recorder(recorder, || {
        describe_all();
        HTTP.record(&200, 0.007, http_labels);
        HTTP.record(&200, 3.0, http_labels);
        SHIP.start().ok();
        metrics::histogram!(catalogue::ORDER_AGE, "stage" => "shipped").record(90_000.0);
        metrics::histogram!(
            catalogue::MESSAGING_QUEUE_LATENCY,
            "messaging_system" => "rabbitmq",
            "messaging_destination_name" => "orders",
        )
        .record(42.0);
        metrics::counter!(catalogue::SPANS_DROPPED, "reason" => "queue_full").increment(1);
        SHIP.start()
    });

    let text = handle.render();
    let exposition = parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let samples = &exposition.samples;

    // HTTP histogram: exactly the catalogue buckets plus +Inf, cumulative counts.
    let family = catalogue::HTTP_SERVER_REQUEST_DURATION;
    assert_eq!(exposition.type_of(family), Some("histogram"));
    assert_eq!(
        exposition.help.get(family).map(String::as_str),
        Some(defs::HTTP_SERVER_REQUEST_DURATION.help)
    );
    let labels = [
        ("http_request_method", "GET"),
        ("http_route", "/orders/{id}"),
        ("http_response_status_code", "200"),
    ];
    let buckets = samples.buckets(family, &labels);
    let bounds: Vec<f64> = buckets.iter().map(|(le, _)| *le).collect();
    let mut expected = catalogue::HTTP_BUCKETS.to_vec();
    expected.push(f64::INFINITY);
    assert_eq!(bounds, expected, "{text}");
    let count_at = |le: f64| buckets.iter().find(|(b, _)| *b == le).map(|(_, c)| *c);
    assert_eq!(count_at(0.005), Some(0.0));
    assert_eq!(count_at(0.01), Some(1.0));
    assert_eq!(count_at(2.5), Some(1.0));
    assert_eq!(count_at(5.0), Some(2.0));
    assert_eq!(count_at(f64::INFINITY), Some(2.0));
    assert_eq!(
        samples.value(&format!("{family}_count"), &labels),
        Some(2.0)
    );
    assert_eq!(
        samples.value(&format!("{family}_sum"), &labels),
        Some(3.007)
    );

    // Long-range histograms keep their own buckets.
    let age = samples.buckets(catalogue::ORDER_AGE, &[("stage", "shipped")]);
    assert_eq!(age.len(), catalogue::ORDER_AGE_BUCKETS.len() + 1);
    assert_eq!(age[age.len() - 2], (604_800.0, 1.0));
    let latency = samples.buckets(
        catalogue::MESSAGING_QUEUE_LATENCY,
        &[
            ("messaging_system", "rabbitmq"),
            ("messaging_destination_name", "orders"),
        ],
    );
    assert_eq!(latency.len(), catalogue::QUEUE_LATENCY_BUCKETS.len() + 1);
    assert_eq!(latency[latency.len() - 2].0, 3600.0);

    // RED: names as given, autometrics-compatible labels, gauge shows the call in flight.
    let fm = [("function", "ship"), ("module", "render_tests")];
    assert_eq!(
        samples.value("function_calls_total", &[fm[0], fm[1], ("result", "ok")]),
        Some(1.0)
    );
    assert_eq!(samples.value("function_calls_concurrent", &fm), Some(1.0));
    assert_eq!(
        samples
            .buckets("function_calls_duration_seconds", &fm)
            .len(),
        catalogue::FUNCTION_BUCKETS.len() + 1
    );
    assert_eq!(
        samples.value(
            "orderscope_spans_dropped_total",
            &[("reason", "queue_full")]
        ),
        Some(1.0)
    );
    assert_eq!(exposition.type_of("function_calls_total"), Some("counter"));

    // Never summaries, never doubled suffixes.
    assert!(
        samples.iter().all(|s| s.label("quantile").is_none()),
        "{text}"
    );
    assert!(
        !text.contains("_total_total") && !text.contains("_seconds_seconds"),
        "{text}"
    );

    if let Some(result) = promtool_check(&text) {
        result.unwrap_or_else(|e| panic!("{e}\n{text}"));
    }

    in_flight.ok();
    let text = handle.render();
    let samples = parse_exposition(&text).unwrap().samples;
    assert_eq!(samples.value("function_calls_concurrent", &fm), Some(0.0));
}
