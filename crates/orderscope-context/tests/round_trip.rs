//! Round trips: HTTP → HTTP, HTTP → AMQP → HTTP and the generic carriers keep the trace id, the
//! parent span id, the sampled flag, the trace state and every order field.
#![cfg(all(feature = "http", feature = "amqp"))]

use std::collections::HashMap;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use lapin::types::{AMQPValue, FieldTable, LongString};
use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::{Context, KeyValue, StringValue};
use orderscope_context::carrier::{self, FieldTableExtractor, FieldTableInjector};
use orderscope_context::{
    Channel, Extracted, OrderContext, Priority, Propagation, TrustPolicy, inject, keys,
};

fn span_context(sampled: bool, state: &str) -> SpanContext {
    SpanContext::new(
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
        SpanId::from_hex("00f067aa0ba902b7").unwrap(),
        if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::NOT_SAMPLED
        },
        false,
        TraceState::from_str(state).unwrap(),
    )
}

fn full_order(id: &str) -> OrderContext {
    OrderContext::builder(id)
        .channel(Channel::Email)
        .deadline(SystemTime::UNIX_EPOCH + Duration::new(1_796_040_000, 250_000_000))
        .priority(Priority::Urgent)
        .created_at(SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_511_702))
        .build()
        .unwrap()
}

/// Ids that need percent-encoding (non-ASCII, `%`, quotes, backslash, `+`, `/`).
const IDS: &[&str] = &[
    "ORD-2026-000123",
    "Bestellung/Ä-Ö-Ü/€42",
    "100%\"quoted\"\\+plus",
    "注文-七",
    "a",
];

fn assert_same(extracted: &Extracted, sent: &SpanContext, order: &OrderContext) {
    let remote = extracted.remote().expect("remote span context");
    assert_eq!(remote.trace_id(), sent.trace_id());
    assert_eq!(remote.span_id(), sent.span_id());
    assert_eq!(remote.is_sampled(), sent.is_sampled());
    assert_eq!(remote.trace_state(), sent.trace_state());
    assert!(remote.is_remote());
    let parent = extracted.context().span().span_context().clone();
    assert_eq!(&parent, remote);
    assert_eq!(extracted.order(), Some(order));
    assert_eq!(
        OrderContext::from_context(extracted.context()).as_ref(),
        Some(order)
    );
}

#[test]
fn http_to_http() {
    for sampled in [true, false] {
        for id in IDS {
            let sent = span_context(sampled, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
            let order = full_order(id);
            let cx = order.to_context(&Context::new().with_remote_span_context(sent.clone()));
            let mut headers = http::HeaderMap::new();
            carrier::inject_http(&cx, &mut headers);
            assert_eq!(
                headers["tracestate"],
                "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
            );

            let direct = Propagation::trusted().extract_http(&headers);
            assert_same(&direct, &sent, &order);
            let generic = Propagation::trusted().extract(&carrier::HeaderExtractor(&headers));
            assert_same(&generic, &sent, &order);

            // The next hop writes the same headers again.
            let mut next = http::HeaderMap::new();
            carrier::inject_http(direct.context(), &mut next);
            assert_eq!(next, headers);
        }
    }
}

#[test]
fn http_to_amqp_to_http() {
    for id in IDS {
        let sent = span_context(true, "vendor@system=opaque-value");
        let order = full_order(id);
        let cx = order.to_context(&Context::new().with_remote_span_context(sent.clone()));

        let mut http_in = http::HeaderMap::new();
        carrier::inject_http(&cx, &mut http_in);
        let at_publisher = Propagation::trusted().extract_http(&http_in);

        let mut table = FieldTable::default();
        carrier::inject_amqp(at_publisher.context(), &mut table);
        assert!(
            !table.contains_key(keys::X_ORDER_ID),
            "not in the default set"
        );
        carrier::insert_order_id(at_publisher.context(), &mut table);
        for key in ["traceparent", "tracestate", "baggage", "x-order-id"] {
            assert!(
                matches!(table.inner().get(key), Some(AMQPValue::LongString(_))),
                "{key} is a long string"
            );
        }
        assert_eq!(
            table.inner().get(keys::X_ORDER_ID),
            Some(&AMQPValue::LongString(LongString::from(id.to_string())))
        );

        let at_consumer = Propagation::trusted().extract_amqp(&table);
        assert_same(&at_consumer, &sent, &order);
        let generic = Propagation::trusted().extract(&FieldTableExtractor(&table));
        assert_same(&generic, &sent, &order);

        let mut http_out = http::HeaderMap::new();
        carrier::inject_http(at_consumer.context(), &mut http_out);
        assert_eq!(http_out, http_in);
        assert_same(
            &Propagation::trusted().extract_http(&http_out),
            &sent,
            &order,
        );
    }
}

#[test]
fn generic_injectors_match_the_direct_paths() {
    let sent = span_context(true, "k=v");
    let order = full_order("ORD-1");
    let cx = order.to_context(&Context::new().with_remote_span_context(sent.clone()));

    let mut direct = http::HeaderMap::new();
    carrier::inject_http(&cx, &mut direct);
    let mut generic = http::HeaderMap::new();
    inject(&cx, &mut carrier::HeaderInjector(&mut generic));
    assert_eq!(direct, generic);

    let mut map: HashMap<String, String> = HashMap::new();
    inject(&cx, &mut map);
    assert_same(&Propagation::trusted().extract(&map), &sent, &order);

    let mut table = FieldTable::default();
    inject(&cx, &mut FieldTableInjector(&mut table));
    assert_same(&Propagation::trusted().extract_amqp(&table), &sent, &order);
    assert!(
        !table.contains_key("x-order-id"),
        "plain Injector::set writes what it is given"
    );
    let mut direct = FieldTable::default();
    carrier::inject_amqp(&cx, &mut direct);
    FieldTableInjector(&mut table).inject_context(&cx);
    assert_eq!(
        table, direct,
        "inject_context writes what inject_amqp writes"
    );
    assert!(!table.contains_key("x-order-id"));
}

#[test]
fn other_baggage_travels_with_the_order() {
    let order = full_order("ORD-1");
    let cx = order.to_context(&Context::new()).with_baggage([
        KeyValue::new("tenant", "acme gmbh, köln"),
        // The order keys come from the OrderContext only.
        KeyValue::new(keys::ORDER_ID, "SPOOFED"),
    ]);
    let mut headers = http::HeaderMap::new();
    carrier::inject_http(&cx, &mut headers);
    let baggage = headers["baggage"].to_str().unwrap();
    assert!(baggage.starts_with("order.id=ORD-1,order.channel=email,"));
    assert!(baggage.ends_with(",tenant=acme%20gmbh%2C%20k%C3%B6ln"));
    assert!(!baggage.contains("SPOOFED"));

    let extracted = Propagation::trusted().extract_http(&headers);
    assert_eq!(extracted.order(), Some(&order));
    let bag = extracted.context().baggage();
    assert_eq!(bag.len(), 1, "order keys are not duplicated into Baggage");
    assert_eq!(
        bag.get("tenant"),
        Some(&StringValue::from("acme gmbh, köln"))
    );
}

#[test]
fn untrusted_starts_a_new_trace_and_filters_baggage() {
    let sent = span_context(true, "");
    let order = full_order("ORD-1");
    let cx = order
        .to_context(&Context::new().with_remote_span_context(sent.clone()))
        .with_baggage([KeyValue::new("session", "s3cr3t")]);
    let mut headers = http::HeaderMap::new();
    carrier::inject_http(&cx, &mut headers);
    assert!(
        !headers.contains_key("tracestate"),
        "empty tracestate is not written"
    );

    let none = Propagation::untrusted().extract_http(&headers);
    assert_eq!(Propagation::untrusted().policy(), TrustPolicy::Untrusted);
    assert!(!none.context().has_active_span());
    assert_eq!(
        none.remote().map(SpanContext::trace_id),
        Some(sent.trace_id())
    );
    assert_eq!(none.order(), None);
    assert!(none.context().baggage().is_empty());

    let some = Propagation::untrusted()
        .allow_baggage_key(keys::ORDER_ID)
        .allow_baggage_key(keys::ORDER_CHANNEL)
        .extract_http(&headers);
    let kept = some.order().unwrap();
    assert_eq!(kept.id(), "ORD-1");
    assert_eq!(kept.channel(), Some(Channel::Email));
    assert_eq!(kept.priority(), None, "not allow-listed");
    assert!(some.context().baggage().is_empty());
    assert!(!some.context().has_active_span());
    assert_eq!(
        OrderContext::from_context(&some.into_context()).map(|o| o.id().to_owned()),
        Some("ORD-1".to_owned())
    );
}

#[test]
fn amqp_keeps_a_caller_set_traceparent_unless_replacing() {
    let caller_tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let ours = span_context(true, "ours=1");
    let cx = full_order("ORD-1").to_context(&Context::new().with_remote_span_context(ours));

    let mut table = FieldTable::default();
    table.insert(
        "traceparent".into(),
        AMQPValue::LongString(caller_tp.into()),
    );
    table.insert("app-header".into(), AMQPValue::LongInt(7));
    carrier::inject_amqp(&cx, &mut table);
    assert_eq!(
        table.inner().get("traceparent"),
        Some(&AMQPValue::LongString(caller_tp.into()))
    );
    assert!(
        !table.contains_key("tracestate"),
        "our tracestate does not join their parent"
    );
    assert_eq!(
        table.inner().get("app-header"),
        Some(&AMQPValue::LongInt(7))
    );
    assert!(table.contains_key("baggage"));

    carrier::inject_amqp_replacing(&cx, &mut table);
    assert_eq!(
        table.inner().get("traceparent"),
        Some(&AMQPValue::LongString(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()
        ))
    );
    assert_eq!(
        table.inner().get("tracestate"),
        Some(&AMQPValue::LongString("ours=1".into()))
    );

    // Replacing with a context whose tracestate is empty removes the stale one.
    let plain = Context::new().with_remote_span_context(span_context(false, ""));
    carrier::inject_amqp_replacing(&plain, &mut table);
    assert!(!table.contains_key("tracestate"));
    assert_eq!(
        table.inner().get("app-header"),
        Some(&AMQPValue::LongInt(7))
    );
}

#[test]
fn nothing_to_inject_writes_nothing() {
    let mut headers = http::HeaderMap::new();
    carrier::inject_http(&Context::new(), &mut headers);
    assert!(headers.is_empty());
    let mut table = FieldTable::default();
    carrier::inject_amqp(&Context::new(), &mut table);
    assert!(table.inner().is_empty());
    let e = Propagation::trusted().extract_http(&headers);
    assert!(e.remote().is_none() && e.order().is_none());
    assert!(!e.context().has_active_span());
}
