//! Interleaved comparison of the propagation round trips against the plain opentelemetry
//! propagators, for machines where other work makes absolute timings drift: every round times
//! each case back to back, and the ratios are taken per round before the median.
//!
//! `cargo bench -p orderscope-context --bench ratio`

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use lapin::types::FieldTable;
use opentelemetry::baggage::BaggageExt;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use orderscope_context::{Channel, OrderContext, Priority, Propagation, carrier, inject};

/// A named round trip.
type Case<'a> = (&'static str, Box<dyn FnMut() + 'a>);

const ROUNDS: usize = 301;
const ITERATIONS: u32 = 2_000;

fn time(f: &mut dyn FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..ITERATIONS {
        f();
    }
    start.elapsed().as_nanos() as f64 / f64::from(ITERATIONS)
}

fn percentile(v: &mut [f64], p: usize) -> f64 {
    v.sort_by(f64::total_cmp);
    v[(v.len() - 1) * p / 100]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let span = SpanContext::new(
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").expect("hex"),
        SpanId::from_hex("00f067aa0ba902b7").expect("hex"),
        TraceFlags::SAMPLED,
        false,
        TraceState::NONE,
    );
    let base = Context::new().with_remote_span_context(span);
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_040_000);
    let order = OrderContext::builder("ORD-2026-000123")
        .channel(Channel::Api)
        .deadline(t)
        .priority(Priority::High)
        .created_at(t - Duration::from_secs(6 * 86_400))
        .build()
        .expect("valid order");
    let ours = order.to_context(&base);
    let mut fields = Vec::new();
    order.for_each_field(|k, v| fields.push(KeyValue::new(k, v.to_owned())));
    let as_baggage = base.with_baggage(fields);
    let trusted = Propagation::trusted();
    let (tc, bg) = (TraceContextPropagator::new(), BaggagePropagator::new());
    let otel = |cx: &Context| {
        let mut h: HashMap<String, String> = HashMap::new();
        tc.inject_context(cx, &mut h);
        bg.inject_context(cx, &mut h);
        let parent = tc.extract(&h);
        bg.extract_with_context(&parent, &h)
    };

    let mut cases: Vec<Case<'_>> = vec![
        (
            "otel_only",
            Box::new(|| drop(black_box(otel(black_box(&base))))),
        ),
        (
            "http_inject_extract",
            Box::new(|| {
                let mut h = http::HeaderMap::new();
                carrier::inject_http(black_box(&ours), &mut h);
                drop(black_box(trusted.extract_http(&h)));
            }),
        ),
        (
            "amqp_inject_extract",
            Box::new(|| {
                let mut h = FieldTable::default();
                carrier::inject_amqp(black_box(&ours), &mut h);
                drop(black_box(trusted.extract_amqp(&h)));
            }),
        ),
        (
            "generic_hashmap",
            Box::new(|| {
                let mut h: HashMap<String, String> = HashMap::new();
                inject(black_box(&ours), &mut h);
                drop(black_box(trusted.extract(&h)));
            }),
        ),
        (
            "otel_order_as_baggage",
            Box::new(|| drop(black_box(otel(black_box(&as_baggage))))),
        ),
    ];

    for (_, f) in &mut cases {
        time(f.as_mut());
    }
    let mut per_case: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for _ in 0..ROUNDS {
        let times: Vec<f64> = cases.iter_mut().map(|(_, f)| time(f.as_mut())).collect();
        for (i, t) in times.iter().enumerate() {
            per_case[i].push(*t);
            ratios[i].push(t / times[0]);
        }
    }
    // Short batches, many rounds: the low percentiles are the batches no other process
    // interrupted, and the per-round ratios cancel slower drifts.
    println!(
        "{:<34} {:>8} {:>8} {:>16} {:>14}",
        "case", "p10 ns", "p50 ns", "p10 × otel_only", "median ratio"
    );
    let base10 = percentile(&mut per_case[0], 10);
    for (i, (name, _)) in cases.iter().enumerate() {
        let p10 = percentile(&mut per_case[i], 10);
        let p50 = percentile(&mut per_case[i], 50);
        println!(
            "propagation/{:<22} {:>8.0} {:>8.0} {:>16.2} {:>14.2}",
            name,
            p10,
            p50,
            p10 / base10,
            percentile(&mut ratios[i], 50)
        );
    }
}
