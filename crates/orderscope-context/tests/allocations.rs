//! Heap allocations per propagation round trip (trace context + five-field order), counted with
//! a counting global allocator. One test in this binary, so nothing else allocates meanwhile.
#![cfg(all(feature = "http", feature = "amqp"))]

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use lapin::types::FieldTable;
use opentelemetry::Context;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use orderscope_context::{Channel, OrderContext, Priority, Propagation, carrier};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

fn allocations<R>(f: impl Fn() -> R) -> usize {
    drop(f()); // warm up lazily initialised statics
    let region = Region::new(GLOBAL);
    drop(f());
    region.change().allocations
}

#[test]
fn allocations_per_round_trip() {
    let span = SpanContext::new(
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
        SpanId::from_hex("00f067aa0ba902b7").unwrap(),
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
        .created_at(t)
        .build()
        .unwrap();
    let cx = order.to_context(&base);
    let trusted = Propagation::trusted();

    let mut prepared = http::HeaderMap::new();
    carrier::inject_http(&cx, &mut prepared);

    let http_inject = allocations(|| {
        let mut h = http::HeaderMap::new();
        carrier::inject_http(&cx, &mut h);
        h
    });
    let http_extract = allocations(|| trusted.extract_http(&prepared));
    let http_round_trip = allocations(|| {
        let mut h = http::HeaderMap::new();
        carrier::inject_http(&cx, &mut h);
        trusted.extract_http(&h)
    });
    let amqp_round_trip = allocations(|| {
        let mut t = FieldTable::default();
        carrier::inject_amqp(&cx, &mut t);
        trusted.extract_amqp(&t)
    });
    let (tc, bg) = (TraceContextPropagator::new(), BaggagePropagator::new());
    let otel_only = allocations(|| {
        let mut h: HashMap<String, String> = HashMap::new();
        tc.inject_context(&base, &mut h);
        bg.inject_context(&base, &mut h);
        let parent = tc.extract(&h);
        bg.extract_with_context(&parent, &h)
    });

    println!(
        "allocations: http inject {http_inject}, http extract {http_extract}, \
         http round trip {http_round_trip}, amqp round trip {amqp_round_trip}, \
         otel_only round trip {otel_only}"
    );
    // Bounds that catch a regression; the figures above are the current ones.
    assert!(http_inject <= 4, "http inject: {http_inject}");
    assert!(http_extract <= 7, "http extract: {http_extract}");
    assert!(http_round_trip <= 11, "http round trip: {http_round_trip}");
    assert!(amqp_round_trip <= 16, "amqp round trip: {amqp_round_trip}");
}
