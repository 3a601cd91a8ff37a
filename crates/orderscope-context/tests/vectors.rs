//! Headers as other stacks write them, W3C Trace Context edge cases, and AMQP header types as
//! RabbitMQ delivers them.
#![cfg(all(feature = "http", feature = "amqp"))]

mod common;

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use common::{counts, dropped};
use lapin::types::{AMQPValue, ByteArray, FieldTable, LongString, ShortString};
use opentelemetry::StringValue;
use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::TraceContextExt;
use orderscope_context::{Channel, Extracted, Priority, Propagation};

const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn at(rfc3339_secs: u64, nanos: u32) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::new(rfc3339_secs, nanos)
}

const DEADLINE: u64 = 1_796_040_000; // 2026-11-30T12:00:00Z
const CREATED: u64 = 1_795_511_702; // 2026-11-24T09:15:02Z

fn extract(pairs: &[(&str, &str)]) -> Extracted {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Propagation::trusted().extract(&map)
}

#[test]
fn java_agent_headers() {
    // W3CTraceContextPropagator + W3CBaggagePropagator (opentelemetry-java): values escaped with
    // a URL percent-escaper (`:` becomes %3A), metadata after `;`.
    let e = extract(&[
        ("traceparent", TP),
        ("tracestate", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
        (
            "baggage",
            "order.id=ORD-2026-000123,order.channel=web,order.deadline=2026-11-30T12%3A00%3A00Z,\
             order.priority=high,order.created_at=2026-11-24T09%3A15%3A02.120Z,\
             customer.tier=gold;ttl=60",
        ),
    ]);
    let remote = e.remote().unwrap();
    assert_eq!(
        format!("{:032x}", remote.trace_id()),
        "0af7651916cd43dd8448eb211c80319c"
    );
    assert_eq!(format!("{:016x}", remote.span_id()), "b7ad6b7169203331");
    assert!(remote.is_sampled());
    assert_eq!(remote.trace_state().get("congo"), Some("t61rcWkgMzE"));
    let order = e.order().unwrap();
    assert_eq!(order.id(), "ORD-2026-000123");
    assert_eq!(order.channel(), Some(Channel::Web));
    assert_eq!(order.deadline(), Some(at(DEADLINE, 0)));
    assert_eq!(order.priority(), Some(Priority::High));
    assert_eq!(order.created_at(), Some(at(CREATED, 120_000_000)));
    assert_eq!(
        e.context().baggage().get("customer.tier"),
        Some(&StringValue::from("gold")),
        "metadata is dropped, the value kept"
    );
}

#[test]
fn python_sdk_headers() {
    // opentelemetry-python: `quote_plus` on values, `datetime.isoformat()` offsets.
    let e = extract(&[
        (
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
        ),
        (
            "baggage",
            "order.id=ORD-2026-000123,order.channel=api,\
             order.deadline=2026-11-30T13%3A00%3A00%2B01%3A00,note=hello+world",
        ),
    ]);
    assert!(!e.remote().unwrap().is_sampled());
    let order = e.order().unwrap();
    assert_eq!(order.deadline(), Some(at(DEADLINE, 0)));
    assert_eq!(order.channel(), Some(Channel::Api));
    // W3C decoding keeps `+`: it is a space only to form decoders.
    assert_eq!(
        e.context().baggage().get("note"),
        Some(&StringValue::from("hello+world"))
    );
}

#[test]
fn js_sdk_headers() {
    // opentelemetry-js: `encodeURIComponent` on keys and values, `;` before metadata.
    let e = extract(&[
        ("traceparent", TP),
        (
            "baggage",
            "order.id=Bestellung-%C3%84%C3%96%C3%9C-%E2%82%AC,order.priority=urgent;meta,\
             user=J%C3%BCrgen%20M%C3%BCller",
        ),
    ]);
    let order = e.order().unwrap();
    assert_eq!(order.id(), "Bestellung-ÄÖÜ-€");
    assert_eq!(order.priority(), Some(Priority::Urgent));
    assert_eq!(
        e.context().baggage().get("user"),
        Some(&StringValue::from("Jürgen Müller"))
    );
}

#[test]
fn baggage_with_spaces_and_properties() {
    let e = extract(&[(
        "baggage",
        "  order.id = ORD-1 ;prop1=a;prop2 ,\torder.priority\t=\tlow\t, k = v ;p, ,,",
    )]);
    let order = e.order().unwrap();
    assert_eq!(order.id(), "ORD-1");
    assert_eq!(order.priority(), Some(Priority::Low));
    assert_eq!(
        e.context().baggage().get("k"),
        Some(&StringValue::from("v"))
    );
}

#[test]
fn invalid_baggage_entries_are_skipped_and_counted() {
    let (e, c) = dropped(|| {
        extract(&[(
            "baggage",
            "novalue,=x,bad key=v,k=v\"q,k2=a b,order.id=ORD-1,ok=1,ümlaut=1",
        )])
    });
    assert_eq!(e.order().unwrap().id(), "ORD-1");
    let bag = e.context().baggage();
    assert_eq!(bag.len(), 1);
    assert_eq!(bag.get("ok"), Some(&StringValue::from("1")));
    assert_eq!(c, counts(&[("baggage_entry_invalid", 6)]));
}

#[test]
fn invalid_order_values_are_dropped_and_counted() {
    let (e, c) = dropped(|| {
        extract(&[(
            "baggage",
            "order.id=ORD-1,order.channel=fax,order.deadline=tomorrow,order.priority=asap,\
             order.created_at=2026-11-24T09:15:02Z",
        )])
    });
    let order = e.order().unwrap();
    assert_eq!(order.channel(), None);
    assert_eq!(order.deadline(), None);
    assert_eq!(order.priority(), None);
    assert_eq!(order.created_at(), Some(at(CREATED, 0)));
    assert_eq!(c, counts(&[("order_field_invalid", 3)]));

    // An invalid id drops the whole order; it is never propagated.
    let (e, c) = dropped(|| extract(&[("baggage", "order.id=a%20b,order.channel=web")]));
    assert!(e.order().is_none());
    assert!(e.context().baggage().is_empty());
    assert_eq!(c, counts(&[("order_field_invalid", 1)]));

    // Order fields without an id.
    let (e, c) = dropped(|| extract(&[("baggage", "order.channel=web")]));
    assert!(e.order().is_none());
    assert_eq!(c, counts(&[("order_field_invalid", 1)]));
}

#[test]
fn w3c_traceparent_edge_cases() {
    let accepted = [
        TP,
        // Future versions may append fields.
        "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-the-future-will-be-like",
        // Unknown flags are zeroed, the sampled bit kept.
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-09",
        // OWS around the value.
        " 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\t",
    ];
    for tp in accepted {
        let (e, c) = dropped(|| extract(&[("traceparent", tp)]));
        let remote = e.remote().unwrap_or_else(|| panic!("{tp} accepted"));
        assert!(remote.is_sampled(), "{tp}");
        assert!(e.context().has_active_span());
        assert!(c.is_empty(), "{tp}");
    }
    let rejected = [
        (
            "version ff",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
        (
            "zero trace id",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        ),
        (
            "zero span id",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
        ),
        (
            "upper-case trace id",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
        ),
        (
            "upper-case span id",
            "00-0af7651916cd43dd8448eb211c80319c-B7AD6B7169203331-01",
        ),
        (
            "upper-case flags",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0F",
        ),
        (
            "upper-case version",
            "0A-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
        (
            "version 00 with more",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x",
        ),
        (
            "version 00 trailing dash",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-",
        ),
        (
            "future version glued",
            "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x",
        ),
        (
            "short trace id",
            "00-0af7651916cd43dd8448eb211c8031-b7ad6b7169203331-01",
        ),
        (
            "long trace id",
            "00-0af7651916cd43dd8448eb211c80319c00-b7ad6b7169203331-01",
        ),
        (
            "short span id",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b71692033-01",
        ),
        (
            "short flags",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1",
        ),
        (
            "long version",
            "000-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
        (
            "missing flags",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
        ),
        (
            "non-hex",
            "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01",
        ),
        (
            "wrong separator",
            "00_0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331_01",
        ),
        ("empty", ""),
    ];
    for (what, tp) in rejected {
        let (e, c) = dropped(|| {
            extract(&[
                ("traceparent", tp),
                ("tracestate", "k=v"),
                ("baggage", "order.id=A"),
            ])
        });
        assert!(e.remote().is_none(), "{what}");
        assert!(!e.context().has_active_span(), "{what}");
        assert_eq!(
            e.order().map(|o| o.id()),
            Some("A"),
            "{what}: baggage still read"
        );
        assert_eq!(c, counts(&[("traceparent_invalid", 1)]), "{what}");
    }
}

#[test]
fn invalid_tracestate_is_dropped_whole() {
    let (e, c) = dropped(|| extract(&[("traceparent", TP), ("tracestate", "ok=1,BAD=2")]));
    let remote = e.remote().unwrap();
    assert_eq!(remote.trace_state().header(), "");
    assert_eq!(c, counts(&[("tracestate_invalid", 1)]));
}

fn long(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

#[test]
fn amqp_long_strings_from_java_and_python_producers() {
    let t = table(&[
        ("traceparent", long(TP)),
        ("tracestate", long("rojo=00f067aa0ba902b7")),
        ("baggage", long("order.id=ORD-1,order.priority=high")),
        ("x-order-id", long("ORD-1")),
    ]);
    let (e, c) = dropped(|| Propagation::trusted().extract_amqp(&t));
    assert!(e.remote().is_some());
    assert_eq!(e.order().unwrap().priority(), Some(Priority::High));
    assert!(c.is_empty());
}

#[test]
fn amqp_byte_arrays_from_hand_written_producers() {
    let t = table(&[
        (
            "traceparent",
            AMQPValue::ByteArray(ByteArray::from(TP.as_bytes())),
        ),
        (
            "baggage",
            AMQPValue::ByteArray(ByteArray::from(&b"order.id=ORD-1"[..])),
        ),
    ]);
    let (e, c) = dropped(|| Propagation::trusted().extract_amqp(&t));
    assert!(e.remote().is_some());
    assert_eq!(e.order().unwrap().id(), "ORD-1");
    assert!(c.is_empty());
}

#[test]
fn amqp_other_types_are_ignored_and_counted() {
    let t = table(&[
        ("traceparent", AMQPValue::ShortString(ShortString::from(TP))),
        ("baggage", AMQPValue::LongInt(42)),
    ]);
    let (e, c) = dropped(|| Propagation::trusted().extract_amqp(&t));
    assert!(e.remote().is_none());
    assert!(e.order().is_none());
    assert_eq!(c, counts(&[("header_type", 2)]));

    let t = table(&[
        ("traceparent", AMQPValue::Boolean(true)),
        ("baggage", AMQPValue::FieldTable(FieldTable::default())),
    ]);
    let (_, c) = dropped(|| {
        Propagation::trusted().extract(&orderscope_context::carrier::FieldTableExtractor(&t))
    });
    assert_eq!(c, counts(&[("header_type", 2)]));

    // Invalid UTF-8 in a long string.
    let t = table(&[(
        "baggage",
        AMQPValue::LongString(LongString::from(vec![0xff, 0xfe])),
    )]);
    let (_, c) = dropped(|| Propagation::trusted().extract_amqp(&t));
    assert_eq!(c, counts(&[("header_invalid", 1)]));
}

#[test]
fn amqp_fallback_headers() {
    // MassTransit and older .NET producers.
    let t = table(&[
        ("MT-Activity-Id", long(TP)),
        (
            "Correlation-Context",
            long("order.id=ORD-9, order.channel=edi"),
        ),
    ]);
    let e = Propagation::trusted().extract_amqp(&t);
    assert_eq!(
        format!("{:032x}", e.remote().unwrap().trace_id()),
        "0af7651916cd43dd8448eb211c80319c"
    );
    assert_eq!(e.order().unwrap().channel(), Some(Channel::Edi));

    // The W3C headers win when both are present.
    let t = table(&[
        (
            "MT-Activity-Id",
            long("00-11111111111111111111111111111111-2222222222222222-01"),
        ),
        ("traceparent", long(TP)),
        ("Correlation-Context", long("order.id=OLD")),
        ("baggage", long("order.id=NEW")),
    ]);
    let e = Propagation::trusted().extract_amqp(&t);
    assert_eq!(
        format!("{:032x}", e.remote().unwrap().trace_id()),
        "0af7651916cd43dd8448eb211c80319c"
    );
    assert_eq!(e.order().unwrap().id(), "NEW");

    // Keys in another case are found.
    let t = table(&[("Traceparent", long(TP)), ("BAGGAGE", long("order.id=X"))]);
    let e = Propagation::trusted().extract_amqp(&t);
    assert!(e.remote().is_some());
    assert_eq!(e.order().unwrap().id(), "X");
}

#[test]
fn amqp_keys_over_255_bytes_never_panic() {
    use opentelemetry::propagation::Injector;
    let mut t = FieldTable::default();
    let (_, c) = dropped(|| {
        let mut injector = orderscope_context::carrier::FieldTableInjector(&mut t);
        injector.set(&"k".repeat(256), "v".to_owned());
        injector.set(&"k".repeat(255), "v".to_owned());
    });
    assert_eq!(t.inner().len(), 1);
    assert_eq!(c, counts(&[("header_invalid", 1)]));
}

#[test]
fn http_non_ascii_header_values_are_counted() {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "baggage",
        http::HeaderValue::from_bytes(b"order.id=\xc3\xa4").unwrap(),
    );
    let (e, c) = dropped(|| Propagation::trusted().extract_http(&headers));
    assert!(e.order().is_none());
    assert_eq!(c, counts(&[("header_invalid", 1)]));

    let (_, c) = dropped(|| {
        use opentelemetry::propagation::Injector;
        let mut h = http::HeaderMap::new();
        let mut inj = orderscope_context::carrier::HeaderInjector(&mut h);
        inj.set("bad header", "v".to_owned());
        inj.set("ok", "bad\nvalue".to_owned());
        inj.set("x-fine", "v".to_owned());
        h.len()
    });
    assert_eq!(c, counts(&[("header_invalid", 2)]));
}

/// `traceparent` is parsed from the header's raw bytes: a value with a byte outside visible ASCII
/// is still counted as an invalid header, a well-formed one with a bad field as an invalid
/// `traceparent`, and one padded with spaces and tabs is read.
#[test]
fn http_traceparent_bytes_are_judged_like_the_text() {
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let extract = |value: &[u8]| {
        let mut headers = http::HeaderMap::new();
        headers.insert("traceparent", http::HeaderValue::from_bytes(value).unwrap());
        dropped(|| Propagation::trusted().extract_http(&headers))
    };

    let mut hostile = tp.as_bytes().to_vec();
    hostile[10] = 0xc3;
    let (e, c) = extract(&hostile);
    assert!(e.remote().is_none());
    assert_eq!(c, counts(&[("header_invalid", 1)]));

    let (e, c) = extract(tp.replace("-01", "-0g").as_bytes());
    assert!(e.remote().is_none());
    assert_eq!(c, counts(&[("traceparent_invalid", 1)]));

    // A later version's further fields are held to the same: bytes a header's text cannot hold
    // make it an invalid header, not a parent.
    let later = tp.replacen("00", "01", 1);
    let mut hostile = format!("{later}-").into_bytes();
    hostile.extend_from_slice(&[0xff, 0xfe]);
    let (e, c) = extract(&hostile);
    assert!(e.remote().is_none());
    assert_eq!(c, counts(&[("header_invalid", 1)]));
    let (e, c) = extract(format!("{later}-future").as_bytes());
    assert!(e.remote().is_some());
    assert_eq!(c, counts(&[]));

    let (e, c) = extract(format!("\t {tp} \t").as_bytes());
    assert_eq!(
        e.remote().map(|sc| sc.trace_id().to_string()).as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    assert_eq!(c, counts(&[]));
}

#[test]
fn only_the_trace_context_and_baggage_headers_are_read() {
    let mut headers = http::HeaderMap::new();
    // Names of the same lengths as `traceparent`, `tracestate` and `baggage`.
    headers.insert(
        "traceparens",
        "00-11111111111111111111111111111111-2222222222222222-01"
            .parse()
            .unwrap(),
    );
    headers.insert("tracestatf", "other=1".parse().unwrap());
    headers.insert("baggagf", "order.id=ORD-OTHER".parse().unwrap());
    let e = Propagation::trusted().extract_http(&headers);
    assert!(e.remote().is_none());
    assert!(e.order().is_none());

    headers.append("traceparent", TP.parse().unwrap());
    // A second `traceparent` is ignored: the first one counts.
    headers.append(
        "traceparent",
        "00-11111111111111111111111111111111-2222222222222222-01"
            .parse()
            .unwrap(),
    );
    headers.insert("tracestate", "congo=t61rcWkgMzE".parse().unwrap());
    headers.insert("baggage", "order.id=ORD-1".parse().unwrap());
    let e = Propagation::trusted().extract_http(&headers);
    let remote = e.remote().unwrap();
    assert_eq!(
        remote.trace_id().to_string(),
        "0af7651916cd43dd8448eb211c80319c"
    );
    assert_eq!(remote.trace_state().get("congo"), Some("t61rcWkgMzE"));
    assert_eq!(remote.trace_state().get("other"), None);
    assert_eq!(e.order().map(|o| o.id()), Some("ORD-1"));
}

#[test]
fn several_tracestate_headers_are_combined() {
    let mut headers = http::HeaderMap::new();
    headers.insert("traceparent", TP.parse().unwrap());
    headers.append("tracestate", "congo=t61rcWkgMzE".parse().unwrap());
    headers.append(
        "tracestate",
        "rojo=00f067aa0ba902b7, acme@vendor=x;y".parse().unwrap(),
    );
    let e = Propagation::trusted().extract_http(&headers);
    let state = e.remote().unwrap().trace_state().clone();
    assert_eq!(state.get("congo"), Some("t61rcWkgMzE"));
    assert_eq!(state.get("rojo"), Some("00f067aa0ba902b7"));
    assert_eq!(state.get("acme@vendor"), Some("x;y"));

    // Re-injected as one header, every vendor's entry in its order.
    let mut out = http::HeaderMap::new();
    orderscope_context::carrier::inject_http(e.context(), &mut out);
    assert_eq!(out.get_all("tracestate").iter().count(), 1);
    assert_eq!(
        out["tracestate"],
        "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7,acme@vendor=x;y"
    );

    // Combined, the W3C limit of 32 members still holds: 33 drop the header whole.
    let mut headers = http::HeaderMap::new();
    headers.insert("traceparent", TP.parse().unwrap());
    let first: Vec<String> = (0..20).map(|i| format!("a{i}=1")).collect();
    let second: Vec<String> = (0..13).map(|i| format!("b{i}=1")).collect();
    headers.append("tracestate", first.join(",").parse().unwrap());
    headers.append("tracestate", second.join(",").parse().unwrap());
    let (e, c) = dropped(|| Propagation::trusted().extract_http(&headers));
    assert_eq!(e.remote().unwrap().trace_state().header(), "");
    assert_eq!(c, counts(&[("tracestate_invalid", 1)]));
}

#[test]
fn baggage_properties_survive_reinjection() {
    let e = extract(&[
        ("traceparent", TP),
        (
            "baggage",
            "order.id=ORD-1;ignored=1,customer.tier=gold;ttl=60,session=s1 ; sampled ;p=v,plain=x",
        ),
    ]);
    let mut out: HashMap<String, String> = HashMap::new();
    orderscope_context::inject(e.context(), &mut out);
    let mut members: Vec<&str> = out["baggage"].split(',').collect();
    assert_eq!(members.remove(0), "order.id=ORD-1");
    members.sort_unstable();
    assert_eq!(
        members,
        [
            "customer.tier=gold;ttl=60",
            "plain=x",
            "session=s1;sampled ;p=v"
        ]
    );
    // The stock propagator reads the properties back as the entries' metadata.
    let stock = opentelemetry_sdk::propagation::BaggagePropagator::new();
    let cx = opentelemetry::propagation::TextMapPropagator::extract(&stock, &out);
    let (value, meta) = cx.baggage().get_with_metadata("customer.tier").unwrap();
    assert_eq!(value.as_str(), "gold");
    assert_eq!(meta.as_str(), "ttl=60");
}

#[test]
fn other_vendors_tracestate_survives_reinjection() {
    let e = extract(&[
        ("traceparent", TP),
        ("tracestate", "dd=s:1;o:rum,congo=t61rcWkgMzE,tenant@sys=v"),
    ]);
    let mut out: HashMap<String, String> = HashMap::new();
    orderscope_context::inject(e.context(), &mut out);
    assert_eq!(
        out["tracestate"],
        "dd=s:1;o:rum,congo=t61rcWkgMzE,tenant@sys=v"
    );
}
