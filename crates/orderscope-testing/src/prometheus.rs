//! A parser for the Prometheus text exposition format (0.0.4), for assertions on `/metrics`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Sample name as written (`…_bucket`, `…_sum`, `…_count` included).
    pub name: String,
    /// Labels (`le` of a bucket included).
    pub labels: BTreeMap<String, String>,
    /// The value (`+Inf`, `-Inf` and `NaN` supported).
    pub value: f64,
    /// Optional timestamp, milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
}

impl Sample {
    /// The value of label `key`.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }

    /// Whether the sample has exactly these labels (any order).
    pub fn has_labels(&self, labels: &[(&str, &str)]) -> bool {
        self.labels.len() == labels.len()
            && labels
                .iter()
                .all(|(k, v)| self.labels.get(*k).is_some_and(|x| x == v))
    }
}

/// A parse failure, with the 1-based line number.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParsePromError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// The name the API contract uses for [`ParsePromError`].
pub type ParseError = ParsePromError;

/// A parsed exposition: samples plus the `# HELP` and `# TYPE` metadata.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Exposition {
    /// All samples, in order.
    pub samples: Vec<Sample>,
    /// `# TYPE` per metric family (`counter`, `gauge`, `histogram`, `summary`, `untyped`).
    pub types: BTreeMap<String, String>,
    /// `# HELP` per metric family, unescaped.
    pub help: BTreeMap<String, String>,
}

impl Exposition {
    /// The type declared for family `name`.
    pub fn type_of(&self, name: &str) -> Option<&str> {
        self.types.get(name).map(String::as_str)
    }
}

/// Parses Prometheus text exposition format 0.0.4 and returns the samples.
///
/// ```
/// use orderscope_testing::{parse_prometheus, SamplesExt};
///
/// let text = "# HELP jobs_total Jobs.\n# TYPE jobs_total counter\njobs_total{queue=\"a\\\"b\"} 3\n";
/// let samples = parse_prometheus(text).unwrap();
/// assert_eq!(samples.value("jobs_total", &[("queue", "a\"b")]), Some(3.0));
/// ```
///
/// # Errors
///
/// [`ParsePromError`] on the first malformed line.
pub fn parse_prometheus(text: &str) -> Result<Vec<Sample>, ParsePromError> {
    parse_exposition(text).map(|e| e.samples)
}

/// Parses Prometheus text exposition format 0.0.4, keeping `# HELP`/`# TYPE` metadata.
///
/// # Errors
///
/// [`ParsePromError`] on the first malformed line.
pub fn parse_exposition(text: &str) -> Result<Exposition, ParsePromError> {
    let mut out = Exposition::default();
    for (idx, raw) in text.lines().enumerate() {
        let line_no = idx + 1;
        let err = |message: String| ParsePromError {
            line: line_no,
            message,
        };
        let line = raw.trim_matches([' ', '\t', '\r']);
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let comment = comment.trim_start_matches([' ', '\t']);
            if let Some(rest) = comment.strip_prefix("HELP") {
                if !rest.starts_with([' ', '\t']) {
                    continue; // "#HELPER" or similar: an ordinary comment
                }
                let rest = rest.trim_start_matches([' ', '\t']);
                let (name, doc) = split_token(rest);
                check_metric_name(name).map_err(&err)?;
                let doc = unescape_help(doc.trim_start_matches([' ', '\t']));
                if out.help.insert(name.to_owned(), doc).is_some() {
                    return Err(err(format!("second HELP line for {name}")));
                }
            } else if let Some(rest) = comment.strip_prefix("TYPE") {
                if !rest.starts_with([' ', '\t']) {
                    continue;
                }
                let rest = rest.trim_start_matches([' ', '\t']);
                let (name, ty) = split_token(rest);
                check_metric_name(name).map_err(&err)?;
                let ty = ty.trim_matches([' ', '\t']);
                if !matches!(
                    ty,
                    "counter" | "gauge" | "histogram" | "summary" | "untyped"
                ) {
                    return Err(err(format!("unknown metric type {ty:?} for {name}")));
                }
                if out.types.insert(name.to_owned(), ty.to_owned()).is_some() {
                    return Err(err(format!("second TYPE line for {name}")));
                }
            }
            continue;
        }
        out.samples.push(parse_sample(line).map_err(err)?);
    }
    Ok(out)
}

/// Splits off the first whitespace-delimited token.
fn split_token(s: &str) -> (&str, &str) {
    match s.find([' ', '\t']) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

fn check_metric_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    if ok {
        Ok(())
    } else {
        Err(format!("invalid metric name {name:?}"))
    }
}

fn check_label_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!("invalid label name {name:?}"))
    }
}

fn unescape_help(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('\\') => out.push('\\'),
                Some('n') => out.push('\n'),
                // Unknown escapes are kept verbatim, as Prometheus does.
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" | "Inf" | "+inf" | "inf" => Ok(f64::INFINITY),
        "-Inf" | "-inf" => Ok(f64::NEG_INFINITY),
        "NaN" | "nan" => Ok(f64::NAN),
        _ => {
            let valid = !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'));
            if !valid {
                return Err(format!("invalid value {s:?}"));
            }
            s.parse::<f64>().map_err(|_| format!("invalid value {s:?}"))
        }
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
    let name = &line[..name_end];
    check_metric_name(name)?;
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = parse_labels(after, &mut labels)?;
    }
    let rest = rest.trim_start_matches([' ', '\t']);
    if rest.is_empty() {
        return Err(format!("sample {name} has no value"));
    }
    let (value, tail) = split_token(rest);
    let value = parse_value(value)?;
    let tail = tail.trim_matches([' ', '\t']);
    let timestamp_ms = if tail.is_empty() {
        None
    } else {
        Some(
            tail.parse::<i64>()
                .map_err(|_| format!("invalid timestamp {tail:?}"))?,
        )
    };
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
        timestamp_ms,
    })
}

/// Parses `k="v",k2="v2"}` (after the `{`), returns the text after the `}`.
fn parse_labels<'a>(
    mut s: &'a str,
    labels: &mut BTreeMap<String, String>,
) -> Result<&'a str, String> {
    loop {
        s = s.trim_start_matches([' ', '\t']);
        if let Some(after) = s.strip_prefix('}') {
            return Ok(after);
        }
        let eq = s.find('=').ok_or_else(|| "label without '='".to_owned())?;
        let key = s[..eq].trim_matches([' ', '\t']);
        check_label_name(key)?;
        s = s[eq + 1..].trim_start_matches([' ', '\t']);
        s = s
            .strip_prefix('"')
            .ok_or_else(|| format!("label {key} value is not quoted"))?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("unterminated value of label {key}")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => {
                        return Err(format!("invalid escape \\{other} in label {key}"));
                    }
                    None => return Err(format!("unterminated value of label {key}")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(key.to_owned(), value).is_some() {
            return Err(format!("duplicate label {key}"));
        }
        s = s[end + 1..].trim_start_matches([' ', '\t']);
        if let Some(after) = s.strip_prefix(',') {
            s = after;
        } else if !s.starts_with('}') {
            return Err("expected ',' or '}' after a label".to_owned());
        }
    }
}

/// Query helpers on parsed samples.
pub trait SamplesExt {
    /// The value of the sample `name` with exactly `labels` (any order).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64>;
    /// All samples named `name`.
    fn named(&self, name: &str) -> Vec<&Sample>;
    /// The `(le, cumulative count)` pairs of histogram `family` for series `labels` (without
    /// `le`), in exposition order.
    fn buckets(&self, family: &str, labels: &[(&str, &str)]) -> Vec<(f64, f64)>;
}

impl SamplesExt for [Sample] {
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.iter()
            .find(|s| s.name == name && s.has_labels(labels))
            .map(|s| s.value)
    }

    fn named(&self, name: &str) -> Vec<&Sample> {
        self.iter().filter(|s| s.name == name).collect()
    }

    fn buckets(&self, family: &str, labels: &[(&str, &str)]) -> Vec<(f64, f64)> {
        let bucket = format!("{family}_bucket");
        self.iter()
            .filter(|s| s.name == bucket)
            .filter(|s| {
                s.labels.len() == labels.len() + 1
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v))
            })
            .filter_map(|s| {
                let le = parse_value(s.label("le")?).ok()?;
                Some((le, s.value))
            })
            .collect()
    }
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Runs `promtool check metrics` on `text` when `promtool` is on `PATH`.
///
/// Returns `None` when `promtool` is not installed, `Some(Ok(()))` when it accepts the text,
/// and `Some(Err(output))` with its output otherwise (including its lint findings, such as a
/// counter without `_total` or a metric without `# HELP`).
pub fn promtool_check(text: &str) -> Option<Result<(), String>> {
    let promtool = find_on_path("promtool")?;
    let child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return Some(Err(format!("cannot run promtool: {e}"))),
    };
    if let Some(mut stdin) = child.stdin.take()
        && let Err(e) = stdin.write_all(text.as_bytes())
    {
        let _ = child.kill();
        let _ = child.wait();
        return Some(Err(format!("cannot write to promtool: {e}")));
    }
    match child.wait_with_output() {
        Ok(out) if out.status.success() => Some(Ok(())),
        Ok(out) => Some(Err(format!(
            "promtool check metrics failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))),
        Err(e) => Some(Err(format!("promtool did not finish: {e}"))),
    }
}
