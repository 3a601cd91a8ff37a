//! The dashboards and the rules against a real Prometheus (`/usr/bin/prometheus` from the Debian
//! `prometheus` package, which `scripts/test` installs): a service with the order tracker and the
//! USE signals on serves `/metrics` on a free port, takes requests (good, failing, unmatched) and
//! moves orders through stages (late and stuck ones included); a Prometheus with the project's
//! rules scrapes it every second. Then every Prometheus expression of every dashboard (Grafana
//! variables substituted) is evaluated through the HTTP API:
//!
//! - no expression errors;
//! - every rule is healthy;
//! - every panel whose metrics all exist in Prometheus returns data, unless it filters on an
//!   outcome the service did not have (a label value, a comparison, `unless`, `offset`).

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use axum::http::StatusCode;
use axum::routing::post;
use orderscope::logs::{Tracker, register_terminal_stages};
use orderscope::tower::ServerLayer;
use orderscope::{OrderContext, register_stages, stage};
use orderscope_metrics::catalogue::{CATALOGUE, MetricKind};
use serde_json::Value;

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

fn start_prometheus(target: SocketAddr) -> (Prometheus, String) {
    let dir = std::env::temp_dir().join(format!(
        "orderscope-prometheus-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let rules = repo_root()
        .join("rules/orderscope.rules.yml")
        .canonicalize()
        .unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
         scrape_configs:\n  - job_name: crm\n    static_configs:\n      - targets: ['{target}']\n",
        rules.display()
    );
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

async fn wait_for(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every Prometheus expression of every dashboard: (origin, expression).
fn dashboard_expressions() -> Vec<(String, String)> {
    fn walk(file: &str, title: &str, v: &Value, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(map) => {
                let title = map.get("title").and_then(Value::as_str).unwrap_or(title);
                let prometheus = map
                    .get("datasource")
                    .and_then(|d| d.get("type"))
                    .and_then(Value::as_str)
                    == Some("prometheus");
                if let (true, Some(expr)) = (prometheus, map.get("expr").and_then(Value::as_str)) {
                    out.push((format!("{file}: {title}"), expr.to_owned()));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_and_rules_evaluate_on_a_real_prometheus() {
    let logs = common::Capture::default();
    let telemetry = orderscope::builder("crm")
        .with_env(Vec::<(String, String)>::new())
        .with_log_writer(logs.clone())
        .with_order_tracker(
            Tracker::builder().stage_limit("crm.accepted", Duration::from_millis(100)),
        )
        .with_process_metrics()
        .with_runtime_metrics()
        .with_sample_interval(Duration::from_millis(200))
        .build()
        .expect("init");
    register_stages(&["crm.accepted"]);
    register_terminal_stages(&["crm.confirmed"]);

    let app: axum::Router = axum::Router::new()
        .route("/orders", post(|| async { StatusCode::CREATED }))
        .route(
            "/fail",
            post(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .layer(ServerLayer::new())
        .merge(telemetry.metrics_router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let (_prometheus, base) = start_prometheus(addr);

    // Traffic: accepted, failing and unmatched requests.
    tokio::task::spawn_blocking(move || {
        let client = reqwest::blocking::Client::new();
        for path in ["orders", "orders", "orders", "fail", "nowhere"] {
            let _ = client.post(format!("http://{addr}/{path}")).send().unwrap();
        }
    })
    .await
    .unwrap();
    // Orders: confirmed, late, stuck.
    let now = SystemTime::now();
    for i in 0..4 {
        let mut order = OrderContext::builder(format!("ORD-PROM-{i}"))
            .channel(orderscope::Channel::Web)
            .created_at(now - Duration::from_secs(30));
        if i == 1 {
            order = order.deadline(now - Duration::from_secs(5));
        }
        let order = order.build().unwrap();
        order.in_scope(|| {
            stage!("crm.accepted");
            if i != 3 {
                stage!("crm.confirmed");
            }
        });
    }

    // Prometheus is up, has scraped a few times, and has seen the stall.
    wait_for(
        "Prometheus to scrape the service",
        Duration::from_secs(60),
        async || {
            let r = api(
                &base,
                "query",
                &[("query", "count_over_time(up{job=\"crm\"}[1m])")],
            )
            .await;
            let scrapes = r
                .as_ref()
                .and_then(|r| r["data"]["result"][0]["value"][1].as_str())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
            let stalled = api(&base, "query", &[("query", "order_stalled_total")])
                .await
                .is_some_and(|r| {
                    r["data"]["result"]
                        .as_array()
                        .is_some_and(|a| !a.is_empty())
                });
            scrapes >= 5.0 && stalled
        },
    )
    .await;

    // Every rule evaluated, and healthy.
    let mut rules_report = Vec::new();
    wait_for(
        "every rule to be evaluated",
        Duration::from_secs(30),
        async || {
            let Some(r) = api(&base, "rules", &[]).await else {
                return false;
            };
            rules_report.clear();
            let mut all_evaluated = true;
            for group in r["data"]["groups"].as_array().into_iter().flatten() {
                for rule in group["rules"].as_array().into_iter().flatten() {
                    all_evaluated &= rule["lastEvaluation"]
                        .as_str()
                        .is_some_and(|t| !t.starts_with("0001"));
                    if rule["health"] != "ok" {
                        rules_report.push(format!(
                            "{}: health {} {}",
                            rule["name"], rule["health"], rule["lastError"]
                        ));
                    }
                }
            }
            all_evaluated
        },
    )
    .await;
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
    let present: BTreeSet<String> = api(&base, "label/__name__/values", &[])
        .await
        .expect("label values")["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    let expressions = dashboard_expressions();
    assert!(expressions.len() > 60, "{} expressions", expressions.len());
    let mut problems = Vec::new();
    let mut with_data = 0;
    let mut must_have_data = 0;
    for (origin, expr) in &expressions {
        let query = substitute(expr);
        let Some(r) = api(&base, "query", &[("query", &query)]).await else {
            problems.push(format!("{origin}: no answer for `{query}`"));
            continue;
        };
        if r["status"] != "success" {
            problems.push(format!("{origin}: `{query}` failed: {}", r["error"]));
            continue;
        }
        let names = metric_names(expr, &known);
        let happened = !names.is_empty() && names.iter().all(|n| present.contains(n));
        let filters_on_an_outcome = ["=\"", "=~\"5", "unless", "offset", " > ", " < "]
            .iter()
            .any(|f| {
                expr.replace("=~\"$service\"", "")
                    .replace("=~\"$stage\"", "")
                    .contains(f)
            });
        let empty = r["data"]["result"].as_array().is_some_and(Vec::is_empty);
        if happened && !filters_on_an_outcome {
            must_have_data += 1;
        }
        if !empty {
            with_data += 1;
        } else if happened && !filters_on_an_outcome {
            problems.push(format!(
                "{origin}: no data for `{query}` (its metrics exist)"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    println!(
        "{} dashboard expressions evaluated, {with_data} with data, {must_have_data} of them required to",
        expressions.len()
    );
    assert!(
        must_have_data >= 30,
        "only {must_have_data} expressions were required to return data"
    );

    telemetry.shutdown().unwrap();
}
