//! The bench's peer stack (tracing-opentelemetry spans, the global W3C propagator through a
//! hand-written header injector and extractor) carries the trace and the order from publisher to
//! consumer: its ratios are against a peer doing the work it should.

#[path = "../benches/peer/mod.rs"]
#[allow(dead_code)]
mod peer;

#[test]
fn the_peer_stack_propagates_the_trace_and_the_order() {
    peer::install_propagator();
    peer::assert_peer_propagates();
}
