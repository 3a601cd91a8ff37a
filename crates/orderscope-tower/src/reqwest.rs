//! [`ClientMiddleware`]: the client instrumentation as a `reqwest-middleware` middleware
//! (feature `reqwest`).
//!
//! The same span, metric, propagation and baggage egress as [`ClientLayer`], which configures
//! it. Per request, [`UrlTemplate`](crate::UrlTemplate) and [`NoPropagation`](crate::NoPropagation)
//! are read from the request extensions (`RequestBuilder::with_extension`).
//!
//! # Example
//!
//! ```
//! use orderscope_tower::reqwest::ClientMiddleware;
//! use orderscope_tower::{NoPropagation, UrlTemplate};
//! use reqwest_middleware::ClientBuilder;
//!
//! # async fn call() -> Result<(), reqwest_middleware::Error> {
//! let client = ClientBuilder::new(reqwest::Client::new())
//!     .with(ClientMiddleware::new())
//!     .build();
//!
//! // Span `GET /stock/{sku}`; traceparent and baggage (the order) injected.
//! let response = client
//!     .get("http://warehouse.internal/stock/42")
//!     .with_extension(UrlTemplate("/stock/{sku}"))
//!     .send()
//!     .await?;
//!
//! // A third party: no trace context, no order.
//! let _ = client
//!     .get("https://api.carrier.example/rates")
//!     .with_extension(NoPropagation)
//!     .send()
//!     .await?;
//! # let _ = response; Ok(()) }
//! ```

use http::Extensions;
use opentelemetry::context::FutureExt;
use quanta::Instant;
use reqwest_middleware::{Middleware, Next};

use crate::client::layer::ClientError;
use crate::client::{ClientLayer, Outgoing, begin};

/// Instruments a `reqwest_middleware::ClientWithMiddleware`: the `CLIENT` span,
/// `http_client_request_duration_seconds` with the labels of [`ClientLayer`], injection of the
/// trace context and the order (baggage only to trusted hosts, see
/// [`BaggageEgress`](crate::client::BaggageEgress)).
///
/// Transport errors set `error.type`: `timeout`, `connect`, else `_OTHER`; 4xx and 5xx responses
/// the status code, as with [`ClientLayer`].
#[derive(Clone, Debug, Default)]
pub struct ClientMiddleware {
    layer: ClientLayer,
}

impl ClientMiddleware {
    /// Traces, measures and propagates every request, with [`ClientLayer::new`]'s defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// A middleware configured as `layer` (propagation, baggage egress, tracing, series limit,
    /// tracer provider); the two share their metric handles.
    pub fn from_layer(layer: ClientLayer) -> Self {
        Self { layer }
    }
}

impl From<ClientLayer> for ClientMiddleware {
    fn from(layer: ClientLayer) -> Self {
        Self::from_layer(layer)
    }
}

fn url_full(url: &::reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("");
    let mut full =
        String::with_capacity(url.scheme().len() + 3 + host.len() + 6 + url.path().len());
    full.push_str(url.scheme());
    full.push_str("://");
    full.push_str(host);
    if let Some(port) = url.port() {
        full.push(':');
        full.push_str(itoa::Buffer::new().format(port));
    }
    full.push_str(url.path());
    full
}

fn error_class(error: &reqwest_middleware::Error) -> ClientError {
    match error {
        reqwest_middleware::Error::Reqwest(e) if e.is_timeout() => ClientError::Timeout,
        reqwest_middleware::Error::Reqwest(e) if e.is_connect() => ClientError::Connect,
        _ => ClientError::Service,
    }
}

#[async_trait::async_trait]
impl Middleware for ClientMiddleware {
    async fn handle(
        &self,
        mut request: ::reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<::reqwest::Response> {
        let shared = &self.layer.shared;
        let start = Instant::now();
        let url = request.url();
        let host = url.host_str().map(|h| {
            h.strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(h)
                .to_owned()
        });
        let port = url.port_or_known_default();
        let full = shared.config.tracing.then(|| url_full(url));
        let method = request.method().clone();
        let recorder = begin(
            shared,
            Outgoing {
                start,
                method: &method,
                host,
                port,
                url_full: || full.unwrap_or_default(),
                extensions,
            },
            request.headers_mut(),
        );
        let result = match recorder.context().cloned() {
            Some(cx) => next.run(request, extensions).with_context(cx).await,
            None => next.run(request, extensions).await,
        };
        match &result {
            Ok(response) => {
                let status = response.status().as_u16();
                let error = if status >= 400 {
                    ClientError::Status
                } else {
                    ClientError::None
                };
                recorder.finish(status, error);
            }
            Err(error) => recorder.finish(0, error_class(error)),
        }
        result
    }
}
