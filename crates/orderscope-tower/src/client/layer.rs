//! [`ClientLayer`]: configuration of the client middleware, and its cache of metric handles.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use metrics::{Histogram, Label, SharedString};
use opentelemetry::global::BoxedTracer;
use opentelemetry::trace::{Span, Tracer, TracerProvider};
use orderscope_context::LateTracer;
use orderscope_metrics::{KeyedHandle, Overflow, SeriesBudget, SeriesLimit};
use tower_layer::Layer;

use super::{BaggageEgress, Client};
use crate::common::MethodKind;
use crate::names::{
    CLIENT_REQUEST_DURATION, ERROR_TYPE, HTTP_REQUEST_METHOD, HTTP_RESPONSE_STATUS_CODE,
    SERVER_ADDRESS,
};
use crate::server::DEFAULT_SERIES_LIMIT;

/// Most hosts one layer tracks by name.
const MAX_HOSTS: usize = 1_024;

/// How a client request ended, for `error_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum ClientError {
    /// A response below 400.
    None,
    /// A 4xx or 5xx response: `error_type` is the status code.
    Status,
    /// The inner service failed (connection refused, timeout, …) in a way it does not say.
    Service,
    /// The request timed out (`error.type="timeout"`); told apart by the reqwest middleware.
    #[cfg_attr(not(feature = "reqwest"), allow(dead_code))]
    Timeout,
    /// No connection could be made (`error.type="connect"`); told apart by the reqwest middleware.
    #[cfg_attr(not(feature = "reqwest"), allow(dead_code))]
    Connect,
    /// The request was dropped before the response arrived.
    Cancelled,
}

impl ClientError {
    pub(crate) fn static_str(self) -> Option<&'static str> {
        match self {
            Self::None | Self::Status => None,
            Self::Service => Some("_OTHER"),
            Self::Timeout => Some("timeout"),
            Self::Connect => Some("connect"),
            Self::Cancelled => Some("cancelled"),
        }
    }
}

const SLOTS: usize = 16;

/// Labels of the duration overflow series.
const OVERFLOW_LABELS: &[&str] = &[
    HTTP_REQUEST_METHOD,
    SERVER_ADDRESS,
    HTTP_RESPONSE_STATUS_CODE,
];

/// One duration series; `None` when it went to the overflow series.
type Series = Option<KeyedHandle<Histogram>>;

/// Duration histograms of one server address.
#[derive(Debug)]
pub(crate) struct HostEntry {
    label: SharedString,
    slots: [OnceLock<(u32, Series)>; SLOTS],
    more: Mutex<Vec<(u32, Arc<Series>)>>,
}

impl HostEntry {
    fn new(label: SharedString) -> Self {
        Self {
            label,
            slots: Default::default(),
            more: Mutex::new(Vec::new()),
        }
    }
}

/// The settings of a [`ClientLayer`].
#[derive(Clone, Debug)]
pub(crate) struct ClientConfig {
    pub(crate) propagate: bool,
    pub(crate) tracing: bool,
    pub(crate) series_limit: usize,
    pub(crate) tracer: Option<Arc<BoxedTracer>>,
    pub(crate) egress: BaggageEgress,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            propagate: true,
            tracing: true,
            series_limit: DEFAULT_SERIES_LIMIT,
            tracer: None,
            egress: BaggageEgress::default(),
        }
    }
}

/// What every service built by one layer shares.
///
/// Series are kept per host entry (slots scanned by a small key, like the server's route entries),
/// each a [`KeyedHandle`] bound to the recorder current when it records; the series limit and the
/// overflow series are the shared [`SeriesBudget`] and [`Overflow`].
#[derive(Debug)]
pub(crate) struct ClientShared {
    pub(crate) config: ClientConfig,
    tracer: LateTracer,
    hosts: RwLock<HashMap<Box<str>, Arc<HostEntry>>>,
    unknown: OnceLock<Arc<HostEntry>>,
    budget: SeriesBudget,
    overflow: Overflow<Histogram>,
}

impl ClientShared {
    fn new(config: ClientConfig) -> Self {
        let series_limit = config.series_limit;
        Self {
            tracer: match &config.tracer {
                Some(tracer) => LateTracer::fixed(tracer.clone()),
                None => LateTracer::global(crate::common::scope()),
            },
            config,
            hosts: RwLock::new(HashMap::new()),
            unknown: OnceLock::new(),
            budget: SeriesBudget::new(SeriesLimit::new(series_limit)),
            overflow: Overflow::new(),
        }
    }

    /// The tracer: the one set on the layer, else the global provider's, looked up until one is
    /// installed.
    #[inline]
    pub(crate) fn tracer(&self) -> &LateTracer {
        &self.tracer
    }

    /// The entry of a server address (`None`: the request named no host).
    pub(crate) fn host(&self, host: Option<&str>) -> Arc<HostEntry> {
        let Some(host) = host else {
            return self
                .unknown
                .get_or_init(|| Arc::new(HostEntry::new(SharedString::const_str("unknown"))))
                .clone();
        };
        if let Some(entry) = self
            .hosts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(host)
        {
            return entry.clone();
        }
        let mut hosts = self.hosts.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = hosts.get(host) {
            return entry.clone();
        }
        if hosts.len() >= MAX_HOSTS {
            return self
                .unknown
                .get_or_init(|| Arc::new(HostEntry::new(SharedString::const_str("unknown"))))
                .clone();
        }
        let entry = Arc::new(HostEntry::new(SharedString::from_owned(host.to_owned())));
        hosts.insert(Box::from(host), entry.clone());
        entry
    }

    /// Records one duration.
    pub(crate) fn record(
        &self,
        host: &HostEntry,
        method: MethodKind,
        status: u16,
        error: ClientError,
        seconds: f64,
    ) {
        let key =
            u32::from(status) | (u32::from(method as u8) << 16) | (u32::from(error as u8) << 24);
        for slot in &host.slots {
            let (slot_key, series) =
                slot.get_or_init(|| (key, self.new_histogram(host, method, status, error)));
            if *slot_key == key {
                return self.record_in(series, seconds);
            }
        }
        let series = {
            let mut more = host.more.lock().unwrap_or_else(PoisonError::into_inner);
            match more.iter().find(|(k, _)| *k == key) {
                Some((_, series)) => series.clone(),
                None => {
                    let series = Arc::new(self.new_histogram(host, method, status, error));
                    more.push((key, series.clone()));
                    series
                }
            }
        };
        self.record_in(&series, seconds);
    }

    #[inline]
    fn record_in(&self, series: &Series, seconds: f64) {
        match series {
            Some(series) => series.with(|h| h.record(seconds)),
            None => {
                self.overflow
                    .record(CLIENT_REQUEST_DURATION, OVERFLOW_LABELS, |h| {
                        h.record(seconds)
                    });
            }
        }
    }

    #[cold]
    fn new_histogram(
        &self,
        host: &HostEntry,
        method: MethodKind,
        status: u16,
        error: ClientError,
    ) -> Series {
        if !self.budget.try_acquire() {
            return None;
        }
        let mut labels = vec![
            Label::from_static_parts(HTTP_REQUEST_METHOD, method.as_str()),
            Label::new(SERVER_ADDRESS, host.label.clone()),
        ];
        if status != 0 {
            labels.push(Label::new(HTTP_RESPONSE_STATUS_CODE, status.to_string()));
        }
        match error {
            ClientError::None => {}
            ClientError::Status => labels.push(Label::new(ERROR_TYPE, status.to_string())),
            other => labels.push(Label::from_static_parts(
                ERROR_TYPE,
                other.static_str().unwrap_or("_OTHER"),
            )),
        }
        Some(KeyedHandle::new(metrics::Key::from_parts(
            CLIENT_REQUEST_DURATION,
            labels,
        )))
    }
}

/// Instruments an HTTP client (any `tower::Service<http::Request<B>>`, such as hyper-util's legacy
/// client): the `CLIENT` span, `http_client_request_duration_seconds`, and the propagation of the
/// current trace context and order.
///
/// Per request the layer
/// - opens the `CLIENT` span `{method}`, or `{method} {url.template}` when the request carries a
///   [`UrlTemplate`](super::UrlTemplate) extension, as a child of the current OpenTelemetry
///   context (the server span of the request being handled, with its order);
/// - injects `traceparent`, `tracestate` and `baggage` (the order fields and the other baggage
///   entries) into the request headers, unless the request carries [`NoPropagation`](super::NoPropagation)
///   (calls to third parties) or the layer was built with [`propagate(false)`](Self::propagate);
///   `baggage` only to hosts the [`BaggageEgress`] trusts (by default private addresses and
///   private names), so the order does not leave the company;
/// - records `http_client_request_duration_seconds` (labels `http_request_method`,
///   `server_address`, `http_response_status_code`, `error_type`) when the response head arrives.
///
/// 4xx and 5xx responses mark the span as `ERROR` with `error.type` set to the status code; a failed
/// inner service gives `error.type="_OTHER"`; a request dropped before its response gives
/// `error_type="cancelled"`.
///
/// # Example
///
/// ```
/// use http_body_util::Empty;
/// use bytes::Bytes;
/// use hyper_util::{client::legacy::Client, rt::TokioExecutor};
/// use orderscope_tower::ClientLayer;
/// use tower::ServiceBuilder;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let hyper = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
/// let client = ServiceBuilder::new().layer(ClientLayer::new()).service(hyper);
/// # let _ = client;
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ClientLayer {
    pub(crate) shared: Arc<ClientShared>,
}

impl Default for ClientLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientLayer {
    /// A layer that traces, measures and propagates every request.
    pub fn new() -> Self {
        Self {
            shared: Arc::new(ClientShared::new(ClientConfig::default())),
        }
    }

    fn rebuild(&self, change: impl FnOnce(&mut ClientConfig)) -> Self {
        let mut config = self.shared.config.clone();
        change(&mut config);
        Self {
            shared: Arc::new(ClientShared::new(config)),
        }
    }

    /// Whether to inject the trace context and the order into outgoing requests. Use `false` for a
    /// client that only calls third parties; mark single requests with
    /// [`NoPropagation`](super::NoPropagation) instead.
    ///
    /// Defaults to `true`.
    #[must_use]
    pub fn propagate(self, enabled: bool) -> Self {
        self.rebuild(|c| c.propagate = enabled)
    }

    /// Which hosts receive `baggage` (the order); every other host gets `traceparent` and
    /// `tracestate` only. See [`BaggageEgress`].
    ///
    /// Defaults to [`BaggageEgress::trusted_hosts`]: loopback and private addresses, `localhost`
    /// and single-label names.
    #[must_use]
    pub fn baggage_egress(self, egress: BaggageEgress) -> Self {
        self.rebuild(|c| c.egress = egress)
    }

    /// Whether to open the client span. With `false` the layer records the duration metric and still
    /// propagates the current context (unless propagation is off).
    ///
    /// Defaults to `true`.
    #[must_use]
    pub fn tracing(self, enabled: bool) -> Self {
        self.rebuild(|c| c.tracing = enabled)
    }

    /// Most series `http_client_request_duration_seconds` gets from this layer; further label sets
    /// are recorded in one overflow series whose label values are all `_overflow`, and each
    /// measurement recorded there counts in `orderscope_cardinality_overflow_total{metric}`. Clamped
    /// to `1..=2^20` like [`SeriesLimit::new`](orderscope_metrics::SeriesLimit::new).
    ///
    /// Defaults to [`DEFAULT_SERIES_LIMIT`].
    #[must_use]
    pub fn series_limit(self, limit: usize) -> Self {
        self.rebuild(|c| c.series_limit = limit)
    }

    /// Creates the client spans with a tracer from `provider` instead of the global provider.
    ///
    /// Defaults to the global provider as it is when the first request is sent.
    #[must_use]
    pub fn tracer_provider<P>(self, provider: &P) -> Self
    where
        P: TracerProvider,
        P::Tracer: Tracer + Send + Sync + 'static,
        <P::Tracer as Tracer>::Span: Span + Send + Sync + 'static,
    {
        let tracer = BoxedTracer::new(Box::new(provider.tracer_with_scope(crate::common::scope())));
        self.rebuild(|c| c.tracer = Some(Arc::new(tracer)))
    }
}

impl<S> Layer<S> for ClientLayer {
    type Service = Client<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Client::from_parts(inner, self.shared.clone())
    }
}
