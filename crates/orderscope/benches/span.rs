//! The cost of one INFO `tracing` span (create, enter, exit, close): `span/none` with no
//! subscriber vs `span/orderscope` with the full `init` pipeline (env filter, JSON log layer,
//! `tracing-opentelemetry`, SDK provider with the order processor and the bounded batch queue),
//! exporting to a no-op exporter.
//!
//! `span/tracing_opentelemetry` is a reference point, not a goal: the bare peer stack a user
//! assembles by hand (registry + `tracing-opentelemetry` + SDK provider with the SDK's batch
//! processor to the same no-op exporter), without filter, log layer or order processor.

use criterion::{Criterion, criterion_group, criterion_main};
use opentelemetry::trace::TracerProvider as _;
use orderscope_testing::DroppingExporter;

fn one_span() {
    let span = tracing::info_span!("reserve_stock", order.items = 3_u64);
    let _entered = span.enter();
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("span");

    tracing::dispatcher::with_default(&tracing::Dispatch::none(), || {
        group.bench_function("none", |b| b.iter(one_span));
    });

    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(DroppingExporter)
        .build();
    let peer = tracing::Dispatch::new(tracing_subscriber::layer::SubscriberExt::with(
        tracing_subscriber::registry(),
        tracing_opentelemetry::layer().with_tracer(provider.tracer("bench")),
    ));
    tracing::dispatcher::with_default(&peer, || {
        group.bench_function("tracing_opentelemetry", |b| b.iter(one_span));
    });
    let _ = provider.shutdown();

    let telemetry = orderscope::builder("bench")
        .with_env([("RUST_LOG", "info")])
        .with_span_exporter(DroppingExporter)
        .with_log_writer(std::io::sink)
        .with_panic_hook(false)
        .build()
        .expect("init");
    group.bench_function("orderscope", |b| b.iter(one_span));
    group.finish();

    // How many spans the bounded queue had to drop while the bench outran the exporter thread.
    for line in telemetry.render().lines() {
        if line.starts_with(orderscope::SPANS_DROPPED_METRIC) {
            eprintln!("{line}");
        }
    }
    drop(telemetry);
}

criterion_group!(benches, bench);
criterion_main!(benches);
