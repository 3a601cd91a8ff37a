//! What every service process does: `init`, listen, announce the port, serve until told to stop,
//! flush. Plus the small HTTP helpers the services share.

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use orderscope::tower::{ClientLayer, ServerLayer};
use serde::Serialize;
use tokio::sync::watch;
use tower::{Service as _, ServiceBuilder, ServiceExt as _};

use crate::model::{ENV_PORT, READY_PREFIX, Role};

/// Paths the server layer leaves out of spans and RED metrics.
pub(crate) const UNTRACED_PATHS: &[&str] = &["/metrics", "/internal/wait"];

/// A stop signal shared by a service's tasks: flips to `true` once.
#[derive(Clone, Debug)]
pub(crate) struct Stop(watch::Receiver<bool>);

impl Stop {
    /// Completes when the service should stop.
    pub(crate) async fn wait(mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// Runs the service of `role` in this process. Returns the process exit code.
pub(crate) fn child_main(role: Role) -> i32 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{}: cannot start the async runtime: {e}", role.name());
            return 1;
        }
    };
    let code = runtime.block_on(run(role));
    // The stdin watcher may still sit in a blocking read; do not wait for it.
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

async fn run(role: Role) -> i32 {
    // The USE signals and the in-flight tracker are on in the demo: the CRM's order page lists
    // the order whose status never came back, stuck in `crm.accepted`.
    let telemetry = match orderscope::builder(role.name())
        .with_process_metrics()
        .with_runtime_metrics()
        .with_order_tracker(crate::model::tracker(role))
        .build()
    {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}: orderscope::init failed: {e}", role.name());
            return 1;
        }
    };
    orderscope::logs::register_stages(role.stages());
    orderscope::logs::register_terminal_stages(role.terminal_stages());

    // Stop on Ctrl-C (serve mode: the terminal signals every process of the group) or when the
    // orchestrator closes our stdin (scripted mode, and the orchestrator's own Ctrl-C).
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop = Stop(stop_rx);
    {
        let tx = stop_tx.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            let _ = tx.send(true);
        });
        let tx = stop_tx.clone();
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
            let _ = tx.send(true);
        });
    }

    let port: u16 = std::env::var(ENV_PORT)
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let built = match role {
        Role::Shop | Role::Api => crate::front::router(role).await,
        Role::Crm => crate::crm::start(stop.clone()).await,
        Role::Mes => crate::mes::start(stop.clone()).await,
    };
    let (router, background) = match built {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("{}: cannot start: {e}", role.name());
            let _ = telemetry.shutdown();
            return 1;
        }
    };
    let layer = match role {
        // The shop and the B2B API face the internet: incoming context is untrusted.
        Role::Shop | Role::Api => ServerLayer::public(),
        Role::Crm | Role::Mes => ServerLayer::new(),
    };
    let app = router
        .layer(
            layer
                .skip_paths(UNTRACED_PATHS.iter().copied())
                .catch_panic(true),
        )
        .merge(telemetry.metrics_router())
        .merge(orderscope::OrderPage::new().router());

    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{}: cannot listen on 127.0.0.1:{port}: {e}", role.name());
            let _ = telemetry.shutdown();
            return 1;
        }
    };
    let bound = listener.local_addr().map(|a| a.port()).unwrap_or(port);
    tracing::info!(port = bound, "listening");
    println!("{READY_PREFIX} {} {bound}", role.name());

    let server = axum::serve(listener, app).with_graceful_shutdown(stop.clone().wait());
    let mut code = 0;
    if let Err(e) = server.await {
        tracing::error!(error = %e, "server failed");
        code = 1;
    }
    // Consumers stop on the same signal; give in-flight messages a moment to settle.
    for task in background {
        match tokio::time::timeout(Duration::from_secs(5), task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "background task failed"),
            Err(_) => tracing::warn!("background task did not stop within 5 s"),
        }
    }
    if let Err(e) = telemetry.shutdown() {
        eprintln!("{}: flushing telemetry failed: {e}", role.name());
    }
    code
}

/// Background work a service runs next to its HTTP server (AMQP consumers).
pub(crate) type Background = Vec<tokio::task::JoinHandle<()>>;

/// What a service contributes: its routes and its background tasks.
pub(crate) type Built = Result<(Router, Background), Box<dyn std::error::Error + Send + Sync>>;

// ---- HTTP helpers -------------------------------------------------------------------------------

/// A JSON response.
pub(crate) fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut response = (status, bytes).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// `{"error": message}` with `status`.
pub(crate) fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    #[derive(Serialize)]
    struct Error {
        error: String,
    }
    json(
        status,
        &Error {
            error: message.into(),
        },
    )
}

/// The pairs of a query string (`a=1&b=x%20y`), percent- and `+`-decoded.
pub(crate) fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let escaped = (bytes[i] == b'%' && i + 2 < bytes.len())
                .then(|| Some(hex(bytes[i + 1])? * 16 + hex(bytes[i + 2])?))
                .flatten();
            match (bytes[i], escaped) {
                (_, Some(b)) => {
                    out.push(b);
                    i += 2;
                }
                (b'+', None) => out.push(b' '),
                (b, None) => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(pair), String::new()),
        })
        .collect()
}

/// The HTTP client the shop and the API call the CRM with: hyper, wrapped in orderscope's client
/// layer (client span, `http_client_request_duration_seconds`, trace context and order baggage
/// injected).
#[derive(Clone, Debug)]
pub(crate) struct HttpClient {
    inner: orderscope::tower::Client<HyperClient<HttpConnector, Full<Bytes>>>,
}

impl Default for HttpClient {
    fn default() -> Self {
        let hyper = HyperClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        HttpClient {
            inner: ServiceBuilder::new()
                .layer(ClientLayer::new())
                .service(hyper),
        }
    }
}

impl HttpClient {
    /// Sends `request`, returns the status and the whole body.
    pub(crate) async fn send(
        &self,
        request: http::Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Bytes), Box<dyn std::error::Error + Send + Sync>> {
        let mut client = self.inner.clone();
        let response = client.ready().await?.call(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    /// POSTs `body` as JSON to `url`.
    pub(crate) async fn post_json<T: Serialize>(
        &self,
        url: &str,
        template: &'static str,
        body: &T,
    ) -> Result<(StatusCode, Bytes), Box<dyn std::error::Error + Send + Sync>> {
        let mut request = http::Request::post(url)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(serde_json::to_vec(body)?)))?;
        request
            .extensions_mut()
            .insert(orderscope::tower::UrlTemplate(template));
        self.send(request).await
    }
}

/// `GET /internal/wait?<key>=N&timeout_ms=T`: answers once `count` reached N (200), or after T
/// milliseconds (504, at most two minutes), with `{"<key>": count}`. Lets the demo's driver wait
/// without polling.
pub(crate) async fn wait_for_count(
    count: &watch::Sender<usize>,
    key: &'static str,
    query: Option<&str>,
) -> Response {
    let mut want = 0usize;
    let mut timeout = Duration::from_secs(10);
    for (k, v) in query_pairs(query) {
        if k == key {
            want = v.parse().unwrap_or(0);
        } else if k == "timeout_ms" {
            timeout = Duration::from_millis(v.parse().unwrap_or(10_000).min(120_000));
        }
    }
    let mut rx = count.subscribe();
    let reached = tokio::time::timeout(timeout, rx.wait_for(|n| *n >= want)).await;
    let have = *count.borrow();
    let status = if matches!(reached, Ok(Ok(_))) {
        StatusCode::OK
    } else {
        StatusCode::GATEWAY_TIMEOUT
    };
    json(status, &serde_json::json!({ key: have }))
}
