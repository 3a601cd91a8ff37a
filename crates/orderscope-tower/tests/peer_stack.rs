//! The bench's peer stack (tower-http `TraceLayer` + axum-prometheus, assembled as their docs
//! show) continues the caller's trace: its ratios are against a peer doing the work it should.

#[path = "../benches/cases/mod.rs"]
#[allow(dead_code)]
mod cases;

#[test]
fn the_peer_stack_span_is_the_callers_child() {
    // As the peer's documentation sets it up: the W3C propagator as the global one.
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    cases::assert_peer_gets_the_remote_parent();
}
