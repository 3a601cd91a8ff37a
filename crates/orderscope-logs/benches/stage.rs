//! `stage/untracked` vs `stage/tracked`: one `stage!` for an order in scope, with the JSON log
//! layer writing to `io::sink` (what `orderscope::init` installs), 4,096 orders moving between
//! two stages. `tracked` runs the same with the in-flight tracker installed (the tracker cannot
//! be uninstalled, so `untracked` runs first).

use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use orderscope_context::{Channel, OrderContext};
use orderscope_logs::{JsonLayer, Tracker, register_stages, stage};
use tracing_subscriber::layer::SubscriberExt as _;

const STAGES: [&str; 2] = ["bench.accepted", "bench.scheduled"];

fn bench(c: &mut Criterion) {
    register_stages(&STAGES);
    let now = SystemTime::now();
    let orders: Vec<OrderContext> = (0..4096)
        .map(|i| {
            OrderContext::builder(format!("ORD-2026-{i:06}"))
                .channel(Channel::Web)
                .deadline(now + Duration::from_secs(3600))
                .build()
                .unwrap()
        })
        .collect();
    let dispatch = tracing::Dispatch::new(
        tracing_subscriber::registry().with(JsonLayer::new("mes").with_writer(std::io::sink)),
    );
    let mut group = c.benchmark_group("stage");
    let mut i = 0usize;
    let mut step = || {
        let order = &orders[i % orders.len()];
        let name = STAGES[(i / orders.len()) % 2];
        i = i.wrapping_add(1);
        order.in_scope(|| stage!(name));
    };
    tracing::dispatcher::with_default(&dispatch, || {
        group.bench_function("untracked", |b| b.iter(&mut step));
        Tracker::builder().build().install().unwrap();
        group.bench_function("tracked", |b| b.iter(&mut step));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
