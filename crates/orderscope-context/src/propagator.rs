//! [`OrderPropagator`]: the crate's W3C codecs as an OpenTelemetry [`TextMapPropagator`], and
//! the propagator the carriers speak.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use opentelemetry::Context;
use opentelemetry::baggage::BaggageExt;
use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;

use crate::baggage::{self, BaggageReader, KeyFilter};
use crate::drops::Tally;
use crate::order::OrderContext;
use crate::propagation::{BAGGAGE, Headers, Propagation, TRACEPARENT, TRACESTATE, joined};

/// W3C Trace Context and W3C Baggage with the order inside, as an OpenTelemetry
/// [`TextMapPropagator`].
///
/// Install it with `opentelemetry::global::set_text_map_propagator` and everything that injects
/// or extracts through `opentelemetry::global` (reqwest-tracing, tonic interceptors, the AWS SDK,
/// your own code) carries the order: injection writes `traceparent`, `tracestate` and `baggage`
/// (the `order.*` fields first, then the other entries) exactly as [`inject`](crate::inject)
/// does; extraction puts the remote span, the other baggage entries and the [`OrderContext`] in
/// the context, under the W3C limits (what it cannot accept is dropped and counted).
///
/// Order entries a stock baggage propagator put in the context (plain `order.*` baggage) are
/// recognised as the order on both sides. Extraction trusts the caller; apply a
/// [`Propagation`] policy where the caller may be the outside world.
///
/// `orderscope::init` installs it (from `OTEL_PROPAGATORS`): `tracecontext,baggage` is this
/// propagator alone.
///
/// # Example
///
/// ```
/// use std::collections::HashMap;
/// use opentelemetry::Context;
/// use opentelemetry::propagation::TextMapPropagator;
/// use orderscope_context::{OrderContext, OrderPropagator};
///
/// let propagator = OrderPropagator::new();
/// let order = OrderContext::new("ORD-2026-000123")?;
/// let mut headers = HashMap::new();
/// propagator.inject_context(&order.to_context(&Context::new()), &mut headers);
/// assert_eq!(headers["baggage"], "order.id=ORD-2026-000123");
///
/// let cx = propagator.extract(&headers);
/// assert_eq!(OrderContext::from_context(&cx), Some(order));
/// # Ok::<(), orderscope_context::OrderContextError>(())
/// ```
#[derive(Clone, Debug)]
pub struct OrderPropagator {
    trace_context: bool,
    baggage: bool,
    fields: Vec<String>,
}

impl Default for OrderPropagator {
    fn default() -> Self {
        Self::new()
    }
}

impl OrderPropagator {
    /// `traceparent`, `tracestate` and `baggage` with the order (`tracecontext,baggage`).
    pub fn new() -> Self {
        Self::with_parts(true, true)
    }

    /// `traceparent` and `tracestate` only (`tracecontext`): no baggage, so no order.
    pub fn trace_context_only() -> Self {
        Self::with_parts(true, false)
    }

    /// `baggage` with the order only (`baggage`), beside another trace context propagator
    /// (B3, Jaeger).
    pub fn baggage_only() -> Self {
        Self::with_parts(false, true)
    }

    fn with_parts(trace_context: bool, baggage: bool) -> Self {
        let mut fields = Vec::with_capacity(3);
        if trace_context {
            fields.push(TRACEPARENT.to_owned());
            fields.push(TRACESTATE.to_owned());
        }
        if baggage {
            fields.push(BAGGAGE.to_owned());
        }
        Self {
            trace_context,
            baggage,
            fields,
        }
    }

    /// Whether it reads and writes `traceparent` and `tracestate`.
    pub fn has_trace_context(&self) -> bool {
        self.trace_context
    }

    /// Whether it reads and writes `baggage` (and so the order).
    pub fn has_baggage(&self) -> bool {
        self.baggage
    }
}

impl TextMapPropagator for OrderPropagator {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        let headers = Headers::of_parts(cx, self.trace_context, self.baggage);
        if let Some(tp) = headers.traceparent {
            injector.set(TRACEPARENT, tp);
        }
        if let Some(ts) = headers.tracestate {
            injector.set(TRACESTATE, ts);
        }
        if let Some(b) = headers.baggage {
            injector.set(BAGGAGE, b);
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        let mut tally = Tally::default();
        let mut out = cx.clone();
        if self.trace_context {
            let remote = Propagation::trusted().read_trace(
                extractor.get(TRACEPARENT),
                || joined(extractor.get_all(TRACESTATE)?.into_iter()),
                &mut tally,
            );
            if let Some(sc) = remote {
                out = out.with_remote_span_context(sc);
            }
        }
        if self.baggage {
            let values = extractor.get_all(BAGGAGE).unwrap_or_default();
            let mut reader =
                BaggageReader::new(KeyFilter::All, baggage::MAX_BYTES, baggage::MAX_ENTRIES);
            for value in &values {
                reader.read(value, &mut tally);
            }
            let (order, entries) = reader.finish(&mut tally);
            if let Some(entries) = entries {
                out = out.with_baggage(entries);
            }
            if let Some(order) = order {
                out = out.with_value(order);
            }
        }
        if out.get::<OrderContext>().is_none() {
            // A stock baggage propagator before this one left the order as plain baggage.
            if let Some(order) = baggage::order_from_baggage(out.baggage(), &mut tally) {
                out = out.with_value(order);
            }
        }
        tally.flush();
        out
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(&self.fields)
    }
}

/// The propagator the carriers speak, when not orderscope's W3C codecs.
type Shared = Arc<dyn TextMapPropagator + Send + Sync>;

/// Whether [`WIRE`] holds a propagator: one relaxed load on the default path.
static CUSTOM: AtomicBool = AtomicBool::new(false);
static WIRE: RwLock<Option<Shared>> = RwLock::new(None);

/// Makes every carrier of this crate — [`inject`](crate::inject),
/// [`Propagation::extract`], and the HTTP and AMQP helpers in [`carrier`](crate::carrier), so
/// the orderscope server, client and AMQP layers too — speak `propagator` instead of W3C Trace
/// Context and Baggage. `None` restores the default.
///
/// The default path (W3C, with the order in `baggage`) uses the crate's own codecs. With a
/// propagator set here, injection goes through it (plus `x-order-id` on AMQP) and extraction
/// reads the remote span, the baggage and the order from the context it returns (the order from
/// an [`OrderPropagator`] in it, or from plain `order.*` baggage), then applies the
/// [`Propagation`]'s trust policy. The `Propagation`'s baggage limits are then those of the
/// propagator.
///
/// `orderscope::init` calls this with the composite `OTEL_PROPAGATORS` names (`None` for the
/// default `tracecontext,baggage`). Process-wide: set it once at start-up.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use opentelemetry::Context;
/// use opentelemetry::propagation::TextMapCompositePropagator;
/// use opentelemetry_sdk::propagation::TraceContextPropagator;
/// use orderscope_context::{carrier, set_carrier_propagator, OrderContext, OrderPropagator};
///
/// // Trace context by the stock propagator, the order in baggage.
/// set_carrier_propagator(Some(Arc::new(TextMapCompositePropagator::new(vec![
///     Box::new(TraceContextPropagator::new()),
///     Box::new(OrderPropagator::baggage_only()),
/// ]))));
/// let mut headers = http::HeaderMap::new();
/// carrier::inject_http(&OrderContext::new("ORD-1")?.to_context(&Context::new()), &mut headers);
/// assert_eq!(headers["baggage"], "order.id=ORD-1");
/// set_carrier_propagator(None);
/// # Ok::<(), orderscope_context::OrderContextError>(())
/// ```
pub fn set_carrier_propagator(propagator: Option<Arc<dyn TextMapPropagator + Send + Sync>>) {
    let mut wire = WIRE.write().unwrap_or_else(PoisonError::into_inner);
    CUSTOM.store(propagator.is_some(), Ordering::Release);
    *wire = propagator;
}

/// The propagator set with [`set_carrier_propagator`], if any.
#[inline]
pub(crate) fn carrier_propagator() -> Option<Shared> {
    if !CUSTOM.load(Ordering::Acquire) {
        return None;
    }
    WIRE.read().unwrap_or_else(PoisonError::into_inner).clone()
}
