//! `orderscope_propagation_dropped_total{reason}`: limits, trust and the clean path.
#![cfg(feature = "http")]

mod common;

use std::collections::HashMap;

use common::{counts, dropped};
use opentelemetry::baggage::BaggageExt;
use opentelemetry::{Context, KeyValue};
use orderscope_context::{
    DropReason, OrderContext, PROPAGATION_DROPPED_METRIC, PROPAGATION_DROPPED_REASONS, Propagation,
    carrier, inject, keys,
};

fn map(pairs: &[(&str, String)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

#[test]
fn names_are_stable() {
    assert_eq!(
        PROPAGATION_DROPPED_METRIC,
        "orderscope_propagation_dropped_total"
    );
    assert_eq!(
        PROPAGATION_DROPPED_REASONS,
        [
            "traceparent_invalid",
            "tracestate_invalid",
            "baggage_too_large",
            "baggage_too_many_entries",
            "baggage_entry_invalid",
            "order_field_invalid",
            "header_type",
            "header_invalid",
            "untrusted_baggage",
        ]
    );
    let spelled: Vec<_> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(spelled, PROPAGATION_DROPPED_REASONS);
}

#[test]
fn a_clean_round_trip_counts_nothing() {
    let order = OrderContext::new("ORD-1").unwrap();
    let (_, c) = dropped(|| {
        let mut headers = http::HeaderMap::new();
        carrier::inject_http(&order.to_context(&Context::new()), &mut headers);
        Propagation::trusted().extract_http(&headers)
    });
    assert!(c.is_empty(), "{c:?}");
}

#[test]
fn entries_beyond_64_are_dropped_and_counted() {
    let mut members: Vec<String> = (0..70).map(|i| format!("k{i}=v")).collect();
    members.push("order.id=LATE".to_owned());
    let header = members.join(",");
    let (e, c) = dropped(|| Propagation::trusted().extract(&map(&[("baggage", header)])));
    assert_eq!(e.context().baggage().len(), 64);
    assert!(e.order().is_none(), "the 71st member is beyond the limit");
    assert_eq!(c, counts(&[("baggage_too_many_entries", 7)]));

    // A lower limit, configured.
    let header = "order.id=A,b=1,c=2".to_owned();
    let (e, c) = dropped(|| {
        Propagation::trusted()
            .max_baggage_entries(2)
            .extract(&map(&[("baggage", header)]))
    });
    assert_eq!(e.order().map(|o| o.id()), Some("A"));
    assert_eq!(e.context().baggage().len(), 1);
    assert_eq!(c, counts(&[("baggage_too_many_entries", 1)]));
}

#[test]
fn bytes_beyond_8192_are_dropped_and_counted() {
    // 9 members of ~1000 bytes: the ninth ends past 8,192 bytes.
    let value = "x".repeat(995);
    let mut members: Vec<String> = (0..9).map(|i| format!("k{i}={value}")).collect();
    members.insert(0, "order.id=FIRST".to_owned());
    let header = members.join(",");
    assert!(header.len() > 8192);
    let (e, c) = dropped(|| Propagation::trusted().extract(&map(&[("baggage", header)])));
    assert_eq!(e.order().map(|o| o.id()), Some("FIRST"));
    assert_eq!(e.context().baggage().len(), 8);
    assert_eq!(c, counts(&[("baggage_too_large", 1)]));

    // A single huge header is cut at the limit, not scanned to its end.
    let header = format!("order.id=A,{}", "y".repeat(1 << 20));
    let (e, c) = dropped(|| Propagation::trusted().extract(&map(&[("baggage", header)])));
    assert_eq!(e.order().map(|o| o.id()), Some("A"));
    assert_eq!(c, counts(&[("baggage_too_large", 1)]));
}

#[test]
fn several_http_baggage_headers_share_the_limits() {
    let mut headers = http::HeaderMap::new();
    let value = "z".repeat(4000);
    headers.append("baggage", format!("a={value}").parse().unwrap());
    headers.append("baggage", format!("b={value}").parse().unwrap());
    headers.append("baggage", format!("order.id=X,c={value}").parse().unwrap());
    let (e, c) = dropped(|| Propagation::trusted().extract_http(&headers));
    assert_eq!(e.context().baggage().len(), 2);
    assert_eq!(e.order().map(|o| o.id()), Some("X"));
    assert_eq!(c, counts(&[("baggage_too_large", 1)]));
}

#[test]
fn untrusted_baggage_is_counted() {
    let header = "order.id=A,order.channel=web,session=1,tenant=acme".to_owned();
    let (e, c) = dropped(|| {
        Propagation::untrusted()
            .allow_baggage_key(keys::ORDER_ID)
            .allow_baggage_key("tenant")
            .extract(&map(&[("baggage", header)]))
    });
    assert_eq!(e.order().map(|o| o.channel()), Some(None));
    assert_eq!(e.context().baggage().len(), 1);
    assert_eq!(c, counts(&[("untrusted_baggage", 2)]));
}

#[test]
fn writing_more_than_the_limits_drops_and_counts() {
    let big = "v".repeat(1020);
    let entries: Vec<KeyValue> = (0..8)
        .map(|i| KeyValue::new(format!("k{i}"), big.clone()))
        .collect();
    // Baggage itself keeps at most 8,192 bytes; the order fields come on top when written.
    let cx = OrderContext::new("ORD-1")
        .unwrap()
        .to_context(&Context::new())
        .with_baggage(entries);
    let (out, c) = dropped(|| {
        let mut out: HashMap<String, String> = HashMap::new();
        inject(&cx, &mut out);
        out
    });
    let written = &out["baggage"];
    assert!(written.len() <= 8192, "{}", written.len());
    assert!(written.starts_with("order.id=ORD-1,"));
    assert_eq!(c, counts(&[("baggage_too_large", 1)]));
}
