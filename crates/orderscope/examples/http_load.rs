//! The server layer exactly as a service deploys it, for load runs and profilers: `init`'s
//! defaults (JSON logs, the OpenTelemetry provider with the always-on parent-based sampler, the
//! order span processor and the bounded, counted batch queue, the Prometheus recorder and its
//! upkeep thread, the W3C propagators), spans handed to an exporter that drops them, and
//! `.layer(ServerLayer::new()).merge(telemetry.metrics_router())` as README shows.
//!
//! ```sh
//! cargo build --release -p orderscope --example http_load
//! # serve one case on a current-thread runtime (for wrk; see crates/orderscope-tower/benches/README.md)
//! target/release/examples/http_load serve full 127.0.0.1:18080
//! # run N requests in process (for `valgrind --tool=callgrind`)
//! target/release/examples/http_load loop full 10000
//! ```
//!
//! Cases: `bare` (the same process set-up, no layer) and `full` (`ServerLayer::new()`).

use std::error::Error;
use std::hint::black_box;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::routing::get;
use http_body_util::BodyExt as _;
use orderscope::tower::ServerLayer;
use orderscope_testing::DroppingExporter;
use tower::ServiceExt as _;

async fn show_order(Path(id): Path<String>) -> String {
    id
}

fn request() -> http::Request<Body> {
    http::Request::get("/orders/ORD-2026-000123")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .header("baggage", "order.id=ORD-2026-000123")
        .body(Body::empty())
        .expect("request")
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, case, arg] = args.as_slice() else {
        return Err("usage: http_load serve|loop bare|full ADDRESS|REQUESTS".into());
    };
    let telemetry = orderscope::builder("http-load")
        .with_span_exporter(DroppingExporter)
        .with_log_writer(std::io::sink)
        .build()?;
    let routes = Router::new().route("/orders/{id}", get(show_order));
    let app = match case.as_str() {
        "bare" => routes,
        "full" => routes.layer(ServerLayer::new()),
        other => return Err(format!("unknown case {other}").into()),
    }
    .merge(telemetry.metrics_router())
    // What `axum::serve` does once: the routes become services (and each route's layer is
    // applied) here, not on every request of the loop.
    .with_state(());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match mode.as_str() {
        "serve" => runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind(arg.as_str()).await?;
            eprintln!("serving {case} on {}", listener.local_addr()?);
            axum::serve(listener, app).await
        })?,
        "loop" => {
            let requests: u32 = arg.parse()?;
            let start = Instant::now();
            runtime.block_on(async {
                for _ in 0..requests {
                    let response = app.clone().oneshot(request()).await.expect("infallible");
                    black_box(response.into_body().collect().await.expect("body"));
                }
            });
            eprintln!(
                "{case}: {:?} per request",
                start.elapsed() / requests.max(1)
            );
        }
        other => return Err(format!("unknown mode {other}").into()),
    }
    telemetry.shutdown()?;
    Ok(())
}
