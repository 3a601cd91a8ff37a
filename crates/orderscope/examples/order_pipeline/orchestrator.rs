//! Starts the four services as processes, drives the scripted orders through them, collects
//! what they emitted, and stops them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use lapin::{Connection, ConnectionProperties};
use orderscope_testing::{OtlpReceiver, ReceivedSpan};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::oneshot;

use crate::mes_db::{self, Prepared};
use crate::model::{
    ENV_AMQP_ADDR, ENV_AMQP_PREFIX, ENV_CRM_URL, ENV_PORT, ENV_ROLE, Expect, Item, PlaceOrder,
    READY_PREFIX, Role, SCRIPT, ScriptedOrder, Topology, amqp_addr, rfc3339,
};

/// How to start a service process: the program and arguments that run `role` (the orchestrator
/// adds the environment and the pipes).
pub(crate) type Launch = dyn Fn(Role) -> std::process::Command + Send + Sync;

/// Settings of one run.
#[derive(Clone, Debug, Default)]
pub(crate) struct Options {
    /// Keep the services up on four consecutive ports (shop, api, crm, mes; from `port_base`)
    /// until Ctrl-C.
    pub(crate) serve: bool,
    /// The shop's port in `serve` mode; the api, crm and mes take the next three. Defaults to
    /// [`DEFAULT_PORT_BASE`].
    pub(crate) port_base: Option<u16>,
    /// In `serve` mode, stop when this is notified as well as on Ctrl-C (tests).
    pub(crate) serve_until: Option<Arc<tokio::sync::Notify>>,
    /// Write each service's JSON log lines to `DIR/<service>.jsonl`.
    pub(crate) log_dir: Option<PathBuf>,
    /// Prefix for exchange and queue names (tests).
    pub(crate) amqp_prefix: String,
    /// Delete the exchanges and queues at the end (tests with their own prefix).
    pub(crate) delete_topology: bool,
    /// Use the embedded OTLP receiver even when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (tests).
    pub(crate) embedded_receiver: bool,
    /// Halfway through placing the orders, have the broker close every connection of the CRM and
    /// MES (consumers, publishers, queue watcher: those named with `amqp_prefix`, through
    /// `rabbitmqctl close_connection`), as a broker restart would: they reconnect and every order
    /// still finishes (tests).
    pub(crate) close_connections_midway: bool,
}

/// The shop's port in `serve` mode unless `--port-base` says otherwise: shop 8080, api 8081,
/// crm 8082, mes 8083.
pub(crate) const DEFAULT_PORT_BASE: u16 = 8080;

/// The port of `role` in `serve` mode with the shop on `base`.
pub(crate) fn serve_port(role: Role, base: u16) -> u16 {
    base.saturating_add(role.fixed_port() - DEFAULT_PORT_BASE)
}

/// Why the pipeline could not run.
#[derive(Debug)]
pub(crate) enum PipelineError {
    /// RabbitMQ is not reachable.
    NoBroker {
        /// The address tried.
        addr: String,
        /// What lapin said.
        error: String,
    },
    /// PostgreSQL is not reachable.
    NoDatabase {
        /// The URL tried, password hidden.
        url: String,
        /// What sqlx said.
        error: String,
    },
    /// A service did not start.
    ServiceFailed {
        /// Which one.
        role: Role,
        /// Why, with the end of its stderr.
        reason: String,
    },
    /// Anything else the orchestrator itself could not do.
    Other(String),
}

impl std::fmt::Display for PipelineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PipelineError::NoBroker { addr, error } => {
                write!(f, "RabbitMQ is not reachable at {addr} ({error})")
            }
            PipelineError::NoDatabase { url, error } => {
                write!(f, "PostgreSQL is not reachable at {url} ({error})")
            }
            PipelineError::ServiceFailed { role, reason } => {
                write!(f, "service {} failed: {reason}", role.name())
            }
            PipelineError::Other(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for PipelineError {}

/// What happened to one scripted order.
#[derive(Clone, Debug)]
pub(crate) struct OrderResult {
    /// The script's line.
    pub(crate) scripted: ScriptedOrder,
    /// HTTP status the shop or API answered.
    pub(crate) placed_status: u16,
    /// The CRM's record of the order's status (`accepted`, `scheduled`, `rejected`), if it has one.
    pub(crate) crm_status: Option<String>,
    /// MES's record (see `mes::MesOrder`), if MES saw the order.
    pub(crate) mes: Option<MesView>,
}

/// The fields of MES's dashboard record the summary needs.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct MesView {
    /// `received`, `scheduled`, `rejected`, `dead_lettered`.
    pub(crate) status: String,
    /// Whether the status message reached the CRM.
    pub(crate) status_delivered: Option<bool>,
    /// Finished after the deadline.
    pub(crate) overdue: bool,
    /// Deliveries MES saw.
    pub(crate) attempts: u32,
}

impl OrderResult {
    /// What actually became of the order, in the script's terms.
    pub(crate) fn observed(&self) -> Option<Expect> {
        let mes = self.mes.as_ref()?;
        Some(match mes.status.as_str() {
            "dead_lettered" => Expect::DeadLettered,
            _ if mes.status_delivered == Some(false) => Expect::Lost,
            "rejected" => Expect::Rejected,
            "scheduled" if mes.overdue => Expect::Late,
            "scheduled" => Expect::Scheduled,
            _ => return None,
        })
    }
}

/// A request the driver made besides placing orders.
#[derive(Clone, Debug)]
pub(crate) struct Probe {
    /// What was asked, for the summary.
    pub(crate) what: String,
    /// The HTTP status.
    pub(crate) status: u16,
    /// The response body.
    pub(crate) body: String,
}

impl Probe {
    fn new(what: impl Into<String>, (status, body): (u16, Bytes)) -> Self {
        Probe {
            what: what.into(),
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }
}

/// The MES dashboard queries the driver makes once the pipeline settled: filters and paging.
pub(crate) const DASHBOARD_QUERIES: &[&str] = &[
    "status=scheduled&overdue=true",
    "channel=api&per_page=2&page=2",
    "q=ORD-2026-0001&status=rejected",
    "overdue=maybe",
];

/// Everything one run produced.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// The scripted orders and what became of them.
    pub(crate) orders: Vec<OrderResult>,
    /// Extra requests the driver made (invalid order, mistyped path, dashboard queries), with the
    /// answers.
    pub(crate) probes: Vec<Probe>,
    /// Whether the pipeline settled: every order reached its end in MES and the CRM heard back.
    pub(crate) settled: bool,
    /// `GET /metrics` of each service, taken after the script.
    pub(crate) metrics: BTreeMap<Role, String>,
    /// `GET /debug/orders.json` of each service (its orders in flight), taken after the script.
    pub(crate) in_flight: BTreeMap<Role, String>,
    /// JSON log lines of each service.
    pub(crate) logs: BTreeMap<Role, Vec<String>>,
    /// Spans the embedded OTLP receiver got (empty with an external collector).
    pub(crate) spans: Vec<ReceivedSpan>,
    /// The external collector the services exported to, if any.
    pub(crate) collector: Option<String>,
    /// The broker.
    pub(crate) amqp_addr: String,
    /// How long the script took to settle.
    pub(crate) elapsed: Duration,
    /// Whether every service exited cleanly (code 0).
    pub(crate) clean_exit: bool,
    /// The broker's closing of the services' connections halfway through, when asked for.
    pub(crate) broker_close: Option<BrokerClose>,
    /// MES's database and the dashboard measured before and after its fix.
    pub(crate) database: DatabaseRun,
}

/// What the broker closed halfway through the script, and where the pipeline stood then.
#[derive(Clone, Debug)]
pub(crate) struct BrokerClose {
    /// The names of the connections closed, sorted.
    pub(crate) closed: Vec<String>,
    /// Orders placed before the close (the others were placed after it).
    pub(crate) placed_before: usize,
    /// Orders MES had finished when the close began (read before it).
    pub(crate) finished_before: usize,
}

/// The dashboard's filter the operators use most: EDI orders shipped, 20 a page.
pub(crate) const DASHBOARD_LOAD: &str = "status=shipped&channel=edi&per_page=20";

/// Dashboard requests per version of the page.
pub(crate) const DASHBOARD_RUNS: usize = 20;

/// MES's database in one run.
#[derive(Clone, Debug)]
pub(crate) struct DatabaseRun {
    /// The server, password hidden.
    pub(crate) url: String,
    /// The schema and the history loaded.
    pub(crate) prepared: Prepared,
    /// The dashboard as first written.
    pub(crate) first: Phase,
    /// The dashboard after the fix.
    pub(crate) fixed: Phase,
    /// How long the fix's migration (the index) took.
    pub(crate) migration: Duration,
    /// What went wrong while measuring.
    pub(crate) errors: Vec<String>,
}

/// The dashboard requests of one version of the page: the spans that started in this window
/// belong to it.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Phase {
    /// When the first request was sent, nanoseconds since the Unix epoch.
    pub(crate) start_unix_nano: u64,
    /// When the last answer came back.
    pub(crate) end_unix_nano: u64,
    /// Requests sent.
    pub(crate) requests: usize,
    /// Requests answered 200.
    pub(crate) ok: usize,
}

impl Phase {
    /// Whether a span that started at `unix_nano` belongs to this phase.
    pub(crate) fn contains(&self, unix_nano: u64) -> bool {
        (self.start_unix_nano..=self.end_unix_nano).contains(&unix_nano)
    }
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

/// Checks PostgreSQL, recreates MES's schema and loads its history.
pub(crate) async fn prepare_database(
    url: &str,
    schema: &str,
) -> Result<(sqlx::PgPool, Prepared), PipelineError> {
    let no_database = |error: String| PipelineError::NoDatabase {
        url: redact(url),
        error,
    };
    let connect = mes_db::connect(url, schema, 2, Duration::from_secs(5));
    let pool = match tokio::time::timeout(Duration::from_secs(6), connect).await {
        Ok(Ok(pool)) => pool,
        Ok(Err(e)) => return Err(no_database(e.to_string())),
        Err(_) => return Err(no_database("no answer within 6 s".to_owned())),
    };
    let prepared = mes_db::prepare(&pool, schema)
        .await
        .map_err(|e| PipelineError::Other(format!("cannot prepare MES's database: {e}")))?;
    Ok((pool, prepared))
}

/// [`DASHBOARD_RUNS`] requests of the dashboard, one at a time.
async fn dashboard_phase(driver: &Driver, mes: &str, errors: &mut Vec<String>) -> Phase {
    let mut phase = Phase {
        start_unix_nano: unix_nanos(),
        ..Phase::default()
    };
    for i in 0..DASHBOARD_RUNS {
        let page = 1 + i % 5;
        let target = format!("{mes}/dashboard/orders?{DASHBOARD_LOAD}&page={page}");
        phase.requests += 1;
        match driver.get(&target).await {
            Ok((200, _)) => phase.ok += 1,
            Ok((status, body)) => errors.push(format!(
                "{target}: {status} {}",
                String::from_utf8_lossy(&body)
            )),
            Err(e) => errors.push(e),
        }
    }
    phase.end_unix_nano = unix_nanos();
    phase
}

/// Requests the dashboard [`DASHBOARD_RUNS`] times as first written, applies the fix (the index's
/// migration, then MES's fixed page), and requests it as many times again.
async fn measure_dashboard(
    driver: &Driver,
    mes: &str,
    pool: &sqlx::PgPool,
    url: String,
    prepared: Prepared,
) -> DatabaseRun {
    let mut errors = Vec::new();
    let first = dashboard_phase(driver, mes, &mut errors).await;
    let begin = std::time::Instant::now();
    if let Err(e) = mes_db::migrate(pool, mes_db::DASHBOARD_INDEX).await {
        errors.push(format!("the index's migration failed: {e}"));
    }
    let migration = begin.elapsed();
    match driver
        .request(
            http::Method::POST,
            &format!("{mes}/internal/dashboard?version=fixed"),
            &[],
            None,
        )
        .await
    {
        Ok((200, _)) => {}
        Ok((status, _)) => errors.push(format!("switching the dashboard answered {status}")),
        Err(e) => errors.push(e),
    }
    let fixed = dashboard_phase(driver, mes, &mut errors).await;
    DatabaseRun {
        url,
        prepared,
        first,
        fixed,
        migration,
        errors,
    }
}

struct Service {
    role: Role,
    child: Child,
    stdin: Option<ChildStdin>,
    port: u16,
    stderr: Arc<Mutex<Vec<String>>>,
}

type Shared<T> = Arc<Mutex<T>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The environment variable that, when set, sends the services' telemetry to an external collector.
fn external_collector() -> Option<String> {
    [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .iter()
    .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
}

/// Checks the broker, declares the topology and empties its queues.
async fn prepare_broker(addr: &str, topology: &Topology) -> Result<(), PipelineError> {
    let no_broker = |error: String| PipelineError::NoBroker {
        addr: redact(addr),
        error,
    };
    let connect = Connection::connect(addr, ConnectionProperties::default());
    let connection = match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(no_broker(e.to_string())),
        Err(_) => return Err(no_broker("no answer within 5 s".to_owned())),
    };
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| no_broker(e.to_string()))?;
    crate::amqp::declare_topology(&channel, topology)
        .await
        .map_err(|e| {
            PipelineError::Other(format!("cannot declare the exchanges and queues: {e}"))
        })?;
    crate::amqp::purge(&channel, topology)
        .await
        .map_err(|e| PipelineError::Other(format!("cannot purge the queues: {e}")))?;
    let _ = connection.close(200, "ready".into()).await;
    Ok(())
}

async fn delete_topology(addr: &str, topology: &Topology) {
    if let Ok(connection) = Connection::connect(addr, ConnectionProperties::default()).await {
        if let Ok(channel) = connection.create_channel().await {
            crate::amqp::delete(&channel, topology).await;
        }
        let _ = connection.close(200, "done".into()).await;
    }
}

/// `amqp://user:secret@host` → `amqp://user:***@host`.
pub(crate) fn redact(addr: &str) -> String {
    match (addr.find("://"), addr.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &addr[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &addr[..scheme + 3], &addr[at..]),
                None => addr.to_owned(),
            }
        }
        _ => addr.to_owned(),
    }
}

async fn spawn(
    launch: &Launch,
    role: Role,
    options: &Options,
    otlp_env: &[(String, String)],
    crm_url: Option<&str>,
    logs: Shared<BTreeMap<Role, Vec<String>>>,
) -> Result<Service, PipelineError> {
    let mut command = tokio::process::Command::from(launch(role));
    let port = if options.serve {
        serve_port(role, options.port_base.unwrap_or(DEFAULT_PORT_BASE))
    } else {
        0
    };
    command
        .env(ENV_ROLE, role.name())
        .env(ENV_PORT, port.to_string())
        .env(ENV_AMQP_ADDR, amqp_addr())
        .env(ENV_AMQP_PREFIX, &options.amqp_prefix)
        .env("ORDERSCOPE_LOG_FORMAT", "json")
        // `init(name)` names the service; a global OTEL_SERVICE_NAME must not rename all four.
        .env_remove("OTEL_SERVICE_NAME")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if std::env::var_os("RUST_LOG").is_none() {
        command.env("RUST_LOG", "info,lapin=warn,amq_protocol=warn");
    }
    if otlp_env
        .iter()
        .any(|(k, _)| k == "OTEL_EXPORTER_OTLP_ENDPOINT")
    {
        // Our receiver: nothing inherited may send the spans elsewhere or drop them.
        for k in [
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_TRACES_EXPORTER",
            "OTEL_TRACES_SAMPLER",
            "OTEL_TRACES_SAMPLER_ARG",
            "OTEL_SDK_DISABLED",
        ] {
            command.env_remove(k);
        }
    }
    for (k, v) in otlp_env {
        command.env(k, v);
    }
    if let Some(url) = crm_url {
        command.env(ENV_CRM_URL, url);
    }
    let mut child = command.spawn().map_err(|e| PipelineError::ServiceFailed {
        role,
        reason: format!("cannot start the process: {e}"),
    })?;

    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| PipelineError::Other("no stdout pipe".into()))?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| PipelineError::Other("no stderr pipe".into()))?;
    let stdin = child.stdin.take();
    let (ready_tx, ready_rx) = oneshot::channel::<u16>();

    let mut log_file = match &options.log_dir {
        Some(dir) => {
            let path = dir.join(format!("{}.jsonl", role.name()));
            Some(tokio::fs::File::create(&path).await.map_err(|e| {
                PipelineError::Other(format!("cannot create {}: {e}", path.display()))
            })?)
        }
        None => None,
    };
    tokio::spawn(async move {
        let mut ready_tx = Some(ready_tx);
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.strip_prefix(READY_PREFIX) {
                let port = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok());
                if let (Some(tx), Some(port)) = (ready_tx.take(), port) {
                    let _ = tx.send(port);
                }
            } else if line.starts_with('{') {
                if let Some(file) = log_file.as_mut() {
                    let _ = file.write_all(line.as_bytes()).await;
                    let _ = file.write_all(b"\n").await;
                }
                lock(&logs).entry(role).or_default().push(line);
            }
        }
        if let Some(file) = log_file.as_mut() {
            let _ = file.flush().await;
        }
    });
    let stderr_lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&stderr_lines);
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut sink = lock(&sink);
            if sink.len() >= 200 {
                sink.remove(0);
            }
            sink.push(line);
        }
    });

    let tail = |lines: &Arc<Mutex<Vec<String>>>| {
        let lines = lock(lines);
        let start = lines.len().saturating_sub(8);
        lines[start..].join("\n")
    };
    tokio::select! {
        ready = ready_rx => match ready {
            Ok(port) => Ok(Service { role, child, stdin, port, stderr: stderr_lines }),
            Err(_) => {
                let status = child.wait().await.ok();
                Err(PipelineError::ServiceFailed {
                    role,
                    reason: format!("exited before it was ready ({status:?}):\n{}", tail(&stderr_lines)),
                })
            }
        },
        () = tokio::time::sleep(Duration::from_secs(60)) => Err(PipelineError::ServiceFailed {
            role,
            reason: format!("not ready within 60 s:\n{}", tail(&stderr_lines)),
        }),
    }
}

/// A plain HTTP client: the driver plays the browsers and the partners, who run no orderscope.
struct Driver {
    client: HyperClient<HttpConnector, Full<Bytes>>,
}

impl Driver {
    fn new() -> Self {
        Driver {
            client: HyperClient::builder(TokioExecutor::new()).build_http(),
        }
    }

    async fn request(
        &self,
        method: http::Method,
        url: &str,
        headers: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Bytes), String> {
        let mut builder = http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            builder = builder.header(*k, v);
        }
        if body.is_some() {
            builder = builder.header("content-type", "application/json");
        }
        let request = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(Duration::from_secs(60), self.client.request(request))
            .await
            .map_err(|_| format!("{url}: no answer within 60 s"))?
            .map_err(|e| format!("{url}: {e}"))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    }

    async fn get(&self, url: &str) -> Result<(u16, Bytes), String> {
        self.request(http::Method::GET, url, &[], None).await
    }
}

/// A W3C `traceparent` of the partner's own trace (the B2B API links it, it does not continue it).
fn partner_traceparent(seed: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(1);
    let mut h: u128 = 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834 ^ nanos;
    for b in seed.bytes() {
        h = (h ^ u128::from(b)).wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    let span = (h as u64) | 1;
    format!("00-{h:032x}-{span:016x}-01")
}

/// Runs the whole pipeline once.
pub(crate) async fn run(launch: &Launch, options: &Options) -> Result<Outcome, PipelineError> {
    let addr = amqp_addr();
    let topology = Topology::with_prefix(options.amqp_prefix.clone());
    prepare_broker(&addr, &topology).await?;
    let db_url = mes_db::database_url();
    let schema = mes_db::schema_for_prefix(&options.amqp_prefix);
    let (pool, prepared) = prepare_database(&db_url, &schema).await?;
    eprintln!(
        "PostgreSQL at {}: {} past orders with {} lines loaded into {schema} in {:.1} s.",
        redact(&db_url),
        prepared.orders,
        prepared.lines,
        prepared.seed.as_secs_f64()
    );
    eprintln!(
        "RabbitMQ at {}: ready. Starting shop, api, crm and mes…",
        redact(&addr)
    );

    let collector = if options.embedded_receiver {
        None
    } else {
        external_collector()
    };
    let receiver =
        match collector {
            Some(_) => None,
            None => Some(OtlpReceiver::start().await.map_err(|e| {
                PipelineError::Other(format!("cannot start the OTLP receiver: {e}"))
            })?),
        };
    let mut otlp_env = vec![
        // Export often, so `serve` shows spans in the collector within a second.
        ("OTEL_BSP_SCHEDULE_DELAY".to_owned(), "500".to_owned()),
        // MES's schema.
        (mes_db::ENV_SCHEMA.to_owned(), schema.clone()),
    ];
    if let Some(receiver) = &receiver {
        otlp_env.push((
            "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(),
            receiver.http_endpoint(),
        ));
        otlp_env.push((
            "OTEL_EXPORTER_OTLP_PROTOCOL".to_owned(),
            "http/protobuf".to_owned(),
        ));
    }
    if let Some(dir) = &options.log_dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| PipelineError::Other(format!("{}: {e}", dir.display())))?;
    }

    let logs: Shared<BTreeMap<Role, Vec<String>>> = Arc::new(Mutex::new(BTreeMap::new()));
    let mut services: Vec<Service> = Vec::new();
    let started = async {
        for role in [Role::Crm, Role::Mes] {
            services.push(spawn(launch, role, options, &otlp_env, None, Arc::clone(&logs)).await?);
        }
        let crm_url = format!("http://127.0.0.1:{}", services[0].port);
        for role in [Role::Shop, Role::Api] {
            services.push(
                spawn(
                    launch,
                    role,
                    options,
                    &otlp_env,
                    Some(&crm_url),
                    Arc::clone(&logs),
                )
                .await?,
            );
        }
        Ok::<(), PipelineError>(())
    }
    .await;
    if let Err(e) = started {
        stop_all(&mut services).await;
        return Err(e);
    }
    let url = |role: Role| {
        let port = services
            .iter()
            .find(|s| s.role == role)
            .map(|s| s.port)
            .unwrap_or_default();
        format!("http://127.0.0.1:{port}")
    };

    let driver = Driver::new();
    let begin = std::time::Instant::now();
    let close_prefix = options
        .close_connections_midway
        .then_some(options.amqp_prefix.as_str());
    let result = drive(&driver, &url, close_prefix).await;
    let (placed, probes, broker_close) = match result {
        Ok(r) => r,
        Err(e) => {
            stop_all(&mut services).await;
            return Err(PipelineError::Other(e));
        }
    };

    // Wait for the pipeline to settle: MES finished every order, the CRM heard back about those
    // whose status can reach it. The services answer when it happened (no polling).
    let expected_crm = SCRIPT
        .iter()
        .filter(|o| o.expect.confirmed_to_crm())
        .count();
    let mes_done = driver
        .get(&format!(
            "{}/internal/wait?finished={}&timeout_ms=60000",
            url(Role::Mes),
            SCRIPT.len()
        ))
        .await
        .is_ok_and(|(s, _)| s == 200);
    let crm_done = driver
        .get(&format!(
            "{}/internal/wait?statuses={expected_crm}&timeout_ms=30000",
            url(Role::Crm)
        ))
        .await
        .is_ok_and(|(s, _)| s == 200);
    let elapsed = begin.elapsed();

    // The operators' dashboard: filters and paging over what MES knows now.
    let mut probes = probes;
    for query in DASHBOARD_QUERIES {
        let url = format!("{}/dashboard/orders?{query}", url(Role::Mes));
        match driver.get(&url).await {
            Ok(answer) => probes.push(Probe::new(format!("GET /dashboard/orders?{query}"), answer)),
            Err(e) => probes.push(Probe {
                what: format!("GET /dashboard/orders?{query}"),
                status: 0,
                body: e,
            }),
        }
    }

    // The dashboard on the history, as first written and then fixed.
    let database =
        measure_dashboard(&driver, &url(Role::Mes), &pool, redact(&db_url), prepared).await;

    // What the services know about each order. MES and the CRM count what they handled, and a
    // delivery in flight when the broker closed a connection is handled twice (at least once): so
    // wait, too, until every order has reached its end in both.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let orders = loop {
        let orders = collect_orders(&driver, &url, &placed).await;
        let ended = orders.iter().all(|o| {
            o.observed().is_some()
                && (!o.scripted.expect.confirmed_to_crm()
                    || o.crm_status.as_deref().is_some_and(|s| s != "accepted"))
        });
        if ended || std::time::Instant::now() > deadline {
            break orders;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut metrics = BTreeMap::new();
    let mut in_flight = BTreeMap::new();
    for service in &services {
        // A handler records the end of an order before the runner settles its delivery: give the
        // settle (up to 10 s) to land before taking the metrics.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let Ok((200, body)) = driver.get(&format!("{}/metrics", url(service.role))).await
            else {
                break;
            };
            let text = String::from_utf8_lossy(&body).into_owned();
            let settled = unsettled(&text) == 0.0;
            metrics.insert(service.role, text);
            if settled || std::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if let Ok((200, body)) = driver
            .get(&format!("{}/debug/orders.json", url(service.role)))
            .await
        {
            in_flight.insert(service.role, String::from_utf8_lossy(&body).into_owned());
        }
    }

    if options.serve {
        crate::summary::print_serving(
            &services
                .iter()
                .map(|s| (s.role, s.port))
                .collect::<Vec<_>>(),
            collector.as_deref(),
        );
        match &options.serve_until {
            Some(stop) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    () = stop.notified() => {}
                }
            }
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        eprintln!("\nstopping the services…");
    }

    let clean_exit = stop_all(&mut services).await;
    if options.delete_topology {
        delete_topology(&addr, &topology).await;
        mes_db::drop_schema(&pool, &schema).await;
    }
    pool.close().await;
    let spans = receiver
        .as_ref()
        .map(OtlpReceiver::spans)
        .unwrap_or_default();
    let logs = std::mem::take(&mut *lock(&logs));
    Ok(Outcome {
        broker_close,
        orders,
        probes,
        settled: mes_done && crm_done,
        metrics,
        in_flight,
        logs,
        spans,
        collector,
        amqp_addr: redact(&addr),
        elapsed,
        clean_exit,
        database,
    })
}

/// What the CRM and MES know about each scripted order now.
async fn collect_orders(
    driver: &Driver,
    url: &dyn Fn(Role) -> String,
    placed: &[u16],
) -> Vec<OrderResult> {
    let mut orders = Vec::new();
    for (scripted, placed_status) in SCRIPT.iter().zip(placed.iter().copied()) {
        let crm_status = match driver
            .get(&format!("{}/orders/{}", url(Role::Crm), scripted.id))
            .await
        {
            Ok((200, body)) => serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["status"].as_str().map(str::to_owned)),
            _ => None,
        };
        let mes = match driver
            .get(&format!(
                "{}/dashboard/orders/{}",
                url(Role::Mes),
                scripted.id
            ))
            .await
        {
            Ok((200, body)) => serde_json::from_slice::<MesView>(&body).ok(),
            _ => None,
        };
        orders.push(OrderResult {
            scripted: *scripted,
            placed_status,
            crm_status,
            mes,
        });
    }
    orders
}

/// The sum of `messaging_unsettled_messages` in a Prometheus text exposition.
fn unsettled(text: &str) -> f64 {
    text.lines()
        .filter(|line| {
            line.strip_prefix("messaging_unsettled_messages")
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Places the scripted orders, then makes the probe requests. With `close_prefix`, has the broker
/// close the services' connections once the first half of the orders has ended, before the second
/// half is placed (see [`close_midway`]).
async fn drive(
    driver: &Driver,
    url: &dyn Fn(Role) -> String,
    close_prefix: Option<&str>,
) -> Result<(Vec<u16>, Vec<Probe>, Option<BrokerClose>), String> {
    let mut placed = Vec::new();
    let mut broker_close = None;
    let close_at = close_prefix.map(|_| SCRIPT.len() / 2);
    for (i, order) in SCRIPT.iter().enumerate() {
        if close_at == Some(i)
            && let Some(prefix) = close_prefix
        {
            // The orders so far have ended in MES and the CRM, so no handler holds a delivery
            // when the connections close: nothing is handled twice, and the counts the test
            // checks stay exact. The rest are placed after the close.
            let confirmed = SCRIPT[..i]
                .iter()
                .filter(|o| o.expect.confirmed_to_crm())
                .count();
            for (role, key, n) in [
                (Role::Mes, "finished", i),
                (Role::Crm, "statuses", confirmed),
            ] {
                let (status, body) = driver
                    .get(&format!(
                        "{}/internal/wait?{key}={n}&timeout_ms=30000",
                        url(role)
                    ))
                    .await?;
                if status != 200 {
                    return Err(format!(
                        "{} did not reach {key}={n} before the broker close: {}",
                        role.name(),
                        String::from_utf8_lossy(&body)
                    ));
                }
            }
            broker_close = Some(close_midway(driver, url, prefix, i).await?);
        }
        let now = SystemTime::now();
        let body = PlaceOrder {
            order_id: Some(order.id.to_owned()),
            items: order
                .items
                .iter()
                .map(|(sku, qty)| Item {
                    sku: (*sku).to_owned(),
                    qty: *qty,
                })
                .collect(),
            deadline: order.deadline.map(|d| rfc3339(now + d)),
            priority: Some(order.priority.to_owned()),
        };
        let body = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
        let (target, headers) = match order.via {
            Role::Api => (
                format!("{}/api/v1/orders", url(Role::Api)),
                vec![("traceparent", partner_traceparent(order.id))],
            ),
            _ => (format!("{}/orders", url(Role::Shop)), Vec::new()),
        };
        let (status, _) = driver
            .request(http::Method::POST, &target, &headers, Some(body))
            .await?;
        placed.push(status);
    }

    // A partner's order with a negative quantity, a mistyped path, a GET where only POST is served.
    let mut probes = Vec::new();
    let bad = br#"{"order_id":"ORD-2026-000299","items":[{"sku":"BOLT","qty":-3}]}"#.to_vec();
    let api = format!("{}/api/v1/orders", url(Role::Api));
    let answer = driver
        .request(http::Method::POST, &api, &[], Some(bad))
        .await?;
    probes.push(Probe::new("POST /api/v1/orders (qty -3)", answer));
    let typo = format!("{}/api/v1/order", url(Role::Api));
    let answer = driver
        .request(http::Method::POST, &typo, &[], Some(b"{}".to_vec()))
        .await?;
    probes.push(Probe::new("POST /api/v1/order (mistyped)", answer));
    let answer = driver.get(&format!("{}/orders", url(Role::Shop))).await?;
    probes.push(Probe::new("GET /orders on the shop", answer));
    Ok((placed, probes, broker_close))
}

/// Has the broker close every connection of the CRM and MES before MES has finished: the orders
/// placed after it cannot have been finished before it. Waits (up to 10 s) until every
/// connection in [`CONNECTION_ROLES`](crate::amqp::CONNECTION_ROLES) is open, reads how many
/// orders MES has finished, closes them all, and fails unless each was closed.
async fn close_midway(
    driver: &Driver,
    url: &dyn Fn(Role) -> String,
    prefix: &str,
    placed_before: usize,
) -> Result<BrokerClose, String> {
    let mut expected: Vec<String> = crate::amqp::CONNECTION_ROLES
        .iter()
        .map(|role| format!("{prefix}{role}"))
        .collect();
    expected.sort();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let open = crate::amqp::connections_named(prefix).await?;
        if expected.iter().all(|e| open.iter().any(|(_, n)| n == e)) {
            break;
        }
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "not every service connection is open to be closed: expected {expected:?}, open {open:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, body) = driver
        .get(&format!(
            "{}/internal/wait?finished=0&timeout_ms=0",
            url(Role::Mes)
        ))
        .await?;
    let finished_before = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["finished"].as_u64())
        .ok_or("MES did not say how many orders it finished")? as usize;
    let closed = crate::amqp::close_connections_named(prefix).await?;
    if let Some(missing) = expected.iter().find(|e| !closed.contains(e)) {
        return Err(format!("connection {missing} was not closed: {closed:?}"));
    }
    Ok(BrokerClose {
        closed,
        placed_before,
        finished_before,
    })
}

/// Closes every service's stdin (they shut down and flush), waits for them; kills what hangs.
/// Returns whether all exited with code 0.
async fn stop_all(services: &mut [Service]) -> bool {
    for service in services.iter_mut() {
        drop(service.stdin.take());
    }
    let mut clean = true;
    for service in services.iter_mut() {
        match tokio::time::timeout(Duration::from_secs(20), service.child.wait()).await {
            Ok(Ok(status)) if status.success() => {}
            Ok(Ok(status)) => {
                clean = false;
                let stderr = lock(&service.stderr).join("\n");
                eprintln!("{} exited with {status}:\n{stderr}", service.role.name());
            }
            Ok(Err(e)) => {
                clean = false;
                eprintln!("{}: {e}", service.role.name());
            }
            Err(_) => {
                clean = false;
                eprintln!(
                    "{} did not stop within 20 s; killing it",
                    service.role.name()
                );
                let _ = service.child.kill().await;
            }
        }
    }
    clean
}
