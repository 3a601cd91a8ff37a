//! `GET /metrics` serves Prometheus text with `_bucket` series for a recorded histogram (never
//! quantiles), accepted by `promtool check metrics` when it is installed.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

#[tokio::test]
async fn metrics_endpoint_serves_valid_prometheus_text_with_buckets() {
    let logs = common::Capture::default();
    let telemetry = orderscope::builder("mes")
        .with_env(Vec::<(String, String)>::new())
        .with_log_writer(logs.clone())
        .build()
        .expect("init");

    metrics::histogram!(
        "http_server_request_duration_seconds",
        "http_request_method" => "GET",
        "http_route" => "/orders/{id}",
        "http_response_status_code" => "200",
    )
    .record(0.042);
    metrics::counter!("function_calls_total", "function" => "reserve_stock", "module" => "mes", "result" => "ok").increment(1);

    let app: axum::Router = telemetry.metrics_router();
    let response = app
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(body.to_vec()).unwrap();
    let sorted = |t: &str| {
        let mut lines: Vec<String> = t.lines().map(str::to_owned).collect();
        lines.sort();
        lines
    };
    assert_eq!(
        sorted(&text),
        sorted(&telemetry.render()),
        "render() is what /metrics serves"
    );

    let samples = orderscope_testing::parse_prometheus(&text).expect("valid Prometheus text");
    let buckets: Vec<_> = samples
        .iter()
        .filter(|s| s.name == "http_server_request_duration_seconds_bucket")
        .collect();
    assert!(!buckets.is_empty(), "{text}");
    assert!(buckets.iter().all(|s| s.label("le").is_some()));
    assert!(
        buckets
            .iter()
            .any(|s| s.label("le") == Some("+Inf") && s.value == 1.0)
    );
    assert!(
        samples.iter().all(|s| s.label("quantile").is_none()),
        "no summaries: {text}"
    );
    // Our own counters are registered at zero from the start.
    assert!(
        samples
            .iter()
            .any(|s| s.name == orderscope::EXPORT_FAILURES_METRIC && s.value == 0.0)
    );

    if let Some(result) = orderscope_testing::promtool_check(&text) {
        result.unwrap_or_else(|findings| panic!("promtool check metrics: {findings}\n{text}"));
    }

    // No endpoint configured: a WARN says spans go nowhere.
    let warned = logs.json().into_iter().any(|v| {
        v["level"] == "WARN"
            && v["message"]
                .as_str()
                .is_some_and(|m| m.contains("not exported"))
    });
    assert!(warned, "{}", logs.text());

    telemetry.shutdown().expect("shutdown");
}
