//! The instrumentation crates speak the OpenTelemetry API only: none of them (nor the leaf
//! crates they build on) has the SDK among its normal dependencies, so a service that brings its
//! own SDK set-up still gets their spans. Only the facade, which builds the pipeline, and the
//! test kit touch the SDK: they turn on the `sdk` feature of `orderscope-context` (the order span
//! processor), which no instrumentation crate turns on. (`cargo tree -p orderscope-tower -e
//! normal` shows the same.)

/// The lines of one table of a crate's manifest (`[dependencies]`, `[features]`).
fn table(krate: &str, name: &str) -> String {
    let path = format!("{}/../{krate}/Cargo.toml", env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut table = String::new();
    let mut inside = false;
    for line in manifest.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            inside = trimmed == name;
            continue;
        }
        if inside && !trimmed.starts_with('#') {
            table.push_str(line);
            table.push('\n');
        }
    }
    table
}

/// The `[dependencies]` table (not dev- or build-dependencies).
fn normal_dependencies(krate: &str) -> String {
    table(krate, "[dependencies]")
}

fn names_the_sdk(line: &str) -> bool {
    line.contains("opentelemetry_sdk") || line.contains("opentelemetry-sdk")
}

/// Whether a manifest line turns on `orderscope-context`'s `sdk` feature.
fn turns_on_context_sdk(line: &str) -> bool {
    line.contains("orderscope-context/sdk")
        || (line.trim_start().starts_with("orderscope-context") && line.contains("\"sdk\""))
}

#[test]
fn instrumentation_crates_depend_on_the_api_only() {
    for krate in [
        "orderscope-context",
        "orderscope-metrics",
        "orderscope-tower",
        "orderscope-amqp",
        "orderscope-logs",
        "orderscope-macros",
        "orderscope-sqlx",
        "orderscope-moka",
    ] {
        let dependencies = normal_dependencies(krate);
        for line in dependencies.lines().filter(|line| names_the_sdk(line)) {
            // Only `orderscope-context` may name it, and only as the optional dependency of its
            // `sdk` feature.
            assert!(
                krate == "orderscope-context" && line.contains("optional = true"),
                "{krate} depends on the OpenTelemetry SDK:\n{dependencies}"
            );
        }
        let features = table(krate, "[features]");
        for line in dependencies.lines().chain(features.lines()) {
            assert!(
                !turns_on_context_sdk(line),
                "{krate} turns on orderscope-context's sdk feature: {line}"
            );
        }
    }
    // The SDK feature is off unless asked for: not in `default`, not in `full`.
    for line in table("orderscope-context", "[features]").lines() {
        let line = line.trim_start();
        if line.starts_with("default") || line.starts_with("full") {
            assert!(!line.contains("\"sdk\""), "orderscope-context: {line}");
        }
    }
    // The check reads what it means to read.
    assert!(normal_dependencies("orderscope").contains("opentelemetry_sdk"));
    assert!(
        normal_dependencies("orderscope")
            .lines()
            .any(turns_on_context_sdk)
    );
    assert!(
        normal_dependencies("orderscope-testing")
            .lines()
            .any(turns_on_context_sdk)
    );
}
