//! The dashboards and the rules against a real Prometheus (`/usr/bin/prometheus` from the Debian
//! `prometheus` package, which `scripts/test` installs) scraping the order-pipeline demo.
//!
//! The demo's four services (shop, api, crm, mes) run in serve mode as separate processes on four
//! free consecutive ports (`--port-base`), against the local RabbitMQ (`AMQP_ADDR`, default
//! `amqp://guest:guest@127.0.0.1:5672/%2f`; `scripts/test` starts one). The demo's scripted orders
//! go through the shop and the B2B API, failing ones included: late orders, rejected orders, an
//! unroutable status message (the order stays stuck in `crm.accepted` and stalls), a handler that
//! panics until its message is dead-lettered, a bad quantity, a mistyped path. A Prometheus with
//! the project's rules scrapes the four every second. Then every Prometheus expression of every
//! dashboard (Grafana variables substituted) and every rule is evaluated through the HTTP API:
//!
//! - no expression errors;
//! - every rule is healthy;
//! - every panel whose event happened returns data: a panel must return data when every metric it
//!   reads belongs to a family in [`HAPPENED`], unless [`NOT_IN_THE_DEMO`] names it with the
//!   reason.
//!
//! The demo's code is compiled into this test from `examples/order_pipeline/`, as in
//! `order_pipeline.rs`: the service processes are this test binary again, running only
//! [`service_process`] with the role in the environment.

#![allow(dead_code, unreachable_pub)]

#[path = "../examples/order_pipeline/amqp.rs"]
mod amqp;
#[path = "../examples/order_pipeline/crm.rs"]
mod crm;
#[path = "../examples/order_pipeline/front.rs"]
mod front;
#[path = "../examples/order_pipeline/mes.rs"]
mod mes;
#[path = "../examples/order_pipeline/mes_db.rs"]
mod mes_db;
#[path = "../examples/order_pipeline/model.rs"]
mod model;
#[path = "../examples/order_pipeline/orchestrator.rs"]
mod orchestrator;
#[path = "../examples/order_pipeline/service.rs"]
mod service;
#[path = "../examples/order_pipeline/summary.rs"]
mod summary;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use orderscope_metrics::catalogue::{CATALOGUE, MetricKind};
use serde_json::Value;

use crate::model::{ENV_ROLE, Role};
use crate::orchestrator::{Options, serve_port};

/// Metric families (name prefixes) whose events the demo's run causes. Every dashboard panel
/// that reads only these must return data. One line per family: add `"db_client_"` here once
/// the demo's MES uses PostgreSQL.
const HAPPENED: &[&str] = &[
    // RED of the four services and of their HTTP calls, and the recording rules over it.
    "http_server_",
    "http_client_",
    "job:http_server_request_",
    // Publishes, confirms, consumes, settles, dead letters, queue latency.
    "messaging_",
    // Queue depth and consumers of the queues the CRM watches.
    "orderscope_queue_messages",
    "orderscope_queue_consumers",
    // The prefetch of the demo's consumers, the denominator of consumer saturation.
    "orderscope_consumer_prefetch",
    // Stages, overdue orders, in-flight orders and the stuck one.
    "order_",
    // MES on PostgreSQL: queries, the pool, slow queries, N+1 findings, the dashboard's cache.
    "db_client_",
    "db_repeated_queries_total",
    // (not `cache_evictions_total`: the count cache holds a few entries for 30 s, nothing is
    // evicted during the run)
    "cache_requests_total",
    "cache_load_duration_seconds",
    "cache_entries",
    // USE: process and runtime.
    "process_",
    "tokio_",
];

/// Panels that read only [`HAPPENED`] families but whose event the demo does not cause, with the
/// reason: (dashboard file, panel title).
const NOT_IN_THE_DEMO: &[(&str, &str, &str)] = &[
    (
        "amqp.json",
        "Untraced / s",
        "every message the demo publishes carries a traceparent",
    ),
    (
        "service-red.json",
        "Errors / s by route and status",
        "the demo's failing requests are refused with 4xx, none fails with 5xx",
    ),
    (
        "service-red.json",
        "Failures by error type",
        "a server records error_type on 5xx and cancelled requests only, and the demo has neither",
    ),
    (
        "service-red.json",
        "Outgoing error ratio by peer",
        "every HTTP call between the demo's services succeeds",
    ),
    (
        "database.json",
        "Errors / s by summary and error type",
        "every query MES runs succeeds",
    ),
];

/// The entry point of the service processes the test starts. Run as a test of its own (without
/// the role in the environment) it does nothing.
#[test]
fn service_process() {
    let Ok(name) = std::env::var(ENV_ROLE) else {
        return;
    };
    let role = Role::parse(&name).unwrap_or_else(|| panic!("unknown role {name}"));
    std::process::exit(service::child_main(role));
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Kills the Prometheus child when the test ends, however it ends.
struct Prometheus(Child, PathBuf);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A port `base` such that `base`…`base + 3` are free right now. Taken below Linux's ephemeral
/// range (32768 and up), so no outgoing connection is handed one of them before the services
/// bind.
fn free_port_base() -> u16 {
    let seed = std::process::id() as u64
        ^ SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64;
    for attempt in 0..500u64 {
        let base = 20_000 + ((seed + attempt * 4) % 3_000) as u16 * 4;
        let bound: Vec<_> = (0..4)
            .map_while(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).ok())
            .collect();
        if bound.len() == 4 {
            return base;
        }
    }
    panic!("no four consecutive free ports on 127.0.0.1 between 20000 and 32000");
}

fn start_prometheus(targets: &[(&str, u16)]) -> (Prometheus, String) {
    let dir = std::env::temp_dir().join(format!(
        "orderscope-prometheus-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(dir.join("data")).unwrap();
    // The project's rules as they are, except that the groups evaluated every 30 s (the SLO
    // recordings) are evaluated every second, like the scrapes: the test waits for every rule's
    // evaluation after the demo's events, not for a production interval.
    let project_rules = std::fs::read_to_string(repo_root().join("rules/orderscope.rules.yml"))
        .expect("rules/orderscope.rules.yml");
    assert!(
        project_rules.contains("interval: 30s"),
        "the rule groups' intervals changed: update this test"
    );
    let rules = dir.join("orderscope.rules.yml");
    std::fs::write(
        &rules,
        project_rules.replace("interval: 30s", "interval: 1s"),
    )
    .unwrap();
    let mut config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
         scrape_configs:\n",
        rules.display()
    );
    for (job, port) in targets {
        config.push_str(&format!(
            "  - job_name: {job}\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        ));
    }
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let port = free_port();
    let child = Command::new("/usr/bin/prometheus")
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("/usr/bin/prometheus could not be started ({e}): install the Debian package `prometheus` (scripts/test does)")
        });
    (Prometheus(child, dir), format!("http://127.0.0.1:{port}"))
}

/// `GET {base}/api/v1/{path}` with `params`, as JSON; `None` while Prometheus is not answering.
async fn api(base: &str, path: &str, params: &[(&str, &str)]) -> Option<Value> {
    let mut url = format!("{base}/api/v1/{path}");
    for (i, (k, v)) in params.iter().enumerate() {
        url.push(if i == 0 { '?' } else { '&' });
        url.push_str(k);
        url.push('=');
        url.extend(percent_encoding::utf8_percent_encode(
            v,
            percent_encoding::NON_ALPHANUMERIC,
        ));
    }
    tokio::task::spawn_blocking(move || {
        let response = reqwest::blocking::get(&url).ok()?;
        serde_json::from_str::<Value>(&response.text().ok()?).ok()
    })
    .await
    .unwrap()
}

/// The value of a query that returns one sample, or 0 when it returns none.
async fn scalar(base: &str, query: &str) -> f64 {
    api(base, "query", &[("query", query)])
        .await
        .as_ref()
        .and_then(|r| r["data"]["result"][0]["value"][1].as_str())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// Every Prometheus expression of every dashboard: (file, panel title, expression).
fn dashboard_expressions() -> Vec<(String, String, String)> {
    fn walk(file: &str, title: &str, v: &Value, out: &mut Vec<(String, String, String)>) {
        match v {
            Value::Object(map) => {
                let title = map.get("title").and_then(Value::as_str).unwrap_or(title);
                let prometheus = map
                    .get("datasource")
                    .and_then(|d| d.get("type"))
                    .and_then(Value::as_str)
                    == Some("prometheus");
                if let (true, Some(expr)) = (prometheus, map.get("expr").and_then(Value::as_str)) {
                    out.push((file.to_owned(), title.to_owned(), expr.to_owned()));
                }
                for v in map.values() {
                    walk(file, title, v, out);
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(file, title, v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(repo_root().join("dashboards")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            let json: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            walk(&file, "", &json["panels"], &mut out);
        }
    }
    out.sort();
    out
}

/// The Grafana variables the dashboards use, as a query over the last minutes would see them.
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__range", "5m")
        .replace("$service", ".*")
        .replace("$stage", ".*")
}

/// The series names `expr` reads: catalogue series and recording rule outputs.
fn metric_names(expr: &str, known: &BTreeSet<String>) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| known.contains(*t) || t.contains(':') && !t.is_empty())
        .filter(|t| !t.starts_with(':') && !t.ends_with(':'))
        .map(str::to_owned)
        .collect()
}

/// What the demo's run must have made Prometheus see, each at least three scrapes long, before
/// the dashboards are evaluated: (what, selector).
const EVENTS: &[(&str, &str)] = &[
    (
        "requests to the shop and the API",
        r#"http_server_request_duration_seconds_count{job=~"shop|api"}"#,
    ),
    (
        "a refused request",
        r#"http_server_request_duration_seconds_count{http_response_status_code=~"4.."}"#,
    ),
    ("published messages", "messaging_client_sent_messages_total"),
    (
        "the unroutable status message",
        r#"messaging_client_sent_messages_total{outcome!="ack"}"#,
    ),
    (
        "a dead-lettered message",
        r#"messaging_process_duration_seconds_count{outcome=~"nack_dead_letter|dead_letter"}"#,
    ),
    (
        "a handler panic",
        r#"messaging_process_duration_seconds_count{error_type="panic"}"#,
    ),
    ("queue depth", "orderscope_queue_messages"),
    ("late orders", "order_overdue_total"),
    ("orders in flight", "order_in_flight"),
    ("the stuck order's stall", "order_stalled_total"),
    ("the runtime's busy ratio", "tokio_busy_ratio"),
    ("process CPU", "process_cpu_seconds_total"),
];

/// The demo's orchestrator on its own thread. Dropped before it has ended (a failed assertion),
/// it tells the demo to stop and waits for it, so the services stop and the test's exchanges and
/// queues are deleted.
struct Demo {
    stop: Arc<tokio::sync::Notify>,
    thread:
        Option<std::thread::JoinHandle<Result<orchestrator::Outcome, orchestrator::PipelineError>>>,
}

impl Demo {
    fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    fn join(&mut self) -> Result<orchestrator::Outcome, orchestrator::PipelineError> {
        let thread = self.thread.take().expect("joined once");
        thread.join().expect("the demo's thread")
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.stop.notify_one();
            let _ = thread.join();
        }
    }
}

#[test]
fn dashboards_and_rules_evaluate_on_the_demo_in_serve_mode() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    // The Prometheus client below is reqwest's; this process runs no `init` that would give
    // rustls its provider.
    orderscope_testing::install_crypto_provider();
    let port_base = free_port_base();
    let stop = Arc::new(tokio::sync::Notify::new());
    let options = Options {
        serve: true,
        port_base: Some(port_base),
        serve_until: Some(Arc::clone(&stop)),
        amqp_prefix: format!("orderscope-prom-{}.", std::process::id()),
        delete_topology: true,
        embedded_receiver: true,
        ..Options::default()
    };
    let exe = std::env::current_exe().expect("the test binary's path");
    let launch = move |_role: Role| {
        let mut command = std::process::Command::new(&exe);
        command.args([
            "--exact",
            "service_process",
            "--nocapture",
            "--test-threads=1",
        ]);
        command
    };
    // The demo runs on a runtime of its own, as its binary does.
    let mut pipeline = Demo {
        stop: Arc::clone(&stop),
        thread: Some(std::thread::spawn(move || {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("the demo's runtime")
                .block_on(orchestrator::run(&launch, &options))
        })),
    };

    let roles = [Role::Shop, Role::Api, Role::Crm, Role::Mes];
    let targets: Vec<(&str, u16)> = roles
        .iter()
        .map(|&r| (r.name(), serve_port(r, port_base)))
        .collect();
    let (_prometheus, base) = start_prometheus(&targets);

    // The demo's run has happened and Prometheus has scraped its outcome a few times.
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut missing: Vec<&str> = EVENTS.iter().map(|(what, _)| *what).collect();
    loop {
        if pipeline.is_finished() {
            let result = pipeline.join();
            panic!(
                "the demo stopped before the dashboards were evaluated: {:?} (this test needs RabbitMQ; `scripts/test` starts one)",
                result.err()
            );
        }
        let up = scalar(&base, "count(up == 1)").await;
        let scrapes = scalar(&base, "min(count_over_time(up[1m]))").await;
        missing.clear();
        if up < 4.0 || scrapes < 5.0 {
            missing.push("four services up and scraped five times");
        }
        for (what, selector) in EVENTS {
            let samples = scalar(&base, &format!("max(count_over_time({selector}[1m]))")).await;
            if samples < 3.0 {
                missing.push(*what);
            }
        }
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for Prometheus to see: {}",
            missing.join(", ")
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Every rule evaluated, and healthy. A recording rule evaluated before the events above were
    // scraped holds no series for them yet, so wait until each has been evaluated since.
    let ready = std::time::SystemTime::now();
    let deadline = Instant::now() + Duration::from_secs(30);
    let rules_report = loop {
        let r = api(&base, "rules", &[])
            .await
            .expect("the rules API answers");
        let mut report = Vec::new();
        let mut all_evaluated = true;
        let mut count = 0;
        for group in r["data"]["groups"].as_array().into_iter().flatten() {
            for rule in group["rules"].as_array().into_iter().flatten() {
                count += 1;
                all_evaluated &= rule["lastEvaluation"]
                    .as_str()
                    .and_then(model::parse_rfc3339)
                    .is_some_and(|t| t > ready);
                if rule["health"] != "ok" {
                    report.push(format!(
                        "{}: health {} {}",
                        rule["name"], rule["health"], rule["lastError"]
                    ));
                }
            }
        }
        assert!(count > 10, "only {count} rules loaded");
        if all_evaluated {
            break report;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for every rule to be evaluated after the demo's events were scraped"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(rules_report.is_empty(), "{}", rules_report.join("\n"));

    // Every dashboard expression.
    let mut known: BTreeSet<String> = BTreeSet::new();
    for def in CATALOGUE {
        if def.kind == MetricKind::Histogram {
            for suffix in ["_bucket", "_sum", "_count"] {
                known.insert(format!("{}{suffix}", def.name));
            }
        } else {
            known.insert(def.name.to_owned());
        }
    }
    let expressions = dashboard_expressions();
    assert!(expressions.len() > 60, "{} expressions", expressions.len());
    for (file, title, _) in NOT_IN_THE_DEMO {
        assert!(
            expressions.iter().any(|(f, t, _)| f == file && t == title),
            "{file}: no panel {title:?} (NOT_IN_THE_DEMO is stale)"
        );
    }
    let mut problems = Vec::new();
    let mut with_data = 0;
    let mut must_have_data = 0;
    for (file, title, expr) in &expressions {
        let query = substitute(expr);
        let Some(r) = api(&base, "query", &[("query", &query)]).await else {
            problems.push(format!("{file}: {title}: no answer for `{query}`"));
            continue;
        };
        if r["status"] != "success" {
            problems.push(format!("{file}: {title}: `{query}` failed: {}", r["error"]));
            continue;
        }
        let names = metric_names(expr, &known);
        let happened = !names.is_empty()
            && names
                .iter()
                .all(|n| HAPPENED.iter().any(|family| n.starts_with(family)))
            && !NOT_IN_THE_DEMO
                .iter()
                .any(|(f, t, _)| f == file && t == title);
        let empty = r["data"]["result"].as_array().is_some_and(Vec::is_empty);
        must_have_data += usize::from(happened);
        if !empty {
            with_data += 1;
        } else if happened {
            problems.push(format!("{file}: {title}: no data for `{query}`"));
        }
    }
    println!(
        "{} dashboard expressions evaluated, {with_data} with data, {must_have_data} of them required to",
        expressions.len()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        must_have_data >= 60,
        "only {must_have_data} expressions were required to return data"
    );

    stop.notify_one();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !pipeline.is_finished() {
        assert!(
            Instant::now() < deadline,
            "the demo did not stop within 60 s once told to"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let outcome = pipeline.join().expect("the demo ran");
    assert!(
        outcome.settled,
        "the pipeline did not settle:\n{}",
        summary::render(&outcome)
    );
    assert!(outcome.clean_exit, "a service did not exit cleanly");
}
