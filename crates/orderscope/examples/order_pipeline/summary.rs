//! The summary a person reads at a glance: RED per service, orders per stage, and the traces of
//! the orders that went wrong, as waterfalls.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use orderscope_testing::{ReceivedSpan, Sample, SpanKind, Status, parse_prometheus};

use crate::model::{Expect, Role};
use crate::orchestrator::{OrderResult, Outcome, Phase};

const BAR: usize = 36;

/// Renders the whole summary.
pub(crate) fn render(outcome: &Outcome) -> String {
    let mut out = String::new();
    let span_note = match &outcome.collector {
        Some(c) => format!("traces exported to {c}"),
        None => format!(
            "{} spans received by the embedded OTLP receiver",
            outcome.spans.len()
        ),
    };
    let _ = writeln!(
        out,
        "\norderscope order pipeline: {} orders through shop, api → crm → RabbitMQ → mes → crm in {:.1} s\n  broker {}, {span_note}",
        outcome.orders.len(),
        outcome.elapsed.as_secs_f64(),
        outcome.amqp_addr,
    );
    if !outcome.settled {
        let _ = writeln!(
            out,
            "  WARNING: the pipeline did not settle in time; some orders are still open"
        );
    }
    if let Some(close) = &outcome.broker_close {
        let _ = writeln!(
            out,
            "  the broker closed {} service connections with {} orders placed and {} finished: {}",
            close.closed.len(),
            close.placed_before,
            close.finished_before,
            close.closed.join(", ")
        );
    }

    let samples: BTreeMap<Role, Vec<Sample>> = outcome
        .metrics
        .iter()
        .map(|(role, text)| (*role, parse_prometheus(text).unwrap_or_default()))
        .collect();

    let lines: Vec<String> = outcome
        .logs
        .iter()
        .map(|(role, l)| format!("{} {}", role.name(), l.len()))
        .collect();
    let _ = writeln!(out, "  JSON log lines: {}", lines.join(", "));

    red_http(&mut out, &samples);
    red_amqp(&mut out, &samples);
    red_functions(&mut out, &samples);
    stages(&mut out, &samples);
    stuck(&mut out, outcome);
    orders(&mut out, outcome);
    database(&mut out, outcome, &samples);
    waterfalls(&mut out, outcome);
    out
}

/// The sum of the matching samples' values, as a whole count (counters and `_count` series).
fn sum(samples: &[Sample], name: &str, filter: impl Fn(&Sample) -> bool) -> u64 {
    samples
        .iter()
        .filter(|s| s.name == name && filter(s))
        .map(|s| s.value)
        .fold(0.0, |a, b| a + b)
        .round()
        .max(0.0) as u64
}

fn label<'a>(s: &'a Sample, key: &str) -> &'a str {
    s.label(key).unwrap_or("")
}

/// Quantile from cumulative buckets (the upper bound of the bucket holding it, like a coarse
/// `histogram_quantile`).
fn quantile(
    samples: &[Sample],
    bucket: &str,
    q: f64,
    filter: impl Fn(&Sample) -> bool,
) -> Option<f64> {
    let mut by_le: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.name == bucket && filter(s)) {
        let le: f64 = match label(s, "le") {
            "+Inf" => f64::INFINITY,
            v => v.parse().ok()?,
        };
        by_le.entry(le.to_bits()).or_insert((le, 0.0)).1 += s.value;
    }
    let mut buckets: Vec<(f64, f64)> = by_le.into_values().collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    buckets
        .iter()
        .find(|(_, count)| *count >= rank)
        .map(|(le, _)| *le)
}

fn ms(seconds: Option<f64>) -> String {
    match seconds {
        Some(s) if s.is_infinite() => "> max".to_owned(),
        Some(s) if s >= 1.0 => format!("≤{s:.1}s"),
        Some(s) => format!("≤{:.0}ms", s * 1000.0),
        None => "-".to_owned(),
    }
}

fn red_http(out: &mut String, samples: &BTreeMap<Role, Vec<Sample>>) {
    let _ = writeln!(out, "\nHTTP (RED per service and route)");
    let _ = writeln!(
        out,
        "  {:<5} {:<30} {:>5} {:>5} {:>5} {:>8} {:>8}",
        "svc", "route", "req", "4xx", "5xx", "p50", "p95"
    );
    for (role, s) in samples {
        let count = "http_server_request_duration_seconds_count";
        let routes: BTreeSet<(String, String)> = s
            .iter()
            .filter(|x| x.name == count)
            .map(|x| {
                (
                    label(x, "http_request_method").to_owned(),
                    label(x, "http_route").to_owned(),
                )
            })
            .collect();
        for (method, route) in routes {
            let this = |x: &Sample| {
                label(x, "http_request_method") == method && label(x, "http_route") == route
            };
            let total = sum(s, count, this);
            let c4 = sum(s, count, |x| {
                this(x) && label(x, "http_response_status_code").starts_with('4')
            });
            let c5 = sum(s, count, |x| {
                this(x) && label(x, "http_response_status_code").starts_with('5')
            });
            let bucket = "http_server_request_duration_seconds_bucket";
            let _ = writeln!(
                out,
                "  {:<5} {:<30} {:>5} {:>5} {:>5} {:>8} {:>8}",
                role.name(),
                format!("{method} {route}"),
                total,
                c4,
                c5,
                ms(quantile(s, bucket, 0.5, this)),
                ms(quantile(s, bucket, 0.95, this)),
            );
        }
        let client = "http_client_request_duration_seconds_count";
        let peers: BTreeSet<String> = s
            .iter()
            .filter(|x| x.name == client)
            .map(|x| label(x, "server_address").to_owned())
            .collect();
        for peer in peers {
            let this = |x: &Sample| label(x, "server_address") == peer;
            let total = sum(s, client, this);
            let errors = sum(s, client, |x| this(x) && !label(x, "error_type").is_empty());
            let bucket = "http_client_request_duration_seconds_bucket";
            let _ = writeln!(
                out,
                "  {:<5} {:<30} {:>5} {:>11} {:>8} {:>8}",
                role.name(),
                format!("→ client {peer}"),
                total,
                format!("{errors} err"),
                ms(quantile(s, bucket, 0.5, this)),
                ms(quantile(s, bucket, 0.95, this)),
            );
        }
    }
}

fn red_amqp(out: &mut String, samples: &BTreeMap<Role, Vec<Sample>>) {
    let _ = writeln!(out, "\nRabbitMQ");
    for (role, s) in samples {
        let sent = "messaging_client_sent_messages_total";
        let exchanges: BTreeSet<String> = s
            .iter()
            .filter(|x| x.name == sent)
            .map(|x| label(x, "messaging_destination_name").to_owned())
            .collect();
        for exchange in exchanges {
            let mut parts = Vec::new();
            for outcome in ["ack", "nack", "returned", "timeout", "channel_closed"] {
                let n = sum(s, sent, |x| {
                    label(x, "messaging_destination_name") == exchange
                        && label(x, "outcome") == outcome
                });
                if n > 0 {
                    parts.push(format!("{outcome} {n}"));
                }
            }
            let _ = writeln!(
                out,
                "  {:<5} publish → {:<24} {}",
                role.name(),
                exchange,
                parts.join(", ")
            );
        }
        let process = "messaging_process_duration_seconds_count";
        let queues: BTreeSet<String> = s
            .iter()
            .filter(|x| x.name == process || x.name == "messaging_client_consumed_messages_total")
            .map(|x| label(x, "messaging_destination_name").to_owned())
            .collect();
        for queue in queues {
            let on = |x: &Sample| label(x, "messaging_destination_name") == queue;
            let mut parts = vec![format!(
                "consumed {}",
                sum(s, "messaging_client_consumed_messages_total", on)
            )];
            for outcome in [
                "ack",
                "nack_requeue",
                "nack_dead_letter",
                "reject",
                "retry",
                "dead_letter",
                "discarded",
            ] {
                let n = sum(s, process, |x| on(x) && label(x, "outcome") == outcome);
                if n > 0 {
                    parts.push(format!("{outcome} {n}"));
                }
            }
            let redelivered = sum(s, "messaging_redelivered_messages_total", on);
            if redelivered > 0 {
                parts.push(format!("redelivered {redelivered}"));
            }
            let unsettled = sum(s, "messaging_unsettled_messages", on);
            parts.push(format!("unsettled {unsettled}"));
            let latency = quantile(s, "messaging_queue_latency_seconds_bucket", 0.95, on);
            parts.push(format!("queue p95 {}", ms(latency)));
            let _ = writeln!(
                out,
                "  {:<5} consume ← {:<24} {}",
                role.name(),
                queue,
                parts.join(", ")
            );
        }
    }
}

fn red_functions(out: &mut String, samples: &BTreeMap<Role, Vec<Sample>>) {
    let calls = "function_calls_total";
    let any = samples.values().any(|s| s.iter().any(|x| x.name == calls));
    if !any {
        return;
    }
    let _ = writeln!(out, "\nFunctions (#[red], #[order_handler])");
    for (role, s) in samples {
        let functions: BTreeSet<String> = s
            .iter()
            .filter(|x| x.name == calls)
            .map(|x| label(x, "function").to_owned())
            .collect();
        for function in functions {
            let this = |x: &Sample| label(x, "function") == function;
            let ok = sum(s, calls, |x| this(x) && label(x, "result") == "ok");
            let err = sum(s, calls, |x| this(x) && label(x, "result") == "error");
            let p95 = quantile(s, "function_calls_duration_seconds_bucket", 0.95, this);
            let kinds: BTreeSet<String> = s
                .iter()
                .filter(|x| x.name == calls && this(x) && label(x, "result") == "error")
                .map(|x| label(x, "error_type").to_owned())
                .collect();
            let kinds = kinds
                .iter()
                .map(|k| {
                    format!(
                        "{k} {}",
                        sum(s, calls, |x| this(x) && label(x, "error_type") == k)
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            let kinds = if kinds.is_empty() {
                String::new()
            } else {
                format!(" ({kinds})")
            };
            let _ = writeln!(
                out,
                "  {:<5} {:<30} ok {ok:<4} error {err}{kinds}  p95 {}",
                role.name(),
                function,
                ms(p95)
            );
        }
    }
}

fn stages(out: &mut String, samples: &BTreeMap<Role, Vec<Sample>>) {
    let _ = writeln!(out, "\nOrder stages");
    let _ = writeln!(
        out,
        "  {:<20} {:>7} {:>8} {:>10}",
        "stage", "orders", "overdue", "age p95"
    );
    for (role, s) in samples {
        let seen: BTreeSet<String> = s
            .iter()
            .filter(|x| x.name == "order_stage_transitions_total")
            .map(|x| label(x, "stage").to_owned())
            .collect();
        // In the order the service declares its stages (the order an order goes through them).
        let mut stages: Vec<String> = seen.into_iter().collect();
        let declared = role.stages();
        stages.sort_by_key(|st| declared.iter().position(|d| d == st).unwrap_or(usize::MAX));
        for stage in stages {
            let this = |x: &Sample| label(x, "stage") == stage;
            let n = sum(s, "order_stage_transitions_total", this);
            let late = sum(s, "order_overdue_total", this);
            let age = quantile(s, "order_age_seconds_bucket", 0.95, this);
            let flag = if late > 0 { "  ◀ late orders" } else { "" };
            let _ = writeln!(out, "  {stage:<20} {n:>7} {late:>8} {:>10}{flag}", ms(age));
        }
    }
}

/// An order still in flight in a service once the pipeline settled: stuck there.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Stuck {
    pub(crate) role: Role,
    pub(crate) id: String,
    pub(crate) stage: String,
    pub(crate) seconds: f64,
    pub(crate) overdue: bool,
    pub(crate) trace_id: Option<String>,
}

/// The orders each service's in-flight tracker still holds (its `/debug/orders.json`).
pub(crate) fn stuck_orders(outcome: &Outcome) -> Vec<Stuck> {
    let mut out = Vec::new();
    for (role, body) in &outcome.in_flight {
        let Ok(doc) = serde_json::from_str::<serde_json::Value>(body) else {
            continue;
        };
        for o in doc["orders"].as_array().into_iter().flatten() {
            out.push(Stuck {
                role: *role,
                id: o["id"].as_str().unwrap_or_default().to_owned(),
                stage: o["stage"].as_str().unwrap_or_default().to_owned(),
                seconds: o["stage_age_seconds"].as_f64().unwrap_or_default(),
                overdue: o["overdue"].as_bool().unwrap_or_default(),
                trace_id: o["trace_id"].as_str().map(str::to_owned),
            });
        }
    }
    out
}

/// The orders stuck right now, beside the late ones: in flight after the pipeline settled.
fn stuck(out: &mut String, outcome: &Outcome) {
    let stuck = stuck_orders(outcome);
    let _ = writeln!(
        out,
        "
Stuck right now (in flight after the pipeline settled; /debug/orders of each service)"
    );
    if stuck.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for s in &stuck {
        let _ = writeln!(
            out,
            "  {:<5} {:<16} in {:<14} for {:>5.1} s{}  trace {}",
            s.role.name(),
            s.id,
            s.stage,
            s.seconds,
            if s.overdue { ", overdue" } else { "" },
            s.trace_id.as_deref().unwrap_or("-"),
        );
    }
}

fn orders(out: &mut String, outcome: &Outcome) {
    let _ = writeln!(out, "\nOrders");
    for order in &outcome.orders {
        let observed = order.observed();
        let mark = match observed {
            Some(Expect::Scheduled) => "ok",
            Some(Expect::Late) => "LATE",
            Some(Expect::Rejected) => "REJECTED",
            Some(Expect::Lost) => "LOST",
            Some(Expect::DeadLettered) => "FAILED",
            None => "OPEN",
        };
        let detail = match observed {
            Some(Expect::Lost) => "status message unroutable: the CRM never heard back".to_owned(),
            Some(Expect::DeadLettered) => {
                let attempts = order.mes.as_ref().map_or(0, |m| m.attempts);
                format!("handler panicked ({attempts} deliveries), message dead-lettered")
            }
            Some(Expect::Late) => "scheduled after its deadline".to_owned(),
            Some(Expect::Rejected) => "MES rejected it".to_owned(),
            Some(Expect::Scheduled) => "scheduled".to_owned(),
            None => "no final state".to_owned(),
        };
        let expected = if observed == Some(order.scripted.expect) {
            ""
        } else {
            "  (script expected otherwise)"
        };
        let _ = writeln!(
            out,
            "  {:<16} {:<4} {:<9} crm: {:<10} {detail}{expected}",
            order.scripted.id,
            order.scripted.via.name(),
            mark,
            order.crm_status.as_deref().unwrap_or("-"),
        );
    }
    let refused: Vec<String> = outcome
        .orders
        .iter()
        .filter(|o| !(200..300).contains(&o.placed_status))
        .map(|o| format!("{} ({})", o.scripted.id, o.placed_status))
        .collect();
    if !refused.is_empty() {
        let _ = writeln!(out, "  not accepted at the door: {}", refused.join(", "));
    }
    for probe in &outcome.probes {
        let total = serde_json::from_str::<serde_json::Value>(&probe.body)
            .ok()
            .and_then(|v| v["total"].as_u64())
            .map(|t| format!(" ({t} orders match)"))
            .unwrap_or_default();
        let _ = writeln!(out, "  probe: {} → {}{total}", probe.what, probe.status);
    }
}

/// The spans of every trace that carries `order_id`.
pub(crate) fn traces_of<'a>(
    spans: &'a [ReceivedSpan],
    order_id: &str,
) -> BTreeMap<String, Vec<&'a ReceivedSpan>> {
    let ids: BTreeSet<&str> = spans
        .iter()
        .filter(|s| s.attr_str("order.id") == Some(order_id))
        .map(|s| s.trace_id.as_str())
        .collect();
    let mut traces: BTreeMap<String, Vec<&ReceivedSpan>> = BTreeMap::new();
    for span in spans.iter().filter(|s| ids.contains(s.trace_id.as_str())) {
        traces.entry(span.trace_id.clone()).or_default().push(span);
    }
    traces
}

fn waterfalls(out: &mut String, outcome: &Outcome) {
    let troubled: Vec<&OrderResult> = outcome
        .orders
        .iter()
        .filter(|o| !matches!(o.observed(), Some(Expect::Scheduled)))
        .collect();
    if troubled.is_empty() {
        return;
    }
    if outcome.spans.is_empty() {
        let _ = writeln!(
            out,
            "\nTraces of late, failed and lost orders: in your collector (search order.id)."
        );
        return;
    }
    let _ = writeln!(out, "\nTraces of late, failed and lost orders");
    for order in troubled {
        let what = order.observed().map_or("open", Expect::label);
        let traces = traces_of(&outcome.spans, order.scripted.id);
        let mut traces: Vec<_> = traces.into_iter().collect();
        traces.sort_by_key(|(_, spans)| spans.iter().map(|s| s.start_unix_nano).min().unwrap_or(0));
        let _ = writeln!(
            out,
            "\n  {} ({what}): {} trace(s)",
            order.scripted.id,
            traces.len()
        );
        for (trace_id, spans) in traces {
            waterfall(out, &trace_id, &spans);
        }
    }
}

fn waterfall(out: &mut String, trace_id: &str, spans: &[&ReceivedSpan]) {
    let t0 = spans.iter().map(|s| s.start_unix_nano).min().unwrap_or(0);
    let t1 = spans
        .iter()
        .map(|s| s.end_unix_nano)
        .max()
        .unwrap_or(t0)
        .max(t0 + 1);
    let total = (t1 - t0) as f64;
    let _ = writeln!(out, "  trace {trace_id}  ({:.1} ms)", total / 1e6);
    let ids: BTreeSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    let mut children: BTreeMap<&str, Vec<&ReceivedSpan>> = BTreeMap::new();
    let mut roots = Vec::new();
    for span in spans {
        match span.parent_span_id.as_deref().filter(|p| ids.contains(p)) {
            Some(parent) => children.entry(parent).or_default().push(span),
            None => roots.push(*span),
        }
    }
    for list in children.values_mut() {
        list.sort_by_key(|s| s.start_unix_nano);
    }
    roots.sort_by_key(|s| s.start_unix_nano);
    let mut stack: Vec<(&ReceivedSpan, usize)> = roots.into_iter().rev().map(|s| (s, 0)).collect();
    while let Some((span, depth)) = stack.pop() {
        let service = span.resource_str("service.name").unwrap_or("?");
        let name = format!("{}{}", "  ".repeat(depth.min(8)), span.name);
        let start = (span.start_unix_nano - t0) as f64;
        let duration = span.duration_nanos() as f64;
        let from = ((start / total) * BAR as f64).floor() as usize;
        let width = (((duration / total) * BAR as f64).round() as usize).max(1);
        let from = from.min(BAR - 1);
        let width = width.min(BAR - from);
        let bar = format!(
            "{}{}{}",
            " ".repeat(from),
            "█".repeat(width),
            " ".repeat(BAR - from - width)
        );
        let mark = match &span.status {
            Status::Error { message } if message.is_empty() => "  ✗ error".to_owned(),
            Status::Error { message } => format!("  ✗ {}", truncate(message, 60)),
            _ => String::new(),
        };
        let link = if span.links.is_empty() || span.parent_span_id.is_some() {
            ""
        } else {
            "  ↪ linked"
        };
        let _ = writeln!(
            out,
            "    {service:<4} {:<34} │{bar}│ {:>7.1}ms {:>7.1}ms{mark}{link}",
            truncate(&name, 34),
            start / 1e6,
            duration / 1e6,
        );
        if let Some(kids) = children.get(span.span_id.as_str()) {
            for kid in kids.iter().rev() {
                stack.push((kid, depth + 1));
            }
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Printed in `serve` mode once the services are up.
pub(crate) fn print_serving(services: &[(Role, u16)], collector: Option<&str>) {
    let url = |role: Role| {
        let port = services
            .iter()
            .find(|(r, _)| *r == role)
            .map(|(_, p)| *p)
            .unwrap_or_default();
        format!("http://127.0.0.1:{port}")
    };
    println!("\nServices are up (Ctrl-C stops them):");
    println!("  shop  {}  POST /orders", url(Role::Shop));
    println!(
        "  api   {}  POST /api/v1/orders   (public endpoint)",
        url(Role::Api)
    );
    println!(
        "  crm   {}  GET /orders, GET /orders/{{id}}",
        url(Role::Crm)
    );
    println!(
        "  mes   {}  GET /dashboard/orders?status=&channel=&overdue=&q=&page=&per_page=",
        url(Role::Mes)
    );
    println!("  every service: GET /metrics, GET /debug/orders (orders in flight, stuck first)");
    match collector {
        Some(c) => println!("  traces go to {c}"),
        None => println!(
            "  traces go to the embedded OTLP receiver; set OTEL_EXPORTER_OTLP_ENDPOINT for a collector (deploy/README.md)"
        ),
    }
    println!("\nTry:");
    println!(
        "  curl -s -XPOST {}/orders -H 'content-type: application/json' -d '{{\"items\":[{{\"sku\":\"MOTOR\",\"qty\":1}}]}}'",
        url(Role::Shop)
    );
    println!(
        "  curl -s '{}/dashboard/orders?overdue=true&per_page=5'",
        url(Role::Mes)
    );
}

// ---- the database: why the dashboard is slow, from the telemetry --------------------------------

/// The route of the MES dashboard's page.
pub(crate) const DASHBOARD_ROUTE: &str = "/dashboard/orders";

/// The event orderscope-sqlx adds to the enclosing span when a query repeats (N+1).
const REPEATED_QUERY_EVENT: &str = "orderscope.db.repeated_query";

/// One query text within a route and a phase: how often it ran and how long it took in total.
#[derive(Clone, Debug, Default)]
pub(crate) struct QueryStat {
    /// `db.query.summary`.
    pub(crate) summary: String,
    /// `db.query.text` (parameterised).
    pub(crate) text: String,
    /// Calls.
    pub(crate) calls: usize,
    /// Their total duration, nanoseconds.
    pub(crate) total_nanos: u64,
    /// The slowest call, nanoseconds.
    pub(crate) max_nanos: u64,
}

/// A `slow query` log line.
#[derive(Clone, Debug)]
pub(crate) struct SlowLine {
    /// `summary`.
    pub(crate) summary: String,
    /// `duration_ms`.
    pub(crate) duration_ms: f64,
    /// `operation`: the route or queue.
    pub(crate) operation: String,
    /// `trace_id`.
    pub(crate) trace_id: String,
}

/// What the telemetry of one phase of the dashboard shows.
#[derive(Clone, Debug, Default)]
pub(crate) struct PhaseReport {
    /// Durations of the dashboard's server spans, nanoseconds, sorted.
    pub(crate) latencies: Vec<u64>,
    /// Database spans (`db.system.name=postgresql`) under those server spans.
    pub(crate) db_spans: usize,
    /// The route's queries, by total time, the longest first.
    pub(crate) queries: Vec<QueryStat>,
    /// N+1 findings on the server spans: summary → requests that had it, and the largest count
    /// the event reported.
    pub(crate) repeated: BTreeMap<String, usize>,
    /// Slow-query lines of the phase's traces.
    pub(crate) slow: Vec<SlowLine>,
    /// `cache.load` spans under the server spans.
    pub(crate) cache_loads: usize,
}

impl PhaseReport {
    /// A quantile of the server spans' durations, nanoseconds (nearest rank).
    pub(crate) fn quantile(&self, q: f64) -> Option<u64> {
        if self.latencies.is_empty() {
            return None;
        }
        let rank =
            ((q * self.latencies.len() as f64).ceil() as usize).clamp(1, self.latencies.len());
        Some(self.latencies[rank - 1])
    }
}

/// The dashboard before and after the fix, and the other routes' queries.
#[derive(Clone, Debug, Default)]
pub(crate) struct DatabaseReport {
    /// The page as first written.
    pub(crate) first: PhaseReport,
    /// The page after the fix.
    pub(crate) fixed: PhaseReport,
    /// Queries outside the two phases (the consumers, the other requests), by route or queue.
    pub(crate) elsewhere: BTreeMap<String, Vec<QueryStat>>,
    /// Slow-query lines outside the two phases.
    pub(crate) slow_elsewhere: Vec<SlowLine>,
}

fn is_db(span: &ReceivedSpan) -> bool {
    span.attr_str("db.system.name") == Some("postgresql")
}

/// The route or queue of the server or consumer span above `span`, and that span.
fn operation_of<'a>(
    span: &'a ReceivedSpan,
    by_id: &BTreeMap<(&str, &str), &'a ReceivedSpan>,
) -> Option<&'a ReceivedSpan> {
    let mut current = span;
    for _ in 0..64 {
        if matches!(current.kind, SpanKind::Server | SpanKind::Consumer) {
            return Some(current);
        }
        let parent = current.parent_span_id.as_deref()?;
        current = by_id.get(&(current.trace_id.as_str(), parent))?;
    }
    None
}

fn operation_name(span: &ReceivedSpan) -> String {
    if let Some(route) = span.attr_str("http.route") {
        let method = span.attr_str("http.request.method").unwrap_or("");
        return format!("{method} {route}").trim().to_owned();
    }
    span.name.clone()
}

fn add_query(stats: &mut Vec<QueryStat>, span: &ReceivedSpan) {
    let text = span.attr_str("db.query.text").unwrap_or("").to_owned();
    let summary = span.attr_str("db.query.summary").unwrap_or("").to_owned();
    let nanos = span.duration_nanos();
    match stats.iter_mut().find(|q| q.text == text) {
        Some(q) => {
            q.calls += 1;
            q.total_nanos += nanos;
            q.max_nanos = q.max_nanos.max(nanos);
        }
        None => stats.push(QueryStat {
            summary,
            text,
            calls: 1,
            total_nanos: nanos,
            max_nanos: nanos,
        }),
    }
}

fn slow_lines(outcome: &Outcome) -> Vec<SlowLine> {
    outcome
        .logs
        .get(&Role::Mes)
        .into_iter()
        .flatten()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|v| v["message"] == "slow query")
        .map(|v| SlowLine {
            summary: v["summary"].as_str().unwrap_or("").to_owned(),
            duration_ms: v["duration_ms"].as_f64().unwrap_or_default(),
            operation: v["operation"].as_str().unwrap_or("").to_owned(),
            trace_id: v["trace_id"].as_str().unwrap_or("").to_owned(),
        })
        .collect()
}

/// Reads the dashboard's two phases from MES's spans and log lines alone.
pub(crate) fn database_report(outcome: &Outcome) -> DatabaseReport {
    let mes: Vec<&ReceivedSpan> = outcome
        .spans
        .iter()
        .filter(|s| s.resource_str("service.name") == Some(Role::Mes.name()))
        .collect();
    let by_id: BTreeMap<(&str, &str), &ReceivedSpan> = mes
        .iter()
        .map(|s| ((s.trace_id.as_str(), s.span_id.as_str()), *s))
        .collect();
    let db = &outcome.database;
    let phase_of = |server: &ReceivedSpan| -> Option<bool> {
        let dashboard = server.kind == SpanKind::Server
            && server.attr_str("http.route") == Some(DASHBOARD_ROUTE);
        let within = |p: &Phase| p.contains(server.start_unix_nano);
        match () {
            _ if dashboard && within(&db.first) => Some(false),
            _ if dashboard && within(&db.fixed) => Some(true),
            _ => None,
        }
    };
    let mut report = DatabaseReport::default();
    let mut traces: [BTreeSet<&str>; 2] = Default::default();
    for server in &mes {
        let Some(fixed) = phase_of(server) else {
            continue;
        };
        let phase = if fixed {
            &mut report.fixed
        } else {
            &mut report.first
        };
        phase.latencies.push(server.duration_nanos());
        traces[usize::from(fixed)].insert(server.trace_id.as_str());
        for event in server
            .events
            .iter()
            .filter(|e| e.name == REPEATED_QUERY_EVENT)
        {
            let summary = event.attr_str("db.query.summary").unwrap_or("?").to_owned();
            *phase.repeated.entry(summary).or_default() += 1;
        }
    }
    for span in &mes {
        let Some(server) = operation_of(span, &by_id) else {
            continue;
        };
        match phase_of(server) {
            Some(fixed) => {
                let phase = if fixed {
                    &mut report.fixed
                } else {
                    &mut report.first
                };
                if is_db(span) {
                    phase.db_spans += 1;
                    add_query(&mut phase.queries, span);
                } else if span.name.starts_with("cache.load") {
                    phase.cache_loads += 1;
                }
            }
            None if is_db(span) => {
                add_query(
                    report.elsewhere.entry(operation_name(server)).or_default(),
                    span,
                );
            }
            None => {}
        }
    }
    for phase in [&mut report.first, &mut report.fixed] {
        phase.latencies.sort_unstable();
        phase
            .queries
            .sort_by_key(|q| std::cmp::Reverse(q.total_nanos));
    }
    for list in report.elsewhere.values_mut() {
        list.sort_by_key(|q| std::cmp::Reverse(q.total_nanos));
    }
    for line in slow_lines(outcome) {
        if traces[0].contains(line.trace_id.as_str()) {
            report.first.slow.push(line);
        } else if traces[1].contains(line.trace_id.as_str()) {
            report.fixed.slow.push(line);
        } else {
            report.slow_elsewhere.push(line);
        }
    }
    report
}

fn millis(nanos: Option<u64>) -> String {
    match nanos {
        Some(n) => format!("{:.1} ms", n as f64 / 1e6),
        None => "-".to_owned(),
    }
}

fn phase_section(out: &mut String, title: &str, phase: &PhaseReport, requests: usize) {
    let _ = writeln!(
        out,
        "\n  {title}: {} requests traced (of {requests}), p50 {}, p95 {}; {} database spans under them",
        phase.latencies.len(),
        millis(phase.quantile(0.5)),
        millis(phase.quantile(0.95)),
        phase.db_spans,
    );
    let _ = writeln!(
        out,
        "    {:<34} {:>6} {:>10} {:>9}  query",
        "summary", "calls", "total", "mean"
    );
    for q in phase.queries.iter().take(4) {
        let _ = writeln!(
            out,
            "    {:<34} {:>6} {:>10} {:>9}  {}",
            truncate(&q.summary, 34),
            q.calls,
            millis(Some(q.total_nanos)),
            millis(Some(q.total_nanos / q.calls.max(1) as u64)),
            truncate(&q.text, 90),
        );
    }
    if phase.repeated.is_empty() {
        let _ = writeln!(out, "    N+1: none");
    }
    for (summary, requests) in &phase.repeated {
        let per_request = phase
            .queries
            .iter()
            .filter(|q| q.summary == *summary)
            .map(|q| q.calls)
            .sum::<usize>()
            / phase.latencies.len().max(1);
        let _ = writeln!(
            out,
            "    N+1: {summary} about {per_request}× per request, flagged on {requests} of {} requests",
            phase.latencies.len()
        );
    }
    let _ = writeln!(out, "    slow-query lines: {}", phase.slow.len());
    let mut by_summary: BTreeMap<&str, (usize, f64)> = BTreeMap::new();
    for line in &phase.slow {
        let entry = by_summary.entry(line.summary.as_str()).or_default();
        entry.0 += 1;
        entry.1 = entry.1.max(line.duration_ms);
    }
    for (summary, (n, max)) in by_summary {
        let _ = writeln!(out, "      {n}× {summary} (up to {max:.0} ms)");
    }
    if let Some(line) = phase.slow.first() {
        let _ = writeln!(
            out,
            "      e.g. {} {:.0} ms in {} trace {}",
            line.summary, line.duration_ms, line.operation, line.trace_id
        );
    }
    if phase.cache_loads > 0 {
        let _ = writeln!(out, "    cache.load spans: {}", phase.cache_loads);
    }
}

fn database(out: &mut String, outcome: &Outcome, samples: &BTreeMap<Role, Vec<Sample>>) {
    let db = &outcome.database;
    let _ = writeln!(
        out,
        "\nDatabase (MES on PostgreSQL {}, schema {})",
        db.url, db.prepared.schema
    );
    let _ = writeln!(
        out,
        "  history: {} orders with {} lines loaded in {:.1} s (generate_series, keys rebuilt after); the fix's migration took {:.1} s",
        db.prepared.orders,
        db.prepared.lines,
        db.prepared.seed.as_secs_f64(),
        db.migration.as_secs_f64(),
    );
    for e in &db.errors {
        let _ = writeln!(out, "  ERROR: {e}");
    }
    if outcome.spans.is_empty() {
        let _ = writeln!(
            out,
            "  spans went to an external collector: the dashboard's queries are there"
        );
        return;
    }
    let report = database_report(outcome);
    phase_section(
        out,
        &format!("GET {DASHBOARD_ROUTE} as first written"),
        &report.first,
        db.first.requests,
    );
    phase_section(
        out,
        &format!("GET {DASHBOARD_ROUTE} after the fix"),
        &report.fixed,
        db.fixed.requests,
    );
    if let (Some(before), Some(after)) = (report.first.quantile(0.95), report.fixed.quantile(0.95))
    {
        let _ = writeln!(
            out,
            "\n  dashboard p95 {} → {} ({:.0}× faster), p50 {} → {}",
            millis(Some(before)),
            millis(Some(after)),
            before as f64 / after.max(1) as f64,
            millis(report.first.quantile(0.5)),
            millis(report.fixed.quantile(0.5)),
        );
    }
    let _ = writeln!(
        out,
        "\n  other requests and messages (top query summaries by total time)"
    );
    for (operation, queries) in &report.elsewhere {
        let mut by_summary: Vec<(&str, usize, u64)> = Vec::new();
        for q in queries {
            match by_summary.iter_mut().find(|(s, _, _)| *s == q.summary) {
                Some(entry) => {
                    entry.1 += q.calls;
                    entry.2 += q.total_nanos;
                }
                None => by_summary.push((q.summary.as_str(), q.calls, q.total_nanos)),
            }
        }
        by_summary.sort_by_key(|entry| std::cmp::Reverse(entry.2));
        for (summary, calls, total) in by_summary.into_iter().take(3) {
            let _ = writeln!(
                out,
                "    {:<28} {:<24} {:>5} calls {:>10}",
                truncate(operation, 28),
                truncate(summary, 24),
                calls,
                millis(Some(total)),
            );
        }
    }
    if !report.slow_elsewhere.is_empty() {
        let _ = writeln!(
            out,
            "  slow-query lines elsewhere: {}",
            report.slow_elsewhere.len()
        );
    }
    if let Some(s) = samples.get(&Role::Mes) {
        let hits = sum(s, "cache_requests_total", |x| label(x, "result") == "hit");
        let misses = sum(s, "cache_requests_total", |x| label(x, "result") == "miss");
        let repeated = sum(s, "db_repeated_queries_total", |_| true);
        let timeouts = sum(s, "db_client_connection_timeouts_total", |_| true);
        let wait = quantile(
            s,
            "db_client_connection_wait_time_seconds_bucket",
            0.95,
            |_| true,
        );
        let _ = writeln!(
            out,
            "  /metrics: cache hits {hits}, misses {misses}; db_repeated_queries_total {repeated}; pool wait p95 {}, timeouts {timeouts}",
            ms(wait)
        );
    }
}
