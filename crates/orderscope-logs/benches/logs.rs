//! `logs/json_orderscope` vs `logs/json_tracing_subscriber`: one INFO event with three typed
//! fields, rendered as one JSON line and written to `io::sink`, outside of any span.
//!
//! The baseline is tracing-subscriber's own JSON formatter, flattened so the line has the same
//! fields (`timestamp`, `level`, message, `target`, the event fields).

use criterion::{Criterion, criterion_group, criterion_main};
use orderscope_logs::JsonLayer;
use tracing_subscriber::layer::SubscriberExt as _;

fn event() {
    tracing::info!(
        items = 3_u64,
        urgent = true,
        customer = "ACME GmbH",
        "order accepted"
    );
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("logs");

    let ours = tracing::Dispatch::new(
        tracing_subscriber::registry().with(JsonLayer::new("mes").with_writer(std::io::sink)),
    );
    tracing::dispatcher::with_default(&ours, || {
        group.bench_function("json_orderscope", |b| b.iter(event));
    });

    let baseline = tracing::Dispatch::new(
        tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .with_writer(std::io::sink),
        ),
    );
    tracing::dispatcher::with_default(&baseline, || {
        group.bench_function("json_tracing_subscriber", |b| b.iter(event));
    });

    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
