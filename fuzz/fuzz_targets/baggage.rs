//! `baggage`: any bytes, through the generic and the HTTP paths (the input split at newlines
//! into several headers). Whatever is accepted must re-serialise to a header that reads back
//! identically.
#![no_main]

use std::collections::{BTreeMap, HashMap};

use libfuzzer_sys::fuzz_target;
use opentelemetry::baggage::BaggageExt;
use orderscope_context::{Extracted, Propagation, inject, keys};

fn entries(e: &Extracted) -> BTreeMap<String, String> {
    e.context()
        .baggage()
        .iter()
        .map(|(k, (v, _))| (k.as_str().to_owned(), v.as_str().to_owned()))
        .collect()
}

fn check_round_trip(first: &Extracted) {
    let mut out: HashMap<String, String> = HashMap::new();
    inject(first.context(), &mut out);
    let second = Propagation::trusted().extract(&out);
    assert_eq!(first.order(), second.order());
    assert_eq!(entries(first), entries(&second));
    if let Some(written) = out.get("baggage") {
        assert!(written.len() <= 8192);
        assert!(written.bytes().all(|b| b.is_ascii_graphic()));
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let mut headers: HashMap<String, String> = HashMap::new();
        headers.insert("baggage".into(), text.into());
        check_round_trip(&Propagation::trusted().extract(&headers));
        let _ = Propagation::untrusted()
            .allow_baggage_key(keys::ORDER_ID)
            .extract(&headers);
    }

    let mut map = http::HeaderMap::new();
    for part in data.split(|&b| b == b'\n') {
        if let Ok(v) = http::HeaderValue::from_bytes(part) {
            map.append("baggage", v);
        }
    }
    check_round_trip(&Propagation::trusted().extract_http(&map));
});
