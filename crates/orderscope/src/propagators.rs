//! The global propagator from `OTEL_PROPAGATORS`, with the order in `baggage`.

use std::sync::Arc;

use opentelemetry::Context;
use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{
    Extractor, Injector, TextMapCompositePropagator, TextMapPropagator,
};
use orderscope_context::OrderPropagator;

/// The variable naming the propagators.
pub(crate) const OTEL_PROPAGATORS: &str = "OTEL_PROPAGATORS";
/// Its default: W3C Trace Context and Baggage, the order in `baggage`.
pub(crate) const DEFAULT: &str = "tracecontext,baggage";

type Boxed = Box<dyn TextMapPropagator + Send + Sync>;

/// What a list of propagator names builds.
struct Built {
    propagator: Boxed,
    /// `tracecontext` and `baggage` and nothing else: orderscope's own W3C codecs serve every
    /// carrier directly.
    w3c: bool,
    unsupported: Vec<String>,
}

/// The B3 propagator of `opentelemetry-zipkin`. The crate is deprecated as a whole for its
/// exporter (Zipkin takes OTLP now); its propagator is the maintained B3 implementation for the
/// pinned OpenTelemetry version.
#[allow(deprecated)]
fn b3(multi: bool) -> Boxed {
    use opentelemetry_zipkin::{B3Encoding, Propagator};
    Box::new(Propagator::with_encoding(if multi {
        B3Encoding::MultipleHeader
    } else {
        B3Encoding::SingleHeader
    }))
}

fn build(list: &str) -> Built {
    let (mut trace_context, mut baggage) = (false, false);
    // Where the W3C pair sits among the others, as first named.
    let mut w3c_at: Option<usize> = None;
    let mut others: Vec<(&'static str, Boxed)> = Vec::new();
    let mut unsupported = Vec::new();
    let mut none = false;
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let known = match name.to_ascii_lowercase().as_str() {
            "tracecontext" => {
                trace_context = true;
                w3c_at.get_or_insert(others.len());
                None
            }
            "baggage" => {
                baggage = true;
                w3c_at.get_or_insert(others.len());
                None
            }
            "b3" => Some("b3"),
            "b3multi" => Some("b3multi"),
            "none" => {
                none = true;
                None
            }
            _ => {
                unsupported.push(name.to_owned());
                None
            }
        };
        if let Some(known) = known
            && !others.iter().any(|(n, _)| *n == known)
        {
            others.push((known, b3(known == "b3multi")));
        }
    }
    if none {
        // `none` wins: no propagation at all (the specification's meaning).
        return Built {
            propagator: Box::new(TextMapCompositePropagator::new(Vec::new())),
            w3c: false,
            unsupported,
        };
    }
    let ours = match (trace_context, baggage) {
        (true, true) => Some(OrderPropagator::new()),
        (true, false) => Some(OrderPropagator::trace_context_only()),
        (false, true) => Some(OrderPropagator::baggage_only()),
        (false, false) => None,
    };
    if others.is_empty() && trace_context && baggage {
        return Built {
            propagator: Box::new(OrderPropagator::new()),
            w3c: true,
            unsupported,
        };
    }
    let mut list: Vec<Boxed> = others.into_iter().map(|(_, p)| p).collect();
    if let (Some(ours), Some(at)) = (ours, w3c_at) {
        list.insert(at, Box::new(ours));
    }
    Built {
        propagator: Box::new(TextMapCompositePropagator::new(list)),
        w3c: false,
        unsupported,
    }
}

/// The propagator a comma-separated list of `OTEL_PROPAGATORS` names builds, and the names it
/// does not support (`jaeger`, `xray`, `ottrace`, typos): those are left out.
///
/// `tracecontext` and `baggage` are orderscope's [`OrderPropagator`] (the order rides in
/// `baggage`); `b3` (single header) and `b3multi` the B3 propagator of `opentelemetry-zipkin`;
/// `none` propagates nothing. (`jaeger` is not offered: its propagator crate is not released for
/// the pinned OpenTelemetry version.)
pub(crate) fn from_names(list: &str) -> (Box<dyn TextMapPropagator + Send + Sync>, Vec<String>) {
    let built = build(list);
    (built.propagator, built.unsupported)
}

/// [`from_names`] of the process's `OTEL_PROPAGATORS` (unset or empty: `tracecontext,baggage`).
#[allow(dead_code)] // `init` reads the builder's environment; see `install`.
pub(crate) fn from_env() -> (Box<dyn TextMapPropagator + Send + Sync>, Vec<String>) {
    from_names(list_or_default(
        std::env::var(OTEL_PROPAGATORS).ok().as_ref(),
    ))
}

fn list_or_default(value: Option<&String>) -> &str {
    value
        .map(String::as_str)
        .filter(|v| !v.trim().is_empty())
        .unwrap_or(DEFAULT)
}

/// A propagator shared by the global slot and the carriers.
#[derive(Clone)]
struct Shared(Arc<dyn TextMapPropagator + Send + Sync>);

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Shared").finish_non_exhaustive()
    }
}

impl TextMapPropagator for Shared {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        self.0.inject_context(cx, injector);
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        self.0.extract_with_context(cx, extractor)
    }

    fn fields(&self) -> FieldIter<'_> {
        self.0.fields()
    }
}

/// The propagator a builder chose, not installed yet.
pub(crate) struct Chosen {
    propagator: Arc<dyn TextMapPropagator + Send + Sync>,
    /// Whether it is the default W3C pair: the carriers then keep orderscope's own codecs.
    w3c: bool,
}

impl Chosen {
    /// The propagator as `TelemetryParts` hands it back.
    pub(crate) fn into_composite(self) -> TextMapCompositePropagator {
        TextMapCompositePropagator::new(vec![Box::new(Shared(self.propagator))])
    }
}

/// The propagator given in code, or else the one `OTEL_PROPAGATORS` (its value, if set) names;
/// each unsupported name becomes a warning of the start-up.
pub(crate) fn choose(
    code: Option<TextMapCompositePropagator>,
    otel_propagators: Option<&String>,
    warnings: &mut Vec<String>,
) -> Chosen {
    if let Some(code) = code {
        return Chosen {
            propagator: Arc::new(code),
            w3c: false,
        };
    }
    let built = build(list_or_default(otel_propagators));
    for name in &built.unsupported {
        warnings.push(format!(
            "OTEL_PROPAGATORS names an unsupported propagator, `{name}`; it is left out (supported: tracecontext, baggage, b3, b3multi, none)"
        ));
    }
    Chosen {
        propagator: Arc::from(built.propagator),
        w3c: built.w3c,
    }
}

/// Installs the chosen propagator as the global propagator and as the one orderscope's carriers
/// (server, client, AMQP) speak. The default keeps the carriers on orderscope's W3C codecs.
pub(crate) fn install(chosen: Chosen) {
    orderscope_context::set_carrier_propagator(if chosen.w3c {
        None
    } else {
        Some(chosen.propagator.clone())
    });
    opentelemetry::global::set_text_map_propagator(Shared(chosen.propagator));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use orderscope_context::OrderContext;

    /// The header names a list's propagator uses (sorted: a composite's are a set), and the
    /// unsupported names.
    fn fields(list: &str) -> (Vec<String>, Vec<String>) {
        let (p, unsupported) = from_names(list);
        let mut fields: Vec<String> = p.fields().map(str::to_owned).collect();
        fields.sort_unstable();
        (fields, unsupported)
    }

    fn cx() -> Context {
        let span = Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        ));
        OrderContext::new("ORD-1").unwrap().to_context(&span)
    }

    #[test]
    fn names_build_their_propagators() {
        assert_eq!(
            fields("tracecontext,baggage"),
            (
                vec!["baggage".into(), "traceparent".into(), "tracestate".into()],
                vec![]
            )
        );
        assert!(build("baggage, tracecontext").w3c);
        assert!(build(DEFAULT).w3c);
        assert!(!build("tracecontext").w3c);
        assert_eq!(
            fields("b3,baggage"),
            (vec!["b3".into(), "baggage".into()], vec![])
        );
        assert_eq!(
            fields(" B3Multi , tracecontext"),
            (
                vec![
                    "traceparent".into(),
                    "tracestate".into(),
                    "x-b3-flags".into(),
                    "x-b3-sampled".into(),
                    "x-b3-spanid".into(),
                    "x-b3-traceid".into(),
                ],
                vec![]
            )
        );
        assert_eq!(
            fields("tracecontext,jaeger,xray,baggage"),
            (
                vec!["baggage".into(), "traceparent".into(), "tracestate".into()],
                vec!["jaeger".into(), "xray".into()]
            )
        );
        assert_eq!(fields("none"), (vec![], vec![]));
        assert_eq!(fields("none,tracecontext"), (vec![], vec![]));
    }

    #[test]
    fn b3_with_baggage_carries_the_order() {
        let (p, _) = from_names("b3multi,baggage");
        let mut headers = HashMap::new();
        p.inject_context(&cx(), &mut headers);
        assert_eq!(headers["x-b3-traceid"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(headers["baggage"], "order.id=ORD-1");
        assert!(!headers.contains_key("traceparent"));
        let back = p.extract(&headers);
        assert_eq!(OrderContext::from_context(&back).unwrap().id(), "ORD-1");
        assert_eq!(
            back.span().span_context().trace_id(),
            cx().span().span_context().trace_id()
        );
    }

    #[test]
    fn none_propagates_nothing() {
        let (p, _) = from_names("none");
        let mut headers = HashMap::new();
        p.inject_context(&cx(), &mut headers);
        assert!(headers.is_empty());
    }
}
