//! Extraction with a trust policy, and injection.

use std::borrow::Cow;
use std::sync::Arc;

use opentelemetry::Context;
use opentelemetry::baggage::{Baggage, BaggageExt};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt, TraceState};

use crate::baggage::{self, BaggageReader, KeyFilter};
use crate::drops::{DropReason, Tally};
use crate::keys::{Field, ORDER_ID};
use crate::order::OrderContext;
use crate::propagator::carrier_propagator;
use crate::traceparent::{
    TraceParent, format_traceparent, format_tracestate, parse_traceparent_bytes, parse_tracestate,
};

/// The `traceparent` header.
pub(crate) const TRACEPARENT: &str = "traceparent";
/// The `tracestate` header.
pub(crate) const TRACESTATE: &str = "tracestate";
/// The `baggage` header.
pub(crate) const BAGGAGE: &str = "baggage";

/// How far incoming context is trusted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TrustPolicy {
    /// The caller is one of ours: continue its trace and take all of its baggage.
    ///
    /// The default, for internal services.
    #[default]
    Trusted,
    /// The caller is the outside world (a public shop, a B2B API): start a new trace whose root
    /// span links to the incoming one, and keep only allow-listed baggage keys.
    Untrusted,
}

/// How incoming `traceparent`, `tracestate` and `baggage` headers are read.
///
/// Reading never fails: what cannot be accepted is dropped and counted in
/// [`PROPAGATION_DROPPED_METRIC`](crate::PROPAGATION_DROPPED_METRIC). Defaults to
/// [`Propagation::trusted`].
///
/// # Example
///
/// ```
/// use std::collections::HashMap;
/// use opentelemetry::trace::TraceContextExt;
/// use orderscope_context::{keys, Propagation};
///
/// let mut headers = HashMap::new();
/// headers.insert(
///     "traceparent".to_owned(),
///     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
/// );
/// headers.insert("baggage".to_owned(), "order.id=ORD-1,session=abc".to_owned());
///
/// // A public endpoint: new trace, the caller's span only linked, baggage filtered.
/// let public = Propagation::untrusted().allow_baggage_key(keys::ORDER_ID);
/// let extracted = public.extract(&headers);
/// assert!(!extracted.context().has_active_span());
/// assert!(extracted.remote().is_some());
/// assert_eq!(extracted.order().map(|o| o.id()), Some("ORD-1"));
///
/// // An internal hop: continue the trace.
/// let extracted = Propagation::trusted().extract(&headers);
/// assert!(extracted.context().span().span_context().is_remote());
/// ```
#[derive(Clone, Debug)]
pub struct Propagation {
    policy: TrustPolicy,
    allowed: Arc<[&'static str]>,
    max_baggage_bytes: usize,
    max_baggage_entries: usize,
}

impl Default for Propagation {
    fn default() -> Self {
        Self::trusted()
    }
}

impl Propagation {
    /// Trusts incoming context: continues the trace and keeps every baggage entry.
    pub fn trusted() -> Self {
        Self::with_policy(TrustPolicy::Trusted)
    }

    /// Distrusts incoming context: the extracted context has no parent span (link
    /// [`Extracted::remote`] instead), and only baggage keys added with
    /// [`allow_baggage_key`](Self::allow_baggage_key) are kept — none by default, not even the
    /// order keys.
    pub fn untrusted() -> Self {
        Self::with_policy(TrustPolicy::Untrusted)
    }

    /// Extraction with the given policy and the W3C limits.
    pub fn with_policy(policy: TrustPolicy) -> Self {
        Self {
            policy,
            allowed: Arc::from([]),
            max_baggage_bytes: baggage::MAX_BYTES,
            max_baggage_entries: baggage::MAX_ENTRIES,
        }
    }

    /// Keeps baggage entries with this key when untrusted (use [`keys`](crate::keys) for order
    /// fields). Trusted extraction keeps every key, so this changes nothing there.
    #[must_use]
    pub fn allow_baggage_key(mut self, key: &'static str) -> Self {
        if !self.allowed.contains(&key) {
            let mut keys = self.allowed.to_vec();
            keys.push(key);
            self.allowed = Arc::from(keys);
        }
        self
    }

    /// Bytes of `baggage` read before further entries are dropped. Defaults to 8,192 (W3C).
    #[must_use]
    pub fn max_baggage_bytes(mut self, bytes: usize) -> Self {
        self.max_baggage_bytes = bytes;
        self
    }

    /// Baggage entries read before further entries are dropped. Defaults to 64 (W3C).
    #[must_use]
    pub fn max_baggage_entries(mut self, entries: usize) -> Self {
        self.max_baggage_entries = entries;
        self
    }

    /// The trust policy.
    pub fn policy(&self) -> TrustPolicy {
        self.policy
    }

    /// The baggage keys kept by untrusted extraction.
    pub fn allowed_baggage_keys(&self) -> &[&'static str] {
        &self.allowed
    }

    /// Reads `traceparent`, `tracestate` and `baggage` from `carrier`.
    ///
    /// The context is built on an empty [`Context`], so nothing from the current thread leaks
    /// into the remote parent.
    pub fn extract<E: Extractor + ?Sized>(&self, carrier: &E) -> Extracted {
        if let Some(propagator) = carrier_propagator() {
            return self.extract_with(&*propagator, &UnsizedRef(carrier));
        }
        let mut tally = Tally::default();
        let remote = self.read_trace(
            carrier.get(TRACEPARENT),
            || joined(carrier.get_all(TRACESTATE)?.into_iter()),
            &mut tally,
        );
        let mut reader = self.baggage_reader();
        if let Some(value) = carrier.get(BAGGAGE) {
            reader.read(value, &mut tally);
        }
        self.finish(remote, reader, tally)
    }

    /// Extraction through a generic propagator: its context, then this policy.
    pub(crate) fn extract_with(
        &self,
        propagator: &(dyn TextMapPropagator + Send + Sync),
        carrier: &dyn Extractor,
    ) -> Extracted {
        let read = propagator.extract_with_context(&Context::new(), carrier);
        let mut tally = Tally::default();
        let span = read.span();
        let sc = span.span_context();
        let remote = sc.is_valid().then(|| sc.clone());
        let keep = |key: &str| match self.policy {
            TrustPolicy::Trusted => true,
            TrustPolicy::Untrusted => self.allowed.contains(&key),
        };
        let mut order = read
            .get::<OrderContext>()
            .cloned()
            .or_else(|| baggage::order_from_baggage(read.baggage(), &mut tally));
        if let Some(o) = &order {
            if !keep(ORDER_ID) {
                tally.add(DropReason::UntrustedBaggage);
            }
            order = o.restricted(keep);
        }
        let mut entries: Option<Baggage> = None;
        for (key, (value, metadata)) in read.baggage() {
            if Field::from_key(key.as_str()).is_some() {
                continue;
            }
            if !keep(key.as_str()) {
                tally.add(DropReason::UntrustedBaggage);
                continue;
            }
            let _ = entries
                .get_or_insert_with(Baggage::new)
                .insert_with_metadata(key.clone(), value.clone(), metadata.clone());
        }
        tally.flush();
        self.assemble(remote, order, entries)
    }

    pub(crate) fn baggage_reader(&self) -> BaggageReader<'_, '_> {
        let filter = match self.policy {
            TrustPolicy::Trusted => KeyFilter::All,
            TrustPolicy::Untrusted => KeyFilter::Only(&self.allowed),
        };
        BaggageReader::new(filter, self.max_baggage_bytes, self.max_baggage_entries)
    }

    pub(crate) fn read_trace<'a>(
        &self,
        traceparent: Option<&str>,
        tracestate: impl FnOnce() -> Option<Cow<'a, str>>,
        tally: &mut Tally,
    ) -> Option<SpanContext> {
        self.read_trace_bytes(
            traceparent.map(str::as_bytes),
            || DropReason::TraceparentInvalid,
            tracestate,
            tally,
        )
    }

    /// [`read_trace`](Self::read_trace) of a raw `traceparent`; `invalid` says why one that
    /// does not parse is dropped.
    pub(crate) fn read_trace_bytes<'a>(
        &self,
        traceparent: Option<&[u8]>,
        invalid: impl FnOnce() -> DropReason,
        tracestate: impl FnOnce() -> Option<Cow<'a, str>>,
        tally: &mut Tally,
    ) -> Option<SpanContext> {
        let traceparent = traceparent?;
        let TraceParent {
            trace_id,
            span_id,
            flags,
        } = match parse_traceparent_bytes(traceparent) {
            Some(tp) => tp,
            None => {
                tally.add(invalid());
                return None;
            }
        };
        let state = match tracestate() {
            None => TraceState::NONE,
            Some(value) => parse_tracestate(&value).unwrap_or_else(|()| {
                tally.add(DropReason::TracestateInvalid);
                TraceState::NONE
            }),
        };
        Some(SpanContext::new(trace_id, span_id, flags, true, state))
    }

    pub(crate) fn finish(
        &self,
        remote: Option<SpanContext>,
        reader: BaggageReader<'_, '_>,
        mut tally: Tally,
    ) -> Extracted {
        let (order, baggage) = reader.finish(&mut tally);
        tally.flush();
        self.assemble(remote, order, baggage)
    }

    fn assemble(
        &self,
        remote: Option<SpanContext>,
        order: Option<OrderContext>,
        baggage: Option<Baggage>,
    ) -> Extracted {
        let mut cx = Context::new();
        if let (TrustPolicy::Trusted, Some(sc)) = (self.policy, &remote) {
            cx = cx.with_remote_span_context(sc.clone());
        }
        if let Some(baggage) = baggage {
            cx = cx.with_baggage(baggage);
        }
        if let Some(order) = &order {
            cx = cx.with_value(order.clone());
        }
        Extracted { cx, remote, order }
    }
}

/// Several values of one list header (`tracestate`) read as one, joined by commas; borrowed
/// when there is only one.
pub(crate) fn joined<'a>(mut values: impl Iterator<Item = &'a str>) -> Option<Cow<'a, str>> {
    let first = values.next()?;
    match values.next() {
        None => Some(Cow::Borrowed(first)),
        Some(second) => {
            let mut all = String::with_capacity(first.len() + 1 + second.len());
            all.push_str(first);
            for value in std::iter::once(second).chain(values) {
                all.push(',');
                all.push_str(value);
            }
            Some(Cow::Owned(all))
        }
    }
}

/// What [`Propagation::extract`] read from a carrier.
#[derive(Clone, Debug)]
pub struct Extracted {
    cx: Context,
    remote: Option<SpanContext>,
    order: Option<OrderContext>,
}

impl Extracted {
    /// The context to start the next span with: the remote span as parent (trusted only), the
    /// kept baggage entries, and the [`OrderContext`] value.
    pub fn context(&self) -> &Context {
        &self.cx
    }

    /// The incoming span context, whatever the policy; link it from the new root span when
    /// untrusted.
    pub fn remote(&self) -> Option<&SpanContext> {
        self.remote.as_ref()
    }

    /// The order read from the `order.*` baggage entries.
    pub fn order(&self) -> Option<&OrderContext> {
        self.order.as_ref()
    }

    /// The context, see [`context`](Self::context).
    pub fn into_context(self) -> Context {
        self.cx
    }
}

/// Writes `cx` into `carrier`: `traceparent` (when `cx` has a valid span), `tracestate` (when
/// not empty) and `baggage` (the order fields, then the other baggage entries).
///
/// # Example
///
/// ```
/// use std::collections::HashMap;
/// use opentelemetry::Context;
/// use orderscope_context::{inject, OrderContext};
///
/// let order = OrderContext::new("ORD-2026-000123")?;
/// let mut headers = HashMap::new();
/// inject(&order.to_context(&Context::new()), &mut headers);
/// assert_eq!(headers["baggage"], "order.id=ORD-2026-000123");
/// assert!(!headers.contains_key("traceparent"));
/// # Ok::<(), orderscope_context::OrderContextError>(())
/// ```
pub fn inject<I: Injector + ?Sized>(cx: &Context, carrier: &mut I) {
    if let Some(propagator) = carrier_propagator() {
        return propagator.inject_context(cx, &mut Unsized(carrier));
    }
    let headers = Headers::of(cx);
    if let Some(tp) = headers.traceparent {
        carrier.set(TRACEPARENT, tp);
    }
    if let Some(ts) = headers.tracestate {
        carrier.set(TRACESTATE, ts);
    }
    if let Some(b) = headers.baggage {
        carrier.set(BAGGAGE, b);
    }
}

/// A carrier behind a reference, for the `dyn` carrier of a generic propagator.
struct Unsized<'a, C: ?Sized>(&'a mut C);

impl<C: Injector + ?Sized> Injector for Unsized<'_, C> {
    fn set(&mut self, key: &str, value: String) {
        self.0.set(key, value);
    }
}

struct UnsizedRef<'a, C: ?Sized>(&'a C);

impl<C: Extractor + ?Sized> Extractor for UnsizedRef<'_, C> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys()
    }

    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        self.0.get_all(key)
    }
}

/// The header values for a context.
#[derive(Debug, Default)]
pub(crate) struct Headers {
    pub(crate) traceparent: Option<String>,
    pub(crate) tracestate: Option<String>,
    pub(crate) baggage: Option<String>,
}

impl Headers {
    pub(crate) fn of(cx: &Context) -> Self {
        Self::of_parts(cx, true, true)
    }

    /// The trace context headers (when `trace_context`) and `baggage` (when `baggage`) of `cx`.
    pub(crate) fn of_parts(cx: &Context, trace_context: bool, baggage: bool) -> Self {
        let mut headers = Headers::default();
        if trace_context && cx.has_active_span() {
            let span = cx.span();
            let sc = span.span_context();
            if sc.is_valid() {
                headers.traceparent = Some(format_traceparent(sc));
                headers.tracestate = format_tracestate(sc.trace_state());
            }
        }
        if baggage {
            headers.baggage = match cx.get::<OrderContext>() {
                Some(order) => baggage::serialize(Some(order), cx.baggage()),
                None => {
                    // Plain `order.*` baggage (from a stock propagator or `with_baggage`) is the
                    // order: written as one, validated.
                    let mut tally = Tally::default();
                    let order = baggage::order_from_baggage(cx.baggage(), &mut tally);
                    tally.flush();
                    baggage::serialize(order.as_ref(), cx.baggage())
                }
            };
        }
        headers
    }
}
