//! Resolution: what code set, what the environment says, and what `init` resolves from both
//! (the types are in `config`).
//!
//! Precedence is the same for every setting read here: a value set in code (the
//! [`TelemetryBuilder`]) beats the environment variable, and the variable beats the default.
//! [`resolve`] is a pure function of the code settings and a map of environment variables, so the
//! precedence is tested without touching the process environment. The OTLP headers, timeout and
//! compression are not read here: the OTLP exporter reads their variables itself (see `otlp`).
//!
//! [`TelemetryBuilder`]: crate::TelemetryBuilder

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use orderscope_logs::LogFormat;

use crate::config::{
    BatchSettings, Compression, DEFAULT_LOG_FILTER, DEFAULT_LOGS_SCHEDULED_DELAY,
    DEFAULT_MAX_EXPORT_BATCH_SIZE, DEFAULT_MAX_QUEUE_SIZE, DEFAULT_SCHEDULED_DELAY,
    DEFAULT_SHUTDOWN_TIMEOUT, LogExport, OtlpSettings, PemFile, Protocol, ResolvedConfig, Sampling,
    TlsMode, TlsSettings, TraceExport,
};

/// The environment variables `init` reads. The OTLP exporter reads
/// `OTEL_EXPORTER_OTLP_{,TRACES_,LOGS_}HEADERS`, `_TIMEOUT` and `_COMPRESSION` from the process
/// environment itself: they are not in this list, and [`with_env`](crate::TelemetryBuilder::with_env)
/// does not replace them (orderscope only looks at the timeout, to bound each HTTP request by the
/// same one, and at the timeout and compression, to warn about values the exporter passes over).
pub const ENV_VARS: &[&str] = &[
    "OTEL_SDK_DISABLED",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_EXPORTER",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_PROPAGATORS",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_CLIENT_KEY",
    "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_LOGS_EXPORTER",
    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
    "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY",
    "OTEL_BLRP_MAX_QUEUE_SIZE",
    "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_BLRP_SCHEDULE_DELAY",
    "RUST_LOG",
    "ORDERSCOPE_LOG_FORMAT",
];

/// The environment as `init` sees it: the variables of [`ENV_VARS`] that are set and valid Unicode.
pub(crate) fn process_env() -> BTreeMap<String, String> {
    ENV_VARS
        .iter()
        .filter_map(|name| Some(((*name).to_owned(), std::env::var(name).ok()?)))
        .collect()
}

/// The variables and URL path of one OTLP signal: what differs between exporting spans and
/// exporting log records.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Signal {
    /// The value of the `signal` label of `orderscope_export_failures_total`.
    pub(crate) name: &'static str,
    /// `OTEL_{SIGNAL}_EXPORTER`.
    exporter: &'static str,
    /// The signal-specific endpoint, used as given.
    endpoint: &'static str,
    protocol: &'static str,
    /// The signal-specific timeout, which the OTLP exporter reads itself (orderscope only
    /// mirrors it for the HTTP client it gives the exporter).
    pub(crate) timeout: &'static str,
    /// The signal-specific compression, which the OTLP exporter reads itself.
    compression: &'static str,
    certificate: &'static str,
    client_certificate: &'static str,
    client_key: &'static str,
    /// Appended to a base endpoint for HTTP.
    path: &'static str,
}

/// Spans.
pub(crate) const TRACES: Signal = Signal {
    name: "traces",
    exporter: "OTEL_TRACES_EXPORTER",
    endpoint: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    protocol: "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    timeout: opentelemetry_otlp::OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
    compression: opentelemetry_otlp::OTEL_EXPORTER_OTLP_TRACES_COMPRESSION,
    certificate: "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
    client_certificate: "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
    client_key: "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
    path: "/v1/traces",
};

/// Log records.
pub(crate) const LOGS: Signal = Signal {
    name: "logs",
    exporter: "OTEL_LOGS_EXPORTER",
    endpoint: "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
    protocol: "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
    timeout: opentelemetry_otlp::OTEL_EXPORTER_OTLP_LOGS_TIMEOUT,
    compression: opentelemetry_otlp::OTEL_EXPORTER_OTLP_LOGS_COMPRESSION,
    certificate: "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE",
    client_certificate: "OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE",
    client_key: "OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY",
    path: "/v1/logs",
};

/// The variables of one batch processor's queue, and its default delay.
struct BatchVars {
    max_queue_size: &'static str,
    max_export_batch_size: &'static str,
    scheduled_delay: &'static str,
    default_delay: Duration,
}

/// Settings made in code through the builder. `None` means "not set in code".
#[derive(Clone, Debug, Default)]
pub(crate) struct CodeSettings {
    pub(crate) service_name: String,
    pub(crate) resource_attributes: Vec<(String, String)>,
    pub(crate) otlp_endpoint: Option<String>,
    pub(crate) protocol: Option<Protocol>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) export_timeout: Option<Duration>,
    pub(crate) compression: Option<Compression>,
    pub(crate) certificate: Option<PathBuf>,
    pub(crate) client_certificate: Option<PathBuf>,
    pub(crate) client_key: Option<PathBuf>,
    pub(crate) sampling: Option<Sampling>,
    pub(crate) sdk_disabled: Option<bool>,
    pub(crate) log_format: Option<LogFormat>,
    pub(crate) log_filter: Option<String>,
    pub(crate) max_queue_size: Option<usize>,
    pub(crate) max_export_batch_size: Option<usize>,
    pub(crate) scheduled_delay: Option<Duration>,
    pub(crate) shutdown_timeout: Option<Duration>,
    pub(crate) custom_exporter: bool,
    pub(crate) logs_export: Option<bool>,
}

/// Resolves the configuration: code beats environment, environment beats defaults.
///
/// Invalid environment values never fail: they are ignored with a warning (as the OpenTelemetry
/// specification asks). Empty values count as unset.
pub(crate) fn resolve(code: &CodeSettings, env: &BTreeMap<String, String>) -> ResolvedConfig {
    let mut warnings = Vec::new();
    let var =
        |name: &str| -> Option<&str> { env.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) };

    // Resource.
    let mut resource: BTreeMap<String, String> = BTreeMap::new();
    if let Some(raw) = var("OTEL_RESOURCE_ATTRIBUTES") {
        for (key, value) in parse_key_values(raw, "OTEL_RESOURCE_ATTRIBUTES", &mut warnings) {
            resource.insert(key, value);
        }
    }
    let resource_service_name = resource.remove("service.name");
    for (key, value) in &code.resource_attributes {
        if key == "service.name" {
            continue;
        }
        resource.insert(key.clone(), value.clone());
    }
    let service_name = if !code.service_name.trim().is_empty() {
        code.service_name.trim().to_owned()
    } else if let Some(name) = var("OTEL_SERVICE_NAME") {
        name.to_owned()
    } else if let Some(name) = resource_service_name.filter(|n| !n.is_empty()) {
        name
    } else {
        "unknown_service".to_owned()
    };

    // Sampling.
    let sampling = match code.sampling {
        Some(sampling) => sampling,
        None => match var("OTEL_TRACES_SAMPLER") {
            Some(name) => parse_sampler(name, var("OTEL_TRACES_SAMPLER_ARG"), &mut warnings),
            None => Sampling::ParentBasedAlwaysOn,
        },
    };

    // Queues.
    let batch = resolve_batch(
        &BatchVars {
            max_queue_size: "OTEL_BSP_MAX_QUEUE_SIZE",
            max_export_batch_size: "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
            scheduled_delay: "OTEL_BSP_SCHEDULE_DELAY",
            default_delay: DEFAULT_SCHEDULED_DELAY,
        },
        code,
        &var,
        &mut warnings,
    );
    let logs_batch = resolve_batch(
        &BatchVars {
            max_queue_size: "OTEL_BLRP_MAX_QUEUE_SIZE",
            max_export_batch_size: "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE",
            scheduled_delay: "OTEL_BLRP_SCHEDULE_DELAY",
            default_delay: DEFAULT_LOGS_SCHEDULED_DELAY,
        },
        // The builder's queue settings are the span queue's.
        &CodeSettings::default(),
        &var,
        &mut warnings,
    );

    // Where spans go.
    let sdk_disabled = code
        .sdk_disabled
        .unwrap_or_else(|| match var("OTEL_SDK_DISABLED") {
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(v) => {
                warnings.push(format!(
                    "OTEL_SDK_DISABLED={v:?} is neither `true` nor `false`; using `false`"
                ));
                false
            }
            None => false,
        });
    let traces = if sdk_disabled {
        TraceExport::Disabled
    } else if code.custom_exporter {
        TraceExport::Custom
    } else if code_endpoint(code).is_some() || exporter_wanted(TRACES, true, &var, &mut warnings) {
        // An endpoint set in code beats `OTEL_TRACES_EXPORTER=none`.
        match resolve_otlp(TRACES, code, &var, &mut warnings) {
            Some(otlp) => TraceExport::Otlp(otlp),
            None => TraceExport::None,
        }
    } else {
        TraceExport::None
    };

    // Where log records go. Unlike the specification (`otlp`), the default is `none`: log lines
    // are written anyway, and usually collected from there.
    let logs = if sdk_disabled {
        LogExport::Disabled
    } else if code
        .logs_export
        .unwrap_or_else(|| exporter_wanted(LOGS, false, &var, &mut warnings))
    {
        match resolve_otlp(LOGS, code, &var, &mut warnings) {
            Some(otlp) => LogExport::Otlp(otlp),
            None => {
                warnings.push(
                    "OTLP log export is on but no endpoint is set (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_LOGS_ENDPOINT); log records are not exported"
                        .to_owned(),
                );
                LogExport::None
            }
        }
    } else {
        LogExport::None
    };

    // Logs.
    let log_format = code
        .log_format
        .unwrap_or_else(|| match var("ORDERSCOPE_LOG_FORMAT") {
            Some(v) => v.parse().unwrap_or_else(|_| {
                warnings.push(format!(
                    "ORDERSCOPE_LOG_FORMAT={v:?} is neither `json` nor `pretty`; using `json`"
                ));
                LogFormat::Json
            }),
            None => LogFormat::Json,
        });
    let log_filter = match &code.log_filter {
        Some(filter) => filter.clone(),
        None => var("RUST_LOG").unwrap_or(DEFAULT_LOG_FILTER).to_owned(),
    };

    // Traces and logs read the same generic variables: report a bad one once.
    let mut seen = std::collections::BTreeSet::new();
    warnings.retain(|warning| seen.insert(warning.clone()));

    ResolvedConfig {
        service_name,
        resource_attributes: resource.into_iter().collect(),
        traces,
        sampling,
        batch,
        logs,
        logs_batch,
        log_format,
        log_filter,
        shutdown_timeout: code.shutdown_timeout.unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT),
        warnings,
    }
}

/// The OTLP endpoint set in code, if any.
fn code_endpoint(code: &CodeSettings) -> Option<&str> {
    code.otlp_endpoint
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty())
}

/// Whether `OTEL_{SIGNAL}_EXPORTER` asks for OTLP: `otlp` or `none`; `default` when unset or
/// not supported (with a warning).
fn exporter_wanted<'e>(
    signal: Signal,
    default: bool,
    var: &impl Fn(&str) -> Option<&'e str>,
    warnings: &mut Vec<String>,
) -> bool {
    match var(signal.exporter) {
        None => default,
        Some(exporter) if exporter.eq_ignore_ascii_case("otlp") => true,
        Some(exporter) if exporter.eq_ignore_ascii_case("none") => false,
        Some(exporter) => {
            warnings.push(format!(
                "{}={exporter:?} is not supported (use `otlp` or `none`); using `{}`",
                signal.exporter,
                if default { "otlp" } else { "none" }
            ));
            default
        }
    }
}

/// Warnings for the variables the OTLP exporter reads itself, from the process environment
/// (through `process_var`), and passes over without a word when it cannot use them: a timeout
/// that is not a whole number of milliseconds, a compression other than `gzip` or `none`. Only
/// for the signals `config` exports over OTLP, and not where the setting was made in code, which
/// the exporter takes instead.
pub(crate) fn exporter_variable_warnings(
    config: &ResolvedConfig,
    code: &CodeSettings,
    process_var: impl Fn(&str) -> Option<String>,
) -> Vec<String> {
    let traces = matches!(config.traces, TraceExport::Otlp(_)).then_some(TRACES);
    let logs = matches!(config.logs, LogExport::Otlp(_)).then_some(LOGS);
    let exported: Vec<Signal> = traces.into_iter().chain(logs).collect();
    if exported.is_empty() {
        return Vec::new();
    }
    // Each variable once, the generic one last; empty values count as unset, as the exporter has it.
    let set = |names: Vec<&'static str>| {
        names
            .into_iter()
            .filter_map(|name| Some((name, process_var(name).filter(|v| !v.is_empty())?)))
            .collect::<Vec<_>>()
    };
    let mut warnings = Vec::new();
    if code.export_timeout.is_none() {
        let names = exported.iter().map(|s| s.timeout);
        for (name, value) in set(names
            .chain([opentelemetry_otlp::OTEL_EXPORTER_OTLP_TIMEOUT])
            .collect())
        {
            if value.parse::<u64>().is_err() {
                warnings.push(format!(
                    "{name}={value:?} is not a whole number of milliseconds; the OTLP exporter ignores it"
                ));
            }
        }
    }
    if code.compression.is_none() {
        let names = exported.iter().map(|s| s.compression);
        for (name, value) in set(names
            .chain([opentelemetry_otlp::OTEL_EXPORTER_OTLP_COMPRESSION])
            .collect())
        {
            if !value.eq_ignore_ascii_case("gzip") && !value.eq_ignore_ascii_case("none") {
                warnings.push(format!(
                    "{name}={value:?} is not supported (use `gzip` or `none`); the OTLP exporter ignores it"
                ));
            }
        }
    }
    warnings
}

/// How `signal` is exported by OTLP; `None` when no endpoint is configured. For every setting
/// orderscope reads, the code value beats the signal's variable, which beats the generic one.
fn resolve_otlp<'e>(
    signal: Signal,
    code: &CodeSettings,
    var: &impl Fn(&str) -> Option<&'e str>,
    warnings: &mut Vec<String>,
) -> Option<OtlpSettings> {
    let protocol = code.protocol.unwrap_or_else(|| {
        for name in [signal.protocol, "OTEL_EXPORTER_OTLP_PROTOCOL"] {
            if let Some(value) = var(name) {
                match Protocol::parse(value) {
                    Some(protocol) => return protocol,
                    None => warnings.push(format!(
                        "{name}={value:?} is not supported (use `grpc` or `http/protobuf`); ignored"
                    )),
                }
            }
        }
        Protocol::HttpProtobuf
    });

    // A base endpoint gets the signal path appended for HTTP; a signal endpoint is used as is.
    let base = |endpoint: &str| match protocol {
        Protocol::Grpc => endpoint.to_owned(),
        Protocol::HttpProtobuf => format!("{}{}", endpoint.trim_end_matches('/'), signal.path),
    };
    let endpoint = match code_endpoint(code) {
        Some(endpoint) => base(endpoint),
        None => var(signal.endpoint)
            .map(str::to_owned)
            .or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT").map(base))?,
    };

    // Headers, timeout and compression: the OTLP exporter reads their variables itself; only
    // what was set in code is passed on. Code headers: the last one set for a key wins.
    let headers: BTreeMap<String, String> = code
        .headers
        .iter()
        .map(|(key, value)| (key.to_ascii_lowercase(), value.clone()))
        .collect();

    let pem = |code_value: &Option<PathBuf>, method: &'static str, names: [&'static str; 2]| {
        match code_value {
            Some(path) => Some(PemFile {
                path: path.clone(),
                setting: method,
            }),
            None => names.into_iter().find_map(|name| {
                var(name).map(|path| PemFile {
                    path: PathBuf::from(path),
                    setting: name,
                })
            }),
        }
    };
    let tls = TlsSettings {
        certificate: pem(
            &code.certificate,
            "with_otlp_certificate",
            [signal.certificate, "OTEL_EXPORTER_OTLP_CERTIFICATE"],
        ),
        client_certificate: pem(
            &code.client_certificate,
            "with_otlp_client_certificate",
            [
                signal.client_certificate,
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            ],
        ),
        client_key: pem(
            &code.client_key,
            "with_otlp_client_key",
            [signal.client_key, "OTEL_EXPORTER_OTLP_CLIENT_KEY"],
        ),
    };

    let settings = OtlpSettings {
        endpoint,
        protocol,
        headers: headers.into_iter().collect(),
        timeout: code.export_timeout,
        compression: code.compression,
        tls,
    };
    if settings.tls_mode() == TlsMode::Plaintext
        && (settings.tls.certificate.is_some()
            || settings.tls.client_certificate.is_some()
            || settings.tls.client_key.is_some())
    {
        warnings.push(format!(
            "certificates are set but the {} endpoint {} is not https://; they are not used",
            signal.name, settings.endpoint
        ));
    }
    Some(settings)
}

/// A batch processor's queue: code beats the variables of `vars`, which beat the defaults. The
/// batch never exceeds the queue.
fn resolve_batch<'e>(
    vars: &BatchVars,
    code: &CodeSettings,
    var: &impl Fn(&str) -> Option<&'e str>,
    warnings: &mut Vec<String>,
) -> BatchSettings {
    let mut count = |name: &str, default: usize| {
        parse_env(var(name), name, warnings)
            .filter(|&n: &usize| n > 0)
            .unwrap_or(default)
    };
    let max_queue_size = code
        .max_queue_size
        .unwrap_or_else(|| count(vars.max_queue_size, DEFAULT_MAX_QUEUE_SIZE));
    let max_export_batch_size = code
        .max_export_batch_size
        .unwrap_or_else(|| count(vars.max_export_batch_size, DEFAULT_MAX_EXPORT_BATCH_SIZE))
        .clamp(1, max_queue_size.max(1));
    let scheduled_delay = code.scheduled_delay.unwrap_or_else(|| {
        parse_env(var(vars.scheduled_delay), vars.scheduled_delay, warnings)
            .map(Duration::from_millis)
            .unwrap_or(vars.default_delay)
    });
    BatchSettings {
        max_queue_size,
        max_export_batch_size,
        scheduled_delay,
    }
}

fn parse_env<T: std::str::FromStr>(
    value: Option<&str>,
    name: &str,
    warnings: &mut Vec<String>,
) -> Option<T> {
    let value = value?;
    match value.parse() {
        Ok(parsed) => Some(parsed),
        Err(_) => {
            warnings.push(format!("{name}={value:?} is not a valid number; ignored"));
            None
        }
    }
}

fn parse_sampler(name: &str, arg: Option<&str>, warnings: &mut Vec<String>) -> Sampling {
    let mut ratio = || match arg.map(str::parse::<f64>) {
        Some(Ok(r)) if (0.0..=1.0).contains(&r) => r,
        Some(_) => {
            warnings.push(format!(
                "OTEL_TRACES_SAMPLER_ARG={:?} is not a ratio between 0 and 1; using 1.0",
                arg.unwrap_or_default()
            ));
            1.0
        }
        None => 1.0,
    };
    match name {
        "always_on" => Sampling::AlwaysOn,
        "always_off" => Sampling::AlwaysOff,
        "traceidratio" => Sampling::TraceIdRatio(ratio()),
        "parentbased_always_on" => Sampling::ParentBasedAlwaysOn,
        "parentbased_always_off" => Sampling::ParentBasedAlwaysOff,
        "parentbased_traceidratio" => Sampling::ParentBasedTraceIdRatio(ratio()),
        other => {
            warnings.push(format!(
                "OTEL_TRACES_SAMPLER={other:?} is not supported; using `parentbased_always_on`"
            ));
            Sampling::ParentBasedAlwaysOn
        }
    }
}

/// Parses the `key1=value1,key2=value2` list of `OTEL_RESOURCE_ATTRIBUTES` (values
/// percent-decoded, W3C Baggage style). Malformed entries are
/// skipped with a warning that names the key, never the value (it may be a secret).
fn parse_key_values(raw: &str, name: &str, warnings: &mut Vec<String>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in raw.split(',') {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        let Some((key, value)) = entry.split_once('=') else {
            warnings.push(format!("{name}: an entry without `=` was skipped"));
            continue;
        };
        let key = key.trim();
        if key.is_empty() {
            warnings.push(format!("{name}: an entry with an empty key was skipped"));
            continue;
        }
        match percent_decode(value.trim()) {
            Some(value) => out.push((key.to_owned(), value)),
            None => warnings.push(format!(
                "{name}: the value of `{key}` is not valid percent-encoded UTF-8; skipped"
            )),
        }
    }
    out
}

fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `process_env` passes only these on: a variable `init` reads that is missing here is
    /// never seen from the process environment (only through `with_env`).
    #[test]
    fn otel_propagators_is_taken_from_the_process() {
        assert!(ENV_VARS.contains(&crate::propagators::OTEL_PROPAGATORS));
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn code(service: &str) -> CodeSettings {
        CodeSettings {
            service_name: service.to_owned(),
            ..CodeSettings::default()
        }
    }

    fn otlp(config: &ResolvedConfig) -> &OtlpSettings {
        match &config.traces {
            TraceExport::Otlp(otlp) => otlp,
            other => panic!("expected OTLP export, got {other:?}"),
        }
    }

    #[test]
    fn defaults_without_environment() {
        let config = resolve(&code("mes"), &env(&[]));
        assert_eq!(config.service_name, "mes");
        assert_eq!(config.traces, TraceExport::None);
        assert_eq!(config.sampling, Sampling::ParentBasedAlwaysOn);
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.log_filter, "info");
        assert_eq!(config.shutdown_timeout, DEFAULT_SHUTDOWN_TIMEOUT);
        assert_eq!(config.batch.max_queue_size, DEFAULT_MAX_QUEUE_SIZE);
        assert_eq!(
            config.batch.max_export_batch_size,
            DEFAULT_MAX_EXPORT_BATCH_SIZE
        );
        assert!(config.warnings.is_empty());
    }

    #[test]
    fn service_name_code_beats_env_beats_resource_attributes() {
        let e = env(&[
            ("OTEL_SERVICE_NAME", "from-env"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=from-attrs,team=orders",
            ),
        ]);
        assert_eq!(resolve(&code("mes"), &e).service_name, "mes");
        assert_eq!(resolve(&code(""), &e).service_name, "from-env");
        let e = env(&[("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs")]);
        assert_eq!(resolve(&code(""), &e).service_name, "from-attrs");
        assert_eq!(
            resolve(&code(""), &env(&[])).service_name,
            "unknown_service"
        );
    }

    #[test]
    fn resource_attributes_merge_code_over_env() {
        let mut c = code("mes");
        c.resource_attributes = vec![("team".into(), "fulfilment".into())];
        let e = env(&[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment.name=prod, team=orders,region=eu%2Dwest,broken",
        )]);
        let config = resolve(&c, &e);
        assert_eq!(
            config.resource_attributes,
            vec![
                ("deployment.environment.name".into(), "prod".into()),
                ("region".into(), "eu-west".into()),
                ("team".into(), "fulfilment".into()),
            ]
        );
        assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    }

    #[test]
    fn endpoint_and_protocol_precedence() {
        // Generic endpoint + default protocol: HTTP with the signal path appended.
        let e = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]);
        let config = resolve(&code("mes"), &e);
        assert_eq!(otlp(&config).endpoint, "http://collector:4318/v1/traces");
        assert_eq!(otlp(&config).protocol, Protocol::HttpProtobuf);

        // The traces endpoint beats the generic one and is used as is.
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://traces:4318/custom",
            ),
        ]);
        assert_eq!(
            otlp(&resolve(&code("mes"), &e)).endpoint,
            "http://traces:4318/custom"
        );

        // gRPC: no path; the traces protocol beats the generic one.
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
        ]);
        let config = resolve(&code("mes"), &e);
        assert_eq!(otlp(&config).protocol, Protocol::Grpc);
        assert_eq!(otlp(&config).endpoint, "http://collector:4317");

        // Code beats both.
        let mut c = code("mes");
        c.otlp_endpoint = Some("http://code:4318".into());
        c.protocol = Some(Protocol::HttpProtobuf);
        let config = resolve(&c, &e);
        assert_eq!(otlp(&config).protocol, Protocol::HttpProtobuf);
        assert_eq!(otlp(&config).endpoint, "http://code:4318/v1/traces");
    }

    #[test]
    fn unsupported_protocol_falls_back_with_a_warning() {
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ]);
        let config = resolve(&code("mes"), &e);
        assert_eq!(otlp(&config).protocol, Protocol::HttpProtobuf);
        assert_eq!(config.warnings.len(), 1);
    }

    #[test]
    fn code_headers_timeout_and_compression_are_passed_on_masked() {
        let e = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")]);
        let mut c = code("mes");
        c.headers = vec![
            ("Authorization".into(), "Bearer old".into()),
            ("x-tenant".into(), "a".into()),
            ("authorization".into(), "Bearer code".into()),
        ];
        c.export_timeout = Some(Duration::from_millis(250));
        c.compression = Some(Compression::Gzip);
        let config = resolve(&c, &e);
        assert_eq!(
            otlp(&config).headers,
            vec![
                ("authorization".into(), "Bearer code".into()),
                ("x-tenant".into(), "a".into()),
            ]
        );
        assert_eq!(otlp(&config).timeout, Some(Duration::from_millis(250)));
        assert_eq!(otlp(&config).compression, Some(Compression::Gzip));
        let debug = format!("{config:?}");
        assert!(!debug.contains("Bearer"), "{debug}");
        assert!(debug.contains("authorization=***"), "{debug}");
    }

    #[test]
    fn the_variables_the_exporter_reads_are_left_to_it() {
        // `with_env` does not cover them: the exporter reads the process environment.
        let mut e = env(&[
            ("OTEL_LOGS_EXPORTER", "otlp"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
        ]);
        let mut exporter_vars = Vec::new();
        for signal in ["", "TRACES_", "LOGS_"] {
            for (setting, value) in [
                ("HEADERS", "x-env=1,broken"),
                ("TIMEOUT", "soon"),
                ("COMPRESSION", "brotli"),
            ] {
                let name = format!("OTEL_EXPORTER_OTLP_{signal}{setting}");
                e.insert(name.clone(), value.to_owned());
                exporter_vars.push(name);
            }
        }
        let config = resolve(&code("mes"), &e);
        for otlp in [otlp(&config), logs_otlp(&config)] {
            assert!(otlp.headers.is_empty(), "{otlp:?}");
            assert_eq!(otlp.timeout, None);
            assert_eq!(otlp.compression, None);
        }
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        for name in &exporter_vars {
            assert!(!ENV_VARS.contains(&name.as_str()), "{name}");
        }
    }

    #[test]
    fn values_the_exporter_would_pass_over_silently_are_warned_about() {
        let e = env(&[
            ("OTEL_LOGS_EXPORTER", "otlp"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
        ]);
        let process: BTreeMap<&str, &str> = [
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", ""),
            ("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "brotli"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "None"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "GZIP"),
        ]
        .into_iter()
        .collect();
        let var = |name: &str| process.get(name).map(|v| (*v).to_owned());
        let c = code("mes");
        assert_eq!(
            exporter_variable_warnings(&resolve(&c, &e), &c, var),
            [
                "OTEL_EXPORTER_OTLP_TIMEOUT=\"soon\" is not a whole number of milliseconds; the OTLP exporter ignores it",
                "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION=\"brotli\" is not supported (use `gzip` or `none`); the OTLP exporter ignores it",
            ]
        );

        // Set in code: the exporter does not look at the variables.
        let mut c = code("mes");
        c.export_timeout = Some(Duration::from_secs(1));
        c.compression = Some(Compression::Gzip);
        assert!(exporter_variable_warnings(&resolve(&c, &e), &c, var).is_empty());
        // Nothing exported over OTLP: no exporter reads them.
        let c = code("mes");
        let none = env(&[("OTEL_TRACES_EXPORTER", "none")]);
        assert!(exporter_variable_warnings(&resolve(&c, &none), &c, var).is_empty());
    }

    #[test]
    fn sampler_precedence_and_parsing() {
        let e = env(&[
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ]);
        assert_eq!(
            resolve(&code("mes"), &e).sampling,
            Sampling::ParentBasedTraceIdRatio(0.25)
        );
        let mut c = code("mes");
        c.sampling = Some(Sampling::AlwaysOff);
        assert_eq!(resolve(&c, &e).sampling, Sampling::AlwaysOff);

        let e = env(&[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "2"),
        ]);
        let config = resolve(&code("mes"), &e);
        assert_eq!(config.sampling, Sampling::TraceIdRatio(1.0));
        assert_eq!(config.warnings.len(), 1);

        let e = env(&[("OTEL_TRACES_SAMPLER", "xray")]);
        assert_eq!(
            resolve(&code("mes"), &e).sampling,
            Sampling::ParentBasedAlwaysOn
        );
    }

    #[test]
    fn sdk_disabled_and_exporter_none() {
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_SDK_DISABLED", "TRUE"),
        ]);
        assert_eq!(resolve(&code("mes"), &e).traces, TraceExport::Disabled);
        let mut c = code("mes");
        c.sdk_disabled = Some(false);
        assert!(matches!(resolve(&c, &e).traces, TraceExport::Otlp(_)));

        let e = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ]);
        assert_eq!(resolve(&code("mes"), &e).traces, TraceExport::None);
        // A code endpoint beats OTEL_TRACES_EXPORTER=none.
        let mut c = code("mes");
        c.otlp_endpoint = Some("http://code:4317".into());
        assert!(matches!(resolve(&c, &e).traces, TraceExport::Otlp(_)));
    }

    #[test]
    fn log_settings_precedence() {
        let e = env(&[
            ("ORDERSCOPE_LOG_FORMAT", "pretty"),
            ("RUST_LOG", "debug,hyper=warn"),
        ]);
        let config = resolve(&code("mes"), &e);
        assert_eq!(config.log_format, LogFormat::Pretty);
        assert_eq!(config.log_filter, "debug,hyper=warn");
        let mut c = code("mes");
        c.log_format = Some(LogFormat::Json);
        c.log_filter = Some("warn".into());
        let config = resolve(&c, &e);
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.log_filter, "warn");
        let config = resolve(&code("mes"), &env(&[("ORDERSCOPE_LOG_FORMAT", "xml")]));
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.warnings.len(), 1);
    }

    #[test]
    fn queue_settings_precedence() {
        let e = env(&[
            ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "500"),
            ("OTEL_BSP_SCHEDULE_DELAY", "250"),
        ]);
        let config = resolve(&code("mes"), &e);
        assert_eq!(config.batch.max_queue_size, 100);
        // The batch never exceeds the queue.
        assert_eq!(config.batch.max_export_batch_size, 100);
        assert_eq!(config.batch.scheduled_delay, Duration::from_millis(250));
        let mut c = code("mes");
        c.max_queue_size = Some(10_000);
        c.max_export_batch_size = Some(1000);
        let config = resolve(&c, &e);
        assert_eq!(config.batch.max_queue_size, 10_000);
        assert_eq!(config.batch.max_export_batch_size, 1000);
    }

    fn logs_otlp(config: &ResolvedConfig) -> &OtlpSettings {
        match &config.logs {
            LogExport::Otlp(otlp) => otlp,
            other => panic!("expected OTLP log export, got {other:?}"),
        }
    }

    #[test]
    fn logs_are_not_exported_by_default() {
        let e = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")]);
        let config = resolve(&code("mes"), &e);
        assert_eq!(config.logs, LogExport::None);
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        assert_eq!(
            config.logs_batch,
            BatchSettings {
                max_queue_size: DEFAULT_MAX_QUEUE_SIZE,
                max_export_batch_size: DEFAULT_MAX_EXPORT_BATCH_SIZE,
                scheduled_delay: DEFAULT_LOGS_SCHEDULED_DELAY,
            }
        );
    }

    #[test]
    fn logs_exporter_code_beats_env() {
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            ("OTEL_LOGS_EXPORTER", "otlp"),
        ]);
        let config = resolve(&code("mes"), &e);
        assert_eq!(logs_otlp(&config).endpoint, "http://collector:4318/v1/logs");
        assert_eq!(logs_otlp(&config).protocol, Protocol::HttpProtobuf);
        // Spans keep their own path.
        assert_eq!(otlp(&config).endpoint, "http://collector:4318/v1/traces");

        let mut c = code("mes");
        c.logs_export = Some(false);
        assert_eq!(resolve(&c, &e).logs, LogExport::None);

        let e = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_LOGS_EXPORTER", "none"),
        ]);
        let mut c = code("mes");
        c.logs_export = Some(true);
        assert_eq!(
            logs_otlp(&resolve(&c, &e)).endpoint,
            "http://collector:4318/v1/logs"
        );

        // An endpoint in code does not turn log export on by itself.
        let mut c = code("mes");
        c.otlp_endpoint = Some("http://code:4318".into());
        assert_eq!(resolve(&c, &env(&[])).logs, LogExport::None);
        c.logs_export = Some(true);
        assert_eq!(
            logs_otlp(&resolve(&c, &env(&[]))).endpoint,
            "http://code:4318/v1/logs"
        );
    }

    #[test]
    fn logs_settings_use_the_logs_variables_first() {
        let e = env(&[
            ("OTEL_LOGS_EXPORTER", "otlp"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://logs:4317"),
            ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "grpc"),
            ("OTEL_BLRP_MAX_QUEUE_SIZE", "100"),
            ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "500"),
            ("OTEL_BLRP_SCHEDULE_DELAY", "250"),
        ]);
        let config = resolve(&code("mes"), &e);
        let logs = logs_otlp(&config);
        assert_eq!(logs.endpoint, "http://logs:4317");
        assert_eq!(logs.protocol, Protocol::Grpc);
        // The traces settings are untouched by the logs variables.
        let traces = otlp(&config);
        assert_eq!(traces.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(traces.protocol, Protocol::HttpProtobuf);
        // The log queue reads OTEL_BLRP_*, and the batch never exceeds the queue.
        assert_eq!(config.logs_batch.max_queue_size, 100);
        assert_eq!(config.logs_batch.max_export_batch_size, 100);
        assert_eq!(
            config.logs_batch.scheduled_delay,
            Duration::from_millis(250)
        );
        assert_eq!(config.batch.max_queue_size, DEFAULT_MAX_QUEUE_SIZE);

        // Code settings beat the logs variables too.
        let mut c = code("mes");
        c.protocol = Some(Protocol::HttpProtobuf);
        c.otlp_endpoint = Some("http://code:4318".into());
        c.export_timeout = Some(Duration::from_millis(250));
        let logs = resolve(&c, &e).logs;
        let LogExport::Otlp(logs) = logs else {
            panic!("expected OTLP log export, got {logs:?}");
        };
        assert_eq!(logs.endpoint, "http://code:4318/v1/logs");
        assert_eq!(logs.protocol, Protocol::HttpProtobuf);
        assert_eq!(logs.timeout, Some(Duration::from_millis(250)));
    }

    #[test]
    fn logs_export_without_endpoint_or_with_sdk_disabled() {
        let config = resolve(&code("mes"), &env(&[("OTEL_LOGS_EXPORTER", "otlp")]));
        assert_eq!(config.logs, LogExport::None);
        assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);

        let e = env(&[
            ("OTEL_LOGS_EXPORTER", "otlp"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_SDK_DISABLED", "true"),
        ]);
        assert_eq!(resolve(&code("mes"), &e).logs, LogExport::Disabled);

        let e = env(&[
            ("OTEL_LOGS_EXPORTER", "console"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
        ]);
        let config = resolve(&code("mes"), &e);
        assert_eq!(config.logs, LogExport::None);
        assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
        assert!(
            config.warnings[0].contains("using `none`"),
            "{:?}",
            config.warnings
        );
    }

    #[test]
    fn a_bad_generic_variable_is_reported_once() {
        let e = env(&[
            ("OTEL_LOGS_EXPORTER", "otlp"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ]);
        let config = resolve(&code("mes"), &e);
        assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%3Dc").as_deref(), Some("a b=c"));
        assert_eq!(percent_decode("%E2%82%AC").as_deref(), Some("€"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%2"), None);
        assert_eq!(percent_decode("%FF"), None);
    }
}
