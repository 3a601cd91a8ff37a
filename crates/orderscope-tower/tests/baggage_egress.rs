//! Baggage (the order) goes only to trusted hosts; `traceparent` goes everywhere.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http::{HeaderMap, Request, Response};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use orderscope_context::OrderContext;
use orderscope_tower::{BaggageEgress, ClientLayer, NoPropagation};
use tower::{Layer, ServiceExt, service_fn};

/// Sends one request to `url` through `layer` with an order in scope; the headers sent.
fn send(layer: &ClientLayer, url: &str, no_propagation: bool) -> HeaderMap {
    let seen = Arc::new(Mutex::new(None));
    let inner = {
        let seen = seen.clone();
        service_fn(move |request: Request<()>| {
            *seen.lock().expect("lock") = Some(request.headers().clone());
            async { Ok::<_, Infallible>(Response::new(())) }
        })
    };
    let client = layer.clone().tracing(false).layer(inner);
    let cx = OrderContext::new("ORD-1").expect("order").to_context(
        &opentelemetry::Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").expect("hex"),
            SpanId::from_hex("00f067aa0ba902b7").expect("hex"),
            TraceFlags::SAMPLED,
            true,
            TraceState::NONE,
        )),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let _guard = cx.attach();
    let mut request = Request::get(url).body(()).expect("request");
    if no_propagation {
        request.extensions_mut().insert(NoPropagation);
    }
    runtime.block_on(client.oneshot(request)).expect("response");
    let sent = seen.lock().expect("lock").take();
    sent.expect("sent")
}

const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn baggage_stays_inside_by_default() {
    let layer = ClientLayer::new();
    for url in [
        "http://127.0.0.1:8080/x",
        "http://10.2.3.4/x",
        "http://[::1]:3000/x",
        "http://crm:3000/x",
        "http://warehouse.internal/x",
        "http://localhost/x",
    ] {
        let headers = send(&layer, url, false);
        assert_eq!(headers["traceparent"], TP, "{url}");
        assert_eq!(headers["baggage"], "order.id=ORD-1", "{url}");
    }
    for url in ["https://api.stripe.com/v1/charges", "http://8.8.8.8/x"] {
        let headers = send(&layer, url, false);
        assert_eq!(headers["traceparent"], TP, "the trace continues: {url}");
        assert!(!headers.contains_key("baggage"), "no order leaves: {url}");
    }
    let headers = send(&layer, "http://10.0.0.1/x", true);
    assert!(headers.is_empty(), "NoPropagation sends nothing");
}

#[test]
fn allow_list_and_any_host() {
    let partner = ClientLayer::new()
        .baggage_egress(BaggageEgress::trusted_hosts().allow_host(".partner.example.com"));
    let headers = send(&partner, "https://orders.partner.example.com/x", false);
    assert_eq!(headers["baggage"], "order.id=ORD-1");
    let headers = send(&partner, "https://api.stripe.com/x", false);
    assert!(!headers.contains_key("baggage"));

    let strict = ClientLayer::new().baggage_egress(BaggageEgress::listed_hosts_only());
    let headers = send(&strict, "http://127.0.0.1/x", false);
    assert!(!headers.contains_key("baggage"));
    assert_eq!(headers["traceparent"], TP);

    let open = ClientLayer::new().baggage_egress(BaggageEgress::any_host());
    let headers = send(&open, "https://api.stripe.com/x", false);
    assert_eq!(headers["baggage"], "order.id=ORD-1");
}
