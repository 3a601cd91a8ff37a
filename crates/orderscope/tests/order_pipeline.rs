//! End to end: the order-pipeline demo's four services, as separate processes, against the local
//! RabbitMQ (`AMQP_ADDR`, default `amqp://guest:guest@127.0.0.1:5672/%2f`; `scripts/test` starts
//! one), exporting to an in-process OTLP receiver.
//!
//! The demo's code is compiled into this test from `examples/order_pipeline/`. The service
//! processes are this test binary again, running only [`service_process`] with the role in the
//! environment. The exchanges and queues get a prefix of their own and are deleted afterwards.
//!
//! Asserted:
//! - every scripted order ends as the script says (scheduled, late, rejected, lost, dead-lettered);
//! - every order that entered left one complete trace across the services it touched: one root
//!   (the shop's or the API's server span), every other span's parent in the trace, the expected
//!   span of each hop, the order's id on every span opened with the order in scope;
//! - the unroutable status message and the panicking handler are visible in the metrics;
//! - the MES dashboard filters (status, channel, overdue, id) and pages;
//! - `/metrics` of each service passes `promtool check metrics` (when promtool is installed);
//! - the JSON log lines of all services for one order share its `trace_id` and `order.id`;
//! - MES on PostgreSQL: the history is loaded; the dashboard as first written leaves database
//!   spans (`db.system.name=postgresql`) under its server spans, an N+1 finding on every request
//!   (span event, `db_repeated_queries_total`, the WARN line) and slow-query lines; after the fix
//!   none of these, the count comes from the cache (`cache_requests_total`), and its p95 is
//!   lower;
//! - all of this while the broker closes every connection of the CRM and MES (consumers,
//!   publishers, queue watcher) halfway through placing the orders: MES cannot have finished then.

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

use std::collections::{BTreeMap, BTreeSet};

use orderscope_testing::{ReceivedSpan, SpanKind, Status, parse_prometheus, promtool_check};

use crate::model::{ENV_ROLE, Expect, Role, SCRIPT};
use crate::orchestrator::{Options, Outcome};

/// The entry point of the service processes [`order_pipeline_end_to_end`] starts. Run as a test of
/// its own (without the role in the environment) it does nothing.
#[test]
fn service_process() {
    let Ok(name) = std::env::var(ENV_ROLE) else {
        return;
    };
    let role = Role::parse(&name).unwrap_or_else(|| panic!("unknown role {name}"));
    std::process::exit(service::child_main(role));
}

fn run_pipeline() -> Outcome {
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
    let options = Options {
        amqp_prefix: amqp_prefix(),
        delete_topology: true,
        embedded_receiver: true,
        // Halfway through placing the orders, the broker closes every connection of the CRM and
        // MES: they come back, and every order still finishes.
        close_connections_midway: true,
        ..Options::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match runtime.block_on(orchestrator::run(&launch, &options)) {
        Ok(outcome) => outcome,
        Err(e) => panic!(
            "the pipeline did not run: {e} (this test needs RabbitMQ; `scripts/test` starts one)"
        ),
    }
}

fn service(span: &ReceivedSpan) -> &str {
    span.resource_str("service.name").unwrap_or("?")
}

fn has(spans: &[&ReceivedSpan], svc: &str, kind: SpanKind, name: &str) -> bool {
    spans
        .iter()
        .any(|s| service(s) == svc && s.kind == kind && s.name == name)
}

fn sample_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    parse_prometheus(text)
        .expect("/metrics parses")
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(*v)))
        .map(|s| s.value)
        .fold(0.0, |a, b| a + b)
}

#[test]
fn order_pipeline_end_to_end() {
    let outcome = run_pipeline();
    let mut problems: Vec<String> = Vec::new();

    assert!(
        outcome.settled,
        "the pipeline did not settle:\n{}",
        summary::render(&outcome)
    );
    assert!(outcome.clean_exit, "a service did not exit cleanly");

    // ---- the broker closed every service connection while orders were in flight -----------------
    match &outcome.broker_close {
        Some(close) => {
            let mut expected: Vec<String> = amqp::CONNECTION_ROLES
                .iter()
                .map(|role| format!("{}{role}", amqp_prefix()))
                .collect();
            expected.sort();
            if close.closed != expected {
                problems.push(format!(
                    "the broker closed {:?}, expected every service connection {expected:?}",
                    close.closed
                ));
            }
            // Orders placed after the close cannot have been finished before it.
            if close.placed_before >= SCRIPT.len() || close.finished_before >= SCRIPT.len() {
                problems.push(format!(
                    "the close was not mid-run: {} of {} orders placed, {} finished",
                    close.placed_before,
                    SCRIPT.len(),
                    close.finished_before
                ));
            }
        }
        None => problems.push("the broker did not close the service connections".to_owned()),
    }

    // ---- every order ends as scripted ----------------------------------------------------------
    for order in &outcome.orders {
        if order.observed() != Some(order.scripted.expect) {
            problems.push(format!(
                "{}: expected {:?}, observed {:?} (crm {:?}, mes {:?})",
                order.scripted.id,
                order.scripted.expect,
                order.observed(),
                order.crm_status,
                order.mes
            ));
        }
    }

    // ---- one complete trace per order ----------------------------------------------------------
    let mut primary_trace: BTreeMap<&str, String> = BTreeMap::new();
    for scripted in SCRIPT {
        let id = scripted.id;
        let entry = scripted.via.name();
        let entry_route = if scripted.via == Role::Api {
            "POST /api/v1/orders"
        } else {
            "POST /orders"
        };
        let traces = summary::traces_of(&outcome.spans, id);
        // The trace the order entered with: the one whose root is the entry service's server span.
        let primary: Vec<_> = traces
            .iter()
            .filter(|(_, spans)| {
                spans
                    .iter()
                    .any(|s| s.is_root() && service(s) == entry && s.kind == SpanKind::Server)
            })
            .collect();
        let [(trace_id, spans)] = primary.as_slice() else {
            problems.push(format!(
                "{id}: expected one trace rooted at {entry}, found {}",
                primary.len()
            ));
            continue;
        };
        primary_trace.insert(id, (*trace_id).clone());
        let ids: BTreeSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
        let roots: Vec<_> = spans
            .iter()
            .filter(|s| s.parent_span_id.is_none())
            .collect();
        if roots.len() != 1 || roots[0].name != entry_route {
            problems.push(format!(
                "{id}: expected the single root {entry_route}, found {:?}",
                roots.iter().map(|s| &s.name).collect::<Vec<_>>()
            ));
        }
        for span in spans.iter() {
            if let Some(parent) = &span.parent_span_id
                && !ids.contains(parent.as_str())
            {
                problems.push(format!(
                    "{id}: span {} of {} has its parent outside the trace",
                    span.name,
                    service(span)
                ));
            }
            // Every span but the entry's server span (opened before the order was read from the
            // request body) carries the order.
            let is_entry = span.parent_span_id.is_none();
            if !is_entry && span.attr_str("order.id") != Some(id) {
                problems.push(format!(
                    "{id}: span {} of {} lacks order.id",
                    span.name,
                    service(span)
                ));
            }
        }
        if scripted.via == Role::Api && roots.first().is_some_and(|r| r.links.is_empty()) {
            problems.push(format!(
                "{id}: the public API's server span does not link the partner's trace"
            ));
        }
        // The exchange and queue names carry this test's prefix.
        let topology = model::Topology::with_prefix(amqp_prefix());
        let mut hops = vec![
            (entry, SpanKind::Client, "POST /orders".to_owned()),
            ("crm", SpanKind::Server, "POST /orders".to_owned()),
            (
                "crm",
                SpanKind::Producer,
                format!("publish {}", topology.exchange()),
            ),
            (
                "mes",
                SpanKind::Consumer,
                format!("process {}", topology.mes_queue()),
            ),
        ];
        if scripted.expect.confirmed_to_crm() || scripted.expect == Expect::Lost {
            hops.push((
                "mes",
                SpanKind::Producer,
                format!("publish {}", topology.exchange()),
            ));
        }
        if scripted.expect.confirmed_to_crm() {
            hops.push((
                "crm",
                SpanKind::Consumer,
                format!("process {}", topology.crm_queue()),
            ));
        }
        for (svc, kind, name) in &hops {
            if !has(spans, svc, *kind, name) {
                problems.push(format!(
                    "{id}: no {kind:?} span {name:?} of {svc} in its trace; spans: {:?}",
                    spans
                        .iter()
                        .map(|s| format!("{}:{}", service(s), s.name))
                        .collect::<Vec<_>>()
                ));
            }
        }
        match scripted.expect {
            Expect::Lost => {
                let publish = spans
                    .iter()
                    .find(|s| service(s) == "mes" && s.kind == SpanKind::Producer);
                if !publish.is_some_and(|s| matches!(s.status, Status::Error { .. })) {
                    problems.push(format!(
                        "{id}: the unroutable status publish is not marked as an error"
                    ));
                }
                if spans
                    .iter()
                    .any(|s| service(s) == "crm" && s.kind == SpanKind::Consumer)
                {
                    problems.push(format!(
                        "{id}: the CRM consumed a status that was unroutable"
                    ));
                }
            }
            Expect::DeadLettered => {
                let process = spans.iter().find(|s| {
                    service(s) == "mes"
                        && s.kind == SpanKind::Consumer
                        && s.attr_i64("orderscope.attempt") == Some(1)
                });
                if !process.is_some_and(|s| matches!(s.status, Status::Error { .. })) {
                    problems.push(format!(
                        "{id}: the panicking delivery is not marked as an error"
                    ));
                }
                // One trace per order: the retry and the dead letter are in the order's trace, each
                // attempt numbered and linked to the one before.
                let mut attempts: Vec<_> = spans
                    .iter()
                    .filter(|s| service(s) == "mes" && s.kind == SpanKind::Consumer)
                    .collect();
                attempts.sort_by_key(|s| s.attr_i64("orderscope.attempt"));
                let numbers: Vec<Option<i64>> = attempts
                    .iter()
                    .map(|s| s.attr_i64("orderscope.attempt"))
                    .collect();
                if numbers != [Some(1), Some(2), Some(3)] {
                    problems.push(format!(
                        "{id}: expected MES attempts 1, 2 and the dead letter (3) in the order's trace, found {numbers:?}"
                    ));
                } else if !attempts[1]
                    .links
                    .iter()
                    .any(|l| l.span_id == attempts[0].span_id)
                {
                    problems.push(format!(
                        "{id}: the retry does not link to the first attempt"
                    ));
                }
            }
            _ => {}
        }
    }

    // ---- stuck right now: the CRM's in-flight tracker still holds the lost order -------------------
    let stuck = summary::stuck_orders(&outcome);
    for scripted in SCRIPT {
        let in_crm = stuck
            .iter()
            .find(|s| s.role == Role::Crm && s.id == scripted.id);
        if scripted.expect == Expect::Lost {
            match in_crm {
                Some(s) if s.stage == "crm.accepted" => {
                    let want = primary_trace.get(scripted.id);
                    if s.trace_id.as_ref() != want {
                        problems.push(format!(
                            "{}: stuck with trace {:?}, its trace is {want:?}",
                            scripted.id, s.trace_id
                        ));
                    }
                }
                other => problems.push(format!(
                    "{}: the lost order is not stuck in crm.accepted: {other:?}",
                    scripted.id
                )),
            }
        } else if scripted.expect.confirmed_to_crm() && in_crm.is_some() {
            problems.push(format!(
                "{}: confirmed to the CRM, still in its tracker: {in_crm:?}",
                scripted.id
            ));
        }
    }
    // The CRM watches the pipeline's queues (sampled when it starts, then every 5 s).
    let crm_metrics = outcome.metrics.get(&Role::Crm).expect("crm /metrics");
    let topology = model::Topology::with_prefix(amqp_prefix());
    let samples = parse_prometheus(crm_metrics).expect("crm /metrics parses");
    for queue in topology.queues() {
        for name in ["orderscope_queue_messages", "orderscope_queue_consumers"] {
            let found = samples.iter().any(|s| {
                s.name == name && s.label("messaging_destination_name") == Some(queue.as_str())
            });
            if !found {
                problems.push(format!("crm /metrics: no {name} for {queue}"));
            }
        }
    }
    if !summary::render(&outcome).contains("Stuck right now") {
        problems.push("the summary has no \"Stuck right now\" section".to_owned());
    }

    // ---- the unroutable message and the panic in the metrics -------------------------------------
    let mes_metrics = outcome.metrics.get(&Role::Mes).expect("mes /metrics");
    let returned = sample_sum(
        mes_metrics,
        "messaging_client_sent_messages_total",
        &[("outcome", "returned")],
    );
    if returned != 1.0 {
        problems.push(format!("mes: messaging_client_sent_messages_total{{outcome=\"returned\"}} = {returned}, expected 1"));
    }
    let panics = sample_sum(
        mes_metrics,
        "messaging_process_duration_seconds_count",
        &[("error_type", "panic")],
    );
    if panics < 1.0 {
        problems.push(format!(
            "mes: no messaging_process_duration_seconds_count{{error_type=\"panic\"}} ({panics})"
        ));
    }
    let overdue = sample_sum(
        mes_metrics,
        "order_overdue_total",
        &[("stage", model::stage::MES_SCHEDULED)],
    );
    let late = SCRIPT.iter().filter(|o| o.expect == Expect::Late).count() as f64;
    if overdue != late {
        problems.push(format!(
            "mes: order_overdue_total{{stage=\"mes.scheduled\"}} = {overdue}, expected {late}"
        ));
    }
    for (role, text) in &outcome.metrics {
        let unsettled = sample_sum(text, "messaging_unsettled_messages", &[]);
        if unsettled != 0.0 {
            problems.push(format!(
                "{}: {unsettled} messages left unsettled",
                role.name()
            ));
        }
    }

    // ---- the MES dashboard: filters and paging ------------------------------------------------------
    let probe = |query: &str| {
        let what = format!("GET /dashboard/orders?{query}");
        let probe = outcome
            .probes
            .iter()
            .find(|p| p.what == what)
            .expect("dashboard probe");
        let body: serde_json::Value = serde_json::from_str(&probe.body).unwrap_or_default();
        (probe.status, body)
    };
    let ids = |body: &serde_json::Value| -> BTreeSet<String> {
        body["orders"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| o["order_id"].as_str().map(str::to_owned))
            .collect()
    };
    let (status, late) = probe("status=scheduled&overdue=true");
    let want_late: BTreeSet<String> = SCRIPT
        .iter()
        .filter(|o| o.expect == Expect::Late)
        .map(|o| o.id.to_owned())
        .collect();
    if status != 200 || ids(&late) != want_late || late["total"] != want_late.len() {
        problems.push(format!(
            "dashboard ?status=scheduled&overdue=true: {status} {late}"
        ));
    }
    let (status, page) = probe("channel=api&per_page=2&page=2");
    let api_orders = SCRIPT.iter().filter(|o| o.via == Role::Api).count();
    if status != 200 || page["total"] != api_orders || page["page"] != 2 || ids(&page).len() != 2 {
        problems.push(format!(
            "dashboard ?channel=api&per_page=2&page=2: {status} {page}"
        ));
    }
    let (status, rejected) = probe("q=ORD-2026-0001&status=rejected");
    let want: BTreeSet<String> = SCRIPT
        .iter()
        .filter(|o| o.expect == Expect::Rejected && o.id.starts_with("ORD-2026-0001"))
        .map(|o| o.id.to_owned())
        .collect();
    if status != 200 || ids(&rejected) != want {
        problems.push(format!(
            "dashboard ?q=ORD-2026-0001&status=rejected: {status} {rejected}"
        ));
    }
    let (status, _) = probe("overdue=maybe");
    if status != 400 {
        problems.push(format!(
            "dashboard ?overdue=maybe answered {status}, expected 400"
        ));
    }

    // ---- the dashboard on PostgreSQL, before and after its fix ----------------------------------------
    check_database(&outcome, &mut problems);

    // ---- /metrics passes promtool ------------------------------------------------------------------
    assert_eq!(outcome.metrics.len(), 4, "/metrics of every service");
    for (role, text) in &outcome.metrics {
        match promtool_check(text) {
            Some(Ok(())) => {}
            Some(Err(e)) => problems.push(format!("{}: promtool check metrics: {e}", role.name())),
            None => eprintln!(
                "promtool is not installed; /metrics of {} not checked with it",
                role.name()
            ),
        }
    }

    // ---- JSON logs: one trace_id per order across services ------------------------------------------
    let mut by_order: BTreeMap<String, Vec<(Role, serde_json::Value)>> = BTreeMap::new();
    for (role, lines) in &outcome.logs {
        for line in lines {
            let value: serde_json::Value = match serde_json::from_str(line) {
                Ok(v) => v,
                Err(e) => {
                    problems.push(format!(
                        "{}: log line is not JSON ({e}): {line}",
                        role.name()
                    ));
                    continue;
                }
            };
            if value["service.name"] != role.name() {
                problems.push(format!(
                    "{}: log line with service.name {}",
                    role.name(),
                    value["service.name"]
                ));
            }
            if let Some(id) = value["order.id"].as_str() {
                by_order
                    .entry(id.to_owned())
                    .or_default()
                    .push((*role, value));
            }
        }
    }
    for scripted in SCRIPT.iter().filter(|o| o.expect != Expect::DeadLettered) {
        let lines = by_order
            .get(scripted.id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let services: BTreeSet<Role> = lines.iter().map(|(r, _)| *r).collect();
        let expected: BTreeSet<Role> = [scripted.via, Role::Crm, Role::Mes].into();
        if !expected.is_subset(&services) {
            problems.push(format!("{}: log lines only from {services:?}", scripted.id));
        }
        let trace_ids: BTreeSet<&str> = lines
            .iter()
            .map(|(_, v)| v["trace_id"].as_str().unwrap_or(""))
            .collect();
        let want = primary_trace.get(scripted.id).map(String::as_str);
        if trace_ids.len() != 1 || trace_ids.iter().next().copied() != want {
            problems.push(format!(
                "{}: log lines carry trace ids {trace_ids:?}, the order's trace is {want:?}",
                scripted.id
            ));
        }
    }

    assert!(
        problems.is_empty(),
        "{}\n\n{}",
        problems.join("\n"),
        summary::render(&outcome)
    );
}

/// What a user checks of the dashboard's two versions, from the telemetry.
fn check_database(outcome: &Outcome, problems: &mut Vec<String>) {
    let db = &outcome.database;
    for e in &db.errors {
        problems.push(format!("database: {e}"));
    }
    if db.prepared.orders != mes_db::HISTORY_ORDERS || db.prepared.lines < 2 * db.prepared.orders {
        problems.push(format!(
            "database: {} orders and {} lines loaded, expected {} orders with a few lines each",
            db.prepared.orders,
            db.prepared.lines,
            mes_db::HISTORY_ORDERS
        ));
    }
    let runs = orchestrator::DASHBOARD_RUNS;
    let report = summary::database_report(outcome);
    for (name, phase) in [("first", &report.first), ("fixed", &report.fixed)] {
        if phase.latencies.len() != runs {
            problems.push(format!(
                "dashboard ({name}): {} server spans, expected {runs}",
                phase.latencies.len()
            ));
        }
        // Each request reads the page, and the first one of the fixed page the count.
        if phase.db_spans < runs {
            problems.push(format!(
                "dashboard ({name}): {} postgresql spans under its server spans",
                phase.db_spans
            ));
        }
    }
    let lines = "SELECT order_lines";
    if report.first.repeated.get(lines).copied() != Some(runs) {
        problems.push(format!(
            "dashboard as first written: N+1 findings {:?}, expected {lines} on all {runs} requests",
            report.first.repeated
        ));
    }
    if !report.fixed.repeated.is_empty() {
        problems.push(format!(
            "dashboard after the fix: N+1 findings {:?}",
            report.fixed.repeated
        ));
    }
    if report.first.slow.is_empty() {
        problems.push("dashboard as first written: no slow-query line".to_owned());
    }
    if !report.fixed.slow.is_empty() {
        problems.push(format!(
            "dashboard after the fix: slow-query lines {:?}",
            report.fixed.slow
        ));
    }
    if report.fixed.cache_loads != 1 {
        problems.push(format!(
            "dashboard after the fix: {} cache.load spans, expected 1 (one filter)",
            report.fixed.cache_loads
        ));
    }
    match (report.first.quantile(0.95), report.fixed.quantile(0.95)) {
        (Some(before), Some(after)) if after < before => {}
        other => problems.push(format!("dashboard p95 (before, after): {other:?}")),
    }

    let mes_metrics = outcome.metrics.get(&Role::Mes).expect("mes /metrics");
    let cache = |result| {
        sample_sum(
            mes_metrics,
            "cache_requests_total",
            &[("cache_name", "dashboard_order_count"), ("result", result)],
        )
    };
    if cache("miss") < 1.0 || cache("hit") < (runs - 1) as f64 {
        problems.push(format!(
            "mes: cache_requests_total hit {} miss {}, expected {} hits and a miss",
            cache("hit"),
            cache("miss"),
            runs - 1
        ));
    }
    let repeated = sample_sum(
        mes_metrics,
        "db_repeated_queries_total",
        &[
            ("operation", "GET /dashboard/orders"),
            ("db_query_summary", lines),
        ],
    );
    if repeated != runs as f64 {
        problems.push(format!(
            "mes: db_repeated_queries_total for {lines} = {repeated}, expected {runs}"
        ));
    }
    for name in [
        "db_client_operation_duration_seconds_count",
        "db_client_connection_max",
        "db_client_connection_wait_time_seconds_count",
    ] {
        if sample_sum(mes_metrics, name, &[]) <= 0.0 {
            problems.push(format!("mes: no {name}"));
        }
    }
    // Every series the database dashboard queries is in MES's /metrics (evictions aside: the
    // counts' cache evicts nothing within a run).
    let dashboard = include_str!("../../../dashboards/database.json");
    let names: BTreeSet<&str> = dashboard
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("db_") || w.starts_with("cache_"))
        .filter(|w| !w.ends_with("_name") && !w.ends_with("_state") && !w.ends_with("_summary"))
        .collect();
    let exposed = parse_prometheus(mes_metrics).expect("mes /metrics parses");
    for name in names {
        let histogram = format!("{name}_count");
        let found = exposed
            .iter()
            .any(|s| s.name == name || s.name == histogram);
        if name != "cache_evictions_total" && !found {
            problems.push(format!(
                "dashboards/database.json queries {name}, which MES does not expose"
            ));
        }
    }
    let warned = outcome.logs.get(&Role::Mes).is_some_and(|lines| {
        lines.iter().any(|l| {
            l.contains("N+1: ") && l.contains("SELECT order_lines in GET /dashboard/orders")
        })
    });
    if !warned {
        problems.push("mes: no N+1 WARN line for the dashboard".to_owned());
    }
    let rendered = summary::render(outcome);
    for want in [
        "Database (MES on PostgreSQL",
        "N+1: SELECT order_lines",
        "dashboard p95",
    ] {
        if !rendered.contains(want) {
            problems.push(format!("the summary has no {want:?}"));
        }
    }
}

/// Without PostgreSQL the run stops before starting anything, with one clear error.
#[test]
fn no_database_is_one_clear_error() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let url = "postgres://postgres:secret@127.0.0.1:1/test";
    match runtime.block_on(orchestrator::prepare_database(url, "mes_demo_unreachable")) {
        Err(e @ orchestrator::PipelineError::NoDatabase { .. }) => {
            let line = e.to_string();
            assert!(
                line.starts_with(
                    "PostgreSQL is not reachable at postgres://postgres:***@127.0.0.1:1/test"
                ),
                "{line}"
            );
            assert!(!line.contains("secret") && !line.contains('\n'), "{line}");
        }
        Err(e) => panic!("expected NoDatabase, got {e}"),
        Ok(_) => panic!("a database answered on port 1"),
    }
}

/// The exchange and queue prefix of this test process.
fn amqp_prefix() -> String {
    format!("orderscope-e2e-{}.", std::process::id())
}
