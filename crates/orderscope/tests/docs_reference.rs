//! The documentation agrees with the code.
//!
//! - `docs/metrics.md`: the reference table between `<!-- catalogue:begin -->` and
//!   `<!-- catalogue:end -->` lists exactly the metrics of `orderscope_metrics::catalogue::CATALOGUE`,
//!   with the same type, unit, labels and buckets, and every metric has its own section. When they
//!   differ, the failure message prints the table as the catalogue would have it.
//! - `docs/conventions.md`: every metric its tables name is in the catalogue, with the same type.
//! - `docs/alerts.md`: every alert of `rules/orderscope.rules.yml` has a section (the alerts'
//!   `runbook` annotations link there).
//! - Relative links in `README.md` and `docs/*.md` point at files that exist.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use orderscope_metrics::catalogue::{CATALOGUE, MetricDef, MetricKind};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    let path = repo_root().join(rel);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn kind_name(kind: &MetricKind) -> &'static str {
    match kind {
        MetricKind::Counter => "counter",
        MetricKind::Gauge => "gauge",
        MetricKind::Histogram => "histogram",
    }
}

/// One row of the reference table, in comparable form.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    name: String,
    kind: String,
    unit: String,
    labels: Vec<String>,
    buckets: Vec<f64>,
}

const NONE: &str = "—";

fn row_of(def: &MetricDef) -> Row {
    Row {
        name: def.name.to_owned(),
        kind: kind_name(&def.kind).to_owned(),
        unit: def.unit.unwrap_or(NONE).to_owned(),
        labels: def.labels.iter().map(|l| l.to_string()).collect(),
        buckets: def.buckets.map(<[f64]>::to_vec).unwrap_or_default(),
    }
}

fn format_bucket(b: f64) -> String {
    // Plain decimal, as Prometheus prints `le`: 0.005, 1, 3600.
    format!("{b}")
}

/// The table as the catalogue has it, in the format of docs/metrics.md.
fn expected_table() -> String {
    let mut out = String::from(
        "| metric | type | unit | labels | buckets |\n| --- | --- | --- | --- | --- |\n",
    );
    for def in CATALOGUE {
        let row = row_of(def);
        let labels = if row.labels.is_empty() {
            NONE.to_owned()
        } else {
            row.labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let unit = if row.unit == NONE {
            NONE.to_owned()
        } else {
            format!("`{}`", row.unit)
        };
        let buckets = if row.buckets.is_empty() {
            NONE.to_owned()
        } else {
            row.buckets
                .iter()
                .map(|b| format_bucket(*b))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {unit} | {labels} | {buckets} |",
            row.name, row.kind
        );
    }
    out
}

fn cells(line: &str) -> Vec<String> {
    let line = line.trim();
    let inner = line.strip_prefix('|').unwrap_or(line);
    let inner = inner.strip_suffix('|').unwrap_or(inner);
    inner.split('|').map(|c| c.trim().to_owned()).collect()
}

fn strip_ticks(s: &str) -> String {
    s.trim().trim_matches('`').to_owned()
}

fn parse_row(line: &str) -> Result<Row, String> {
    let c = cells(line);
    if c.len() != 5 {
        return Err(format!("expected 5 cells, found {}: {line}", c.len()));
    }
    let labels = if c[3] == NONE {
        Vec::new()
    } else {
        c[3].split(',').map(strip_ticks).collect()
    };
    let buckets = if c[4] == NONE {
        Vec::new()
    } else {
        c[4].split(',')
            .map(|b| {
                b.trim()
                    .parse::<f64>()
                    .map_err(|e| format!("bucket `{b}`: {e}"))
            })
            .collect::<Result<_, _>>()?
    };
    Ok(Row {
        name: strip_ticks(&c[0]),
        kind: c[1].clone(),
        unit: strip_ticks(&c[2]),
        labels,
        buckets,
    })
}

fn documented_table(doc: &str) -> Vec<String> {
    let begin = doc
        .find("<!-- catalogue:begin -->")
        .expect("docs/metrics.md has a <!-- catalogue:begin --> marker");
    let end = doc
        .find("<!-- catalogue:end -->")
        .expect("docs/metrics.md has a <!-- catalogue:end --> marker");
    doc[begin..end]
        .lines()
        .skip(1)
        .filter(|l| l.trim_start().starts_with('|'))
        .skip(2) // header and separator
        .map(str::to_owned)
        .collect()
}

#[test]
fn metrics_reference_equals_the_catalogue() {
    let doc = read("docs/metrics.md");
    let mut problems = Vec::new();
    let mut documented = BTreeMap::new();
    for line in documented_table(&doc) {
        match parse_row(&line) {
            Ok(row) => {
                if documented.insert(row.name.clone(), row.clone()).is_some() {
                    problems.push(format!("`{}` is listed twice", row.name));
                }
            }
            Err(e) => problems.push(e),
        }
    }
    let catalogue: BTreeMap<String, Row> = CATALOGUE
        .iter()
        .map(|d| (d.name.to_owned(), row_of(d)))
        .collect();
    for (name, want) in &catalogue {
        match documented.get(name) {
            None => problems.push(format!(
                "`{name}` is in the catalogue but not in docs/metrics.md"
            )),
            Some(got) if got != want => problems.push(format!(
                "`{name}` differs:\n  catalogue: {want:?}\n  docs:      {got:?}"
            )),
            Some(_) => {}
        }
    }
    for name in documented.keys() {
        if !catalogue.contains_key(name) {
            problems.push(format!(
                "`{name}` is in docs/metrics.md but not in the catalogue"
            ));
        }
    }
    // Each metric also has a section of its own.
    for name in catalogue.keys() {
        if !doc.contains(&format!("### `{name}`")) {
            problems.push(format!("docs/metrics.md has no section \"### `{name}`\""));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/metrics.md does not match the catalogue:\n{}\n\nThe table as the catalogue has it:\n\n{}",
        problems.join("\n"),
        expected_table()
    );
}

#[test]
fn conventions_name_only_catalogue_metrics() {
    let doc = read("docs/conventions.md");
    let catalogue: BTreeMap<&str, &MetricDef> = CATALOGUE.iter().map(|d| (d.name, d)).collect();
    let mut problems = Vec::new();
    let mut seen = 0;
    let mut in_metric_table = false;
    for line in doc.lines() {
        let line = line.trim();
        if !line.starts_with('|') {
            in_metric_table = false;
            continue;
        }
        let c = cells(line);
        if c.first().is_some_and(|h| h == "Prometheus metric") {
            in_metric_table = true;
            continue;
        }
        if !in_metric_table || c[0].starts_with("---") {
            continue;
        }
        seen += 1;
        let name = strip_ticks(&c[0]);
        match catalogue.get(name.as_str()) {
            None => problems.push(format!(
                "docs/conventions.md names `{name}`, which the catalogue lacks"
            )),
            Some(def) => {
                let kind = kind_name(&def.kind);
                if !c[1].starts_with(kind) {
                    problems.push(format!(
                        "`{name}`: docs/conventions.md says {}, the catalogue {kind}",
                        c[1]
                    ));
                }
                for label in def.labels {
                    if !c[2].contains(&format!("`{label}`")) {
                        problems.push(format!(
                            "`{name}`: docs/conventions.md does not list label `{label}`"
                        ));
                    }
                }
            }
        }
    }
    assert!(
        seen >= 15,
        "found only {seen} metrics in the tables of docs/conventions.md"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_alert_has_a_runbook_section() {
    let rules = read("rules/orderscope.rules.yml");
    let alerts_doc = read("docs/alerts.md");
    let headings: BTreeSet<String> = alerts_doc
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| h.trim().to_owned())
        .collect();
    let mut alerts = Vec::new();
    let mut problems = Vec::new();
    for line in rules.lines() {
        if let Some(name) = line.trim().strip_prefix("- alert:") {
            let name = name.trim().to_owned();
            if !headings.contains(&name) {
                problems.push(format!("docs/alerts.md has no section \"## {name}\""));
            }
            let anchor = format!("docs/alerts.md#{}", name.to_ascii_lowercase());
            if !rules.contains(&anchor) {
                problems.push(format!(
                    "alert {name} has no runbook annotation pointing at {anchor}"
                ));
            }
            alerts.push(name);
        }
    }
    assert!(alerts.len() >= 10, "found only {} alerts", alerts.len());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Relative link targets `](path)` and `](path#anchor)` in a Markdown text.
fn relative_links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            let target = &after[..end];
            rest = &after[end..];
            if target.contains("://") || target.starts_with('#') || target.starts_with("mailto:") {
                continue;
            }
            let path = target.split('#').next().unwrap_or_default();
            if !path.is_empty() {
                out.push(path.to_owned());
            }
        }
    }
    out
}

#[test]
fn relative_links_in_the_docs_resolve() {
    let root = repo_root();
    let mut files = vec![root.join("README.md")];
    for entry in fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) == Some("md") {
            files.push(path);
        }
    }
    for dir in ["deploy", "dashboards", "rules"] {
        let readme = root.join(dir).join("README.md");
        if readme.is_file() {
            files.push(readme);
        }
    }
    let mut problems = Vec::new();
    for file in &files {
        let text = fs::read_to_string(file).unwrap();
        let base = file.parent().unwrap();
        for link in relative_links(&text) {
            if !base.join(&link).exists() {
                problems.push(format!(
                    "{}: link to `{link}`, which does not exist",
                    file.display()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
