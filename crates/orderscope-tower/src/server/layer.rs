//! [`ServerLayer`]: configuration of the server middleware.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use opentelemetry::global::BoxedTracer;
use opentelemetry::trace::{Span, Tracer, TracerProvider};
use orderscope_context::{LateTracer, Propagation};
use tower_layer::Layer;

use super::Server;
use super::hook::{DefaultOnRequest, DefaultOnResponse, OnRequest, OnResponse};
use super::route::{LabelDef, LastRoute, MetricsShared, RouteTable};
use super::url::DEFAULT_REDACTED_QUERY_KEYS;
use crate::common::scope;

/// Default of [`ServerLayer::series_limit`].
pub const DEFAULT_SERIES_LIMIT: usize = orderscope_metrics::SeriesLimit::DEFAULT.get();

/// Most routes one layer tracks by name; a router with more folds the rest into `unmatched`.
const MAX_ROUTES: usize = 4_096;

/// Most extra labels ([`ServerLayer::label_from`]).
pub const MAX_EXTRA_LABELS: usize = 4;

/// Most values of one extra label.
pub const MAX_EXTRA_LABEL_VALUES: usize = 255;

/// Label names the layer sets itself.
const RESERVED_LABELS: [&str; 4] = [
    "http_request_method",
    "http_route",
    "http_response_status_code",
    "error_type",
];

/// Configuration, fixed once the layer is built.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) propagation: Propagation,
    pub(crate) skip_paths: Vec<Cow<'static, str>>,
    pub(crate) catch_panic: bool,
    pub(crate) tracing: bool,
    pub(crate) series_limit: usize,
    pub(crate) labels: Vec<LabelDef>,
    pub(crate) tracer: Option<Arc<BoxedTracer>>,
    pub(crate) record_query: bool,
    pub(crate) redact_query_keys: Vec<Cow<'static, str>>,
    pub(crate) trust_forwarded_scheme: bool,
}

/// What every service instance built by one layer shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) untrusted: bool,
    pub(crate) routes: RouteTable,
    tracer: LateTracer,
    /// The first `server.address` seen: most services answer to one name, so requests to it
    /// share one string instead of copying it.
    host: OnceLock<opentelemetry::StringValue>,
}

impl Shared {
    fn new(config: Config) -> Self {
        // The clock calibrates on first use: do it now rather than in the first request.
        let _ = quanta::Instant::now();
        let metrics = Arc::new(MetricsShared::new(
            config.series_limit,
            config.labels.clone(),
        ));
        Self {
            untrusted: config.propagation.policy() == orderscope_context::TrustPolicy::Untrusted,
            routes: RouteTable::new(metrics, config.skip_paths.clone(), MAX_ROUTES),
            host: OnceLock::new(),
            tracer: match &config.tracer {
                Some(tracer) => LateTracer::fixed(tracer.clone()),
                None => LateTracer::global(scope()),
            },
            config,
        }
    }

    /// The tracer: the one set on the layer, else the global provider's, looked up until one is
    /// installed.
    #[inline]
    pub(crate) fn tracer(&self) -> &LateTracer {
        &self.tracer
    }

    /// The `server.address` value for `host`: shared when it is the first host seen.
    #[inline]
    pub(crate) fn host(&self, host: &str) -> opentelemetry::StringValue {
        let first = self
            .host
            .get_or_init(|| match orderscope_context::intern(host) {
                Some(interned) => opentelemetry::StringValue::from(interned),
                None => opentelemetry::StringValue::from(Arc::<str>::from(host)),
            });
        if first.as_str() == host {
            first.clone()
        } else {
            opentelemetry::StringValue::from(host.to_owned())
        }
    }
}

/// The layer most recently applied to a service: [`UnmatchedLayer`](super::UnmatchedLayer)
/// measures the requests no route matched with its configuration.
static APPLIED: RwLock<Option<Arc<Shared>>> = RwLock::new(None);

fn register_applied(shared: &Arc<Shared>) {
    let current = APPLIED.read().unwrap_or_else(PoisonError::into_inner);
    if current
        .as_ref()
        .is_some_and(|applied| Arc::ptr_eq(applied, shared))
    {
        return;
    }
    drop(current);
    *APPLIED.write().unwrap_or_else(PoisonError::into_inner) = Some(shared.clone());
}

/// The configuration of the [`ServerLayer`] most recently applied, if any.
pub(crate) fn applied() -> Option<Arc<Shared>> {
    APPLIED
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// The per-service-instance part: the instance's route cache.
#[derive(Debug)]
pub(crate) struct Instance {
    pub(crate) shared: Arc<Shared>,
    pub(crate) last: LastRoute,
}

/// Instruments an axum router: the server span, RED metrics and the order in scope.
///
/// Apply it with [`Router::layer`](axum::Router::layer) (or `route_layer`): axum then wraps every
/// route separately and the layer sees the matched route (`/orders/{id}`), which names the span and
/// labels the metrics. Requests that matched no route (the fallback) are labelled `unmatched`, never
/// with their raw path. Wrapping the whole router from outside (`ServiceBuilder` around the
/// `Router`) hides the matched route: every request would be `unmatched`. With `route_layer`, only
/// matched routes are instrumented (axum does not apply route layers to the fallback).
///
/// axum's `Router::merge` keeps the merged-in router's fallback, so after
/// `.layer(ServerLayer::new()).merge(other)` unknown paths reach `other`'s fallback, which this
/// layer never wrapped; `orderscope`'s `metrics_router()` carries an
/// [`UnmatchedLayer`](super::UnmatchedLayer) that measures them with this layer's configuration.
///
/// Metric labels are resolved once per route and method; the handles are bound to the `metrics`
/// recorder current when they record, and the tracer is the global provider's once one is
/// installed: a layer built before `orderscope::init` records into the pipeline it installs.
///
/// Per request the layer
/// - extracts `traceparent`, `tracestate` and `baggage` under the layer's trust policy
///   ([`new`](Self::new): trusted, [`public`](Self::public): untrusted, new trace linked to the
///   caller's);
/// - opens the `SERVER` span `{method} {route}` directly with the OpenTelemetry API (the tracer
///   provider set with [`tracer_provider`](Self::tracer_provider), else the global one as it is
///   when the first request arrives), with the stable HTTP semantic-convention attributes;
///   the order fields are added by `orderscope::OrderSpanProcessor` on the provider;
/// - attaches the span and the order to the OpenTelemetry context around every poll of the
///   handler, so `tracing` spans and log lines in the handler nest under the server span, and
///   puts the [`OrderContext`](orderscope_context::OrderContext) in the request extensions for
///   the [`Order`](crate::Order) extractor;
/// - records `http_server_request_duration_seconds` when the response body ends and
///   `http_server_active_requests` while the request is in flight, through metric handles
///   resolved once per route.
///
/// # Errors recorded
///
/// `error_type` (metric label) and `error.type` (span attribute), one of: the status code for a
/// 5xx response; `panic` for a panicking handler; `cancelled` for a request dropped before its
/// response completed (the client went away); `_OTHER` when the inner service returned an
/// error; `body_error` when the response body failed while streaming. The span status is `ERROR`
/// in each case.
///
/// # Example
///
/// ```
/// use axum::{Router, routing::get};
/// use orderscope_tower::{Order, ServerLayer};
///
/// async fn show_order(order: Option<Order>) -> String {
///     order.map(|order| order.id().to_owned()).unwrap_or_default()
/// }
///
/// let internal: Router = Router::new()
///     .route("/orders/{id}", get(show_order))
///     .layer(ServerLayer::new());
///
/// // A B2B API: new trace per request, only the order id is taken from the caller's baggage.
/// let api: Router = Router::new()
///     .route("/v1/orders/{id}", get(show_order))
///     .layer(ServerLayer::public().allow_baggage_key("order.id"));
/// # let _ = (internal, api);
/// ```
#[derive(Clone, Debug)]
pub struct ServerLayer<Req = DefaultOnRequest, Res = DefaultOnResponse> {
    pub(crate) shared: Arc<Shared>,
    on_request: Req,
    on_response: Res,
}

impl Default for ServerLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerLayer {
    /// A layer for an internal service: incoming trace context and baggage are trusted.
    pub fn new() -> Self {
        Self::with_propagation(Propagation::trusted())
    }

    /// A layer for a public endpoint (web shop, B2B API): every request starts a new trace whose
    /// server span links to the caller's span, and incoming baggage is dropped except for keys
    /// allowed with [`allow_baggage_key`](Self::allow_baggage_key).
    pub fn public() -> Self {
        Self::with_propagation(Propagation::untrusted())
    }

    /// A layer that reads incoming context with `propagation`.
    pub fn with_propagation(propagation: Propagation) -> Self {
        Self {
            shared: Arc::new(Shared::new(Config {
                propagation,
                skip_paths: vec![Cow::Borrowed("/metrics")],
                catch_panic: false,
                tracing: true,
                series_limit: DEFAULT_SERIES_LIMIT,
                labels: Vec::new(),
                tracer: None,
                record_query: false,
                redact_query_keys: DEFAULT_REDACTED_QUERY_KEYS
                    .iter()
                    .map(|key| Cow::Borrowed(*key))
                    .collect(),
                trust_forwarded_scheme: false,
            })),
            on_request: DefaultOnRequest,
            on_response: DefaultOnResponse,
        }
    }
}

impl<Req, Res> ServerLayer<Req, Res> {
    fn configure(self, f: impl FnOnce(&mut Config)) -> Self {
        let mut config = self.shared.config.clone();
        f(&mut config);
        Self {
            shared: Arc::new(Shared::new(config)),
            on_request: self.on_request,
            on_response: self.on_response,
        }
    }

    /// Replaces how incoming context is read (trust policy, allowed baggage keys, limits).
    ///
    /// Defaults to [`Propagation::trusted`] for [`new`](ServerLayer::new) and
    /// [`Propagation::untrusted`] for [`public`](ServerLayer::public).
    #[must_use]
    pub fn propagation(self, propagation: Propagation) -> Self {
        self.configure(|config| config.propagation = propagation)
    }

    /// Keeps the incoming baggage entry `key` on a [`public`](ServerLayer::public) endpoint (use
    /// `orderscope_context::keys` for order fields). Trusted layers keep every key already.
    ///
    /// Defaults to none.
    #[must_use]
    pub fn allow_baggage_key(self, key: &'static str) -> Self {
        self.configure(|config| {
            config.propagation = config.propagation.clone().allow_baggage_key(key);
        })
    }

    /// Routes that are not instrumented at all: no span, no metrics, no context. Compared with the
    /// matched route (`/health`), or with the request path when no route matched.
    ///
    /// Replaces the list. Defaults to `["/metrics"]`, so Prometheus scrapes do not show up as
    /// traffic; pass an empty list to instrument everything.
    #[must_use]
    pub fn skip_paths<I, P>(self, paths: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<Cow<'static, str>>,
    {
        let paths = paths.into_iter().map(Into::into).collect();
        self.configure(|config| config.skip_paths = paths)
    }

    /// Converts a panic in the handler into a `500 Internal Server Error` response with an empty
    /// body, like tower-http's `CatchPanicLayer`, and records it with `error_type="panic"`.
    ///
    /// Defaults to `false`: the panic propagates as it would without the layer (the request is
    /// still recorded with `error_type="panic"` while the stack unwinds).
    #[must_use]
    pub fn catch_panic(self, enabled: bool) -> Self {
        self.configure(|config| config.catch_panic = enabled)
    }

    /// Whether to extract incoming context, open the server span and put the order in scope.
    /// With `false`, the layer only records the RED metrics.
    ///
    /// Defaults to `true`.
    #[must_use]
    pub fn tracing(self, enabled: bool) -> Self {
        self.configure(|config| config.tracing = enabled)
    }

    /// Most series each metric of this layer creates; further label sets are recorded in one
    /// overflow series whose label values are all `_overflow`, and each measurement recorded there
    /// counts in `orderscope_cardinality_overflow_total{metric}`. Clamped to `1..=2^20` like
    /// [`SeriesLimit::new`](orderscope_metrics::SeriesLimit::new).
    ///
    /// Defaults to [`DEFAULT_SERIES_LIMIT`].
    #[must_use]
    pub fn series_limit(self, limit: usize) -> Self {
        self.configure(|config| config.series_limit = limit)
    }

    /// Adds a metric label to `http_server_request_duration_seconds` whose value comes from a fixed
    /// set: `classify` picks it from the request head; `None`, or a value outside `values`, is
    /// recorded as `_other`. Use it for bounded dimensions such as a partner class or a tenant tier,
    /// never for ids.
    ///
    /// Defaults to no extra labels.
    ///
    /// # Panics
    ///
    /// At configuration time, when more than [`MAX_EXTRA_LABELS`] labels are declared, when `values`
    /// has more than [`MAX_EXTRA_LABEL_VALUES`] entries, or when `name` is one of the layer's own
    /// labels or declared twice.
    ///
    /// # Example
    ///
    /// ```
    /// use orderscope_tower::ServerLayer;
    ///
    /// let layer = ServerLayer::public().label_from(
    ///     "partner_tier",
    ///     &["gold", "silver"],
    ///     |request: &http::request::Parts| {
    ///         match request.headers.get("x-partner-tier")?.as_bytes() {
    ///             b"gold" => Some("gold"),
    ///             b"silver" => Some("silver"),
    ///             _ => None,
    ///         }
    ///     },
    /// );
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn label_from<F>(
        self,
        name: &'static str,
        values: &'static [&'static str],
        classify: F,
    ) -> Self
    where
        F: Fn(&http::request::Parts) -> Option<&'static str> + Send + Sync + 'static,
    {
        assert!(
            self.shared.config.labels.len() < MAX_EXTRA_LABELS,
            "at most {MAX_EXTRA_LABELS} extra labels"
        );
        assert!(
            values.len() <= MAX_EXTRA_LABEL_VALUES,
            "at most {MAX_EXTRA_LABEL_VALUES} values per extra label"
        );
        assert!(
            !RESERVED_LABELS.contains(&name)
                && !self.shared.config.labels.iter().any(|def| def.name == name),
            "label `{name}` is already set"
        );
        let def = LabelDef {
            name,
            values,
            classify: Arc::new(classify),
        };
        self.configure(|config| config.labels.push(def))
    }

    /// Records the query string as `url.query` on the server span, with the values of sensitive
    /// keys replaced with `REDACTED` (see [`redact_query_key`](Self::redact_query_key)) and cut
    /// to [`MAX_QUERY_LEN`](super::MAX_QUERY_LEN) bytes.
    ///
    /// Defaults to `false`: query strings often carry personal data, so they are opt-in.
    #[must_use]
    pub fn record_query(self, enabled: bool) -> Self {
        self.configure(|config| config.record_query = enabled)
    }

    /// Also redacts the value of the query key `key` (compared ASCII case-insensitively) in
    /// `url.query`.
    ///
    /// Defaults to [`DEFAULT_REDACTED_QUERY_KEYS`](super::DEFAULT_REDACTED_QUERY_KEYS): the keys
    /// the HTTP semantic conventions name (`AWSAccessKeyId`, `Signature`, `sig`,
    /// `X-Goog-Signature`) and common credentials (`token`, `api_key`, `password`, …).
    #[must_use]
    pub fn redact_query_key(self, key: impl Into<Cow<'static, str>>) -> Self {
        let key = key.into();
        self.configure(|config| config.redact_query_keys.push(key))
    }

    /// Takes `url.scheme` from the `Forwarded: proto=` or `X-Forwarded-Proto` header set by the
    /// TLS-terminating proxy in front of the service. Only enable it when every request passes
    /// through such a proxy, which overwrites the header: a client could otherwise set it.
    ///
    /// Without it, `url.scheme` is `https` for requests marked [`Tls`](super::Tls) by the
    /// service's own TLS acceptor, else `http`. Defaults to `false`.
    #[must_use]
    pub fn trust_forwarded_scheme(self, enabled: bool) -> Self {
        self.configure(|config| config.trust_forwarded_scheme = enabled)
    }

    /// Creates the server spans with a tracer from `provider` instead of the global provider.
    ///
    /// Defaults to the global provider (`opentelemetry::global::tracer_provider()`) as it is when
    /// the first request arrives.
    #[must_use]
    pub fn tracer_provider<P>(self, provider: &P) -> Self
    where
        P: TracerProvider,
        P::Tracer: Tracer + Send + Sync + 'static,
        <P::Tracer as Tracer>::Span: Span + Send + Sync + 'static,
    {
        let tracer = BoxedTracer::new(Box::new(provider.tracer_with_scope(scope())));
        self.configure(|config| config.tracer = Some(Arc::new(tracer)))
    }

    /// Sets the hook that adds span attributes from the request head.
    ///
    /// Defaults to [`DefaultOnRequest`], which adds none.
    #[must_use]
    pub fn on_request<NewReq: OnRequest>(self, on_request: NewReq) -> ServerLayer<NewReq, Res> {
        ServerLayer {
            shared: self.shared,
            on_request,
            on_response: self.on_response,
        }
    }

    /// Sets the hook that adds span attributes from the response head.
    ///
    /// Defaults to [`DefaultOnResponse`], which adds none.
    #[must_use]
    pub fn on_response<NewRes: OnResponse>(self, on_response: NewRes) -> ServerLayer<Req, NewRes> {
        ServerLayer {
            shared: self.shared,
            on_request: self.on_request,
            on_response,
        }
    }
}

impl<S, Req: Clone, Res: Clone> Layer<S> for ServerLayer<Req, Res> {
    type Service = Server<S, Req, Res>;

    fn layer(&self, inner: S) -> Self::Service {
        register_applied(&self.shared);
        Server::from_parts(
            inner,
            Arc::new(Instance {
                shared: self.shared.clone(),
                last: LastRoute::default(),
            }),
            self.on_request.clone(),
            self.on_response.clone(),
        )
    }
}
