//! An in-process OTLP receiver: gRPC and HTTP/protobuf on 127.0.0.1, port 0.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::model::{
    ReceivedLog, ReceivedMetric, ReceivedSpan, SpansExt, Transport, resource_attributes,
};
use crate::tls::TestCertificates;

/// Locks a mutex, ignoring poisoning (a panicking test thread must not hide the data).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Default)]
struct Store {
    spans: Vec<ReceivedSpan>,
    logs: Vec<ReceivedLog>,
    metrics: Vec<ReceivedMetric>,
    requests: Vec<ExportRequest>,
}

/// One export request the receiver accepted: what it carried, how, and with which headers.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportRequest {
    /// What it carried.
    pub signal: Signal,
    /// How it came.
    pub transport: Transport,
    /// Its HTTP headers, or its gRPC metadata, in the order received: names lower-case, values
    /// as sent (values that are not visible ASCII are left out).
    pub headers: Vec<(String, String)>,
    /// Whether its body was compressed (gzip).
    pub compressed: bool,
}

impl ExportRequest {
    fn new(signal: Signal, transport: Transport, headers: &HeaderMap) -> Self {
        let compressed = match transport {
            Transport::Grpc => headers
                .get("grpc-encoding")
                .is_some_and(|v| v.as_bytes() != b"identity"),
            _ => headers
                .get(header::CONTENT_ENCODING)
                .is_some_and(|v| v.as_bytes() != b"identity"),
        };
        ExportRequest {
            signal,
            transport,
            headers: headers
                .iter()
                .filter_map(|(name, value)| {
                    Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
                })
                .collect(),
            compressed,
        }
    }

    /// The values of the header `name` (any case), in the order received; empty when it was
    /// not sent.
    pub fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// What the servers share with the handle.
struct Shared {
    store: Mutex<Store>,
    /// Woken (notify_all) on every stored export, for blocking waiters.
    cond: Condvar,
    /// Bumped on every stored export, for async waiters.
    version: watch::Sender<u64>,
    rejected: AtomicUsize,
    failing: AtomicBool,
    failed: AtomicUsize,
}

impl Shared {
    fn new() -> Self {
        Shared {
            store: Mutex::new(Store::default()),
            cond: Condvar::new(),
            version: watch::Sender::new(0),
            rejected: AtomicUsize::new(0),
            failing: AtomicBool::new(false),
            failed: AtomicUsize::new(0),
        }
    }

    /// Whether to refuse this export (set by `OtlpReceiver::set_failing`); counts refusals.
    fn refuse(&self) -> bool {
        let refuse = self.failing.load(Ordering::SeqCst);
        if refuse {
            self.failed.fetch_add(1, Ordering::SeqCst);
        }
        refuse
    }

    fn count(&self, signal: Signal, transport: Transport, headers: &HeaderMap) {
        lock(&self.store)
            .requests
            .push(ExportRequest::new(signal, transport, headers));
    }

    fn changed(&self) {
        self.cond.notify_all();
        self.version.send_modify(|v| *v = v.wrapping_add(1));
    }

    fn store_traces(
        &self,
        req: &ExportTraceServiceRequest,
        transport: Transport,
        headers: &HeaderMap,
    ) {
        self.count(Signal::Traces, transport, headers);
        {
            let mut store = lock(&self.store);
            for rs in &req.resource_spans {
                let resource = resource_attributes(rs.resource.as_ref());
                for ss in &rs.scope_spans {
                    let (scope, version) = ss
                        .scope
                        .as_ref()
                        .map_or(("", ""), |s| (s.name.as_str(), s.version.as_str()));
                    for span in &ss.spans {
                        store.spans.push(ReceivedSpan::from_proto(
                            span, &resource, scope, version, transport,
                        ));
                    }
                }
            }
        }
        self.changed();
    }

    fn store_logs(
        &self,
        req: &ExportLogsServiceRequest,
        transport: Transport,
        headers: &HeaderMap,
    ) {
        self.count(Signal::Logs, transport, headers);
        {
            let mut store = lock(&self.store);
            for rl in &req.resource_logs {
                let resource = resource_attributes(rl.resource.as_ref());
                for sl in &rl.scope_logs {
                    let scope = sl.scope.as_ref().map_or("", |s| s.name.as_str());
                    for rec in &sl.log_records {
                        store
                            .logs
                            .push(ReceivedLog::from_proto(rec, &resource, scope, transport));
                    }
                }
            }
        }
        self.changed();
    }

    fn store_metrics(
        &self,
        req: &ExportMetricsServiceRequest,
        transport: Transport,
        headers: &HeaderMap,
    ) {
        self.count(Signal::Metrics, transport, headers);
        {
            let mut store = lock(&self.store);
            for rm in &req.resource_metrics {
                let resource = resource_attributes(rm.resource.as_ref());
                for sm in &rm.scope_metrics {
                    let scope = sm.scope.as_ref().map_or("", |s| s.name.as_str());
                    for m in &sm.metrics {
                        store
                            .metrics
                            .push(ReceivedMetric::from_proto(m, &resource, scope, transport));
                    }
                }
            }
        }
        self.changed();
    }
}

/// A signal the receiver stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Spans.
    Traces,
    /// Log records.
    Logs,
    /// Metrics.
    Metrics,
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Signal::Traces => "spans",
            Signal::Logs => "log records",
            Signal::Metrics => "metrics",
        })
    }
}

/// Returned when fewer items than expected arrived before the timeout.
///
/// Its `Display` lists what *was* received, so a failing test shows why.
#[derive(Clone, Debug, thiserror::Error)]
#[error(
    "timed out after {timeout:?} waiting for {expected} {signal}; received {} (export requests: {requests}){}",
    received.len(),
    format_received(received)
)]
pub struct WaitError {
    /// What was waited for.
    pub signal: Signal,
    /// How many were expected.
    pub expected: usize,
    /// The timeout that expired.
    pub timeout: Duration,
    /// One line per item received so far.
    pub received: Vec<String>,
    /// Export requests received so far (all signals, both transports).
    pub requests: usize,
}

fn format_received(lines: &[String]) -> String {
    let mut out = String::new();
    for l in lines {
        out.push_str("\n  - ");
        out.push_str(l);
    }
    out
}

// ---- gRPC services -----------------------------------------------------------------------------

#[derive(Clone)]
struct Grpc(Arc<Shared>);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        if self.0.refuse() {
            return Err(tonic::Status::unavailable("receiver set to fail"));
        }
        let headers = request.metadata().clone().into_headers();
        self.0
            .store_traces(request.get_ref(), Transport::Grpc, &headers);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        if self.0.refuse() {
            return Err(tonic::Status::unavailable("receiver set to fail"));
        }
        let headers = request.metadata().clone().into_headers();
        self.0
            .store_logs(request.get_ref(), Transport::Grpc, &headers);
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        if self.0.refuse() {
            return Err(tonic::Status::unavailable("receiver set to fail"));
        }
        let headers = request.metadata().clone().into_headers();
        self.0
            .store_metrics(request.get_ref(), Transport::Grpc, &headers);
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

// ---- HTTP/protobuf -----------------------------------------------------------------------------

const PROTOBUF: &str = "application/x-protobuf";

fn protobuf_response(msg: &impl Message) -> Response {
    ([(header::CONTENT_TYPE, PROTOBUF)], msg.encode_to_vec()).into_response()
}

/// Checks the content type and decodes the body; the error is a ready HTTP response.
#[allow(clippy::result_large_err)]
fn decode_http<M: Message + Default>(
    shared: &Shared,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<M, Response> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with(PROTOBUF) {
        shared.rejected.fetch_add(1, Ordering::SeqCst);
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("only {PROTOBUF} is supported, got {content_type:?}"),
        )
            .into_response());
    }
    let gunzipped;
    let body: &[u8] = match headers.get(header::CONTENT_ENCODING).map(|v| v.as_bytes()) {
        None | Some(b"identity") => body.as_ref(),
        Some(b"gzip") => {
            let mut out = Vec::new();
            if let Err(e) = std::io::Read::read_to_end(
                &mut flate2::read::GzDecoder::new(body.as_ref()),
                &mut out,
            ) {
                shared.rejected.fetch_add(1, Ordering::SeqCst);
                return Err(
                    (StatusCode::BAD_REQUEST, format!("invalid gzip body: {e}")).into_response()
                );
            }
            gunzipped = out;
            &gunzipped
        }
        Some(_) => {
            shared.rejected.fetch_add(1, Ordering::SeqCst);
            return Err((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "only gzip and identity content encodings are supported",
            )
                .into_response());
        }
    };
    M::decode(body).map_err(|e| {
        shared.rejected.fetch_add(1, Ordering::SeqCst);
        (StatusCode::BAD_REQUEST, format!("invalid protobuf: {e}")).into_response()
    })
}

async fn http_traces(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match decode_http::<ExportTraceServiceRequest>(&shared, &headers, &body) {
        Ok(_) if shared.refuse() => {
            (StatusCode::SERVICE_UNAVAILABLE, "receiver set to fail").into_response()
        }
        Ok(req) => {
            shared.store_traces(&req, Transport::Http, &headers);
            protobuf_response(&ExportTraceServiceResponse::default())
        }
        Err(resp) => resp,
    }
}

async fn http_logs(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    match decode_http::<ExportLogsServiceRequest>(&shared, &headers, &body) {
        Ok(_) if shared.refuse() => {
            (StatusCode::SERVICE_UNAVAILABLE, "receiver set to fail").into_response()
        }
        Ok(req) => {
            shared.store_logs(&req, Transport::Http, &headers);
            protobuf_response(&ExportLogsServiceResponse::default())
        }
        Err(resp) => resp,
    }
}

async fn http_metrics(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match decode_http::<ExportMetricsServiceRequest>(&shared, &headers, &body) {
        Ok(_) if shared.refuse() => {
            (StatusCode::SERVICE_UNAVAILABLE, "receiver set to fail").into_response()
        }
        Ok(req) => {
            shared.store_metrics(&req, Transport::Http, &headers);
            protobuf_response(&ExportMetricsServiceResponse::default())
        }
        Err(resp) => resp,
    }
}

// ---- the receiver ------------------------------------------------------------------------------

/// Keeps the background runtime thread of [`OtlpReceiver::start_in_background`].
struct Background {
    thread: Option<std::thread::JoinHandle<()>>,
}

/// An in-process OTLP receiver for tests.
///
/// Listens on two ports of 127.0.0.1 chosen by the OS: one speaks OTLP/gRPC
/// ([`grpc_endpoint`](Self::grpc_endpoint)), the other OTLP/HTTP with protobuf bodies
/// ([`http_endpoint`](Self::http_endpoint): `POST /v1/traces`, `/v1/logs`, `/v1/metrics`,
/// `content-type: application/x-protobuf`, uncompressed). Requests are decoded with the
/// `opentelemetry-proto` types and stored as [`ReceivedSpan`], [`ReceivedLog`] and
/// [`ReceivedMetric`]. The servers stop when the receiver is dropped.
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
/// use orderscope_testing::OtlpReceiver;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let receiver = OtlpReceiver::start().await?;
/// // point an OTLP exporter at receiver.grpc_endpoint() or receiver.http_traces_endpoint()
/// let spans = receiver.wait_for_spans(2, Duration::from_secs(5)).await?;
/// let parent = receiver.find("parent").expect("parent span");
/// orderscope_testing::assert_child_of(receiver.find("child").as_ref().unwrap(), &parent);
/// # let _ = spans;
/// # Ok(())
/// # }
/// ```
///
/// With [`start`](Self::start) the servers run on the caller's tokio runtime: a test that
/// blocks that runtime (a blocking exporter, `force_flush` on a current-thread runtime) must
/// use `#[tokio::test(flavor = "multi_thread")]` or [`start_in_background`](Self::start_in_background).
pub struct OtlpReceiver {
    shared: Arc<Shared>,
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    background: Option<Background>,
    /// `https` when serving TLS, else `http`.
    scheme: &'static str,
}

impl fmt::Debug for OtlpReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpReceiver")
            .field("grpc_addr", &self.grpc_addr)
            .field("http_addr", &self.http_addr)
            .field("requests", &self.requests())
            .field("background", &self.background.is_some())
            .finish()
    }
}

async fn wait_shutdown(mut rx: watch::Receiver<bool>) {
    // Either the flag turns true or the sender is gone: both mean stop.
    let _ = rx.wait_for(|stop| *stop).await;
}

/// TLS for the receiver's two ports: the server certificate, and for mutual TLS the CA that
/// client certificates must chain to.
#[derive(Clone, Debug)]
pub struct ReceiverTls {
    cert_pem: String,
    key_pem: String,
    client_ca_pem: Option<String>,
}

impl ReceiverTls {
    /// Serves TLS with the server certificate of `certs`; clients are not asked for one.
    pub fn server(certs: &TestCertificates) -> Self {
        ReceiverTls {
            cert_pem: certs.server_cert_pem().to_owned(),
            key_pem: certs.server_key_pem().to_owned(),
            client_ca_pem: None,
        }
    }

    /// Mutual TLS: serves the server certificate of `certs` and accepts only clients that
    /// present a certificate signed by its CA.
    pub fn mutual(certs: &TestCertificates) -> Self {
        ReceiverTls {
            client_ca_pem: Some(certs.ca_pem().to_owned()),
            ..Self::server(certs)
        }
    }

    fn rustls_server_config(&self) -> std::io::Result<rustls::ServerConfig> {
        use rustls_pki_types::pem::PemObject as _;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let invalid = |e: &dyn fmt::Display| std::io::Error::other(e.to_string());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(&e))?;
        let key =
            PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(|e| invalid(&e))?;
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(&e))?;
        let builder = match &self.client_ca_pem {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                    roots
                        .add(cert.map_err(|e| invalid(&e))?)
                        .map_err(|e| invalid(&e))?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .map_err(|e| invalid(&e))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| invalid(&e))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }

    fn tonic_config(&self) -> tonic::transport::ServerTlsConfig {
        let config = tonic::transport::ServerTlsConfig::new().identity(
            tonic::transport::Identity::from_pem(&self.cert_pem, &self.key_pem),
        );
        match &self.client_ca_pem {
            Some(ca) => config.client_ca_root(tonic::transport::Certificate::from_pem(ca)),
            None => config,
        }
    }
}

/// An axum listener that hands over connections once their TLS handshake succeeded. Handshakes
/// run in tasks of their own, so a client that stalls or fails one (a wrong CA, plain text on a
/// TLS port) holds up nobody.
struct TlsListener {
    accepted: tokio::sync::mpsc::Receiver<(
        tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        SocketAddr,
    )>,
    local_addr: SocketAddr,
}

impl TlsListener {
    fn new(listener: TcpListener, config: rustls::ServerConfig) -> std::io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let (tx, accepted) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(_) => continue,
                    },
                    () = tx.closed() => break,
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let handshake =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await;
                    if let Ok(Ok(tls)) = handshake {
                        let _ = tx.send((tls, peer)).await;
                    }
                });
            }
        });
        Ok(TlsListener {
            accepted,
            local_addr,
        })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            // The accept task ended: wait for the shutdown signal.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

/// Binds both listeners and spawns the servers on the current runtime.
async fn spawn_servers(
    shared: Arc<Shared>,
    shutdown: &watch::Sender<bool>,
    tls: Option<&ReceiverTls>,
) -> std::io::Result<(SocketAddr, SocketAddr)> {
    let localhost = SocketAddr::from(([127, 0, 0, 1], 0));
    let grpc_listener = TcpListener::bind(localhost).await?;
    let http_listener = TcpListener::bind(localhost).await?;
    let grpc_addr = grpc_listener.local_addr()?;
    let http_addr = http_listener.local_addr()?;

    let grpc = Grpc(shared.clone());
    let incoming = tonic::transport::server::TcpIncoming::from(grpc_listener);
    let stop = wait_shutdown(shutdown.subscribe());
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        server = server
            .tls_config(tls.tonic_config())
            .map_err(|e| std::io::Error::other(e.to_string()))?;
    }
    let gzip = tonic::codec::CompressionEncoding::Gzip;
    tokio::spawn(async move {
        let result = server
            .add_service(TraceServiceServer::new(grpc.clone()).accept_compressed(gzip))
            .add_service(LogsServiceServer::new(grpc.clone()).accept_compressed(gzip))
            .add_service(MetricsServiceServer::new(grpc).accept_compressed(gzip))
            .serve_with_incoming_shutdown(incoming, stop)
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "OTLP gRPC receiver stopped with an error");
        }
    });

    let app = Router::new()
        .route("/v1/traces", post(http_traces))
        .route("/v1/logs", post(http_logs))
        .route("/v1/metrics", post(http_metrics))
        .with_state(shared);
    let stop = wait_shutdown(shutdown.subscribe());
    match tls {
        None => {
            tokio::spawn(async move {
                let result = axum::serve(http_listener, app)
                    .with_graceful_shutdown(stop)
                    .await;
                if let Err(e) = result {
                    tracing::warn!(error = %e, "OTLP HTTP receiver stopped with an error");
                }
            });
        }
        Some(tls) => {
            let listener = TlsListener::new(http_listener, tls.rustls_server_config()?)?;
            tokio::spawn(async move {
                let result = axum::serve(listener, app)
                    .with_graceful_shutdown(stop)
                    .await;
                if let Err(e) = result {
                    tracing::warn!(error = %e, "OTLP HTTPS receiver stopped with an error");
                }
            });
        }
    }
    Ok((grpc_addr, http_addr))
}

impl OtlpReceiver {
    /// Binds 127.0.0.1:0 twice (gRPC, HTTP) and serves on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// When a listener cannot be bound.
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with(None).await
    }

    /// As [`start`](Self::start), serving TLS (or mutual TLS) on both ports: the endpoints are
    /// `https://127.0.0.1:PORT`, and the server certificate is valid for `127.0.0.1` and
    /// `localhost`.
    ///
    /// # Errors
    ///
    /// When a listener cannot be bound or the certificates are unusable.
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime.
    pub async fn start_tls(tls: ReceiverTls) -> std::io::Result<Self> {
        Self::start_with(Some(tls)).await
    }

    async fn start_with(tls: Option<ReceiverTls>) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::new());
        let (shutdown, _) = watch::channel(false);
        let (grpc_addr, http_addr) = spawn_servers(shared.clone(), &shutdown, tls.as_ref()).await?;
        Ok(OtlpReceiver {
            shared,
            grpc_addr,
            http_addr,
            shutdown,
            background: None,
            scheme: if tls.is_some() { "https" } else { "http" },
        })
    }

    /// Starts the receiver on its own runtime thread; works from sync and async code alike.
    ///
    /// Dropping the receiver stops the servers and joins the thread.
    ///
    /// # Errors
    ///
    /// When the runtime cannot be built, the thread cannot be spawned or a listener cannot be
    /// bound.
    pub fn start_in_background() -> std::io::Result<Self> {
        Self::start_in_background_with(None)
    }

    /// As [`start_in_background`](Self::start_in_background), serving TLS (or mutual TLS); see
    /// [`start_tls`](Self::start_tls).
    ///
    /// # Errors
    ///
    /// As [`start_in_background`](Self::start_in_background); also when the certificates are
    /// unusable.
    pub fn start_tls_in_background(tls: ReceiverTls) -> std::io::Result<Self> {
        Self::start_in_background_with(Some(tls))
    }

    fn start_in_background_with(tls: Option<ReceiverTls>) -> std::io::Result<Self> {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let shared = Arc::new(Shared::new());
        let (shutdown, _) = watch::channel(false);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread_shared = shared.clone();
        let thread_shutdown = shutdown.clone();
        let thread = std::thread::Builder::new()
            .name("otlp-receiver".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("otlp-receiver-worker")
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(async move {
                    let started =
                        spawn_servers(thread_shared, &thread_shutdown, tls.as_ref()).await;
                    let ok = started.is_ok();
                    let _ = ready_tx.send(started);
                    if ok {
                        wait_shutdown(thread_shutdown.subscribe()).await;
                    }
                });
                // Dropping the runtime cancels the server tasks and closes their sockets.
                rt.shutdown_timeout(Duration::from_secs(1));
            })?;
        let (grpc_addr, http_addr) = match ready_rx.recv() {
            Ok(Ok(addrs)) => addrs,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(std::io::Error::other("OTLP receiver thread exited early"));
            }
        };
        Ok(OtlpReceiver {
            shared,
            grpc_addr,
            http_addr,
            shutdown,
            background: Some(Background {
                thread: Some(thread),
            }),
            scheme,
        })
    }

    /// The gRPC endpoint, `http://127.0.0.1:PORT`.
    pub fn grpc_endpoint(&self) -> String {
        format!("{}://{}", self.scheme, self.grpc_addr)
    }

    /// The HTTP base endpoint, `http://127.0.0.1:PORT` (what `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// takes; the exporter appends `/v1/traces` etc.).
    pub fn http_endpoint(&self) -> String {
        format!("{}://{}", self.scheme, self.http_addr)
    }

    /// `http://127.0.0.1:PORT/v1/traces`: what a signal-specific endpoint setting takes
    /// (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, or `with_endpoint` on an HTTP span exporter).
    pub fn http_traces_endpoint(&self) -> String {
        format!("{}://{}/v1/traces", self.scheme, self.http_addr)
    }

    /// `http://127.0.0.1:PORT/v1/logs`.
    pub fn http_logs_endpoint(&self) -> String {
        format!("{}://{}/v1/logs", self.scheme, self.http_addr)
    }

    /// `http://127.0.0.1:PORT/v1/metrics`.
    pub fn http_metrics_endpoint(&self) -> String {
        format!("{}://{}/v1/metrics", self.scheme, self.http_addr)
    }

    /// The gRPC listener's address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The HTTP listener's address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// All spans received so far, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        lock(&self.shared.store).spans.clone()
    }

    /// All log records received so far, in arrival order.
    pub fn logs(&self) -> Vec<ReceivedLog> {
        lock(&self.shared.store).logs.clone()
    }

    /// All metrics received so far, in arrival order (one entry per metric per export).
    pub fn metrics(&self) -> Vec<ReceivedMetric> {
        lock(&self.shared.store).metrics.clone()
    }

    /// The first received span named `name`.
    pub fn find(&self, name: &str) -> Option<ReceivedSpan> {
        lock(&self.shared.store)
            .spans
            .iter()
            .find(|s| s.name == name)
            .cloned()
    }

    /// Received spans grouped by trace id.
    pub fn traces(&self) -> BTreeMap<String, Vec<ReceivedSpan>> {
        lock(&self.shared.store).spans.traces()
    }

    /// The export requests accepted so far (all signals, both transports), in arrival order,
    /// with their headers: to check what an exporter sent besides the data (an
    /// `authorization` header, gzip).
    ///
    /// # Example
    ///
    /// ```
    /// use orderscope_testing::{OtlpReceiver, Signal};
    ///
    /// fn check_auth(receiver: &OtlpReceiver) {
    ///     for request in receiver.export_requests() {
    ///         if request.signal == Signal::Traces {
    ///             assert_eq!(request.header("authorization"), ["Bearer s3cr3t"]);
    ///         }
    ///     }
    /// }
    /// ```
    pub fn export_requests(&self) -> Vec<ExportRequest> {
        lock(&self.shared.store).requests.clone()
    }

    /// Number of export requests accepted (all signals, both transports).
    pub fn requests(&self) -> usize {
        lock(&self.shared.store).requests.len()
    }

    /// Number of export requests accepted over gRPC.
    pub fn grpc_requests(&self) -> usize {
        self.count_requests(|r| r.transport == Transport::Grpc)
    }

    /// Number of export requests accepted over HTTP.
    pub fn http_requests(&self) -> usize {
        self.count_requests(|r| r.transport != Transport::Grpc)
    }

    /// Number of HTTP requests rejected (wrong content type, compressed, undecodable).
    pub fn rejected_requests(&self) -> usize {
        self.shared.rejected.load(Ordering::SeqCst)
    }

    /// Export requests accepted whose body was compressed (gzip), over either transport.
    pub fn compressed_requests(&self) -> usize {
        self.count_requests(|r| r.compressed)
    }

    fn count_requests(&self, which: impl Fn(&ExportRequest) -> bool) -> usize {
        lock(&self.shared.store)
            .requests
            .iter()
            .filter(|r| which(r))
            .count()
    }

    /// Makes the receiver refuse exports (gRPC `UNAVAILABLE`, HTTP 503) until called with
    /// `false`, to test export failures and retries. Refused requests are not stored.
    pub fn set_failing(&self, failing: bool) {
        self.shared.failing.store(failing, Ordering::SeqCst);
    }

    /// Number of export requests refused because of [`set_failing`](Self::set_failing).
    pub fn failed_requests(&self) -> usize {
        self.shared.failed.load(Ordering::SeqCst)
    }

    /// Forgets everything received so far (counters included).
    pub fn clear(&self) {
        let mut store = lock(&self.shared.store);
        *store = Store::default();
        self.shared.rejected.store(0, Ordering::SeqCst);
        self.shared.failed.store(0, Ordering::SeqCst);
    }

    async fn wait_for<T: Clone>(
        &self,
        signal: Signal,
        n: usize,
        timeout: Duration,
        select: impl Fn(&Store) -> &Vec<T>,
        summary: impl Fn(&T) -> String,
    ) -> Result<Vec<T>, WaitError> {
        // Subscribe before the first check so no export between check and wait is missed.
        let mut rx = self.shared.version.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            {
                let store = lock(&self.shared.store);
                let items = select(&store);
                if items.len() >= n {
                    return Ok(items.clone());
                }
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                // Sender gone cannot happen while `self` is alive; treat like a timeout.
                Ok(Err(_)) | Err(_) => {
                    let store = lock(&self.shared.store);
                    let items = select(&store);
                    if items.len() >= n {
                        return Ok(items.clone());
                    }
                    return Err(WaitError {
                        signal,
                        expected: n,
                        timeout,
                        received: items.iter().map(&summary).collect(),
                        requests: store.requests.len(),
                    });
                }
            }
        }
    }

    fn wait_for_blocking<T: Clone>(
        &self,
        signal: Signal,
        n: usize,
        timeout: Duration,
        select: impl Fn(&Store) -> &Vec<T>,
        summary: impl Fn(&T) -> String,
    ) -> Result<Vec<T>, WaitError> {
        let deadline = Instant::now() + timeout;
        let mut store = lock(&self.shared.store);
        loop {
            let items = select(&store);
            if items.len() >= n {
                return Ok(items.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(WaitError {
                    signal,
                    expected: n,
                    timeout,
                    received: items.iter().map(&summary).collect(),
                    requests: store.requests.len(),
                });
            }
            store = self
                .shared
                .cond
                .wait_timeout(store, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Waits until at least `n` spans have arrived and returns all of them.
    ///
    /// Woken by each export (no polling). Needs a tokio runtime with the time driver.
    ///
    /// # Errors
    ///
    /// [`WaitError`] listing what was received when `timeout` expires first.
    pub async fn wait_for_spans(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<ReceivedSpan>, WaitError> {
        self.wait_for(
            Signal::Traces,
            n,
            timeout,
            |s| &s.spans,
            ReceivedSpan::summary,
        )
        .await
    }

    /// Blocking twin of [`wait_for_spans`](Self::wait_for_spans) for sync tests.
    ///
    /// Must not be called on the runtime thread that runs the receiver (use it with
    /// [`start_in_background`](Self::start_in_background) or from a plain thread).
    ///
    /// # Errors
    ///
    /// [`WaitError`] listing what was received when `timeout` expires first.
    pub fn wait_for_spans_blocking(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<ReceivedSpan>, WaitError> {
        self.wait_for_blocking(
            Signal::Traces,
            n,
            timeout,
            |s| &s.spans,
            ReceivedSpan::summary,
        )
    }

    /// Waits until at least `n` log records have arrived and returns all of them.
    ///
    /// # Errors
    ///
    /// [`WaitError`] listing what was received when `timeout` expires first.
    pub async fn wait_for_logs(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<ReceivedLog>, WaitError> {
        self.wait_for(Signal::Logs, n, timeout, |s| &s.logs, ReceivedLog::summary)
            .await
    }

    /// Blocking twin of [`wait_for_logs`](Self::wait_for_logs).
    ///
    /// # Errors
    ///
    /// [`WaitError`] listing what was received when `timeout` expires first.
    pub fn wait_for_logs_blocking(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<ReceivedLog>, WaitError> {
        self.wait_for_blocking(Signal::Logs, n, timeout, |s| &s.logs, ReceivedLog::summary)
    }

    /// Waits until at least `n` metrics (counted per export) have arrived.
    ///
    /// # Errors
    ///
    /// [`WaitError`] listing what was received when `timeout` expires first.
    pub async fn wait_for_metrics(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<ReceivedMetric>, WaitError> {
        self.wait_for(
            Signal::Metrics,
            n,
            timeout,
            |s| &s.metrics,
            |m| format!("{} ({:?})", m.name, m.kind()),
        )
        .await
    }

    /// Stops the servers now (also done on drop).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(mut bg) = self.background.take()
            && let Some(thread) = bg.thread.take()
        {
            // Never panic in drop; a failed join only means the thread already died.
            let _ = thread.join();
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.stop();
    }
}
