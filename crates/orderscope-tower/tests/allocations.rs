//! Heap allocations per request, counted with an instrumenting global allocator (so this file is
//! its own test process). Same request shape as the criterion bench: `traceparent` and
//! `baggage: order.id=...`, `Router::oneshot`, body read to the end.
//!
//! Run with `--nocapture` to see the figures.

#[path = "../benches/cases/mod.rs"]
#[allow(dead_code)]
mod cases;

use std::alloc::System;
use std::time::Duration;

use axum::Router;
use http_body_util::BodyExt;
use opentelemetry::Context;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, Span, SpanData, SpanProcessor};
use orderscope_testing::OrderSpanProcessor;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tower::ServiceExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The order processor's `on_start`, then drops finished spans on the request thread, so every
/// allocation is counted where it happens. (One processor: with two, the SDK clones every finished
/// span once per processor.)
#[derive(Debug)]
struct OrderThenDrop;

impl SpanProcessor for OrderThenDrop {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        OrderSpanProcessor::new().on_start(span, cx);
    }
    fn on_end(&self, span: SpanData) {
        drop(span);
    }
    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }
    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// Allocations per request, after a warm-up that fills the layer's caches.
fn per_request(runtime: &tokio::runtime::Runtime, app: &Router) -> f64 {
    const REQUESTS: usize = 2_000;
    // What `axum::serve` does once: turn handlers into routes (and apply the layers) up front.
    let app = app.clone().with_state::<()>(());
    let run = |n: usize| {
        runtime.block_on(async {
            for _ in 0..n {
                let response = app
                    .clone()
                    .oneshot(cases::request())
                    .await
                    .expect("infallible");
                std::hint::black_box(response.into_body().collect().await.expect("body"));
            }
        });
    };
    run(200);
    let region = Region::new(GLOBAL);
    run(REQUESTS);
    region.change().allocations as f64 / REQUESTS as f64
}

#[test]
fn allocations_per_request() {
    let provider = SdkTracerProvider::builder()
        .with_span_processor(OrderThenDrop)
        .build();
    // As `orderscope::init` does: the provider is also given to orderscope's instrumentation.
    orderscope_testing::set_sdk_tracer_provider(&provider);
    opentelemetry::global::set_tracer_provider(provider.clone());
    // The peer stack extracts its parent with the global propagator.
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink))
        .init();
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("recorder");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");

    let figures: Vec<(&str, f64)> = cases::cases()
        .iter()
        .map(|(name, app)| (*name, per_request(&runtime, app)))
        .collect();
    let figure = |case: &str| {
        figures
            .iter()
            .find(|(name, _)| *name == case)
            .expect("case")
            .1
    };
    let (bare, red, full, peer_stack) = (
        figure("bare"),
        figure("orderscope_metrics"),
        figure("orderscope_full"),
        figure("peer_stack"),
    );
    println!("allocations per request: bare {bare:.1}");
    for &(name, value) in &figures[1..] {
        println!("  {name}: {value:.1} (+{:.1})", value - bare);
    }

    // Regression bounds: the RED path adds what axum's re-boxing of a layered route costs plus
    // the boxed response body; the full path adds the span, the extracted context and the order.
    assert!(red - bare <= 4.0, "RED only: +{}", red - bare);
    assert!(full - bare <= 14.0, "full: +{}", full - bare);
    assert!(
        full - bare < peer_stack - bare,
        "full {full} vs peer stack {peer_stack}"
    );
}
