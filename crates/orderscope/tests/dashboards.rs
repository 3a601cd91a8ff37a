//! The Grafana dashboards (`dashboards/*.json`) and the Prometheus rules (`rules/*.yml`) name only
//! metrics and labels that exist.
//!
//! Every PromQL expression is scanned for metric names and label names. A metric name must be in
//! the catalogue (`orderscope_metrics::catalogue::CATALOGUE`; histograms as `_bucket`, `_sum` or
//! `_count`) or be the output of a recording rule in `rules/orderscope.rules.yml`. A label name
//! must belong to one of the metrics the expression reads, or be `job`/`instance` (set by the
//! scrape) or `le` (histogram buckets). Dashboard queries must also filter on the `service`
//! template variable, so every panel follows the service picker.
//!
//! When `promtool` is installed, the rules are also checked and unit-tested with it, the
//! Prometheus configuration of `deploy/` is checked, and every dashboard expression is checked for
//! PromQL syntax.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use orderscope_metrics::catalogue::{CATALOGUE, MetricKind};
use serde_json::Value;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

// ------------------------------------------------------------------------------------------------
// Known metrics.

/// The series names a catalogue entry shows up as in Prometheus, with the entry's labels.
struct Known {
    /// series name → labels it may carry.
    series: BTreeMap<String, BTreeSet<String>>,
}

impl Known {
    fn from_catalogue() -> Self {
        let mut series = BTreeMap::new();
        for def in CATALOGUE {
            let labels: BTreeSet<String> = def.labels.iter().map(|l| l.to_string()).collect();
            match def.kind {
                MetricKind::Histogram => {
                    let mut bucket = labels.clone();
                    bucket.insert("le".to_owned());
                    series.insert(format!("{}_bucket", def.name), bucket);
                    series.insert(format!("{}_sum", def.name), labels.clone());
                    series.insert(format!("{}_count", def.name), labels);
                }
                MetricKind::Counter | MetricKind::Gauge => {
                    series.insert(def.name.to_owned(), labels);
                }
            }
        }
        Known { series }
    }

    /// Adds the outputs of recording rules: their labels are those of the metrics they read.
    fn add_recording_rules(&mut self, rules: &[RuleExpr]) {
        for rule in rules {
            let Some(name) = &rule.record else { continue };
            let Ok(scan) = scan_promql(&rule.expr) else {
                continue;
            };
            let mut labels = BTreeSet::new();
            for m in &scan.metrics {
                if let Some(l) = self.series.get(&m.name) {
                    labels.extend(l.iter().cloned());
                }
            }
            labels.remove("le");
            self.series.insert(name.clone(), labels);
        }
    }
}

/// Labels every scraped series may carry, whatever the metric.
const SCRAPE_LABELS: &[&str] = &["job", "instance", "__name__"];

// ------------------------------------------------------------------------------------------------
// A small PromQL scanner: enough to find metric names, label names and selectors.

#[derive(Debug)]
struct MetricRef {
    name: String,
    /// The text between `{` and `}` right after the name, if any.
    selector: Option<String>,
}

#[derive(Debug, Default)]
struct Scan {
    metrics: Vec<MetricRef>,
    /// Label names in matchers and in `by`/`without`/`on`/`ignoring`/`group_*` lists.
    labels: Vec<String>,
}

const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
const KEYWORDS: &[&str] = &[
    "and", "or", "unless", "bool", "offset", "inf", "nan", "atan2",
];

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}
fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Skips a quoted string starting at `chars[i]` (the quote); returns the index after it and the
/// string's content.
fn skip_string(chars: &[char], i: usize) -> Result<(usize, String), String> {
    let quote = chars[i];
    let mut j = i + 1;
    let mut out = String::new();
    while j < chars.len() {
        let c = chars[j];
        if c == '\\' && quote != '`' {
            if let Some(&n) = chars.get(j + 1) {
                out.push(n);
            }
            j += 2;
            continue;
        }
        if c == quote {
            return Ok((j + 1, out));
        }
        out.push(c);
        j += 1;
    }
    Err(format!("unterminated string starting at {i}"))
}

fn skip_ws(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() && chars[i].is_whitespace() {
        i += 1;
    }
    i
}

fn read_ident(chars: &[char], mut i: usize) -> (usize, String) {
    let start = i;
    while i < chars.len() && is_ident_char(chars[i]) {
        i += 1;
    }
    (i, chars[start..i].iter().collect())
}

/// Parses `{...}` starting at `chars[i]` (the brace). Returns the index after `}` and the raw text.
fn scan_selector(chars: &[char], i: usize, scan: &mut Scan) -> Result<(usize, String), String> {
    let mut j = i + 1;
    let mut expect_label = true;
    let mut pending_label = String::new();
    let mut pending_op = String::new();
    while j < chars.len() {
        let c = chars[j];
        if c == '}' {
            let raw: String = chars[i + 1..j].iter().collect();
            return Ok((j + 1, raw));
        }
        if c.is_whitespace() || c == ',' {
            if c == ',' {
                expect_label = true;
            }
            j += 1;
        } else if c == '"' || c == '\'' || c == '`' {
            let (next, value) = skip_string(chars, j)?;
            if pending_label == "__name__" && (pending_op == "=" || pending_op == "=~") {
                for name in value.split('|') {
                    scan.metrics.push(MetricRef {
                        name: name.to_owned(),
                        selector: None,
                    });
                }
            }
            j = next;
        } else if matches!(c, '=' | '!' | '~') {
            if expect_label {
                pending_op.clear();
            }
            pending_op.push(c);
            expect_label = false;
            j += 1;
        } else if is_ident_start(c) {
            let (next, ident) = read_ident(chars, j);
            if expect_label {
                scan.labels.push(ident.clone());
                pending_label = ident;
                pending_op.clear();
                expect_label = false;
            }
            j = next;
        } else if c == '$' {
            j = skip_variable(chars, j);
        } else {
            j += 1;
        }
    }
    Err("unterminated label matcher".to_owned())
}

/// Skips a Grafana variable: `$name`, `${name}`, `${name:format}`, `$__rate_interval`.
fn skip_variable(chars: &[char], i: usize) -> usize {
    let mut j = i + 1;
    if chars.get(j) == Some(&'{') {
        while j < chars.len() && chars[j] != '}' {
            j += 1;
        }
        return j + 1;
    }
    while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
        j += 1;
    }
    j
}

fn scan_promql(expr: &str) -> Result<Scan, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut scan = Scan::default();
    let mut i = 0;
    // Index in `scan.metrics` of a metric name that a `{` right after it would belong to.
    let mut last_metric: Option<usize> = None;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '{' {
            let (next, raw) = scan_selector(&chars, i, &mut scan)?;
            if let Some(idx) = last_metric.take() {
                scan.metrics[idx].selector = Some(raw);
            }
            i = next;
            continue;
        }
        last_metric = None;
        match c {
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '"' | '\'' | '`' => i = skip_string(&chars, i)?.0,
            '[' => {
                while i < chars.len() && chars[i] != ']' {
                    i += 1;
                }
                if i == chars.len() {
                    return Err("unterminated range".to_owned());
                }
                i += 1;
            }
            '$' => i = skip_variable(&chars, i),
            _ if c.is_ascii_digit()
                || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            _ if is_ident_start(c) => {
                let (next, ident) = read_ident(&chars, i);
                i = next;
                let after = skip_ws(&chars, i);
                let lower = ident.to_ascii_lowercase();
                if GROUPING.contains(&lower.as_str()) {
                    if chars.get(after) == Some(&'(') {
                        let mut j = after + 1;
                        while j < chars.len() && chars[j] != ')' {
                            if is_ident_start(chars[j]) {
                                let (n, label) = read_ident(&chars, j);
                                scan.labels.push(label);
                                j = n;
                            } else {
                                j += 1;
                            }
                        }
                        i = j + 1;
                    }
                } else if AGGREGATIONS.contains(&lower.as_str())
                    || KEYWORDS.contains(&lower.as_str())
                {
                    // operator or keyword
                } else if chars.get(after) == Some(&'(') {
                    // function call
                } else {
                    scan.metrics.push(MetricRef {
                        name: ident,
                        selector: None,
                    });
                    last_metric = Some(scan.metrics.len() - 1);
                }
            }
            _ => i += 1,
        }
    }
    Ok(scan)
}

/// Checks one expression: known metrics, known labels. Returns the problems found.
fn check_expr(
    known: &Known,
    origin: &str,
    expr: &str,
    extra_labels: &[String],
) -> (Vec<String>, Option<Scan>) {
    let scan = match scan_promql(expr) {
        Ok(scan) => scan,
        Err(e) => return (vec![format!("{origin}: cannot scan `{expr}`: {e}")], None),
    };
    let mut problems = Vec::new();
    let mut allowed: BTreeSet<String> = SCRAPE_LABELS.iter().map(|s| s.to_string()).collect();
    if scan.metrics.is_empty() {
        problems.push(format!("{origin}: `{expr}` reads no metric"));
    }
    for m in &scan.metrics {
        match known.series.get(&m.name) {
            Some(labels) => allowed.extend(labels.iter().cloned()),
            None => problems.push(format!(
                "{origin}: `{}` is neither in the metric catalogue nor a recording rule (in `{expr}`)",
                m.name
            )),
        }
    }
    let labels: BTreeSet<&String> = scan.labels.iter().chain(extra_labels).collect();
    for label in labels {
        if !allowed.contains(label) {
            problems.push(format!(
                "{origin}: label `{label}` belongs to none of the metrics the expression reads (in `{expr}`)"
            ));
        }
    }
    (problems, Some(scan))
}

// ------------------------------------------------------------------------------------------------
// Rules files: a line-based reader for the parts we need (no YAML dependency).

#[derive(Debug)]
struct RuleExpr {
    /// `record:` name, for recording rules.
    record: Option<String>,
    /// `alert:` name, for alerting rules.
    alert: Option<String>,
    expr: String,
    line: usize,
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    if s.len() >= 2
        && ((s.starts_with('\'') && s.ends_with('\'')) || (s.starts_with('"') && s.ends_with('"')))
    {
        s[1..s.len() - 1].replace("''", "'")
    } else {
        s.to_owned()
    }
}

/// Values of `key:` entries, single-line or block scalars (`|`, `>`), with their line numbers.
fn yaml_values(text: &str, key: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let body = line.trim_start();
        let indent = line.len() - body.len();
        let body_no_dash = body.strip_prefix("- ").unwrap_or(body);
        let key_indent = indent + (body.len() - body_no_dash.len());
        if let Some(rest) = body_no_dash
            .strip_prefix(key)
            .and_then(|r| r.strip_prefix(':'))
        {
            let rest = rest.trim();
            if rest.starts_with('|') || rest.starts_with('>') {
                let mut block = Vec::new();
                let mut j = i + 1;
                while j < lines.len() {
                    let l = lines[j];
                    let t = l.trim_start();
                    if !t.is_empty() && l.len() - t.len() <= key_indent {
                        break;
                    }
                    block.push(t);
                    j += 1;
                }
                let sep = if rest.starts_with('>') { " " } else { "\n" };
                out.push((i + 1, block.join(sep).trim().to_owned()));
                i = j;
                continue;
            }
            out.push((i + 1, unquote(rest)));
        }
        i += 1;
    }
    out
}

fn read_rules(path: &Path) -> Vec<RuleExpr> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let records = yaml_values(&text, "record");
    let alerts = yaml_values(&text, "alert");
    let exprs = yaml_values(&text, "expr");
    // Each rule's `expr` follows its `record`/`alert` line.
    let mut heads: Vec<(usize, Option<String>, Option<String>)> = records
        .into_iter()
        .map(|(l, n)| (l, Some(n), None))
        .chain(alerts.into_iter().map(|(l, n)| (l, None, Some(n))))
        .collect();
    heads.sort_by_key(|h| h.0);
    let mut rules = Vec::new();
    for (line, expr) in exprs {
        let head = heads.iter().rev().find(|h| h.0 < line);
        let (record, alert) = head
            .map(|h| (h.1.clone(), h.2.clone()))
            .unwrap_or((None, None));
        rules.push(RuleExpr {
            record,
            alert,
            expr,
            line,
        });
    }
    rules
}

fn rules_path() -> PathBuf {
    repo_root().join("rules/orderscope.rules.yml")
}

fn known_with_rules() -> (Known, Vec<RuleExpr>) {
    let rules = read_rules(&rules_path());
    let mut known = Known::from_catalogue();
    known.add_recording_rules(&rules);
    (known, rules)
}

#[test]
fn rule_expressions_name_only_catalogue_metrics_and_labels() {
    let (known, rules) = known_with_rules();
    assert!(
        rules.len() >= 20,
        "expected the recording and alerting rules, found {}",
        rules.len()
    );
    let mut problems = Vec::new();
    for rule in &rules {
        let name = rule
            .record
            .as_deref()
            .or(rule.alert.as_deref())
            .unwrap_or("?");
        let origin = format!("rules/orderscope.rules.yml:{} ({name})", rule.line);
        problems.extend(check_expr(&known, &origin, &rule.expr, &[]).0);
    }
    let names: BTreeSet<_> = rules.iter().filter_map(|r| r.alert.clone()).collect();
    for expected in [
        "OrderscopeErrorBudgetBurnFast",
        "OrderscopeErrorBudgetBurnSlow",
        "OrderscopeLatencyBudgetBurnFast",
        "OrderscopeLatencyBudgetBurnSlow",
        "OrderscopeOverdueOrdersRising",
        "OrderscopeMessagesUnroutable",
        "OrderscopeMessagesNacked",
        "OrderscopeMessagesDeadLettered",
        "OrderscopeUnsettledMessagesGrowing",
        "OrderscopePropagationDropsRising",
    ] {
        if !names.contains(expected) {
            problems.push(format!(
                "alert {expected} is missing from rules/orderscope.rules.yml"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn rule_unit_tests_use_catalogue_series() {
    let (known, _) = known_with_rules();
    let path = repo_root().join("rules/orderscope.rules.test.yml");
    let text = fs::read_to_string(&path).unwrap();
    let mut problems = Vec::new();
    let mut count = 0;
    for key in ["series", "expr", "labels"] {
        for (line, value) in yaml_values(&text, key) {
            // `labels:` also introduces the maps of expected alert labels; only series
            // selectors (quoted strings) are expressions.
            if key == "labels" && !value.contains('{') {
                continue;
            }
            count += 1;
            let origin = format!("rules/orderscope.rules.test.yml:{line}");
            problems.extend(check_expr(&known, &origin, &value, &[]).0);
        }
    }
    assert!(count > 20, "found only {count} series and expressions");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ------------------------------------------------------------------------------------------------
// Dashboards.

fn dashboards() -> Vec<(String, Value)> {
    let dir = repo_root().join("dashboards");
    let mut out = Vec::new();
    for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = fs::read_to_string(&path).unwrap();
        let value: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()));
        out.push((
            path.file_name().unwrap().to_string_lossy().into_owned(),
            value,
        ));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// One query of a dashboard: a Prometheus panel target or a template variable.
struct Query {
    origin: String,
    expr: String,
    legend: Option<String>,
}

fn datasource_type(v: &Value) -> Option<&str> {
    v.get("datasource")
        .and_then(|d| d.get("type"))
        .and_then(Value::as_str)
}

fn collect_panel_queries(
    file: &str,
    panels: &[Value],
    out: &mut Vec<Query>,
    others: &mut Vec<String>,
) {
    for panel in panels {
        let title = panel.get("title").and_then(Value::as_str).unwrap_or("");
        if let Some(nested) = panel.get("panels").and_then(Value::as_array) {
            collect_panel_queries(file, nested, out, others);
        }
        for target in panel
            .get("targets")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let ds = datasource_type(target).or_else(|| datasource_type(panel));
            let origin = format!("dashboards/{file}: panel \"{title}\"");
            match ds {
                Some("prometheus") => {
                    let expr = target
                        .get("expr")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    out.push(Query {
                        origin,
                        expr: expr.to_owned(),
                        legend: target
                            .get("legendFormat")
                            .and_then(Value::as_str)
                            .map(str::to_owned),
                    });
                }
                Some("loki" | "tempo") => others.push(origin),
                other => panic!("{origin}: target with unknown data source type {other:?}"),
            }
        }
    }
}

/// `label_values(selector, label)` or `label_values(label)` → (selector, label).
fn parse_label_values(q: &str) -> Option<(Option<String>, String)> {
    let inner = q.trim().strip_prefix("label_values(")?.strip_suffix(')')?;
    match inner.rfind(',') {
        Some(comma) if !inner[comma..].contains('}') => Some((
            Some(inner[..comma].trim().to_owned()),
            inner[comma + 1..].trim().to_owned(),
        )),
        _ => Some((None, inner.trim().to_owned())),
    }
}

/// Placeholders `{{label}}` in a legend.
fn legend_labels(legend: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = legend;
    while let Some(start) = rest.find("{{") {
        let Some(end) = rest[start..].find("}}") else {
            break;
        };
        out.push(rest[start + 2..start + end].trim().to_owned());
        rest = &rest[start + end + 2..];
    }
    out
}

#[test]
fn dashboards_exist_and_are_grafana_dashboards() {
    let all = dashboards();
    let files: Vec<_> = all.iter().map(|(f, _)| f.as_str()).collect();
    for expected in ["amqp.json", "order-pipeline.json", "service-red.json"] {
        assert!(
            files.contains(&expected),
            "dashboards/{expected} is missing; found {files:?}"
        );
    }
    let mut uids = BTreeSet::new();
    for (file, d) in &all {
        let uid = d["uid"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: no uid"));
        assert!(uids.insert(uid.to_owned()), "{file}: uid {uid} used twice");
        assert!(
            d["title"]
                .as_str()
                .is_some_and(|t| t.starts_with("orderscope")),
            "{file}: title"
        );
        assert!(
            d["schemaVersion"].as_u64().is_some(),
            "{file}: schemaVersion"
        );
        let tags: Vec<_> = d["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            tags.contains(&"orderscope"),
            "{file}: tag `orderscope` links the dashboards together"
        );

        // The `service` variable reads the `job` label.
        let vars = d["templating"]["list"]
            .as_array()
            .unwrap_or_else(|| panic!("{file}: no templating"));
        let service = vars
            .iter()
            .find(|v| v["name"] == "service")
            .unwrap_or_else(|| panic!("{file}: no `service` template variable"));
        let query = service["query"]["query"]
            .as_str()
            .or(service["query"].as_str())
            .unwrap();
        let (_, label) =
            parse_label_values(query).unwrap_or_else(|| panic!("{file}: service query {query}"));
        assert_eq!(
            label, "job",
            "{file}: the service variable reads the `job` label"
        );

        // Panels: unique ids, inside the 24-column grid, no overlaps.
        let panels = d["panels"].as_array().unwrap();
        let mut ids = BTreeSet::new();
        let mut cells = BTreeSet::new();
        for p in panels {
            let id = p["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("{file}: panel without id"));
            assert!(ids.insert(id), "{file}: panel id {id} used twice");
            let g = &p["gridPos"];
            let (x, y, w, h) = (
                g["x"].as_u64().unwrap(),
                g["y"].as_u64().unwrap(),
                g["w"].as_u64().unwrap(),
                g["h"].as_u64().unwrap(),
            );
            assert!(x + w <= 24, "{file}: panel {id} is wider than the grid");
            for cx in x..x + w {
                for cy in y..y + h {
                    assert!(
                        cells.insert((cx, cy)),
                        "{file}: panel {id} overlaps another panel"
                    );
                }
            }
        }
    }
}

#[test]
fn dashboard_queries_name_only_catalogue_metrics_and_follow_the_service_variable() {
    let (known, _) = known_with_rules();
    let mut problems = Vec::new();
    let mut checked = 0;
    let mut metrics_used = BTreeSet::new();
    for (file, d) in dashboards() {
        let mut queries = Vec::new();
        let mut others = Vec::new();
        collect_panel_queries(
            &file,
            d["panels"].as_array().unwrap(),
            &mut queries,
            &mut others,
        );

        // Template variables that query Prometheus.
        for v in d["templating"]["list"].as_array().unwrap() {
            if v["type"] != "query" || datasource_type(v) != Some("prometheus") {
                continue;
            }
            let q = v["query"]["query"]
                .as_str()
                .or(v["query"].as_str())
                .unwrap_or_default();
            let origin = format!("dashboards/{file}: variable {}", v["name"]);
            match parse_label_values(q) {
                Some((Some(selector), label)) => {
                    problems.extend(check_expr(&known, &origin, &selector, &[label]).0);
                    checked += 1;
                }
                Some((None, _)) => {}
                None => problems.push(format!("{origin}: expected label_values(...), got `{q}`")),
            }
        }

        for q in queries {
            checked += 1;
            let legend = q.legend.as_deref().map(legend_labels).unwrap_or_default();
            let (p, scan) = check_expr(&known, &q.origin, &q.expr, &legend);
            problems.extend(p);
            let Some(scan) = scan else { continue };
            for m in &scan.metrics {
                metrics_used.insert(m.name.clone());
                let follows = m.selector.as_deref().is_some_and(|s| {
                    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
                    compact.contains("job=~\"$service\"")
                });
                if !follows {
                    problems.push(format!(
                        "{}: `{}` is not filtered by job=~\"$service\" (in `{}`)",
                        q.origin, m.name, q.expr
                    ));
                }
            }
        }
    }
    assert!(checked > 50, "only {checked} queries found");

    // Every catalogue metric appears on some dashboard.
    for def in CATALOGUE {
        let shown = metrics_used.iter().any(|m| {
            m == def.name
                || m.strip_prefix(def.name)
                    .is_some_and(|s| ["_bucket", "_sum", "_count"].contains(&s))
        });
        if !shown {
            problems.push(format!("no dashboard shows `{}`", def.name));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ------------------------------------------------------------------------------------------------
// promtool, when installed (scripts/test installs it).

fn promtool() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|p| p.join("promtool"))
        .find(|p| p.is_file())
}

fn run_promtool(promtool: &Path, args: &[&str]) {
    let out = std::process::Command::new(promtool)
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool {}:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_checks_rules_and_dashboard_expressions() {
    let Some(promtool) = promtool() else {
        eprintln!(
            "promtool is not installed; skipping the promtool checks (scripts/test installs it)"
        );
        return;
    };
    run_promtool(&promtool, &["check", "rules", "rules/orderscope.rules.yml"]);
    run_promtool(
        &promtool,
        &["test", "rules", "rules/orderscope.rules.test.yml"],
    );
    // The Prometheus configuration of the compose stack, with the rules it loads.
    run_promtool(
        &promtool,
        &["check", "config", "deploy/prometheus/prometheus.yml"],
    );

    // Dashboard expressions, with Grafana's variables replaced, as recording rules: promtool
    // then parses each one.
    let mut yaml = String::from("groups:\n  - name: dashboards\n    rules:\n");
    let mut n = 0;
    for (file, d) in dashboards() {
        let mut queries = Vec::new();
        collect_panel_queries(
            &file,
            d["panels"].as_array().unwrap(),
            &mut queries,
            &mut Vec::new(),
        );
        for q in queries {
            n += 1;
            let expr = q
                .expr
                .replace("$__rate_interval", "5m")
                .replace("$__range", "1h")
                .replace("${service}", ".*")
                .replace("$service", ".*")
                .replace("$stage", ".*");
            assert!(
                !expr.contains('$'),
                "{}: unknown variable in `{}`",
                q.origin,
                q.expr
            );
            yaml.push_str(&format!(
                "      - record: dashboard:query:{n}\n        expr: |\n"
            ));
            for line in expr.lines() {
                yaml.push_str(&format!("          {line}\n"));
            }
        }
    }
    let path = std::env::temp_dir().join(format!(
        "orderscope-dashboard-queries-{}.yml",
        std::process::id()
    ));
    fs::write(&path, yaml).unwrap();
    let path_str = path.to_string_lossy().into_owned();
    run_promtool(&promtool, &["check", "rules", &path_str]);
    let _ = fs::remove_file(&path);
}

// ------------------------------------------------------------------------------------------------
// The scanner itself.

#[test]
fn scanner_finds_metrics_and_labels() {
    let scan = scan_promql(
        r#"histogram_quantile(0.95, sum by (job, le) (rate(a_bucket{job=~"$service",x!="}"}[$__rate_interval] offset 5m)))
           / on (job) group_left sum(b_total) or vector(0) # c_total in a comment"#,
    )
    .unwrap();
    let names: Vec<_> = scan.metrics.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["a_bucket", "b_total"]);
    assert_eq!(
        scan.metrics[0].selector.as_deref(),
        Some(r#"job=~"$service",x!="}""#)
    );
    assert_eq!(scan.labels, ["job", "le", "job", "x", "job"]);

    let scan = scan_promql(r#"{__name__=~"m1|m2", job="a"}"#).unwrap();
    let names: Vec<_> = scan.metrics.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["m1", "m2"]);

    assert_eq!(
        parse_label_values(r#"label_values(m{job=~"$service"}, stage)"#),
        Some((Some(r#"m{job=~"$service"}"#.to_owned()), "stage".to_owned()))
    );
    assert_eq!(
        parse_label_values("label_values(job)"),
        Some((None, "job".to_owned()))
    );
    assert_eq!(
        legend_labels("{{job}} → {{ http_route }}"),
        ["job", "http_route"]
    );
}
