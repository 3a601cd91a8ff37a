//! The [`Order`] axum extractor.

use std::convert::Infallible;
use std::fmt;
use std::ops::Deref;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;
use opentelemetry::trace::TraceContextExt;
use orderscope_context::{DropReason, OrderContext};

/// The order of the request, as an axum extractor; derefs to [`OrderContext`].
///
/// The order in the current OpenTelemetry context: the one [`ServerLayer`](crate::ServerLayer)
/// read from the `baggage` header and keeps in scope while the handler runs. An `OrderContext`
/// that a middleware put in the request extensions comes first. As `Order`, a request
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

    /// The request's order, or — when the request brought none, as from a caller that knows
    /// nothing of orderscope and sends the order id only in its payload, path or query — a new
    /// order with `id`, whose fields are recorded on the current span (the server span of
    /// [`ServerLayer`](crate::ServerLayer)).
    ///
    /// Run the rest of the handler with it in scope ([`WithOrder::with_order`](orderscope_context::WithOrder))
    /// so that its log lines, spans, stages and outgoing calls carry it too. `None` when the request
    /// brought no order and `id` is not a valid order id (counted in
    /// `orderscope_propagation_dropped_total{reason="order_field_invalid"}`).
    ///
    /// # Example
    ///
    /// ```
    /// use axum::{Router, extract::Path, routing::post};
    /// use orderscope_context::WithOrder;
    /// use orderscope_tower::{Order, ServerLayer};
    ///
    /// // The caller names the order only in the path (or the JSON body, the query string …).
    /// async fn confirm(order: Option<Order>, Path(id): Path<String>) -> String {
    ///     let Some(order) = Order::or_from_id(order, &id) else {
    ///         return "invalid order id".to_owned();
    ///     };
    ///     work(id).with_order(order.into_inner()).await
    /// }
    ///
    /// async fn work(id: String) -> String {
    ///     tracing::info!("confirmed"); // the log line carries order.id
    ///     format!("confirmed {id}")
    /// }
    ///
    /// let app: Router = Router::new()
    ///     .route("/orders/{id}/confirm", post(confirm))
    ///     .layer(ServerLayer::new());
    /// # let _ = app;
    /// ```
    pub fn or_from_id(order: Option<Order>, id: &str) -> Option<Order> {
        if let Some(order) = order {
            return Some(order);
        }
        match OrderContext::new(id) {
            Ok(order) => {
                let cx = opentelemetry::Context::current();
                let span = cx.span();
                if span.is_recording() {
                    span.set_attributes(order.attributes());
                }
                Some(Order(order))
            }
            Err(_) => {
                DropReason::OrderFieldInvalid.count();
                None
            }
        }
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
