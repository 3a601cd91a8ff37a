//! `traceparent` + `tracestate`: the input is split at the first newline into the two headers.
//! Whatever is accepted must re-serialise to headers that read back identically.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use orderscope_context::{Propagation, inject};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (traceparent, tracestate) = text.split_once('\n').unwrap_or((text, ""));
    let mut headers: HashMap<String, String> = HashMap::new();
    headers.insert("traceparent".into(), traceparent.into());
    headers.insert("tracestate".into(), tracestate.into());
    let first = Propagation::trusted().extract(&headers);

    let mut out: HashMap<String, String> = HashMap::new();
    inject(first.context(), &mut out);
    let second = Propagation::trusted().extract(&out);
    assert_eq!(first.remote(), second.remote());
    if let Some(remote) = first.remote() {
        assert_eq!(out["traceparent"].len(), 55);
        assert!(remote.is_valid());
    } else {
        assert!(!out.contains_key("traceparent"));
    }

    // The same bytes through an HTTP header map, where they are valid header values.
    let mut map = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_bytes(traceparent.as_bytes()) {
        map.insert("traceparent", v);
    }
    if let Ok(v) = http::HeaderValue::from_bytes(tracestate.as_bytes()) {
        map.insert("tracestate", v);
    }
    let _ = Propagation::untrusted().extract_http(&map);
});
