//! The [`Order`] axum extractor.

use std::convert::Infallible;
use std::fmt;
use std::ops::Deref;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;
use orderscope_context::OrderContext;

/// The order of the request, as an axum extractor; derefs to [`OrderContext`].
///
/// Found in the request extensions, where [`ServerLayer`](crate::ServerLayer) puts the order it read
/// from the `baggage` header, else in the current OpenTelemetry context. As `Order`, a request
/// without an order is rejected with [`MissingOrder`] (`400 Bad Request`); as `Option<Order>` it
/// gives `None`.
///
/// # Example
///
/// ```
/// use axum::{Router, routing::get};
/// use orderscope_tower::{Order, ServerLayer};
///
/// async fn ship(order: Order) -> String {
///     format!("shipping {}", order.id())
/// }
///
/// async fn status(order: Option<Order>) -> &'static str {
///     if order.is_some() { "order in scope" } else { "no order" }
/// }
///
/// let app: Router = Router::new()
///     .route("/ship", get(ship))
///     .route("/status", get(status))
///     .layer(ServerLayer::new());
/// # let _ = app;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Order(pub OrderContext);

impl Order {
    /// The order context.
    pub fn into_inner(self) -> OrderContext {
        self.0
    }

    fn find(parts: &Parts) -> Option<Self> {
        parts
            .extensions
            .get::<OrderContext>()
            .cloned()
            .or_else(OrderContext::current)
            .map(Self)
    }
}

impl Deref for Order {
    type Target = OrderContext;

    fn deref(&self) -> &OrderContext {
        &self.0
    }
}

impl From<Order> for OrderContext {
    fn from(order: Order) -> Self {
        order.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Order {
    type Rejection = MissingOrder;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Self::find(parts).ok_or(MissingOrder)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Order {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(Self::find(parts))
    }
}

/// Rejection of the [`Order`] extractor: the request carries no order (`400 Bad Request`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MissingOrder;

impl fmt::Display for MissingOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the request carries no order context (baggage `order.id`)")
    }
}

impl std::error::Error for MissingOrder {}

impl IntoResponse for MissingOrder {
    fn into_response(self) -> Response {
        (StatusCode::BAD_REQUEST, self.to_string()).into_response()
    }
}
