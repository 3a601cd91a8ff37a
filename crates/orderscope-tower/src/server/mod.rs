//! The HTTP server middleware for axum: server span, RED metrics and the order in scope.
//!
//! [`ServerLayer`] is the configuration, [`Server`] the service it wraps each route with,
//! [`ResponseFuture`] and [`ResponseBody`] carry the request's record to the end of the response
//! body. See [`ServerLayer`] for what is recorded.
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use orderscope_tower::server::ServerLayer;
//!
//! let app: Router = Router::new()
//!     .route("/orders/{id}", get(|| async { "ok" }))
//!     .route("/health", get(|| async { "ok" }))
//!     .layer(
//!         ServerLayer::new()
//!             .skip_paths(["/metrics", "/health"])
//!             .catch_panic(true),
//!     );
//! # let _ = app;
//! ```

mod body;
mod future;
mod hook;
mod layer;
mod record;
mod route;
mod unmatched;
mod url;

use quanta::Instant;
use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::MatchedPath;
use http::{Request, Response, Version};
use http_body::Body;
use opentelemetry::KeyValue;
use opentelemetry::trace::{Link, SpanBuilder, SpanKind};
use tower_service::Service;

pub use self::body::ResponseBody;
pub use self::future::ResponseFuture;
pub use self::hook::{
    DefaultOnRequest, DefaultOnResponse, MAX_HOOK_ATTRIBUTES, OnRequest, OnResponse, SpanAttributes,
};
pub use self::layer::{
    DEFAULT_SERIES_LIMIT, MAX_EXTRA_LABEL_VALUES, MAX_EXTRA_LABELS, ServerLayer,
};
pub use self::unmatched::{Unmatched, UnmatchedLayer};
pub use self::url::{DEFAULT_REDACTED_QUERY_KEYS, MAX_QUERY_LEN, Tls};

use self::layer::Instance;

/// `error_type` values of a panic and of a cancelled request (for the catalogue check).
#[cfg(test)]
pub(crate) fn route_values() -> (&'static str, &'static str) {
    (
        route::ErrorKind::Panic.static_str().unwrap_or_default(),
        route::ErrorKind::Cancelled.static_str().unwrap_or_default(),
    )
}
use self::record::Recorder;
use self::route::RouteEntry;
use crate::common::MethodKind;

/// Middleware that instruments one axum route; built by [`ServerLayer`].
#[derive(Clone, Debug)]
pub struct Server<S, Req = DefaultOnRequest, Res = DefaultOnResponse> {
    inner: S,
    instance: Arc<Instance>,
    on_request: Req,
    on_response: Res,
}

impl<S, Req, Res> Server<S, Req, Res> {
    pub(crate) fn from_parts(
        inner: S,
        instance: Arc<Instance>,
        on_request: Req,
        on_response: Res,
    ) -> Self {
        Self {
            inner,
            instance,
            on_request,
            on_response,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the middleware, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// Attribute capacity of a server span: the conventional attributes, the status code and
/// `error.type` set later, and the five order fields added by the span processor.
const SPAN_ATTRIBUTES: usize = 16;

impl<S, B, ResBody, Req, Res> Service<Request<B>> for Server<S, Req, Res>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    ResBody: Body,
    Req: OnRequest,
    Res: OnResponse,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, Res>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        instrument(
            &self.instance.shared,
            &self.instance.last,
            &self.on_request,
            &self.on_response,
            &mut self.inner,
            request,
        )
    }
}

/// Marks a request that matched no route and that a [`Server`] already measures, so the
/// fallback of [`UnmatchedLayer`] does not measure it twice.
#[derive(Clone, Copy, Debug)]
struct Measured;

/// The request path of [`Server`] (and of [`UnmatchedLayer`]'s services).
#[inline]
fn instrument<S, B, ResBody, Req, Res>(
    shared: &layer::Shared,
    last: &route::LastRoute,
    on_request: &Req,
    on_response: &Res,
    inner: &mut S,
    mut request: Request<B>,
) -> ResponseFuture<S::Future, Res>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    ResBody: Body,
    Req: OnRequest,
    Res: OnResponse,
{
    let start = Instant::now();
    let matched = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    let unmatched = matched.is_none();
    let route = last.resolve(&shared.routes, matched, request.uri().path());
    if route.skip {
        return ResponseFuture::new(
            Ok(inner.call(request)),
            None,
            false,
            false,
            on_response.clone(),
        );
    }
    if unmatched {
        request.extensions_mut().insert(Measured);
    }

    let method = MethodKind::of(request.method());
    let metrics = shared.routes.metrics();
    let hook = shared.config.tracing && on_request.is_active();
    let mut extra = 0;
    let mut hook_attributes = Vec::new();
    if hook || metrics.has_labels() {
        let (parts, body) = request.into_parts();
        extra = metrics.label_index(&parts);
        if hook {
            on_request.on_request(&parts, &mut SpanAttributes::new(&mut hook_attributes));
        }
        request = Request::from_parts(parts, body);
    }

    let otel = shared
        .config
        .tracing
        .then(|| start_span(shared, &request, &route, method, hook_attributes));
    let recorder = Recorder::start(route, method, extra, start, otel);

    let catch_panic = shared.config.catch_panic;
    let inner = {
        let _guard = recorder.context().map(|otel| otel.clone().attach());
        if catch_panic {
            catch_unwind(AssertUnwindSafe(|| inner.call(request)))
        } else {
            Ok::<_, Box<dyn Any + Send>>(inner.call(request))
        }
    };
    ResponseFuture::new(
        inner,
        Some(recorder),
        catch_panic,
        method == MethodKind::Head,
        on_response.clone(),
    )
}

/// Extracts the incoming context and starts the server span; returns the context to attach.
fn start_span<B>(
    shared: &layer::Shared,
    request: &Request<B>,
    route: &RouteEntry,
    method: MethodKind,
    hook_attributes: Vec<KeyValue>,
) -> opentelemetry::Context {
    let extracted = shared.config.propagation.extract_http(request.headers());

    let mut attributes = Vec::with_capacity(SPAN_ATTRIBUTES + hook_attributes.len());
    attributes.push(KeyValue::new("http.request.method", method.as_str()));
    if method == MethodKind::Other {
        attributes.push(KeyValue::new(
            "http.request.method_original",
            request.method().as_str().to_owned(),
        ));
    }
    if let Some(route) = &route.attribute {
        attributes.push(KeyValue::new("http.route", route.clone()));
    }
    let uri = request.uri();
    let headers = request.headers();
    attributes.push(KeyValue::new("url.path", uri.path().to_owned()));
    let config = &shared.config;
    let scheme = url::scheme(
        request.extensions().get::<Tls>().is_some(),
        config.trust_forwarded_scheme,
        uri,
        headers,
    );
    attributes.push(KeyValue::new("url.scheme", scheme));
    if config.record_query
        && let Some(query) = uri.query()
    {
        attributes.push(KeyValue::new(
            "url.query",
            url::redacted_query(query, &config.redact_query_keys).into_owned(),
        ));
    }
    attributes.push(KeyValue::new(
        "network.protocol.version",
        protocol_version(request.version()),
    ));
    if let Some((host, port)) = url::server_address(uri, headers, scheme) {
        attributes.push(KeyValue::new("server.address", shared.host(host)));
        attributes.push(KeyValue::new("server.port", port));
    }
    if let Some(agent) = headers
        .get(http::header::USER_AGENT)
        .and_then(|agent| agent.to_str().ok())
    {
        attributes.push(KeyValue::new("user_agent.original", agent.to_owned()));
    }
    #[cfg(feature = "connect-info")]
    if let Some(axum::extract::ConnectInfo(peer)) = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
    {
        attributes.push(KeyValue::new("client.address", peer.ip().to_string()));
    }
    attributes.extend(hook_attributes);

    let mut builder =
        SpanBuilder::from_name(route.method(method).span_name).with_kind(SpanKind::Server);
    builder.attributes = Some(attributes);
    if shared.untrusted
        && let Some(remote) = extracted.remote()
    {
        builder.links = Some(vec![Link::with_context(remote.clone())]);
    }
    let parent = extracted.into_context();
    // For code that reads it (the SQL pool's N+1 detector).
    orderscope_context::Operation::in_context(
        shared.tracer().start(builder, &parent),
        route.method(method).span_name,
    )
}

/// `network.protocol.version` of a request.
fn protocol_version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_11 => "1.1",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "_OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_versions() {
        assert_eq!(protocol_version(Version::HTTP_11), "1.1");
        assert_eq!(protocol_version(Version::HTTP_2), "2");
    }
}
