//! Property tests: any bytes in any header never panic, and whatever is accepted re-serialises to
//! headers that an independent, spec-conforming reading accepts identically.
#![cfg(all(feature = "http", feature = "amqp"))]

use std::collections::{BTreeMap, HashMap};

use lapin::types::{AMQPValue, ByteArray, FieldTable, LongString, ShortString};
use opentelemetry::baggage::BaggageExt;
use opentelemetry::propagation::{Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use orderscope_context::carrier::{FieldTableExtractor, FieldTableInjector, HeaderInjector};
use orderscope_context::{Channel, Extracted, OrderContext, Priority, Propagation, inject, keys};
use percent_encoding::percent_decode_str;
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Reference readings, written from the W3C grammars and sharing no code with the crate.

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// W3C Trace Context `traceparent`: `(trace id hex, span id hex, sampled)`.
fn ref_traceparent(value: &str) -> Option<(String, String, bool)> {
    let value = value.trim_matches(|c| c == ' ' || c == '\t');
    let parts: Vec<&str> = value.split('-').collect();
    if parts.len() < 4 || !is_lower_hex(parts[0], 2) || parts[0] == "ff" {
        return None;
    }
    if parts[0] == "00" && parts.len() != 4 {
        return None;
    }
    let (trace, span, flags) = (parts[1], parts[2], parts[3]);
    if !is_lower_hex(trace, 32) || !is_lower_hex(span, 16) || !is_lower_hex(flags, 2) {
        return None;
    }
    if trace.bytes().all(|b| b == b'0') || span.bytes().all(|b| b == b'0') {
        return None;
    }
    let sampled = u8::from_str_radix(flags, 16).ok()? & 1 == 1;
    Some((trace.to_owned(), span.to_owned(), sampled))
}

const TCHARS: &str = "!#$%&'*+-.^_`|~";

/// W3C Baggage list members: `(key, percent-decoded value)` for each valid member, or `None`
/// when the header is beyond the limits (more than 64 members or 8,192 bytes).
fn ref_baggage(value: &str) -> Option<Vec<(String, String)>> {
    if value.len() > 8192 {
        return None;
    }
    let members: Vec<&str> = value
        .split(',')
        .map(|m| m.trim_matches(|c| c == ' ' || c == '\t'))
        .filter(|m| !m.is_empty())
        .collect();
    if members.len() > 64 {
        return None;
    }
    let mut out = Vec::new();
    for member in members {
        let pair = member.split(';').next().unwrap_or("");
        let Some((key, val)) = pair.split_once('=') else {
            continue;
        };
        let key = key.trim_matches(|c| c == ' ' || c == '\t');
        let val = val.trim_matches(|c| c == ' ' || c == '\t');
        let key_ok = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || TCHARS.contains(c));
        let val_ok = val
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != ',' && c != ';' && c != '\\');
        if key_ok && val_ok {
            let decoded = percent_decode_str(val).decode_utf8_lossy().into_owned();
            out.push((key.to_owned(), decoded));
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// Generators.

const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// Traceparent-like strings: valid ones with one byte changed, cut or extended, and soup.
fn traceparent_like() -> impl Strategy<Value = String> {
    prop_oneof![
        (0usize..56, any::<u8>()).prop_map(|(at, byte)| {
            let mut b = TP.as_bytes().to_vec();
            let choices = b"0123456789abcdefABCDEF-fz \t";
            if at < b.len() {
                b[at] = choices[usize::from(byte) % choices.len()];
            }
            String::from_utf8_lossy(&b).into_owned()
        }),
        (0usize..60).prop_map(|n| TP.chars().cycle().take(n).collect()),
        "[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-[a-z0-9-]{0,8})?",
        "(00|01|cc|fe|ff)-(0{32}|[0-9a-fA-F]{32})-(0{16}|[0-9a-f]{16})-[0-9a-f]{1,3}",
        "[ \t]{0,2}00-[0-9a-f]{32}-[0-9a-f]{16}-0[01][ \t]{0,2}",
        ".{0,70}",
    ]
}

/// Baggage-like headers: members drawn from order keys, other keys and junk.
fn baggage_like() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just(keys::ORDER_ID.to_owned()),
        Just(keys::ORDER_CHANNEL.to_owned()),
        Just(keys::ORDER_DEADLINE.to_owned()),
        Just(keys::ORDER_PRIORITY.to_owned()),
        Just(keys::ORDER_CREATED_AT.to_owned()),
        "[a-zA-Z0-9!#$%&'*+.^_`|~-]{1,8}",
        "[ \t]?[a-z]{1,3}[ (\u{e4}]?[ \t]?",
    ];
    let value = prop_oneof![
        "[A-Za-z0-9-]{1,12}",
        Just("web".to_owned()),
        Just("API".to_owned()),
        Just("urgent".to_owned()),
        Just("2026-11-30T12:00:00Z".to_owned()),
        Just("2026-11-30T12%3A00%3A00.120%2B01%3A00".to_owned()),
        "(%[0-9A-Fa-f]{2}|%[g-z]{0,2}|[a-z+=/:]){0,8}",
        "[ \t]?[!-~]{0,10}[ \t]?",
        ".{0,6}",
    ];
    let member = prop_oneof![
        4 => (key, value, proptest::option::of("[a-z=; ]{0,6}")).prop_map(|(k, v, p)| match p {
            Some(p) => format!("{k}={v};{p}"),
            None => format!("{k}={v}"),
        }),
        1 => "[ \t]{0,2}",
        1 => ".{0,12}",
    ];
    prop::collection::vec(member, 0..12).prop_map(|m| m.join(","))
}

fn tracestate_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "([a-z][a-z0-9_*/-]{0,6}(@[a-z][a-z0-9]{0,4})?=[!-+\\--<>-~]{1,8},?){0,4}",
        prop::collection::vec("[a-z]{1,4}=[a-z0-9 ]{1,6}", 0..5).prop_map(|v| v.join(",")),
        ".{0,40}",
    ]
}

// ---------------------------------------------------------------------------------------------
// Checks.

fn extract_map(pairs: &[(&str, &str)]) -> Extracted {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Propagation::trusted().extract(&map)
}

/// What an extraction holds, as text: remote span, trace state, order fields, other baggage.
#[derive(Debug, PartialEq)]
struct Seen {
    remote: Option<(String, String, bool, String)>,
    order: Vec<(String, String)>,
    baggage: BTreeMap<String, String>,
}

fn seen(e: &Extracted) -> Seen {
    let remote = e.remote().map(|sc| {
        (
            format!("{:032x}", sc.trace_id()),
            format!("{:016x}", sc.span_id()),
            sc.is_sampled(),
            sc.trace_state().header(),
        )
    });
    let mut order = Vec::new();
    if let Some(o) = e.order() {
        o.for_each_field(|k, v| order.push((k.to_owned(), v.to_owned())));
    }
    let baggage = e
        .context()
        .baggage()
        .iter()
        .map(|(k, (v, _))| (k.as_str().to_owned(), v.as_str().to_owned()))
        .collect();
    Seen {
        remote,
        order,
        baggage,
    }
}

/// Re-serialises `e` and checks that the reference readings and our own see the same thing.
fn check_reserialisation(e: &Extracted) -> Result<(), TestCaseError> {
    let before = seen(e);
    let mut out: HashMap<String, String> = HashMap::new();
    inject(e.context(), &mut out);

    // Trace context: the reference reading and opentelemetry's propagator agree with us.
    match (&before.remote, out.get("traceparent")) {
        (Some((trace, span, sampled, state)), Some(tp)) => {
            prop_assert_eq!(
                ref_traceparent(tp),
                Some((trace.clone(), span.clone(), *sampled))
            );
            let otel = TraceContextPropagator::new().extract(&out);
            let otel_span = otel.span();
            let sc = otel_span.span_context();
            prop_assert_eq!(format!("{:032x}", sc.trace_id()), trace.clone());
            prop_assert_eq!(format!("{:016x}", sc.span_id()), span.clone());
            prop_assert_eq!(sc.is_sampled(), *sampled);
            prop_assert_eq!(sc.trace_state().header(), state.clone());
            prop_assert_eq!(
                out.get("tracestate").cloned().unwrap_or_default(),
                state.clone()
            );
        }
        (None, None) => {}
        (remote, tp) => prop_assert!(false, "remote {:?} but traceparent {:?}", remote, tp),
    }

    // Baggage: the reference reading sees exactly the order fields, then the other entries.
    let written = out.get("baggage").map(String::as_str).unwrap_or("");
    let entries = ref_baggage(written).expect("within limits");
    let member_count = written.split(',').filter(|m| !m.is_empty()).count();
    prop_assert_eq!(
        entries.len(),
        member_count,
        "every member written is valid: {}",
        written
    );
    let (order, other): (Vec<_>, Vec<_>) = entries
        .into_iter()
        .partition(|(k, _)| keys::ALL.contains(&k.as_str()));
    prop_assert_eq!(&order, &before.order);
    let other: BTreeMap<String, String> = other.into_iter().collect();
    prop_assert_eq!(&other, &before.baggage);

    // And reading our output again gives the same context.
    let again = Propagation::trusted().extract(&out);
    prop_assert_eq!(seen(&again), before);
    prop_assert_eq!(again.order(), e.order());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn traceparent_matches_the_reference(tp in traceparent_like()) {
        let e = extract_map(&[("traceparent", &tp)]);
        let ours = e.remote().map(|sc| {
            (format!("{:032x}", sc.trace_id()), format!("{:016x}", sc.span_id()), sc.is_sampled())
        });
        prop_assert_eq!(ours, ref_traceparent(&tp), "{:?}", tp);
        prop_assert_eq!(e.context().has_active_span(), e.remote().is_some());
    }

    #[test]
    fn baggage_matches_the_reference(b in baggage_like()) {
        let e = extract_map(&[("baggage", &b)]);
        let Some(entries) = ref_baggage(&b) else { return Ok(()) };
        let mut last: BTreeMap<&str, &str> = BTreeMap::new();
        for (k, v) in &entries {
            last.insert(k.as_str(), v.as_str());
        }
        let other: BTreeMap<String, String> = last
            .iter()
            .filter(|(k, _)| !keys::ALL.contains(k))
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let bag: BTreeMap<String, String> = e
            .context()
            .baggage()
            .iter()
            .map(|(k, (v, _))| (k.as_str().to_owned(), v.as_str().to_owned()))
            .collect();
        prop_assert_eq!(bag, other, "{:?}", b);

        let expected_order = last.get(keys::ORDER_ID).and_then(|id| OrderContext::new(*id).ok());
        prop_assert_eq!(e.order().map(|o| o.id()), expected_order.as_ref().map(|o| o.id()));
        if let Some(order) = e.order() {
            let channel = last.get(keys::ORDER_CHANNEL).and_then(|c| c.parse::<Channel>().ok());
            prop_assert_eq!(order.channel(), channel);
            let priority = last.get(keys::ORDER_PRIORITY).and_then(|p| p.parse::<Priority>().ok());
            prop_assert_eq!(order.priority(), priority);
            prop_assert!(order.deadline().is_none() || last.contains_key(keys::ORDER_DEADLINE));
            prop_assert!(
                order.created_at().is_none() || last.contains_key(keys::ORDER_CREATED_AT)
            );
        }
    }

    #[test]
    fn accepted_context_reserialises_identically(
        tp in traceparent_like(),
        ts in tracestate_like(),
        b in baggage_like(),
    ) {
        let e = extract_map(&[("traceparent", &tp), ("tracestate", &ts), ("baggage", &b)]);
        check_reserialisation(&e)?;
    }

    #[test]
    fn http_byte_soup_never_panics(
        tp in prop::collection::vec(any::<u8>(), 0..80),
        ts in prop::collection::vec(any::<u8>(), 0..80),
        bags in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..3),
    ) {
        let mut headers = http::HeaderMap::new();
        if let Ok(v) = http::HeaderValue::from_bytes(&tp) {
            headers.insert("traceparent", v);
        }
        if let Ok(v) = http::HeaderValue::from_bytes(&ts) {
            headers.insert("tracestate", v);
        }
        for b in &bags {
            if let Ok(v) = http::HeaderValue::from_bytes(b) {
                headers.append("baggage", v);
            }
        }
        let e = Propagation::trusted().extract_http(&headers);
        check_reserialisation(&e)?;
        let u = Propagation::untrusted().allow_baggage_key(keys::ORDER_ID).extract_http(&headers);
        prop_assert!(!u.context().has_active_span());
    }

    #[test]
    fn amqp_byte_soup_never_panics(
        entries in prop::collection::vec(
            (
                prop_oneof![
                    Just("traceparent".to_owned()),
                    Just("tracestate".to_owned()),
                    Just("baggage".to_owned()),
                    Just("MT-Activity-Id".to_owned()),
                    Just("Correlation-Context".to_owned()),
                    Just("BAGGAGE".to_owned()),
                    ".{0,300}",
                ],
                0u8..5,
                prop::collection::vec(any::<u8>(), 0..200),
            ),
            0..6,
        ),
        inject_key in ".{0,300}",
        inject_value in ".{0,40}",
    ) {
        let mut table = FieldTable::default();
        for (key, kind, bytes) in &entries {
            let Ok(key) = ShortString::try_new(key.clone()) else { continue };
            let value = match kind {
                0 => AMQPValue::LongString(LongString::from(bytes.clone())),
                1 => AMQPValue::ByteArray(ByteArray::from(bytes.clone())),
                2 => AMQPValue::ShortString(ShortString::from(
                    String::from_utf8_lossy(&bytes[..bytes.len().min(80)]).into_owned(),
                )),
                3 => AMQPValue::LongInt(i32::from(bytes.first().copied().unwrap_or(0))),
                _ => AMQPValue::Boolean(bytes.is_empty()),
            };
            table.insert(key, value);
        }
        let e = Propagation::trusted().extract_amqp(&table);
        check_reserialisation(&e)?;
        let generic = Propagation::trusted().extract(&FieldTableExtractor(&table));
        prop_assert_eq!(seen(&generic), seen(&e));

        // Writing back never panics, whatever keys the caller passes.
        let mut copy = table.clone();
        orderscope_context::carrier::inject_amqp(e.context(), &mut copy);
        FieldTableInjector(&mut copy).set(&inject_key, inject_value.clone());
        let mut headers = http::HeaderMap::new();
        HeaderInjector(&mut headers).set(&inject_key, inject_value);
    }
}

/// The generators reach the accepting paths often enough for the properties to mean something.
#[test]
fn generators_reach_accepting_paths() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let (mut remotes, mut orders, mut full_orders, mut other, mut states) = (0, 0, 0, 0, 0);
    let n = 2_000;
    for _ in 0..n {
        let tp = traceparent_like().new_tree(&mut runner).unwrap().current();
        let ts = tracestate_like().new_tree(&mut runner).unwrap().current();
        let b = baggage_like().new_tree(&mut runner).unwrap().current();
        let e = extract_map(&[("traceparent", &tp), ("tracestate", &ts), ("baggage", &b)]);
        remotes += usize::from(e.remote().is_some());
        states += usize::from(
            e.remote()
                .is_some_and(|sc| !sc.trace_state().header().is_empty()),
        );
        orders += usize::from(e.order().is_some());
        full_orders += usize::from(e.order().is_some_and(|o| {
            o.channel().is_some() || o.priority().is_some() || o.deadline().is_some()
        }));
        other += usize::from(!e.context().baggage().is_empty());
    }
    eprintln!(
        "remotes {remotes} states {states} orders {orders} full {full_orders} other {other} of {n}"
    );
    let share = |k: usize| k * 100 / n;
    assert!(share(remotes) >= 20, "traceparents accepted: {remotes}/{n}");
    assert!(share(states) >= 5, "tracestates kept: {states}/{n}");
    assert!(share(orders) >= 20, "orders read: {orders}/{n}");
    assert!(
        share(full_orders) >= 5,
        "orders with more fields: {full_orders}/{n}"
    );
    assert!(share(other) >= 20, "other baggage kept: {other}/{n}");
}
