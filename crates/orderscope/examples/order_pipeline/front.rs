//! The web shop (`POST /orders`) and the B2B API (`POST /api/v1/orders`): public endpoints that
//! take an order, put it in scope and hand it to the CRM over HTTP.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use orderscope::{Channel, OrderContext, Priority, WithOrder as _};
use serde::Serialize;

use crate::model::{ENV_CRM_URL, Item, OrderMessage, PlaceOrder, Role, parse_rfc3339, stage};
use crate::service::{Built, HttpClient, json, json_error};

struct Front {
    role: Role,
    channel: Channel,
    crm_url: String,
    client: HttpClient,
    next_id: AtomicU64,
}

/// The routes of the shop or the API.
pub(crate) async fn router(role: Role) -> Built {
    let crm_url = std::env::var(ENV_CRM_URL).map_err(|_| format!("{ENV_CRM_URL} is not set"))?;
    let (channel, path) = match role {
        Role::Api => (Channel::Api, "/api/v1/orders"),
        _ => (Channel::Web, "/orders"),
    };
    let front = Arc::new(Front {
        role,
        channel,
        crm_url,
        client: HttpClient::default(),
        next_id: AtomicU64::new(1),
    });
    let router = Router::new()
        .route(path, post(place_order))
        .with_state(front);
    Ok((router, Vec::new()))
}

#[derive(Serialize)]
struct Placed {
    order_id: String,
    status: &'static str,
}

/// Why an order was not placed.
#[derive(Debug)]
enum PlaceError {
    /// The CRM answered with an error status.
    Crm(StatusCode),
    /// The CRM could not be reached.
    Unreachable(String),
}

impl std::fmt::Display for PlaceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlaceError::Crm(status) => write!(f, "the CRM answered {status}"),
            PlaceError::Unreachable(e) => write!(f, "the CRM is unreachable: {e}"),
        }
    }
}

async fn place_order(State(front): State<Arc<Front>>, body: Bytes) -> Response {
    let request: PlaceOrder = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, format!("invalid order: {e}")),
    };
    if request.items.is_empty() || request.items.iter().any(|i| i.qty <= 0 || i.sku.is_empty()) {
        return json_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "every item needs a sku and a positive qty",
        );
    }
    let deadline = match request.deadline.as_deref().map(|d| (d, parse_rfc3339(d))) {
        Some((raw, None)) => {
            return json_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("deadline {raw:?} is not RFC 3339"),
            );
        }
        Some((_, Some(t))) => Some(t),
        None => None,
    };
    let id = request.order_id.clone().unwrap_or_else(|| {
        let n = front.next_id.fetch_add(1, Ordering::Relaxed);
        format!("ORD-{}-{n:06}", front.role.name().to_uppercase())
    });

    // The order, with everything downstream needs: it travels as W3C baggage from here on.
    let mut builder = OrderContext::builder(id.clone())
        .channel(front.channel)
        .created_at(SystemTime::now());
    if let Some(deadline) = deadline {
        builder = builder.deadline(deadline);
    }
    if let Some(priority) = request
        .priority
        .as_deref()
        .and_then(|p| p.parse::<Priority>().ok())
    {
        builder = builder.priority(priority);
    }
    let order = match builder.build() {
        Ok(order) => order,
        Err(e) => {
            return json_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("invalid order: {e}"),
            );
        }
    };

    let message = OrderMessage {
        order_id: id.clone(),
        channel: front.channel.as_str().to_owned(),
        items: request
            .items
            .iter()
            .map(|i| Item {
                sku: i.sku.clone(),
                qty: i.qty,
            })
            .collect(),
        deadline: request.deadline.clone(),
    };
    match accept_order(Arc::clone(&front), order.clone(), message)
        .with_order(order)
        .await
    {
        Ok(()) => json(
            StatusCode::CREATED,
            &Placed {
                order_id: id,
                status: "accepted",
            },
        ),
        Err(PlaceError::Crm(status)) if status.is_client_error() => json_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("order {id} refused by the CRM ({status})"),
        ),
        Err(e) => json_error(
            StatusCode::BAD_GATEWAY,
            format!("order {id} not placed: {e}"),
        ),
    }
}

/// Takes the order in: a span named `accept_order` with the order's fields, RED metrics for the
/// function, the order in scope for everything inside.
#[orderscope::order_handler(order = order)]
async fn accept_order(
    front: Arc<Front>,
    order: OrderContext,
    message: OrderMessage,
) -> Result<(), PlaceError> {
    let received = match front.role {
        Role::Api => stage::API_RECEIVED,
        _ => stage::SHOP_RECEIVED,
    };
    orderscope::stage!(received);
    tracing::info!(items = message.items.len(), "order placed");
    let url = format!("{}/orders", front.crm_url);
    match front.client.post_json(&url, "/orders", &message).await {
        Ok((status, _)) if status.is_success() => Ok(()),
        Ok((status, body)) => {
            tracing::warn!(%status, body = %String::from_utf8_lossy(&body), "the CRM refused the order");
            Err(PlaceError::Crm(status))
        }
        Err(e) => {
            tracing::error!(error = %e, "the CRM is unreachable");
            Err(PlaceError::Unreachable(e.to_string()))
        }
    }
}
