//! In-process cost of the server layer against the stacks users assemble today.
//!
//! Every case runs under the same process-wide set-up: a tracing subscriber with an `INFO`
//! env filter, the tracing-opentelemetry layer and a fmt layer writing to a sink; an SDK tracer
//! provider with an always-on sampler and one processor (the order span processor's `on_start`, then
//! a batch processor feeding a no-op exporter; also the global provider); a Prometheus recorder with the HTTP buckets. Each
//! request carries `traceparent` and `baggage: order.id=...`, goes through `Router::oneshot`, and
//! its body is read to the end.
//!
//! Cases (`http_server/…`): `bare` (no middleware), `empty_layer` (a layer that does nothing: what
//! axum's per-layer boxing costs), `orderscope_metrics` (RED only),
//! `orderscope_full` (span, RED, context and order), `peer_metrics` (axum-prometheus),
//! `peer_stack` (tower-http `TraceLayer` + axum-prometheus, assembled as tower-http and
//! tracing-opentelemetry document it: an INFO span whose W3C parent is set in `make_span_with`
//! from the global propagator, before the span starts; the set-up checks that the peer's spans
//! really get the remote parent). Compare overheads over `bare` within one run.

mod cases;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::BodyExt;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchSpanProcessor, Sampler, SdkTracerProvider};
use orderscope_testing::{DroppingExporter, OrderSpanProcessor};
use tower::ServiceExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use self::cases::{cases, request};

const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

fn setup() -> SdkTracerProvider {
    // The peer stack extracts its parent with the global propagator, as its docs show.
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    cases::assert_peer_gets_the_remote_parent();
    let provider = SdkTracerProvider::builder()
        .with_sampler(Sampler::AlwaysOn)
        .with_span_processor(OrderSpanProcessor::wrap(
            BatchSpanProcessor::builder(DroppingExporter).build(),
        ))
        .build();
    // As `orderscope::init` does: the provider is also given to orderscope's instrumentation.
    orderscope_testing::set_sdk_tracer_provider(&provider);
    opentelemetry::global::set_tracer_provider(provider.clone());
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("bench")))
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink))
        .init();
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(BUCKETS)
        .expect("buckets")
        .install_recorder()
        .expect("recorder");
    // What `PrometheusBuilder::install` does in a service: drain histograms periodically.
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_secs(1));
            handle.run_upkeep();
        }
    });
    provider
}

/// `ORDERSCOPE_BENCH_PROFILE=case:iterations` runs one case in a loop, without criterion, for
/// profilers (`perf record`, `valgrind --tool=callgrind`).
fn profile(spec: &str) {
    let (case, iterations) = spec.split_once(':').unwrap_or((spec, "100000"));
    let iterations: u64 = iterations.parse().expect("iterations");
    let provider = setup();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (_, app) = cases()
        .into_iter()
        .find(|(name, _)| *name == case)
        .expect("known case");
    let app = app.with_state::<()>(());
    let start = Instant::now();
    runtime.block_on(async {
        for _ in 0..iterations {
            let response = app.clone().oneshot(request()).await.expect("infallible");
            black_box(response.into_body().collect().await.expect("body"));
        }
    });
    eprintln!(
        "{case}: {:?} per request",
        start.elapsed() / u32::try_from(iterations).unwrap_or(u32::MAX)
    );
    let _ = provider.shutdown();
}

/// `ORDERSCOPE_BENCH_INTERLEAVED=rounds:batch` runs the cases round-robin, `batch` requests per case
/// per round, and prints each case's minimum and median batch time per request and the overhead
/// ratios. Interleaving exposes every case to the same background load; the minimum is the figure
/// least disturbed by it.
fn interleaved(spec: &str) {
    let (rounds, batch) = spec.split_once(':').unwrap_or((spec, "2000"));
    let rounds: usize = rounds.parse().expect("rounds");
    let batch: u32 = batch.parse().expect("batch");
    let provider = setup();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let apps: Vec<_> = cases()
        .into_iter()
        .map(|(name, app)| (name, app.with_state::<()>(())))
        .collect();
    let mut samples = vec![Vec::with_capacity(rounds); apps.len()];
    for round in 0..=rounds {
        for (i, (_, app)) in apps.iter().enumerate() {
            let elapsed = runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..batch {
                    let response = app.clone().oneshot(request()).await.expect("infallible");
                    black_box(response.into_body().collect().await.expect("body"));
                }
                start.elapsed()
            });
            if round > 0 {
                // Round 0 warms up.
                samples[i].push(elapsed.as_secs_f64() * 1e9 / f64::from(batch));
            }
        }
    }
    let stats: Vec<(f64, f64)> = samples
        .iter_mut()
        .map(|s| {
            s.sort_by(f64::total_cmp);
            (s[0], s[s.len() / 2])
        })
        .collect();
    let find = |name: &str| {
        apps.iter()
            .position(|(n, _)| *n == name)
            .map(|i| stats[i])
            .expect("case")
    };
    let bare = find("bare");
    println!("case                 min ns/req  median ns/req  overhead(min)  overhead(median)");
    for ((name, _), (min, median)) in apps.iter().zip(&stats) {
        println!(
            "{name:<20} {min:>10.0}  {median:>13.0}  {:>13.0}  {:>16.0}",
            min - bare.0,
            median - bare.1
        );
    }
    for (ours, peer) in [
        ("orderscope_full", "peer_stack"),
        ("orderscope_metrics", "peer_metrics"),
    ] {
        let (o, p) = (find(ours), find(peer));
        println!(
            "{ours} / {peer} overhead: {:.2} (min), {:.2} (median)",
            (o.0 - bare.0) / (p.0 - bare.0),
            (o.1 - bare.1) / (p.1 - bare.1)
        );
    }
    let _ = provider.shutdown();
}

/// `ORDERSCOPE_BENCH_SERVE=case:address` serves one case over TCP on a current-thread runtime, for
/// the loopback load run (see `benches/README.md`). Runs until killed.
fn serve(spec: &str) {
    let (case, address) = spec.split_once(':').expect("case:address");
    let provider = setup();
    let (_, app) = cases()
        .into_iter()
        .find(|(name, _)| *name == case)
        .expect("known case");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(address).await.expect("bind");
        eprintln!(
            "serving {case} on {}",
            listener.local_addr().expect("address")
        );
        axum::serve(listener, app).await.expect("serve");
    });
    let _ = provider.shutdown();
}

fn http_server(c: &mut Criterion) {
    if let Ok(spec) = std::env::var("ORDERSCOPE_BENCH_SERVE") {
        serve(&spec);
        return;
    }
    if let Ok(spec) = std::env::var("ORDERSCOPE_BENCH_PROFILE") {
        profile(&spec);
        return;
    }
    if let Ok(spec) = std::env::var("ORDERSCOPE_BENCH_INTERLEAVED") {
        interleaved(&spec);
        return;
    }
    let provider = setup();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("http_server");
    for (name, app) in cases() {
        // What `axum::serve` does once: turn handlers into routes (and apply the layers) up front,
        // instead of per request.
        let app = app.with_state(());
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let response = app.clone().oneshot(request()).await.expect("infallible");
                        let body = response.into_body().collect().await.expect("body");
                        black_box(body);
                    }
                    start.elapsed()
                })
            });
        });
    }
    group.finish();
    let _ = provider.shutdown();
}

criterion_group!(benches, http_server);
criterion_main!(benches);
