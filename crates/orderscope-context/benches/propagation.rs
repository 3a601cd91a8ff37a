//! Propagation round trips: inject into a fresh carrier, then extract from it.
//!
//! - `propagation/http_inject_extract`: trace context + five-field order over `http::HeaderMap`.
//! - `propagation/amqp_inject_extract`: the same over a lapin `FieldTable`.
//! - `propagation/generic_hashmap`: the same through the generic `inject`/`extract` over a
//!   `HashMap` (the carrier the baseline uses).
//! - `propagation/otel_only`: the baseline, opentelemetry_sdk's `TraceContextPropagator` through
//!   opentelemetry-http's `HeaderInjector`/`HeaderExtractor` over the same `http::HeaderMap`,
//!   trace context only (no order).
//! - `propagation/http_inject`, `propagation/http_extract`, `propagation/otel_only_inject`,
//!   `propagation/otel_only_extract`: the halves of the round trips above.
//! - `propagation/otel_order_as_baggage`: the stock `TraceContextPropagator` and
//!   `BaggagePropagator` over a `HashMap`, carrying the five order fields as plain baggage.
//! - `propagation/global_order`: inject + extract through `opentelemetry::global` with
//!   `OrderPropagator` installed, carrying the order, over an `http::HeaderMap`.
//! - `propagation/global_stock`: the same through `opentelemetry::global` with the stock
//!   TraceContext + Baggage composite installed, carrying the same fields as plain baggage.
//!
//! Bounds: `http_inject_extract` and `amqp_inject_extract` ≤ 1.5× `otel_only`; `global_order` ≤
//! 1.5× `global_stock`.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use lapin::types::FieldTable;
use opentelemetry::baggage::BaggageExt;
use opentelemetry::global;
use opentelemetry::propagation::{TextMapCompositePropagator, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use orderscope_context::{
    Channel, OrderContext, OrderPropagator, Priority, Propagation, carrier, inject,
};

fn span_context() -> SpanContext {
    SpanContext::new(
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").expect("hex"),
        SpanId::from_hex("00f067aa0ba902b7").expect("hex"),
        TraceFlags::SAMPLED,
        false,
        TraceState::NONE,
    )
}

fn order() -> OrderContext {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_040_000);
    OrderContext::builder("ORD-2026-000123")
        .channel(Channel::Api)
        .deadline(t)
        .priority(Priority::High)
        .created_at(t - Duration::from_secs(6 * 86_400))
        .build()
        .expect("valid order")
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("propagation");
    let base = Context::new().with_remote_span_context(span_context());
    let ours = order().to_context(&base);
    let trusted = Propagation::trusted();

    group.bench_function("http_inject_extract", |b| {
        b.iter(|| {
            let mut headers = http::HeaderMap::new();
            carrier::inject_http(black_box(&ours), &mut headers);
            black_box(trusted.extract_http(&headers))
        })
    });

    let mut prepared = http::HeaderMap::new();
    carrier::inject_http(&ours, &mut prepared);
    group.bench_function("http_inject", |b| {
        b.iter(|| {
            let mut headers = http::HeaderMap::new();
            carrier::inject_http(black_box(&ours), &mut headers);
            headers
        })
    });
    group.bench_function("http_extract", |b| {
        b.iter(|| black_box(trusted.extract_http(black_box(&prepared))))
    });

    group.bench_function("amqp_inject_extract", |b| {
        b.iter(|| {
            let mut headers = FieldTable::default();
            carrier::inject_amqp(black_box(&ours), &mut headers);
            black_box(trusted.extract_amqp(&headers))
        })
    });

    group.bench_function("generic_hashmap", |b| {
        b.iter(|| {
            let mut headers: HashMap<String, String> = HashMap::new();
            inject(black_box(&ours), &mut headers);
            black_box(trusted.extract(&headers))
        })
    });

    let trace_context = TraceContextPropagator::new();
    group.bench_function("otel_only", |b| {
        b.iter(|| {
            let mut headers = http::HeaderMap::new();
            trace_context.inject_context(black_box(&base), &mut HeaderInjector(&mut headers));
            black_box(trace_context.extract(&HeaderExtractor(&headers)))
        })
    });

    let mut prepared = http::HeaderMap::new();
    trace_context.inject_context(&base, &mut HeaderInjector(&mut prepared));
    group.bench_function("otel_only_inject", |b| {
        b.iter(|| {
            let mut headers = http::HeaderMap::new();
            trace_context.inject_context(black_box(&base), &mut HeaderInjector(&mut headers));
            headers
        })
    });
    group.bench_function("otel_only_extract", |b| {
        b.iter(|| black_box(trace_context.extract(&HeaderExtractor(black_box(&prepared)))))
    });

    let baggage = BaggagePropagator::new();
    let mut fields = Vec::new();
    order().for_each_field(|k, v| fields.push(KeyValue::new(k, v.to_owned())));
    let as_baggage = base.with_baggage(fields);
    group.bench_function("otel_order_as_baggage", |b| {
        b.iter(|| {
            let mut headers: HashMap<String, String> = HashMap::new();
            trace_context.inject_context(black_box(&as_baggage), &mut headers);
            baggage.inject_context(black_box(&as_baggage), &mut headers);
            let parent = trace_context.extract(&headers);
            black_box(baggage.extract_with_context(&parent, &headers))
        })
    });

    let global_round_trip = |cx: &Context| {
        let mut headers = http::HeaderMap::new();
        global::get_text_map_propagator(|p| {
            p.inject_context(cx, &mut HeaderInjector(&mut headers))
        });
        global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(&headers)))
    };

    global::set_text_map_propagator(OrderPropagator::new());
    assert_eq!(
        OrderContext::from_context(&global_round_trip(&ours)),
        Some(order()),
        "the order travels"
    );
    group.bench_function("global_order", |b| {
        b.iter(|| black_box(global_round_trip(black_box(&ours))))
    });

    global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ]));
    assert_eq!(
        global_round_trip(&as_baggage).baggage().len(),
        5,
        "the fields travel"
    );
    group.bench_function("global_stock", |b| {
        b.iter(|| black_box(global_round_trip(black_box(&as_baggage))))
    });

    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
