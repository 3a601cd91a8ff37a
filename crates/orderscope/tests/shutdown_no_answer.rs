//! A collector that accepts connections and never answers: shutdown keeps its bound and says
//! what was not delivered, where to, and why; from async code it blocks no runtime worker.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use orderscope::ShutdownError;
use orderscope_testing::LogCapture;
use tracing_subscriber::prelude::*;

const BOUND: Duration = Duration::from_secs(1);

fn spans(n: usize) {
    for _ in 0..n {
        let span = tracing::info_span!("unanswered");
        let _entered = span.enter();
    }
}

#[test]
fn shutdown_says_what_was_not_delivered_where_and_why() {
    let endpoint = common::silent_collector();
    let logs = LogCapture::new();
    let telemetry = orderscope::builder("silent")
        .with_env(Vec::<(String, String)>::new())
        .with_otlp_endpoint(&endpoint)
        .with_shutdown_timeout(BOUND)
        .with_log_writer(logs.clone())
        .build()
        .expect("init");
    spans(3);

    let started = Instant::now();
    let error = telemetry.shutdown().expect_err("nothing answers");
    let took = started.elapsed();
    assert!(took < BOUND + Duration::from_millis(900), "took {took:?}");
    let ShutdownError::NotDelivered(message) = &error else {
        panic!("expected NotDelivered, got {error:?}");
    };
    assert_eq!(
        message,
        &format!(
            "1 span batch (3 spans) not delivered to {endpoint}/v1/traces within 1s: no answer"
        )
    );
    // Said once, as a WARN line, for the operator.
    let warnings: Vec<_> = logs
        .json_lines()
        .expect("JSON lines")
        .into_iter()
        .filter(|l| {
            l["level"] == "WARN"
                && l["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(&format!("not delivered to {endpoint}/")))
        })
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
}

#[test]
fn shutdown_async_blocks_no_worker_of_a_current_thread_runtime() {
    let endpoint = common::silent_collector();
    let parts = orderscope::builder("silent-async")
        .with_env(Vec::<(String, String)>::new())
        .with_otlp_endpoint(&endpoint)
        .with_shutdown_timeout(BOUND)
        .with_log_writer(std::io::sink)
        .with_prometheus_recorder(false)
        .build_parts()
        .expect("parts");
    let subscriber = tracing_subscriber::registry().with(parts.layer.with_filter(parts.filter));
    tracing::subscriber::with_default(subscriber, || spans(2));
    let telemetry = parts.telemetry;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let ticks = Arc::new(AtomicUsize::new(0));
    let (result, ticks_during) = runtime.block_on({
        let ticks = ticks.clone();
        async move {
            let ticker = tokio::spawn({
                let ticks = ticks.clone();
                async move {
                    loop {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        ticks.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
            let result = telemetry.shutdown_async().await;
            let during = ticks.load(Ordering::SeqCst);
            ticker.abort();
            (result, during)
        }
    });
    let Err(ShutdownError::NotDelivered(message)) = result else {
        panic!("expected NotDelivered, got {result:?}");
    };
    assert!(message.contains("(2 spans) not delivered to"), "{message}");
    // The flush took the whole bound; the runtime's only thread kept running the ticker.
    assert!(
        ticks_during >= 10,
        "only {ticks_during} ticks while shutting down"
    );
}
