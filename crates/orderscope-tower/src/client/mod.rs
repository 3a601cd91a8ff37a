//! The HTTP client middleware: client span, `http_client_request_duration_seconds`, and propagation
//! of the trace context and the order.
//!
//! [`ClientLayer`] is the configuration, [`Client`] the service. Two request extensions steer single
//! requests: [`NoPropagation`] (send no context, for third parties) and [`UrlTemplate`] (name the
//! span after the endpoint).
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::Empty;
//! use hyper_util::{client::legacy::Client, rt::TokioExecutor};
//! use orderscope_tower::client::{ClientLayer, NoPropagation, UrlTemplate};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # async fn call() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let hyper = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
//! let mut client = ServiceBuilder::new().layer(ClientLayer::new()).service(hyper);
//!
//! let mut request = http::Request::get("http://warehouse.internal/stock/42").body(Empty::new())?;
//! request.extensions_mut().insert(UrlTemplate("/stock/{sku}")); // span "GET /stock/{sku}"
//! let response = client.ready().await?.call(request).await?;
//!
//! let mut request = http::Request::get("https://api.carrier.example/rates").body(Empty::new())?;
//! request.extensions_mut().insert(NoPropagation); // no traceparent, no baggage
//! let _ = client.ready().await?.call(request).await?;
//! # let _ = response; Ok(()) }
//! ```

mod egress;
mod future;
pub(crate) mod layer;

use quanta::Instant;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanBuilder, SpanKind};
use orderscope_context::carrier::{BAGGAGE, inject_http};
use tower_service::Service;

pub use self::egress::BaggageEgress;
pub use self::future::ResponseFuture;
pub use self::layer::ClientLayer;

use self::future::ClientRecorder;
use self::layer::ClientShared;
use crate::common::{MethodKind, intern_span_name, strip_port};

/// Request extension: send this request without `traceparent`, `tracestate` and `baggage` (a call to
/// a third party that must not see the order). The client span and the metric are still recorded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoPropagation;

/// Request extension: the low-cardinality template of the request's URL (`/stock/{sku}`), recorded
/// as `url.template` and used in the span name `{method} {url.template}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UrlTemplate(pub &'static str);

/// Middleware that instruments an HTTP client; built by [`ClientLayer`].
#[derive(Clone, Debug)]
pub struct Client<S> {
    inner: S,
    shared: Arc<ClientShared>,
}

impl<S> Client<S> {
    pub(crate) fn from_parts(inner: S, shared: Arc<ClientShared>) -> Self {
        Self { inner, shared }
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

impl<S, B, ResBody> Service<Request<B>> for Client<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let start = Instant::now();
        let (mut parts, body) = request.into_parts();
        let uri = &parts.uri;
        let host = uri.host().map(str::to_owned).or_else(|| {
            parts
                .headers
                .get(http::header::HOST)
                .and_then(|host| host.to_str().ok())
                .map(|host| strip_port(host).to_owned())
        });
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let port = uri
            .port_u16()
            .or_else(|| uri.scheme().map(|_| if https { 443 } else { 80 }));
        let recorder = begin(
            &self.shared,
            Outgoing {
                start,
                method: &parts.method,
                host,
                port,
                url_full: || url_full(uri),
                extensions: &parts.extensions,
            },
            &mut parts.headers,
        );
        ResponseFuture::new(self.inner.call(Request::from_parts(parts, body)), recorder)
    }
}

/// An outgoing request as [`begin`] reads it.
pub(crate) struct Outgoing<'a, U> {
    pub(crate) start: Instant,
    pub(crate) method: &'a http::Method,
    /// The server's host name or address, without port.
    pub(crate) host: Option<String>,
    pub(crate) port: Option<u16>,
    /// `url.full`, computed only when the span is recorded.
    pub(crate) url_full: U,
    /// Where [`UrlTemplate`] and [`NoPropagation`] are looked up.
    pub(crate) extensions: &'a http::Extensions,
}

/// Starts recording an outgoing request: opens the client span, injects the context (baggage only
/// to hosts the [`BaggageEgress`] allows) and returns the recorder that finishes it. Shared by
/// [`Client`] and the reqwest middleware.
pub(crate) fn begin<U: FnOnce() -> String>(
    shared: &Arc<ClientShared>,
    out: Outgoing<'_, U>,
    headers: &mut http::HeaderMap,
) -> ClientRecorder {
    let config = &shared.config;
    let method = MethodKind::of(out.method);
    let host_entry = shared.host(out.host.as_deref());
    let baggage_allowed = out
        .host
        .as_deref()
        .is_some_and(|host| config.egress.allows(host));

    let parent = opentelemetry::Context::current();
    let cx = if config.tracing {
        let template = out.extensions.get::<UrlTemplate>().map(|t| t.0);
        let name = match template {
            Some(template) => intern_span_name(method, template),
            None => method.span_prefix(),
        };
        let mut attributes = Vec::with_capacity(12);
        attributes.push(KeyValue::new("http.request.method", method.as_str()));
        if method == MethodKind::Other {
            attributes.push(KeyValue::new(
                "http.request.method_original",
                out.method.as_str().to_owned(),
            ));
        }
        if let Some(host) = out.host {
            attributes.push(KeyValue::new("server.address", host));
        }
        if let Some(port) = out.port {
            attributes.push(KeyValue::new("server.port", i64::from(port)));
        }
        attributes.push(KeyValue::new("url.full", (out.url_full)()));
        if let Some(template) = template {
            attributes.push(KeyValue::new("url.template", template));
        }
        let mut builder = SpanBuilder::from_name(name).with_kind(SpanKind::Client);
        builder.attributes = Some(attributes);
        Some(shared.tracer().start(builder, &parent))
    } else {
        None
    };

    if config.propagate && out.extensions.get::<NoPropagation>().is_none() {
        inject_http(cx.as_ref().unwrap_or(&parent), headers);
        if !baggage_allowed {
            // The order stays inside: the trace context goes on, the baggage does not.
            headers.remove(BAGGAGE);
        }
    }

    ClientRecorder::new(shared.clone(), host_entry, method, out.start, cx)
}

/// `url.full` without user info and query string (either may hold secrets).
fn url_full(uri: &http::Uri) -> String {
    let path = uri.path();
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) => {
            let authority = authority.as_str();
            let authority = authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host);
            let mut url = String::with_capacity(scheme.len() + 3 + authority.len() + path.len());
            url.push_str(scheme);
            url.push_str("://");
            url.push_str(authority);
            url.push_str(path);
            url
        }
        _ => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_full_drops_user_info_and_query() {
        let uri: http::Uri = "https://user:secret@example.com:8443/a/b?token=x"
            .parse()
            .unwrap();
        assert_eq!(url_full(&uri), "https://example.com:8443/a/b");
        let uri: http::Uri = "/relative?x=1".parse().unwrap();
        assert_eq!(url_full(&uri), "/relative");
    }
}
