//! The Prometheus text parser and the promtool wrapper.

use orderscope_testing::{SamplesExt as _, parse_exposition, parse_prometheus, promtool_check};

const TEXT: &str = r#"# HELP http_server_request_duration_seconds Duration of HTTP server requests.
# TYPE http_server_request_duration_seconds histogram
http_server_request_duration_seconds_bucket{http_request_method="GET",http_route="/orders/{id}",le="0.005"} 0
http_server_request_duration_seconds_bucket{http_request_method="GET",http_route="/orders/{id}",le="0.01"} 1
http_server_request_duration_seconds_bucket{http_request_method="GET",http_route="/orders/{id}",le="+Inf"} 2
http_server_request_duration_seconds_sum{http_request_method="GET",http_route="/orders/{id}"} 0.5
http_server_request_duration_seconds_count{http_request_method="GET",http_route="/orders/{id}"} 2
# a plain comment
# HELP odd_total Help with \\ backslash and \n newline.
# TYPE odd_total counter
odd_total{path="C:\\dir",quote="say \"hi\"",nl="a\nb",} 1e3 1700000000000
odd_total 3
# TYPE temperature gauge
temperature NaN
temperature{where="out"} -Inf
"#;

#[test]
fn parses_histograms_escapes_and_special_values() {
    let exposition = parse_exposition(TEXT).expect("valid text");
    let samples = &exposition.samples;
    assert_eq!(samples.len(), 9);
    assert_eq!(
        exposition.type_of("http_server_request_duration_seconds"),
        Some("histogram")
    );
    assert_eq!(
        exposition.help["odd_total"],
        "Help with \\ backslash and \n newline."
    );
    let labels = [
        ("http_request_method", "GET"),
        ("http_route", "/orders/{id}"),
    ];
    assert_eq!(
        samples.buckets("http_server_request_duration_seconds", &labels),
        vec![(0.005, 0.0), (0.01, 1.0), (f64::INFINITY, 2.0)]
    );
    assert_eq!(
        samples.value("http_server_request_duration_seconds_count", &labels),
        Some(2.0)
    );
    let odd = samples
        .named("odd_total")
        .into_iter()
        .find(|s| !s.labels.is_empty())
        .unwrap();
    assert_eq!(odd.label("path"), Some("C:\\dir"));
    assert_eq!(odd.label("quote"), Some("say \"hi\""));
    assert_eq!(odd.label("nl"), Some("a\nb"));
    assert_eq!(odd.value, 1000.0);
    assert_eq!(odd.timestamp_ms, Some(1_700_000_000_000));
    assert_eq!(samples.value("odd_total", &[]), Some(3.0));
    assert!(samples.value("temperature", &[]).unwrap().is_nan());
    assert_eq!(
        samples.value("temperature", &[("where", "out")]),
        Some(f64::NEG_INFINITY)
    );
}

#[test]
fn errors_name_the_line() {
    let cases = [
        ("ok 1\nbad{x=\"1\" 2\n", 2),
        ("a{x=1} 2", 1),
        ("a{x=\"1\",x=\"2\"} 2", 1),
        ("a{x=\"\\q\"} 2", 1),
        ("a 1\nb\n", 2),
        ("a one", 1),
        ("1a 1", 1),
        ("a{1x=\"v\"} 1", 1),
        ("# TYPE a bogus\n", 1),
        ("# TYPE a counter\n# TYPE a counter\n", 2),
        ("a 1 notatime", 1),
        ("a{x=\"unterminated} 1", 1),
    ];
    for (text, line) in cases {
        let err = parse_prometheus(text).expect_err(text);
        assert_eq!(err.line, line, "{text:?}: {err}");
    }
}

#[test]
fn empty_and_comment_only_input() {
    assert!(parse_prometheus("").unwrap().is_empty());
    assert!(
        parse_prometheus("\n# just a comment\n\n")
            .unwrap()
            .is_empty()
    );
}

#[test]
fn promtool_accepts_valid_text_when_installed() {
    let valid = "# HELP jobs_total Jobs.\n# TYPE jobs_total counter\njobs_total{q=\"a\"} 1\n";
    match promtool_check(valid) {
        None => eprintln!("promtool not on PATH; skipped"),
        Some(result) => {
            assert_eq!(result, Ok(()));
            let invalid = "# TYPE jobs_total counter\njobs_total{q=\"a\" 1\n";
            assert!(matches!(promtool_check(invalid), Some(Err(_))));
        }
    }
}
