//! [`UnmatchedLayer`]: measures the requests no route matched, in routers whose fallback the
//! [`ServerLayer`](super::ServerLayer) does not wrap.

use std::task::{Context, Poll};

use axum::extract::MatchedPath;
use http::{Request, Response};
use http_body::Body;
use tower_layer::Layer;
use tower_service::Service;

use super::hook::{DefaultOnRequest, DefaultOnResponse};
use super::route::LastRoute;
use super::{Measured, ResponseBody, ResponseFuture, instrument, layer};

/// Measures requests that matched no route with the configuration of the
/// [`ServerLayer`](super::ServerLayer) most recently applied in the process.
///
/// axum's `Router::merge` keeps the default fallback of the router merged *in*: in
///
/// ```text
/// Router::new().route(..).layer(ServerLayer::new()).merge(telemetry.metrics_router())
/// ```
///
/// the `404 Not Found` answered for an unknown path comes from `metrics_router()`'s fallback,
/// which the `ServerLayer` never wrapped, so those requests would leave no span and no series.
/// `orderscope`'s `metrics_router()` therefore carries this layer: it passes matched routes
/// (`/metrics`) and requests a `ServerLayer` already measures straight through, and measures the
/// others as `http_route="unmatched"` (unknown methods `_OTHER`), with a server span, exactly as
/// the `ServerLayer` would. Apply it the same way to a router of your own that you merge into a
/// layered one.
///
/// With no `ServerLayer` applied anywhere in the process, it measures nothing. The request and
/// response hooks of the `ServerLayer` are not run for these requests.
///
/// # Example
///
/// ```
/// use axum::{Router, routing::get};
/// use orderscope_tower::server::{ServerLayer, UnmatchedLayer};
///
/// let health: Router = Router::new()
///     .route("/health", get(|| async { "ok" }))
///     .layer(UnmatchedLayer::new());
/// let app: Router = Router::new()
///     .route("/orders/{id}", get(|| async { "ok" }))
///     .layer(ServerLayer::new())
///     .merge(health);
/// # let _ = app;
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct UnmatchedLayer {
    _private: (),
}

impl UnmatchedLayer {
    /// The layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for UnmatchedLayer {
    type Service = Unmatched<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Unmatched {
            inner,
            last: std::sync::Arc::new(LastRoute::default()),
        }
    }
}

/// The service of [`UnmatchedLayer`].
#[derive(Clone, Debug)]
pub struct Unmatched<S> {
    inner: S,
    last: std::sync::Arc<LastRoute>,
}

impl<S> Unmatched<S> {
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

impl<S, B, ResBody> Service<Request<B>> for Unmatched<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    ResBody: Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, DefaultOnResponse>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let measured = request.extensions().get::<MatchedPath>().is_some()
            || request.extensions().get::<Measured>().is_some();
        match (measured, layer::applied()) {
            (false, Some(shared)) => instrument(
                &shared,
                &self.last,
                &DefaultOnRequest,
                &DefaultOnResponse,
                &mut self.inner,
                request,
            ),
            _ => ResponseFuture::new(
                Ok(self.inner.call(request)),
                None,
                false,
                false,
                DefaultOnResponse,
            ),
        }
    }
}
