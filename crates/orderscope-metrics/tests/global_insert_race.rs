//! Concurrent first registrations in a `LabelCache` (own test binary: global recorder).

use std::sync::Barrier;
use std::thread;

use metrics::Label;
use orderscope_metrics::{CounterCache, SeriesLimit};
use orderscope_testing::LocalMetrics;

static RACE: CounterCache<u16> = CounterCache::new("race_total", &["key"], SeriesLimit::new(50));

#[test]
fn racing_inserts_respect_the_limit_and_lose_nothing() {
    let metrics = LocalMetrics::new();
    metrics.install_global().expect("first global recorder");
    let threads = 8;
    let barrier = Barrier::new(threads);
    thread::scope(|scope| {
        for t in 0..threads {
            let barrier = &barrier;
            scope.spawn(move || {
                barrier.wait();
                for round in 0..20u16 {
                    for i in 0..100u16 {
                        // Threads walk the keys in different orders.
                        let key = (i * 7 + t as u16 * 13 + round) % 100;
                        RACE.increment(&key, 1, |k| vec![Label::new("key", k.to_string())]);
                    }
                }
            });
        }
    });
    assert_eq!(RACE.len(), 50);
    let snap = metrics.snapshot();
    assert_eq!(snap.counter_sum("race_total"), 8 * 20 * 100);
    let series = snap.series("race_total");
    assert_eq!(series.len(), 51, "50 series + overflow");
    let overflow = snap.counter("race_total", &[("key", "_overflow")]).unwrap();
    assert_eq!(
        snap.counter(
            "orderscope_cardinality_overflow_total",
            &[("metric", "race_total")]
        ),
        Some(overflow)
    );
    // Every non-overflow key got all 8 * 20 of its increments.
    for labels in series {
        let value = &labels[0].1;
        if value != "_overflow" {
            assert_eq!(
                snap.counter("race_total", &[("key", value)]),
                Some(160),
                "{value}"
            );
        }
    }
}
