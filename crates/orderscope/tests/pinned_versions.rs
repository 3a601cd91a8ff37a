//! The telemetry stack is pinned together: `Cargo.lock` holds exactly one version of each
//! OpenTelemetry crate, of `tracing-opentelemetry` and of the `metrics` crates, so that the types the
//! facade re-exports are the ones every orderscope crate uses.

use std::collections::BTreeMap;

const PINNED: &[&str] = &[
    "opentelemetry",
    "opentelemetry_sdk",
    "opentelemetry-otlp",
    "opentelemetry-proto",
    "opentelemetry-http",
    "opentelemetry-appender-tracing",
    "tracing-opentelemetry",
    "metrics",
    "metrics-util",
    "metrics-exporter-prometheus",
];

/// `name → versions` for every package in the lock file.
fn locked_versions() -> BTreeMap<String, Vec<String>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock");
    let lock =
        std::fs::read_to_string(path).expect("Cargo.lock is committed at the workspace root");
    let mut versions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut name = None;
    for line in lock.lines() {
        if let Some(value) = line.strip_prefix("name = ") {
            name = Some(value.trim_matches('"').to_owned());
        } else if let (Some(value), Some(n)) = (line.strip_prefix("version = "), name.take()) {
            versions
                .entry(n)
                .or_default()
                .push(value.trim_matches('"').to_owned());
        }
    }
    versions
}

#[test]
fn one_version_of_each_pinned_crate_is_locked() {
    let versions = locked_versions();
    for krate in PINNED {
        let found = versions.get(*krate).cloned().unwrap_or_default();
        assert_eq!(
            found.len(),
            1,
            "{krate}: expected one locked version, found {found:?}"
        );
    }
    // The OpenTelemetry crates move together.
    let otel: Vec<&str> = PINNED
        .iter()
        .filter(|k| k.starts_with("opentelemetry"))
        .map(|k| versions[*k][0].as_str())
        .collect();
    assert!(
        otel.windows(2).all(|w| w[0] == w[1]),
        "OpenTelemetry crates differ: {otel:?}"
    );
}
