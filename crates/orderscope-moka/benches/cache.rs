//! `cache`: a hit through plain moka `get` (`moka_get_hit`) against the instrumented cache's
//! `get` (`instrumented_get_hit`), plain moka with a no-op eviction listener
//! (`moka_get_hit_with_listener`) and `get_with` (`instrumented_get_with_hit`), with the
//! Prometheus recorder installed.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use orderscope_moka::{CacheName, InstrumentedCache};

const BENCH: CacheName = CacheName::new("bench");

fn cache(c: &mut Criterion) {
    metrics::set_global_recorder(orderscope_metrics::build_recorder()).expect("no other recorder");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let plain: moka::future::Cache<u64, u64> = moka::future::Cache::new(1000);
    // The same cache with a no-op eviction listener: what moka itself charges for the listener
    // the instrumented cache installs.
    let listening: moka::future::Cache<u64, u64> = moka::future::Cache::builder()
        .max_capacity(1000)
        .eviction_listener(|_, _, _| {})
        .build();
    let instrumented: InstrumentedCache<u64, u64> =
        InstrumentedCache::new(BENCH, moka::future::Cache::builder().max_capacity(1000));
    rt.block_on(async {
        plain.insert(7, 7).await;
        listening.insert(7, 7).await;
        instrumented.insert(7, 7).await;
    });

    let mut group = c.benchmark_group("cache");
    group.bench_function("moka_get_hit", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(plain.get(black_box(&7)).await) })
    });
    group.bench_function("moka_get_hit_with_listener", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(listening.get(black_box(&7)).await) })
    });
    group.bench_function("instrumented_get_hit", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(instrumented.get(black_box(&7)).await) })
    });
    group.bench_function("instrumented_get_with_hit", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(instrumented.get_with(black_box(7), async { 0 }).await) })
    });
    group.finish();
}

criterion_group!(benches, cache);
criterion_main!(benches);
