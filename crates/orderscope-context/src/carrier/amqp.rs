//! AMQP header table (lapin `FieldTable`) carrier.

use std::borrow::Cow;
use std::collections::BTreeMap;

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{SpanContext, TraceContextExt};

use crate::drops::{self, DropReason, Tally};
use crate::keys::X_ORDER_ID;
use crate::order::OrderContext;
use crate::propagation::{BAGGAGE, Extracted, Headers, Propagation, TRACEPARENT, TRACESTATE};
use crate::propagator::carrier_propagator;
use crate::traceparent::{format_tracestate, traceparent_bytes};

/// MassTransit's header holding the W3C `traceparent` of the sending activity.
pub const MT_ACTIVITY_ID: &str = "MT-Activity-Id";
/// The header older .NET producers use for baggage (same syntax as `baggage`).
pub const CORRELATION_CONTEXT: &str = "Correlation-Context";

/// Writes headers into an AMQP header table as long strings; an OpenTelemetry [`Injector`].
///
/// - Every value is written as a long string (`S`): a short string makes RabbitMQ close the
///   connection, and a byte array is unreadable to Java, .NET, JS and Python consumers.
/// - A `traceparent` or `tracestate` already in the table (set by the caller) is kept.
///   [`inject_amqp_replacing`] replaces them.
/// - A key longer than 255 bytes cannot be an AMQP field name: it is dropped and counted
///   (`reason="header_invalid"`), never a panic.
/// - [`inject_context`](Self::inject_context) writes no `x-order-id`; [`insert_order_id`] does.
#[derive(Debug)]
pub struct FieldTableInjector<'a>(pub &'a mut FieldTable);

impl FieldTableInjector<'_> {
    /// Writes `traceparent`, `tracestate` (when not empty) and `baggage` for `cx`, keeping a
    /// caller-set `traceparent` (and its `tracestate`); [`inject_amqp`].
    pub fn inject_context(&mut self, cx: &Context) {
        write(self.0, cx, false);
    }

    fn put(&mut self, key: &str, value: impl Into<Vec<u8>>) {
        match ShortString::try_new(key) {
            Ok(key) => {
                self.0
                    .insert(key, AMQPValue::LongString(LongString::from(value)));
            }
            Err(_) => drops::count(DropReason::HeaderInvalid, 1),
        }
    }
}

impl Injector for FieldTableInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if (key == TRACEPARENT || key == TRACESTATE) && self.0.contains_key(key) {
            return;
        }
        self.put(key, value);
    }
}

/// A copy of `table` without `key`.
fn without(table: &mut FieldTable, key: &str) {
    if table.contains_key(key) {
        let rest: BTreeMap<ShortString, AMQPValue> = table
            .inner()
            .iter()
            .filter(|(k, _)| k.as_str() != key)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        *table = FieldTable::from(rest);
    }
}

/// Writes whatever the propagator writes, always as long strings.
struct Overwrite<'a>(FieldTableInjector<'a>);

impl Injector for Overwrite<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.put(key, value);
    }
}

fn write(table: &mut FieldTable, cx: &Context, replace_trace: bool) {
    if let Some(propagator) = carrier_propagator() {
        if replace_trace {
            without(table, TRACESTATE);
            propagator.inject_context(cx, &mut Overwrite(FieldTableInjector(table)));
        } else {
            propagator.inject_context(cx, &mut FieldTableInjector(table));
        }
        return;
    }
    let span = cx.span();
    let sc = span.span_context();
    let sc = (cx.has_active_span() && sc.is_valid()).then_some(sc);
    write_w3c(table, cx, sc, replace_trace);
}

/// The W3C headers: `span`'s trace context (when given), `cx`'s baggage and order.
fn write_w3c(
    table: &mut FieldTable,
    cx: &Context,
    span: Option<&SpanContext>,
    replace_trace: bool,
) {
    let mut injector = FieldTableInjector(table);
    let keep_trace = !replace_trace && injector.0.contains_key(TRACEPARENT);
    if !keep_trace {
        let mut tracestate = None;
        if let Some(sc) = span {
            // Written as bytes straight into the long string: one allocation, no UTF-8 check.
            injector.put(TRACEPARENT, traceparent_bytes(sc).to_vec());
            tracestate = format_tracestate(sc.trace_state());
        }
        match tracestate {
            Some(ts) => injector.put(TRACESTATE, ts),
            // A replaced traceparent must not travel with the old tracestate.
            None if replace_trace => without(injector.0, TRACESTATE),
            None => {}
        }
    }
    if let Some(b) = Headers::of_parts(cx, false, true).baggage {
        injector.put(BAGGAGE, b);
    }
}

/// Writes `cx` into AMQP message headers: `traceparent`, `tracestate` (when not empty) and
/// `baggage`, all as long strings. A caller-set `traceparent` is kept.
///
/// `x-order-id` is not part of this set: [`insert_order_id`] adds it.
///
/// # Example
///
/// ```
/// use lapin::types::{AMQPValue, FieldTable};
/// use opentelemetry::Context;
/// use orderscope_context::{carrier, OrderContext};
///
/// let mut headers = FieldTable::default();
/// let cx = OrderContext::new("ORD-1")?.to_context(&Context::new());
/// carrier::inject_amqp(&cx, &mut headers);
/// assert!(matches!(headers.inner().get("baggage"), Some(AMQPValue::LongString(_))));
/// assert!(!headers.contains_key("x-order-id"));
/// # Ok::<(), orderscope_context::OrderContextError>(())
/// ```
pub fn inject_amqp(cx: &Context, headers: &mut FieldTable) {
    write(headers, cx, false);
}

/// Like [`inject_amqp`], but replaces a `traceparent`/`tracestate` already in the table.
pub fn inject_amqp_replacing(cx: &Context, headers: &mut FieldTable) {
    write(headers, cx, true);
}

/// Writes the headers of [`inject_amqp`] (or, with `replace_trace_context`, of
/// [`inject_amqp_replacing`]) for `span`, a span started under `cx` and not put in a context: its
/// trace context, and `cx`'s baggage and order. For instrumentation that writes the headers of the
/// span it just started and never needs the span in a [`Context`] otherwise.
///
/// # Example
///
/// ```
/// use lapin::types::{AMQPValue, FieldTable, LongString};
/// use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
/// use opentelemetry::Context;
/// use orderscope_context::{carrier, OrderContext};
///
/// let span = SpanContext::new(
///     TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
///     SpanId::from_hex("00f067aa0ba902b7").unwrap(),
///     TraceFlags::SAMPLED,
///     false,
///     TraceState::NONE,
/// );
/// let cx = OrderContext::new("ORD-1")?.to_context(&Context::new());
/// let mut headers = FieldTable::default();
/// carrier::inject_amqp_for_span(&cx, &span, &mut headers, false);
/// assert_eq!(
///     headers.inner().get("traceparent"),
///     Some(&AMQPValue::LongString(LongString::from(
///         "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
///     )))
/// );
/// assert!(headers.contains_key("baggage"));
/// # Ok::<(), orderscope_context::OrderContextError>(())
/// ```
pub fn inject_amqp_for_span(
    cx: &Context,
    span: &SpanContext,
    headers: &mut FieldTable,
    replace_trace_context: bool,
) {
    if carrier_propagator().is_some() {
        let cx = cx.with_remote_span_context(span.clone());
        write(headers, &cx, replace_trace_context);
        return;
    }
    write_w3c(
        headers,
        cx,
        span.is_valid().then_some(span),
        replace_trace_context,
    );
}

/// Writes `x-order-id`, the id of the order in `cx`, as a long string; nothing when `cx` has no
/// order. The id already travels in `baggage` (`order.id`): this plain copy is for readers that
/// parse no baggage.
///
/// # Example
///
/// ```
/// use lapin::types::{AMQPValue, FieldTable, LongString};
/// use opentelemetry::Context;
/// use orderscope_context::{carrier, OrderContext};
///
/// let mut headers = FieldTable::default();
/// let cx = OrderContext::new("ORD-1")?.to_context(&Context::new());
/// carrier::insert_order_id(&cx, &mut headers);
/// assert_eq!(
///     headers.inner().get("x-order-id"),
///     Some(&AMQPValue::LongString(LongString::from("ORD-1")))
/// );
/// # Ok::<(), orderscope_context::OrderContextError>(())
/// ```
pub fn insert_order_id(cx: &Context, headers: &mut FieldTable) {
    if let Some(order) = cx.get::<OrderContext>() {
        FieldTableInjector(headers).put(X_ORDER_ID, order.id().as_bytes());
    }
}

/// Reads headers from an AMQP header table; an OpenTelemetry [`Extractor`].
///
/// - Long strings and byte arrays holding UTF-8 are read; any other type is ignored and
///   counted (`reason="header_type"`), invalid UTF-8 too (`reason="header_invalid"`).
/// - Keys match exactly first, then ignoring ASCII case.
/// - Without `traceparent`, [`MT_ACTIVITY_ID`] is read in its place; without `baggage`,
///   [`CORRELATION_CONTEXT`].
#[derive(Debug, Clone, Copy)]
pub struct FieldTableExtractor<'a>(pub &'a FieldTable);

impl<'a> FieldTableExtractor<'a> {
    fn lookup(&self, key: &str) -> Option<&'a AMQPValue> {
        let map = self.0.inner();
        map.get(key).or_else(|| {
            map.iter()
                .find(|(k, _)| k.as_str().eq_ignore_ascii_case(key))
                .map(|(_, v)| v)
        })
    }

    fn get_str(&self, key: &str, tally: &mut Tally) -> Option<&'a str> {
        let bytes = match self.lookup(key)? {
            AMQPValue::LongString(s) => s.as_bytes(),
            AMQPValue::ByteArray(b) => b.as_slice(),
            _ => {
                tally.add(DropReason::HeaderType);
                return None;
            }
        };
        match std::str::from_utf8(bytes) {
            Ok(s) => Some(s),
            Err(_) => {
                tally.add(DropReason::HeaderInvalid);
                None
            }
        }
    }

    fn get_with_fallback(&self, key: &str, tally: &mut Tally) -> Option<&'a str> {
        let fallback = match key {
            TRACEPARENT => Some(MT_ACTIVITY_ID),
            BAGGAGE => Some(CORRELATION_CONTEXT),
            _ => None,
        };
        match self.get_str(key, tally) {
            Some(v) => Some(v),
            None => self.get_str(fallback?, tally),
        }
    }
}

impl Extractor for FieldTableExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let mut tally = Tally::default();
        let value = self.get_with_fallback(key, &mut tally);
        tally.flush();
        value
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .inner()
            .iter()
            .filter(|(_, v)| matches!(v, AMQPValue::LongString(_) | AMQPValue::ByteArray(_)))
            .map(|(k, _)| k.as_str())
            .collect()
    }
}

impl Propagation {
    /// Reads `traceparent`, `tracestate` and `baggage` (or their fallbacks) from AMQP message
    /// headers; [`extract`](Self::extract) with a [`FieldTableExtractor`].
    ///
    /// # Example
    ///
    /// ```
    /// use lapin::types::{AMQPValue, FieldTable, LongString};
    /// use orderscope_context::Propagation;
    ///
    /// let mut headers = FieldTable::default();
    /// headers.insert("baggage".into(), AMQPValue::LongString(LongString::from("order.id=ORD-1")));
    /// let extracted = Propagation::trusted().extract_amqp(&headers);
    /// assert_eq!(extracted.order().map(|o| o.id()), Some("ORD-1"));
    /// ```
    pub fn extract_amqp(&self, headers: &FieldTable) -> Extracted {
        let carrier = FieldTableExtractor(headers);
        if let Some(propagator) = carrier_propagator() {
            return self.extract_with(&*propagator, &carrier);
        }
        let mut tally = Tally::default();
        let traceparent = carrier.get_with_fallback(TRACEPARENT, &mut tally);
        let mut state_tally = Tally::default();
        let remote = self.read_trace(
            traceparent,
            || {
                carrier
                    .get_str(TRACESTATE, &mut state_tally)
                    .map(Cow::Borrowed)
            },
            &mut tally,
        );
        state_tally.flush();
        let mut reader = self.baggage_reader();
        if let Some(value) = carrier.get_with_fallback(BAGGAGE, &mut tally) {
            reader.read(value, &mut tally);
        }
        self.finish(remote, reader, tally)
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{SpanId, TraceFlags, TraceId, TraceState};

    use super::*;

    #[test]
    fn a_span_outside_the_context_gets_the_headers_of_one_inside() {
        let span = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            false,
            TraceState::from_key_value([("ours", "1")]).unwrap(),
        );
        let parent = OrderContext::new("ORD-1")
            .unwrap()
            .to_context(&Context::new());
        let inside = parent.with_remote_span_context(span.clone());
        let copied = |table: &mut FieldTable| {
            table.insert(
                "traceparent".into(),
                AMQPValue::LongString(
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
                ),
            );
            table.insert(
                "tracestate".into(),
                AMQPValue::LongString("theirs=2".into()),
            );
        };
        for caller_set in [false, true] {
            for replace in [false, true] {
                let (mut expected, mut got) = (FieldTable::default(), FieldTable::default());
                if caller_set {
                    copied(&mut expected);
                    copied(&mut got);
                }
                write(&mut expected, &inside, replace);
                inject_amqp_for_span(&parent, &span, &mut got, replace);
                assert_eq!(
                    got, expected,
                    "caller set: {caller_set}, replace: {replace}"
                );
                assert!(got.contains_key("baggage"));
            }
        }
    }
}
