//! The instrumentation crates speak the OpenTelemetry API only: none of them (nor the leaf
//! crates they build on) has the SDK among its normal dependencies, so a service that brings its
//! own SDK set-up still gets their spans. Only the facade, which builds the pipeline, and the
//! test kit touch the SDK. (`cargo tree -p orderscope-tower -e normal` shows the same.)

/// The `[dependencies]` table of a crate's manifest (not dev- or build-dependencies).
fn normal_dependencies(krate: &str) -> String {
    let path = format!("{}/../{krate}/Cargo.toml", env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut table = String::new();
    let mut inside = false;
    for line in manifest.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            inside = trimmed == "[dependencies]";
            continue;
        }
        if inside {
            table.push_str(line);
            table.push('\n');
        }
    }
    table
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
    ] {
        let dependencies = normal_dependencies(krate);
        assert!(
            !dependencies.contains("opentelemetry_sdk")
                && !dependencies.contains("opentelemetry-sdk"),
            "{krate} depends on the OpenTelemetry SDK:\n{dependencies}"
        );
    }
    // The check reads what it means to read.
    assert!(normal_dependencies("orderscope").contains("opentelemetry_sdk"));
}
