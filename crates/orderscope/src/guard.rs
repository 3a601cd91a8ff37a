//! [`Telemetry`]: the handle `init` returns; flushes on shutdown and on drop.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;

use crate::config::ResolvedConfig;
use crate::delivery::Delivery;
use crate::error::ShutdownError;
use crate::queue::QueueState;

/// How often the Prometheus recorder's upkeep runs (histogram bucket maintenance).
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);
/// How long the private OTLP gRPC runtime gets to stop its connection tasks at shutdown.
const RUNTIME_STOP_TIMEOUT: Duration = Duration::from_millis(100);

/// The installed telemetry pipeline, returned by [`init`](crate::init) and
/// [`TelemetryBuilder::build`](crate::TelemetryBuilder::build).
///
/// Keep it alive for the life of the service. [`shutdown`](Self::shutdown) flushes pending spans
/// (and log records, when they are exported by OTLP) and stops the background threads; dropping
/// it does the same, ignoring errors. Both are bounded: they return after at most the shutdown
/// timeout (5 s unless set with
/// [`TelemetryBuilder::with_shutdown_timeout`](crate::TelemetryBuilder::with_shutdown_timeout))
/// plus about 100 ms, even when the collector does not answer; spans and log records are flushed
/// at the same time, each within that bound. Whatever is still queued then is lost.
///
/// The globals it installed (subscriber, tracer provider, propagators, metrics recorder) stay
/// installed after shutdown; spans ended afterwards are dropped and counted, log lines are still
/// written, but no longer exported by OTLP.
///
/// # Example
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let telemetry = orderscope::init("mes")?;
/// let app: axum::Router = axum::Router::new().merge(telemetry.metrics_router());
/// // ... serve `app` ...
/// telemetry.shutdown()?;
/// # Ok(()) }
/// ```
pub struct Telemetry {
    inner: Option<TelemetryInner>,
    prometheus: PrometheusHandle,
    config: ResolvedConfig,
}

pub(crate) struct TelemetryInner {
    pub(crate) provider: Option<SdkTracerProvider>,
    pub(crate) logger_provider: Option<SdkLoggerProvider>,
    /// Set at shutdown: events no longer become OTLP log records.
    pub(crate) logs_shut_down: Arc<AtomicBool>,
    pub(crate) queue: Arc<QueueState>,
    /// The span exports, when spans are exported.
    pub(crate) traces_delivery: Option<Arc<Delivery>>,
    /// The log record exports, when log records are exported by OTLP.
    pub(crate) logs_delivery: Option<Arc<Delivery>>,
    pub(crate) otlp_runtime: Option<OtlpRuntime>,
    pub(crate) upkeep: Option<Upkeep>,
    /// Samples the USE signals and the order tracker; stops when dropped.
    pub(crate) use_ticker: Option<orderscope_runtime::Ticker>,
}

impl fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Telemetry")
            .field("config", &self.config)
            .field("shut_down", &self.inner.is_none())
            .finish_non_exhaustive()
    }
}

impl Telemetry {
    /// Hands the USE tick thread to the guard, which stops it first at shutdown.
    pub(crate) fn set_use_ticker(&mut self, ticker: Option<orderscope_runtime::Ticker>) {
        if let Some(inner) = self.inner.as_mut() {
            inner.use_ticker = ticker;
        }
    }
}

impl Telemetry {
    pub(crate) fn new(
        inner: TelemetryInner,
        prometheus: PrometheusHandle,
        config: ResolvedConfig,
    ) -> Self {
        Self {
            inner: Some(inner),
            prometheus,
            config,
        }
    }

    /// An axum router serving `GET /metrics` in the Prometheus text format. Merge it into the
    /// service's router, or serve it on a separate port.
    ///
    /// Merged into a router wrapped with `ServerLayer`, its fallback measures the requests no
    /// route matched (`http_route="unmatched"`), which axum's merge would otherwise leave
    /// unmeasured (see `orderscope::tower::server::UnmatchedLayer`).
    pub fn metrics_router<S>(&self) -> axum::Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let router = self.prometheus_router();
        #[cfg(feature = "tower")]
        let router = router.layer(orderscope_tower::server::UnmatchedLayer::new());
        router
    }

    fn prometheus_router<S>(&self) -> axum::Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let handle = self.prometheus.clone();
        axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let body = crate::use_signals::render(&handle);
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        body,
                    )
                }
            }),
        )
    }

    /// The current metrics in the Prometheus text format (what `GET /metrics` returns).
    pub fn render(&self) -> String {
        crate::use_signals::render(&self.prometheus)
    }

    /// The handle of the installed Prometheus recorder. Clone it to render metrics elsewhere.
    pub fn prometheus_handle(&self) -> &PrometheusHandle {
        &self.prometheus
    }

    /// Describes orderscope's metrics (the catalogue's and the export counters) to the installed
    /// `metrics` recorder, and registers the export counters of this pipeline at zero so that
    /// dashboards and alerts see them before the first failure.
    ///
    /// [`init`](crate::init) calls it after installing its recorder. A service that installs a
    /// recorder itself after [`build_parts`](crate::TelemetryBuilder::build_parts) (orderscope's
    /// or its own) calls it after that.
    pub fn describe_metrics(&self) {
        crate::startup::describe_metrics(matches!(
            self.config.logs,
            crate::config::LogExport::Otlp(_)
        ));
    }

    /// The configuration that was resolved and installed.
    pub fn config(&self) -> &ResolvedConfig {
        &self.config
    }

    /// Exports the spans (and log records, when they are exported by OTLP) queued so far and
    /// waits for the export (at most 5 s, the SDK's bound).
    ///
    /// # Errors
    ///
    /// [`ShutdownError::Timeout`] when the export did not finish in time,
    /// [`ShutdownError::Export`] when it failed.
    pub fn force_flush(&self) -> Result<(), ShutdownError> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        let (traces, logs) = both(
            inner,
            SdkTracerProvider::force_flush,
            SdkLoggerProvider::force_flush,
        );
        first_error(traces, logs, Duration::from_secs(5))
    }

    /// Flushes pending spans and stops the background threads, within the shutdown timeout
    /// (plus about 100 ms). Blocks the calling thread meanwhile: from async code, use
    /// [`shutdown_async`](Self::shutdown_async).
    ///
    /// What could not be delivered is logged as one WARN line and returned. Only telemetry is
    /// lost then: a service may log the error and still end with success.
    ///
    /// # Errors
    ///
    /// [`ShutdownError::NotDelivered`] when spans or log records were not delivered in time
    /// (how many, where to, and why: "no answer" or the last export error),
    /// [`ShutdownError::Timeout`] when the flush timed out with nothing known to be pending,
    /// [`ShutdownError::Export`] when the final export failed. Either way everything is
    /// stopped when this returns.
    pub fn shutdown(mut self) -> Result<(), ShutdownError> {
        self.shutdown_inner()
    }

    /// [`shutdown`](Self::shutdown) for async code: the flush runs on a thread of its own, so no
    /// runtime worker is blocked for the flush bound (a current-thread runtime keeps serving
    /// its other tasks meanwhile).
    ///
    /// # Errors
    ///
    /// As [`shutdown`](Self::shutdown).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let telemetry = orderscope::init("mes")?;
    /// // ... serve until a shutdown signal ...
    /// if let Err(error) = telemetry.shutdown_async().await {
    ///     // Already logged as a WARN line; only telemetry was lost.
    ///     eprintln!("{error}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn shutdown_async(mut self) -> Result<(), ShutdownError> {
        let Some(inner) = self.inner.take() else {
            return Ok(());
        };
        let config = self.config.clone();
        let (done, result) = tokio::sync::oneshot::channel();
        let mut detached = Telemetry {
            inner: Some(inner),
            prometheus: self.prometheus.clone(),
            config,
        };
        let spawned = std::thread::Builder::new()
            .name("orderscope-shutdown".to_owned())
            .spawn(move || {
                let _ = done.send(detached.shutdown_inner());
            });
        match spawned {
            Ok(_) => result.await.unwrap_or_else(|_| {
                Err(ShutdownError::Export(
                    "the shutdown thread panicked".to_owned(),
                ))
            }),
            // No thread: the pipeline was shut down (blocking) when the closure was dropped.
            Err(error) => Err(ShutdownError::Export(format!(
                "cannot start the shutdown thread: {error}"
            ))),
        }
    }

    fn shutdown_inner(&mut self) -> Result<(), ShutdownError> {
        let Some(mut inner) = self.inner.take() else {
            return Ok(());
        };
        let timeout = self.config.shutdown_timeout;
        // The sampling thread first: it writes metrics and stall lines.
        drop(inner.use_ticker.take());
        let failures_before = (
            inner.traces_delivery.as_ref().map(|d| d.failures()),
            inner.logs_delivery.as_ref().map(|d| d.failures()),
        );
        inner.logs_shut_down.store(true, Ordering::Relaxed);
        let (traces, logs) = both(
            &inner,
            |provider| provider.shutdown_with_timeout(timeout),
            |provider| provider.shutdown_with_timeout(timeout),
        );
        // Say what was not delivered, where to and why, when that is known: the SDK reports a
        // flush that timed out, but not the exports that failed.
        let undelivered: Vec<String> = [
            inner
                .traces_delivery
                .as_ref()
                .zip(failures_before.0)
                .and_then(|(d, before)| d.undelivered(inner.queue.queued(), timeout, before)),
            inner
                .logs_delivery
                .as_ref()
                .zip(failures_before.1)
                .and_then(|(d, before)| d.undelivered(0, timeout, before)),
        ]
        .into_iter()
        .flatten()
        .collect();
        let result = if undelivered.is_empty() {
            first_error(traces, logs, timeout)
        } else {
            Err(ShutdownError::NotDelivered(undelivered.join("; ")))
        };
        if let Err(error) = &result {
            tracing::warn!(target: "orderscope", "telemetry not flushed at shutdown: {error}");
        }
        inner.queue.mark_shut_down();
        if let Some(upkeep) = inner.upkeep.take() {
            upkeep.stop();
        }
        if let Some(runtime) = inner.otlp_runtime.take() {
            runtime.stop();
        }
        result
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        let _ = self.shutdown_inner();
    }
}

/// Runs `traces` on the tracer provider and `logs` on the logger provider at the same time (the
/// latter on a scoped thread), so each gets the whole bound and both together take no longer
/// than the slower one. When no thread can be started, runs them one after the other.
fn both(
    inner: &TelemetryInner,
    traces: impl FnOnce(&SdkTracerProvider) -> OTelSdkResult,
    logs: impl Fn(&SdkLoggerProvider) -> OTelSdkResult + Sync,
) -> (Option<OTelSdkResult>, Option<OTelSdkResult>) {
    let Some(logger_provider) = &inner.logger_provider else {
        return (inner.provider.as_ref().map(traces), None);
    };
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("orderscope-flush-logs".to_owned())
            .spawn_scoped(scope, || logs(logger_provider));
        let traces = inner.provider.as_ref().map(traces);
        let logs = match thread {
            Ok(thread) => thread.join().unwrap_or_else(|_| {
                Err(OTelSdkError::InternalFailure(
                    "flushing log records panicked".to_owned(),
                ))
            }),
            Err(_) => logs(logger_provider),
        };
        (traces, Some(logs))
    })
}

/// The first error of the two results, spans first.
fn first_error(
    traces: Option<OTelSdkResult>,
    logs: Option<OTelSdkResult>,
    timeout: Duration,
) -> Result<(), ShutdownError> {
    traces
        .into_iter()
        .chain(logs)
        .find_map(Result::err)
        .map_or(Ok(()), |e| Err(sdk_error(e, timeout)))
}

fn sdk_error(error: OTelSdkError, timeout: Duration) -> ShutdownError {
    match error {
        OTelSdkError::Timeout(d) => ShutdownError::Timeout(d),
        other => {
            let message = other.to_string();
            // The provider aggregates processor errors into one message.
            if message.contains("Timeout") {
                ShutdownError::Timeout(timeout)
            } else {
                ShutdownError::Export(message)
            }
        }
    }
}

/// A private single-threaded tokio runtime on its own thread, for the OTLP gRPC channel.
pub(crate) struct OtlpRuntime {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl OtlpRuntime {
    pub(crate) fn start() -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("orderscope-otlp".to_owned())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
                runtime.shutdown_timeout(RUNTIME_STOP_TIMEOUT);
            })?;
        Ok(Self {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub(crate) fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    pub(crate) fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for OtlpRuntime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The thread that runs the Prometheus recorder's upkeep every [`UPKEEP_INTERVAL`].
pub(crate) struct Upkeep {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl Upkeep {
    pub(crate) fn start(handle: PrometheusHandle) -> io::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("orderscope-metrics-upkeep".to_owned())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(UPKEEP_INTERVAL)
                {
                    handle.run_upkeep();
                }
            })?;
        Ok(Self { stop, thread })
    }

    pub(crate) fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}
