//! The variables the OTLP exporter reads itself from the process environment,
//! `OTEL_EXPORTER_OTLP_{,TRACES_,LOGS_}{HEADERS,COMPRESSION}`, as the collector sees them, over
//! HTTP/protobuf and gRPC, for spans and log records, next to headers and compression set in
//! code: the signal's headers variable replaces the generic one and is merged over the code
//! headers per key; a compression set in code beats the variables; a timeout variable bounds each
//! HTTP request.
//!
//! The process environment is global, and setting it is `unsafe` (forbidden in this workspace):
//! each case runs `init` in a child process of this test binary, started with its variables;
//! this process runs the receiver and checks what arrived.

mod common;

use std::process::Command;
use std::time::Duration;

use orderscope::Compression;
use orderscope_testing::{ExportRequest, OtlpReceiver, Signal};

/// Set in the child processes: the name of the case to run.
const CASE: &str = "ORDERSCOPE_TEST_OTLP_ENV_CASE";
const WAIT: Duration = Duration::from_secs(10);

/// One `init`, as a service would call it: its variables come from the process environment.
struct Case {
    name: &'static str,
    /// The process environment of the child (besides the endpoint).
    vars: &'static [(&'static str, &'static str)],
    grpc: bool,
    /// Whether the child asks for gzip in code.
    code_gzip: bool,
}

const CASES: &[Case] = &[
    Case {
        name: "http",
        vars: &[
            ("OTEL_LOGS_EXPORTER", "otlp"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-generic=g,x-tenant=generic"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                "Authorization=Bearer%20from-env,x-env=traces",
            ),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip"),
        ],
        grpc: false,
        code_gzip: false,
    },
    Case {
        name: "grpc",
        vars: &[
            ("OTEL_LOGS_EXPORTER", "otlp"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-generic=g,x-tenant=generic"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                "Authorization=Bearer%20from-env,x-env=traces",
            ),
            // Code asks for gzip: it beats this.
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "none"),
        ],
        grpc: true,
        code_gzip: true,
    },
];

#[test]
fn exporter_variables_reach_the_collector() {
    if let Ok(name) = std::env::var(CASE) {
        let case = CASES
            .iter()
            .find(|case| case.name == name)
            .unwrap_or_else(|| panic!("unknown case {name}"));
        run_init(case);
        return;
    }
    for case in CASES {
        let receiver = OtlpReceiver::start_in_background().expect("receiver");
        let endpoint = if case.grpc {
            receiver.grpc_endpoint()
        } else {
            receiver.http_endpoint()
        };
        run_child(case, &endpoint);
        receiver.wait_for_spans_blocking(2, WAIT).expect("spans");
        receiver
            .wait_for_logs_blocking(1, WAIT)
            .expect("log records");
        check(case, &receiver.export_requests());
    }
}

/// Starts this test binary again, running only this test, with the case's variables.
fn run_child(case: &Case, endpoint: &str) {
    let mut envs = vec![(CASE, case.name), ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)];
    envs.extend(case.vars.iter().copied());
    run_test_in_child("exporter_variables_reach_the_collector", &envs);
}

/// Starts this test binary again, running only `test`, with no `OTEL_*` variable of the
/// environment this test runs in, only `envs`; asserts the child passed.
fn run_test_in_child(test: &str, envs: &[(&str, &str)]) {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut command = Command::new(exe);
    command.args(["--exact", test, "--nocapture", "--test-threads=1"]);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("OTEL_") {
            command.env_remove(name);
        }
    }
    let output = command
        .envs(envs.iter().copied())
        .output()
        .expect("the child process runs");
    assert!(
        output.status.success(),
        "{test} with {envs:?}: {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// In the child: `init` with two headers in code, one span pair with a log line, shutdown.
fn run_init(case: &Case) {
    let logs = common::Capture::default();
    let builder = orderscope::builder("mes")
        .with_otlp_header("authorization", "Bearer code")
        // Sent as written: the `%` is not taken for percent-encoding.
        .with_otlp_header("x-code", "a%20b")
        .with_log_writer(logs.clone());
    let builder = if case.code_gzip {
        builder.with_otlp_compression(Compression::Gzip)
    } else {
        builder
    };
    let telemetry = builder.build().expect("init");
    common::emit_parent_child();
    telemetry.shutdown().expect("everything delivered");

    // The start-up line knows the code headers only.
    let startup = logs.find("orderscope initialised").expect("start-up line");
    assert_eq!(startup["headers"], "authorization=***,x-code=***");
    assert!(!logs.text().contains("from-env"));
}

fn check(case: &Case, requests: &[ExportRequest]) {
    let of = |signal: Signal| -> Vec<&ExportRequest> {
        requests.iter().filter(|r| r.signal == signal).collect()
    };
    let (traces, logs) = (of(Signal::Traces), of(Signal::Logs));
    assert!(!traces.is_empty(), "{}: {requests:#?}", case.name);
    assert!(!logs.is_empty(), "{}: {requests:#?}", case.name);

    for request in traces {
        let context = format!("{} traces: {request:#?}", case.name);
        // The traces variable, merged over the code headers: its `Authorization` replaces the
        // code's (once, whatever the case), the other code header stays.
        assert_eq!(
            request.header("authorization"),
            ["Bearer from-env"],
            "{context}"
        );
        assert_eq!(request.header("x-env"), ["traces"], "{context}");
        assert_eq!(request.header("x-code"), ["a%20b"], "{context}");
        // The traces variable replaces the generic one.
        assert!(request.header("x-generic").is_empty(), "{context}");
        assert!(request.header("x-tenant").is_empty(), "{context}");
        // gzip: from the traces variable (HTTP) or from code over `none` (gRPC).
        assert!(request.compressed, "{context}");
    }
    for request in logs {
        let context = format!("{} logs: {request:#?}", case.name);
        // No logs variable: the generic one, merged over the code headers.
        assert_eq!(
            request.header("authorization"),
            ["Bearer code"],
            "{context}"
        );
        assert_eq!(request.header("x-generic"), ["g"], "{context}");
        assert_eq!(request.header("x-tenant"), ["generic"], "{context}");
        assert_eq!(request.header("x-code"), ["a%20b"], "{context}");
        assert!(request.header("x-env").is_empty(), "{context}");
        // The traces compression variable is not the logs'.
        assert_eq!(request.compressed, case.code_gzip, "{context}");
    }
}

/// Set in the child of the timeout case: the silent collector's address.
const SILENT: &str = "ORDERSCOPE_TEST_OTLP_SILENT_COLLECTOR";

/// `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT` reaches the HTTP client orderscope gives the exporter: against
/// a collector that never answers, each request ends at that timeout, and shutdown says so rather
/// than "no answer" at its own bound.
#[test]
fn a_timeout_variable_bounds_each_http_request() {
    if let Ok(endpoint) = std::env::var(SILENT) {
        let telemetry = orderscope::builder("silent")
            .with_otlp_endpoint(&endpoint)
            .build()
            .expect("init");
        common::emit_parent_child();
        let error = telemetry.shutdown().expect_err("nothing answers");
        let message = error.to_string();
        assert!(
            message.contains("not delivered to") && message.contains("timed out"),
            "{message}"
        );
        return;
    }
    run_test_in_child(
        "a_timeout_variable_bounds_each_http_request",
        &[
            (SILENT, &common::silent_collector()),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "300"),
        ],
    );
}
