//! Tower layers for axum servers and HTTP clients: spans, RED metrics and the order in scope.
//!
//! # Overview
//!
//! - [`ServerLayer`] wraps an axum [`Router`](axum::Router). Per request it reads the incoming
//!   trace context and `order.*` baggage under a trust policy ([`ServerLayer::new`] for internal
//!   services, [`ServerLayer::public`] for the shop and the B2B API), opens the `SERVER` span
//!   `GET /orders/{id}` directly with the OpenTelemetry API, keeps it and the
//!   [`OrderContext`](orderscope_context::OrderContext) current while the handler runs, and records
//!   `http_server_request_duration_seconds` (to the end of the response body) and
//!   `http_server_active_requests`, with the labels of the orderscope conventions.
//! - [`Order`] is the axum extractor for the order of the request (`Option<Order>` works too).
//! - [`ClientLayer`] wraps an HTTP client (hyper, or any `Service<http::Request<B>>`): the `CLIENT`
//!   span, `http_client_request_duration_seconds`, and injection of `traceparent`, `tracestate` and
//!   `baggage` with the order — except for requests marked [`NoPropagation`].
//!
//! Label values come from bounded sets only: the matched route (`unmatched` when none matched,
//! never the raw path), the method (`_OTHER` for unknown methods), the status code, and a bounded
//! `error_type`. A per-metric series limit with an overflow series backs this up. An order id is
//! never a label.
//!
//! The request path is built for low overhead: one layer, metric handles resolved once per route
//! and method, the span created directly with the OpenTelemetry API, no `Box::pin`, and futures that
//! record exactly once (a drop guard records requests the client abandoned as
//! `error_type="cancelled"`, so the active gauge never leaks).
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use orderscope_tower::{ClientLayer, Order, ServerLayer};
//!
//! async fn show_order(order: Option<Order>) -> String {
//!     match order {
//!         Some(order) => format!("order {}", order.id()),
//!         None => "no order".to_owned(),
//!     }
//! }
//!
//! // An internal service: trusts incoming context.
//! let app: Router = Router::new()
//!     .route("/orders/{id}", get(show_order))
//!     .layer(ServerLayer::new());
//!
//! // A public API: new trace per request, linked to the caller's; baggage dropped.
//! let api: Router = Router::new()
//!     .route("/v1/orders/{id}", get(show_order))
//!     .layer(ServerLayer::public().catch_panic(true));
//!
//! // Outbound calls: wrap the client.
//! let client_layer = ClientLayer::new();
//! # let _ = (app, api, client_layer);
//! ```
//!
//! # Feature flags
//!
//! - `reqwest`: [`reqwest::ClientMiddleware`], the client instrumentation for
//!   `reqwest-middleware`.
//! - `connect-info` (default): records `client.address` on server spans from axum's
//!   `ConnectInfo<SocketAddr>` (serve with `into_make_service_with_connect_info`); enables axum's
//!   `tokio` feature.
//!
//! # Supported Rust versions
//!
//! The minimum supported Rust version is 1.88 (edition 2024), as for the whole workspace.
//! It is raised only in a minor release.
#![deny(missing_docs)]

pub mod client;
mod common;
mod extract;
mod names;
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub mod reqwest;
pub mod server;

pub use crate::client::{BaggageEgress, Client, ClientLayer, NoPropagation, UrlTemplate};
pub use crate::extract::{MissingOrder, Order};
pub use crate::server::{Server, ServerLayer};
