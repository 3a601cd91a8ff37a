//! The carriers speak the propagator set with `set_carrier_propagator` (process-wide, so its own
//! test binary), and the W3C codecs again once it is unset.
#![cfg(all(feature = "http", feature = "amqp"))]

use std::sync::{Arc, Mutex};

use lapin::types::{AMQPValue, FieldTable, LongString};
use opentelemetry::baggage::BaggageExt;
use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{
    Extractor, Injector, TextMapCompositePropagator, TextMapPropagator,
};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::{Context, KeyValue, StringValue};
use orderscope_context::{
    OrderContext, OrderPropagator, Propagation, carrier, keys, set_carrier_propagator,
};

/// A trace context propagator of another shape: `x-trace: {trace id}:{span id}`.
#[derive(Debug)]
struct XTrace(Vec<String>);

impl TextMapPropagator for XTrace {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        let span = cx.span();
        let sc = span.span_context();
        if sc.is_valid() {
            injector.set("x-trace", format!("{}:{}", sc.trace_id(), sc.span_id()));
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        let Some((t, s)) = extractor.get("x-trace").and_then(|v| v.split_once(':')) else {
            return cx.clone();
        };
        match (TraceId::from_hex(t), SpanId::from_hex(s)) {
            (Ok(t), Ok(s)) => cx.with_remote_span_context(SpanContext::new(
                t,
                s,
                TraceFlags::SAMPLED,
                true,
                TraceState::NONE,
            )),
            _ => cx.clone(),
        }
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(&self.0)
    }
}

fn cx() -> Context {
    let span = Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
        SpanId::from_hex("00f067aa0ba902b7").unwrap(),
        TraceFlags::SAMPLED,
        false,
        TraceState::NONE,
    ));
    OrderContext::new("ORD-9")
        .unwrap()
        .to_context(&span)
        .with_baggage([KeyValue::new("tenant", "acme")])
}

/// One test at a time: they change a process-wide setting.
static SERIAL: Mutex<()> = Mutex::new(());

fn with_xtrace(f: impl FnOnce()) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    set_carrier_propagator(Some(Arc::new(TextMapCompositePropagator::new(vec![
        Box::new(XTrace(vec!["x-trace".to_owned()])),
        Box::new(OrderPropagator::baggage_only()),
    ]))));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    set_carrier_propagator(None);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn http_carrier_speaks_the_set_propagator() {
    with_xtrace(|| {
        let mut headers = http::HeaderMap::new();
        carrier::inject_http(&cx(), &mut headers);
        assert_eq!(
            headers["x-trace"],
            "4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7"
        );
        assert!(!headers.contains_key("traceparent"));
        assert_eq!(headers["baggage"], "order.id=ORD-9,tenant=acme");

        let e = Propagation::trusted().extract_http(&headers);
        assert_eq!(e.order().map(|o| o.id()), Some("ORD-9"));
        assert_eq!(
            format!("{}", e.remote().unwrap().trace_id()),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(e.context().span().span_context().is_remote());
        assert_eq!(
            e.context().baggage().get("tenant"),
            Some(&StringValue::from("acme"))
        );
        assert_eq!(
            OrderContext::from_context(e.context()).unwrap().id(),
            "ORD-9"
        );

        // The generic entry points too.
        let mut map = std::collections::HashMap::new();
        orderscope_context::inject(&cx(), &mut map);
        assert!(map.contains_key("x-trace"));
        let e = Propagation::trusted().extract(&map);
        assert_eq!(e.order().map(|o| o.id()), Some("ORD-9"));
    });
}

#[test]
fn untrusted_policy_applies_to_the_set_propagator() {
    with_xtrace(|| {
        let mut headers = http::HeaderMap::new();
        carrier::inject_http(&cx(), &mut headers);
        let e = Propagation::untrusted().extract_http(&headers);
        assert!(e.remote().is_some(), "the caller is linked");
        assert!(!e.context().has_active_span(), "but not the parent");
        assert_eq!(e.order(), None);
        assert!(e.context().baggage().is_empty());

        let e = Propagation::untrusted()
            .allow_baggage_key(keys::ORDER_ID)
            .extract_http(&headers);
        assert_eq!(e.order().map(|o| o.id()), Some("ORD-9"));
        assert!(e.context().baggage().is_empty());
    });
}

#[test]
fn amqp_carrier_speaks_the_set_propagator() {
    with_xtrace(|| {
        let mut headers = FieldTable::default();
        carrier::inject_amqp(&cx(), &mut headers);
        let get = |k: &str| match headers.inner().get(k) {
            Some(AMQPValue::LongString(s)) => Some(s.to_string()),
            _ => None,
        };
        assert_eq!(
            get("x-trace").as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7")
        );
        assert_eq!(get("x-order-id"), None);
        assert_eq!(get("traceparent"), None);
        let e = Propagation::trusted().extract_amqp(&headers);
        assert_eq!(e.order().map(|o| o.id()), Some("ORD-9"));
        assert!(e.remote().is_some());
        carrier::insert_order_id(&cx(), &mut headers);
        let get = |k: &str| match headers.inner().get(k) {
            Some(AMQPValue::LongString(s)) => Some(s.to_string()),
            _ => None,
        };
        assert_eq!(get("x-order-id").as_deref(), Some("ORD-9"));

        // Replacing: the new context wins over what the table held.
        let mut headers = FieldTable::default();
        headers.insert(
            "x-trace".into(),
            AMQPValue::LongString(LongString::from("old")),
        );
        carrier::inject_amqp_replacing(&cx(), &mut headers);
        assert!(matches!(
            headers.inner().get("x-trace"),
            Some(AMQPValue::LongString(s)) if s.to_string().starts_with("4bf92f")
        ));

        // A span kept outside the context (the publisher's) is written by the set propagator too,
        // as if it were the context's, replacing or keeping what the table held.
        let span = SpanContext::new(
            TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
            SpanId::from_hex("b7ad6b7169203331").unwrap(),
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        );
        for replace in [false, true] {
            let old = || {
                let mut table = FieldTable::default();
                table.insert(
                    "x-trace".into(),
                    AMQPValue::LongString(LongString::from("old")),
                );
                table
            };
            let (mut for_span, mut in_context) = (old(), old());
            carrier::inject_amqp_for_span(&cx(), &span, &mut for_span, replace);
            let with_span = cx().with_remote_span_context(span.clone());
            if replace {
                carrier::inject_amqp_replacing(&with_span, &mut in_context);
            } else {
                carrier::inject_amqp(&with_span, &mut in_context);
            }
            assert_eq!(for_span, in_context, "replace: {replace}");
            assert!(for_span.contains_key("baggage"), "replace: {replace}");
        }
    });
}

#[test]
fn unset_restores_the_w3c_codecs() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    set_carrier_propagator(None);
    let mut headers = http::HeaderMap::new();
    carrier::inject_http(&cx(), &mut headers);
    assert!(headers.contains_key("traceparent"));
    assert!(!headers.contains_key("x-trace"));
}
