//! The CRM: `POST /orders` from the shop and the API (trusted context: the order arrives as
//! baggage), publishes `order.created` to MES, consumes `order.status` from MES.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use lapin::BasicProperties;
use lapin::options::BasicPublishOptions;
use orderscope::WithOrder;
use orderscope::amqp::{Consume, Message, RetryPolicy, RunOptions, run_reconnecting};
use orderscope::tower::Order;
use serde::Serialize;
use tokio::sync::watch;

use crate::amqp::{Publisher, declare_topology};
use crate::model::{ORDER_CREATED, OrderMessage, StatusMessage, Topology, stage};
use crate::service::{Built, Stop, json, json_error, wait_for_count};

#[derive(Clone, Debug, Serialize)]
struct CrmOrder {
    order_id: String,
    channel: String,
    items: usize,
    deadline: Option<String>,
    status: String,
}

struct Crm {
    /// `order.created` to MES, on a connection that comes back when the broker closes it.
    publisher: Publisher,
    topology: Topology,
    orders: Mutex<BTreeMap<String, CrmOrder>>,
    /// How many status messages arrived.
    statuses: watch::Sender<usize>,
}

/// Connects to RabbitMQ, declares the topology, starts the status consumer; returns the routes.
pub(crate) async fn start(stop: Stop) -> Built {
    let topology = Topology::from_env();
    let publisher = Publisher::connect(crate::amqp::connector("crm-publisher")).await?;
    declare_topology(publisher.channel().get_ref(), &topology).await?;
    let closing = publisher.clone();

    let (statuses, _) = watch::channel(0);
    let crm = Arc::new(Crm {
        publisher,
        topology: topology.clone(),
        orders: Mutex::new(BTreeMap::new()),
        statuses,
    });

    // The depth of every queue of the pipeline, sampled every 5 s on a connection of its own
    // (it lives as long as the service's runtime).
    let watcher = crate::amqp::connector("crm-queue-watcher");
    orderscope::amqp::QueueWatcher::reconnecting(watcher, topology.queues())
        .spawn(std::time::Duration::from_secs(5));

    // Status updates from MES, on a connection of their own that comes back when the broker
    // closes it.
    let handler_crm = Arc::clone(&crm);
    let options = RunOptions::new()
        .retry(RetryPolicy::DeadLetterAfter(3))
        .discard_dead_letters() // a status update that fails four times is logged and dropped
        .concurrency(4)
        .shutdown(stop.wait());
    let consume = Consume::new(topology.crm_queue(), "crm").prefetch(16);
    let runner = tokio::spawn(async move {
        let result = run_reconnecting(
            crate::amqp::connector("crm"),
            consume,
            move |message: Message| {
                let crm = Arc::clone(&handler_crm);
                async move { crm.on_status(&message) }
            },
            options,
        )
        .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "the status consumer stopped");
        }
        closing.close().await;
    });

    let router = Router::new()
        .route("/orders", post(create_order).get(list_orders))
        .route("/orders/{id}", get(show_order))
        .route("/internal/wait", get(wait))
        .with_state(crm);
    Ok((router, vec![runner]))
}

impl Crm {
    fn on_status(&self, message: &Message) -> Result<(), String> {
        let status: StatusMessage = serde_json::from_slice(message.data())
            .map_err(|e| format!("invalid status message: {e}"))?;
        orderscope::stage!(stage::CRM_CONFIRMED);
        tracing::info!(status = %status.status, "status from MES");
        let mut orders = self.orders.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = orders
            .entry(status.order_id.clone())
            .or_insert_with(|| CrmOrder {
                order_id: status.order_id.clone(),
                channel: String::new(),
                items: 0,
                deadline: None,
                status: String::new(),
            });
        entry.status = status.status;
        drop(orders);
        self.statuses.send_modify(|n| *n += 1);
        Ok(())
    }
}

/// Why the CRM did not take an order.
#[derive(Debug)]
enum CrmError {
    Invalid(&'static str),
    Duplicate,
}

/// Checks an order before it goes to production (RED metrics as `function="validate_order"`).
#[orderscope::red]
fn validate_order(crm: &Crm, message: &OrderMessage) -> Result<(), CrmError> {
    if message.items.is_empty() {
        return Err(CrmError::Invalid("no items"));
    }
    if crm
        .orders
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .contains_key(&message.order_id)
    {
        return Err(CrmError::Duplicate);
    }
    Ok(())
}

async fn create_order(State(crm): State<Arc<Crm>>, order: Option<Order>, body: Bytes) -> Response {
    let message: OrderMessage = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, format!("invalid order: {e}")),
    };
    // The caller's order context arrives as baggage (the server layer put it in scope); a caller
    // that knows nothing of orderscope names the order only in the body.
    match Order::or_from_id(order, &message.order_id) {
        Some(order) => {
            if order.id() != message.order_id {
                tracing::warn!(order_id = %message.order_id, "order context names another order");
            }
            accept_order(crm, message)
                .with_order(order.into_inner())
                .await
        }
        None => accept_order(crm, message).await,
    }
}

async fn accept_order(crm: Arc<Crm>, message: OrderMessage) -> Response {
    match validate_order(&crm, &message) {
        Ok(()) => {}
        Err(CrmError::Invalid(why)) => return json_error(StatusCode::UNPROCESSABLE_ENTITY, why),
        Err(CrmError::Duplicate) => return json_error(StatusCode::CONFLICT, "order already known"),
    }
    crm.orders
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(
            message.order_id.clone(),
            CrmOrder {
                order_id: message.order_id.clone(),
                channel: message.channel.clone(),
                items: message.items.len(),
                deadline: message.deadline.clone(),
                status: "accepted".to_owned(),
            },
        );
    orderscope::stage!(stage::CRM_ACCEPTED);

    let payload = match serde_json::to_vec(&message) {
        Ok(p) => p,
        Err(e) => return json_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let published = crm
        .publisher
        .publish(
            &crm.topology.exchange(),
            ORDER_CREATED,
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            &payload,
            BasicProperties::default()
                .with_content_type("application/json".into())
                .with_delivery_mode(2),
        )
        .await;
    match published {
        Ok(_) => {
            tracing::info!("order handed to MES");
            json(
                StatusCode::ACCEPTED,
                &serde_json::json!({ "order_id": message.order_id, "status": "accepted" }),
            )
        }
        Err(e) => {
            tracing::error!(error = %e, outcome = e.outcome(), "order not handed to MES");
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("order not handed to MES: {e}"),
            )
        }
    }
}

async fn list_orders(State(crm): State<Arc<Crm>>) -> Response {
    let orders: Vec<CrmOrder> = crm
        .orders
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .values()
        .cloned()
        .collect();
    json(StatusCode::OK, &orders)
}

async fn show_order(State(crm): State<Arc<Crm>>, Path(id): Path<String>) -> Response {
    match crm
        .orders
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&id)
    {
        Some(order) => json(StatusCode::OK, order),
        None => json_error(StatusCode::NOT_FOUND, "no such order"),
    }
}

/// `GET /internal/wait?statuses=N&timeout_ms=T`: waits for N status messages (see [`wait_for_count`]).
async fn wait(State(crm): State<Arc<Crm>>, RawQuery(query): RawQuery) -> Response {
    wait_for_count(&crm.statuses, "statuses", query.as_deref()).await
}
