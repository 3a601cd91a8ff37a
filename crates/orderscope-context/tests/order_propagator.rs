//! `OrderPropagator` as an OpenTelemetry `TextMapPropagator`, beside the stock propagators.
#![cfg(feature = "http")]

use std::collections::HashMap;

use opentelemetry::baggage::BaggageExt;
use opentelemetry::propagation::{TextMapCompositePropagator, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::{Context, KeyValue, StringValue};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use orderscope_context::{Channel, OrderContext, OrderPropagator, Priority, Propagation};

fn remote() -> Context {
    Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
        SpanId::from_hex("00f067aa0ba902b7").unwrap(),
        TraceFlags::SAMPLED,
        true,
        TraceState::from_key_value([("congo", "t61rcWkgMzE")]).unwrap(),
    ))
}

fn order() -> OrderContext {
    OrderContext::builder("ORD-2026-000123")
        .channel(Channel::Api)
        .priority(Priority::High)
        .build()
        .unwrap()
}

#[test]
fn writes_what_inject_writes_and_reads_it_back() {
    let cx = order()
        .to_context(&remote())
        .with_baggage([KeyValue::new("tenant", "acme")]);
    let mut ours = HashMap::new();
    OrderPropagator::new().inject_context(&cx, &mut ours);
    let mut direct = HashMap::new();
    orderscope_context::inject(&cx, &mut direct);
    assert_eq!(ours, direct);
    assert_eq!(
        ours["traceparent"],
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    );
    assert_eq!(ours["tracestate"], "congo=t61rcWkgMzE");
    assert_eq!(
        ours["baggage"],
        "order.id=ORD-2026-000123,order.channel=api,order.priority=high,tenant=acme"
    );

    let back = OrderPropagator::new().extract(&ours);
    assert_eq!(OrderContext::from_context(&back), Some(order()));
    assert_eq!(
        back.baggage().get("tenant"),
        Some(&StringValue::from("acme"))
    );
    assert_eq!(back.baggage().get("order.id"), None, "the order is a value");
    let span = back.span();
    assert!(span.span_context().is_remote());
    assert_eq!(
        span.span_context().trace_state().get("congo"),
        Some("t61rcWkgMzE")
    );
}

#[test]
fn fields_and_parts() {
    let fields = |p: &OrderPropagator| p.fields().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(
        fields(&OrderPropagator::new()),
        ["traceparent", "tracestate", "baggage"]
    );
    assert_eq!(fields(&OrderPropagator::baggage_only()), ["baggage"]);
    assert_eq!(
        fields(&OrderPropagator::trace_context_only()),
        ["traceparent", "tracestate"]
    );

    let cx = order().to_context(&remote());
    let mut only_baggage = HashMap::new();
    OrderPropagator::baggage_only().inject_context(&cx, &mut only_baggage);
    assert_eq!(only_baggage.keys().collect::<Vec<_>>(), ["baggage"]);
    let mut only_trace = HashMap::new();
    OrderPropagator::trace_context_only().inject_context(&cx, &mut only_trace);
    assert!(!only_trace.contains_key("baggage"));
    assert!(only_trace.contains_key("traceparent"));
    let read = OrderPropagator::trace_context_only().extract(&only_baggage);
    assert_eq!(OrderContext::from_context(&read), None);
}

#[test]
fn stock_baggage_order_entries_are_the_order() {
    // A service whose composite puts the stock Baggage propagator first: the order arrives as
    // plain `order.*` baggage and is recognised as the order.
    let headers: HashMap<String, String> = [
        (
            "traceparent".to_owned(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
        ),
        (
            "baggage".to_owned(),
            "order.id=ORD-7,order.channel=web,k=v".to_owned(),
        ),
    ]
    .into_iter()
    .collect();
    let composite = TextMapCompositePropagator::new(vec![
        Box::new(BaggagePropagator::new()),
        Box::new(OrderPropagator::trace_context_only()),
    ]);
    let cx = composite.extract(&headers);
    let order = OrderContext::from_context(&cx).expect("order from stock baggage");
    assert_eq!(order.id(), "ORD-7");
    assert_eq!(order.channel(), Some(Channel::Web));

    // Injected from a context that holds the order only as plain baggage (the stock
    // propagator's output, or `with_baggage`): written as the order, validated, first.
    let plain = Context::new().with_baggage([
        KeyValue::new("k", "v"),
        KeyValue::new("order.priority", "urgent"),
        KeyValue::new("order.id", "ORD-8"),
    ]);
    let mut out = HashMap::new();
    OrderPropagator::new().inject_context(&plain, &mut out);
    assert_eq!(out["baggage"], "order.id=ORD-8,order.priority=urgent,k=v");
    let mut out = HashMap::new();
    orderscope_context::inject(&plain, &mut out);
    assert_eq!(out["baggage"], "order.id=ORD-8,order.priority=urgent,k=v");
}

#[test]
fn interoperates_with_the_stock_propagators() {
    let cx = order().to_context(&remote());
    let mut ours = HashMap::new();
    OrderPropagator::new().inject_context(&cx, &mut ours);
    // The stock propagators read what we wrote.
    let stock = TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ]);
    let read = stock.extract(&ours);
    assert_eq!(
        read.span().span_context().trace_id(),
        remote().span().span_context().trace_id()
    );
    assert_eq!(
        read.baggage().get("order.id"),
        Some(&StringValue::from("ORD-2026-000123"))
    );
    // And we read what they write.
    let mut theirs = HashMap::new();
    stock.inject_context(&read, &mut theirs);
    let back = Propagation::trusted().extract(&theirs);
    assert_eq!(back.order(), Some(&order()));
    let back = OrderPropagator::new().extract(&theirs);
    assert_eq!(OrderContext::from_context(&back), Some(order()));
}

#[test]
fn bad_input_is_dropped_never_propagated() {
    let headers: HashMap<String, String> = [
        ("traceparent".to_owned(), "00-zz-00-01".to_owned()),
        (
            "baggage".to_owned(),
            "order.id=,order.channel=fax,bad key=1,k=v".to_owned(),
        ),
    ]
    .into_iter()
    .collect();
    let cx = OrderPropagator::new().extract(&headers);
    assert!(!cx.span().span_context().is_valid());
    assert_eq!(OrderContext::from_context(&cx), None);
    assert_eq!(cx.baggage().len(), 1);
    let mut out = HashMap::new();
    OrderPropagator::new().inject_context(&cx, &mut out);
    assert_eq!(out.get("baggage").map(String::as_str), Some("k=v"));
    assert!(!out.contains_key("traceparent"));
}
