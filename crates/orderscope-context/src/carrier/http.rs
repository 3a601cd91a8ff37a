//! `http::HeaderMap` carrier.

use std::borrow::Cow;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector};

use crate::drops::{self, DropReason, Tally};
use crate::propagation::{Extracted, Headers, Propagation};
use crate::propagator::carrier_propagator;

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
const BAGGAGE: HeaderName = HeaderName::from_static("baggage");

fn known_name(key: &str) -> Option<HeaderName> {
    match key {
        "traceparent" => Some(TRACEPARENT),
        "tracestate" => Some(TRACESTATE),
        "baggage" => Some(BAGGAGE),
        _ => None,
    }
}

fn header_str<'a>(value: &'a HeaderValue, tally: &mut Tally) -> Option<&'a str> {
    match value.to_str() {
        Ok(s) => Some(s),
        Err(_) => {
            tally.add(DropReason::HeaderInvalid);
            None
        }
    }
}

/// Writes headers into an [`http::HeaderMap`]; an OpenTelemetry [`Injector`].
///
/// Existing values of the same name are replaced. A key or value that is not a valid header
/// is dropped and counted (`reason="header_invalid"`).
#[derive(Debug)]
pub struct HeaderInjector<'a>(pub &'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        let name = match known_name(key) {
            Some(name) => name,
            None => match HeaderName::from_bytes(key.as_bytes()) {
                Ok(name) => name,
                Err(_) => return drops::count(DropReason::HeaderInvalid, 1),
            },
        };
        match HeaderValue::try_from(value) {
            Ok(value) => {
                self.0.insert(name, value);
            }
            Err(_) => drops::count(DropReason::HeaderInvalid, 1),
        }
    }

    fn reserve(&mut self, additional: usize) {
        self.0.reserve(additional);
    }
}

/// Reads headers from an [`http::HeaderMap`]; an OpenTelemetry [`Extractor`].
///
/// Values that are not visible ASCII are treated as absent and counted
/// (`reason="header_invalid"`). [`Propagation::extract_http`] reads a `HeaderMap` directly and
/// also honours several `baggage` headers.
#[derive(Debug, Clone, Copy)]
pub struct HeaderExtractor<'a>(pub &'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let mut tally = Tally::default();
        let value = header_str(self.0.get(key)?, &mut tally);
        tally.flush();
        value
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }

    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        let values: Vec<&str> = self
            .0
            .get_all(key)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if values.is_empty() {
            None
        } else {
            Some(values)
        }
    }
}

/// Writes `cx` into HTTP headers: `traceparent`, `tracestate` (when not empty) and `baggage`.
///
/// The same as [`inject`](crate::inject) with a [`HeaderInjector`], with the header names
/// resolved at compile time.
///
/// # Example
///
/// ```
/// use opentelemetry::Context;
/// use orderscope_context::{carrier, OrderContext};
///
/// let mut headers = http::HeaderMap::new();
/// let cx = OrderContext::new("ORD-1")?.to_context(&Context::new());
/// carrier::inject_http(&cx, &mut headers);
/// assert_eq!(headers["baggage"], "order.id=ORD-1");
/// # Ok::<(), orderscope_context::OrderContextError>(())
/// ```
pub fn inject_http(cx: &Context, headers: &mut HeaderMap) {
    if let Some(propagator) = carrier_propagator() {
        return propagator.inject_context(cx, &mut HeaderInjector(headers));
    }
    let values = Headers::of(cx);
    let mut put = |name: HeaderName, value: Option<String>| {
        if let Some(value) = value {
            match HeaderValue::try_from(value) {
                Ok(value) => {
                    headers.insert(name, value);
                }
                Err(_) => drops::count(DropReason::HeaderInvalid, 1),
            }
        }
    };
    put(TRACEPARENT, values.traceparent);
    put(TRACESTATE, values.tracestate);
    put(BAGGAGE, values.baggage);
}

impl Propagation {
    /// Reads `traceparent`, `tracestate` and every `baggage` header from an HTTP request or
    /// response; the fast path of [`extract`](Self::extract) for [`http::HeaderMap`].
    ///
    /// # Example
    ///
    /// ```
    /// use orderscope_context::Propagation;
    ///
    /// let mut headers = http::HeaderMap::new();
    /// headers.append("baggage", "order.id=ORD-1".parse()?);
    /// headers.append("baggage", "order.priority=high".parse()?);
    /// let order = Propagation::trusted().extract_http(&headers).order().cloned();
    /// assert_eq!(order.and_then(|o| o.priority()).map(|p| p.as_str()), Some("high"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn extract_http(&self, headers: &HeaderMap) -> Extracted {
        if let Some(propagator) = carrier_propagator() {
            return self.extract_with(&*propagator, &HeaderExtractor(headers));
        }
        let mut tally = Tally::default();
        let mut reader = self.baggage_reader();
        // One pass over the headers instead of three lookups that each hash a name: a request
        // carries a few headers, and most of them are none of these.
        let mut traceparent = None;
        let (mut tracestate, mut tracestates) = (None, 0usize);
        for (name, value) in headers {
            let name = name.as_str();
            match name.len() {
                11 if traceparent.is_none() && name == TRACEPARENT.as_str() => {
                    traceparent = Some(value);
                }
                10 if name == TRACESTATE.as_str() => {
                    tracestates += 1;
                    tracestate = tracestate.or(Some(value));
                }
                7 if name == BAGGAGE.as_str() => {
                    let Some(value) = header_str(value, &mut tally) else {
                        continue;
                    };
                    reader.read(value, &mut tally);
                }
                _ => {}
            }
        }
        let mut state_tally = Tally::default();
        // Read as bytes: a value that parses is visible ASCII, so `to_str` is only needed to
        // say why one that does not parse is dropped.
        let remote = self.read_trace_bytes(
            traceparent.map(HeaderValue::as_bytes),
            || match traceparent.map(HeaderValue::to_str) {
                Some(Ok(_)) => DropReason::TraceparentInvalid,
                _ => DropReason::HeaderInvalid,
            },
            || match (tracestates, tracestate) {
                (1, Some(value)) => header_str(value, &mut state_tally).map(Cow::Borrowed),
                (0, _) | (_, None) => None,
                _ => crate::propagation::joined(
                    headers
                        .get_all(TRACESTATE)
                        .iter()
                        .filter_map(|v| header_str(v, &mut state_tally)),
                ),
            },
            &mut tally,
        );
        state_tally.flush();
        self.finish(remote, reader, tally)
    }
}
