//! `LateTracer` with the provider given to `set_sdk_tracer_provider`: built before it, it starts
//! real spans afterwards, with the SDK's span in the context (one allocation fewer per span than
//! through a boxed tracer). One test in this binary: the provider slot and the allocation count
//! are process-wide.
#![cfg(feature = "sdk")]

use opentelemetry::global::BoxedTracer;
use opentelemetry::trace::{
    SpanBuilder, SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
    TracerProvider as _,
};
use opentelemetry::{Context, InstrumentationScope};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SimpleSpanProcessor};
use orderscope_context::{LateTracer, set_sdk_tracer_provider};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

fn allocations(f: impl Fn()) -> usize {
    f(); // warm up lazily initialised statics
    let region = Region::new(GLOBAL);
    f();
    region.change().allocations
}

#[test]
fn a_late_tracer_starts_sdk_spans_once_the_provider_is_given() {
    let scope = InstrumentationScope::builder("late-test").build();
    let late = LateTracer::global(scope.clone());
    let remote = SpanContext::new(
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
        SpanId::from_hex("00f067aa0ba902b7").unwrap(),
        TraceFlags::SAMPLED,
        true,
        TraceState::NONE,
    );
    let parent = Context::new().with_remote_span_context(remote.clone());

    // No provider anywhere yet: the span is the parent's, nothing is recorded.
    let cx = late.start(SpanBuilder::from_name("before"), &parent);
    assert_eq!(cx.span().span_context().span_id(), remote.span_id());

    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(SimpleSpanProcessor::new(exporter.clone()))
        .build();
    // Only given to orderscope, not installed globally: the spans below can only come from it.
    set_sdk_tracer_provider(&provider);

    let cx = late.start(SpanBuilder::from_name("after"), &parent);
    let own = cx.span().span_context().clone();
    assert!(own.is_valid());
    assert_eq!(own.trace_id(), remote.trace_id());
    assert_ne!(own.span_id(), remote.span_id());
    cx.span().end();
    let mut boxed = late.build_with_context(SpanBuilder::from_name("boxed"), &parent);
    opentelemetry::trace::Span::end(&mut boxed);

    let spans = exporter.get_finished_spans().unwrap();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
    assert_eq!(names, ["after", "boxed"]);
    assert!(spans.iter().all(|s| s.parent_span_id == remote.span_id()));
    assert_eq!(spans[0].instrumentation_scope.name(), "late-test");

    // The same provider through a boxed tracer (what the global provider hands out): the SDK
    // span is boxed once more before it goes into the context.
    let through_box = LateTracer::fixed(BoxedTracer::new(Box::new(
        provider.tracer_with_scope(scope),
    )));
    let start = |tracer: &LateTracer| {
        let cx = tracer.start(SpanBuilder::from_name("counted"), &parent);
        cx.span().end();
    };
    let direct = allocations(|| start(&late));
    let boxed = allocations(|| start(&through_box));
    assert_eq!(
        direct + 1,
        boxed,
        "allocations per span: {direct} with the SDK tracer, {boxed} through a boxed tracer"
    );
}
