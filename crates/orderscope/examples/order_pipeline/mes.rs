//! The MES: schedules orders from `mes.orders`, publishes `order.status` back to the CRM, parks
//! dead letters, and serves the operators' dashboard `GET /dashboard/orders` (filters, paging).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use lapin::BasicProperties;
use lapin::options::BasicPublishOptions;
use orderscope::OrderContext;
use orderscope::amqp::{Consume, Message, PublishError, RetryPolicy, RunOptions, run_reconnecting};
use serde::Serialize;
use tokio::sync::watch;
use tracing::Instrument as _;

use crate::amqp::{Publisher, declare_topology};
use crate::model::{
    CATALOGUE, MAX_QTY, ORDER_STATUS, OrderMessage, RETIRED_STATUS_KEY, SKU_PANIC, SKU_UNROUTABLE,
    StatusMessage, Topology, parse_rfc3339, rfc3339, stage,
};
use crate::service::{Built, Stop, json, json_error, query_pairs, wait_for_count};

/// An order as the MES dashboard shows it.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct MesOrder {
    order_id: String,
    channel: String,
    items: usize,
    units: i64,
    deadline: Option<String>,
    received_at: String,
    /// `received`, `scheduled`, `rejected`, `dead_lettered`.
    status: String,
    /// Whether the status reached the CRM (`false` when its message was unroutable).
    status_delivered: Option<bool>,
    /// Whether the order was finished after its deadline.
    overdue: bool,
    /// How many times MES saw the order's message.
    attempts: u32,
}

struct Mes {
    /// `order.status` to the CRM, on a connection that comes back when the broker closes it.
    publisher: Publisher,
    topology: Topology,
    orders: Mutex<Vec<MesOrder>>,
    /// Orders that reached an end in MES (scheduled or rejected and reported, or dead-lettered).
    finished: watch::Sender<usize>,
}

/// Connects to RabbitMQ, starts the order and dead-letter consumers; returns the routes.
pub(crate) async fn start(stop: Stop) -> Built {
    let topology = Topology::from_env();
    let publisher = Publisher::connect(crate::amqp::connector("mes-publisher")).await?;
    declare_topology(publisher.channel().get_ref(), &topology).await?;
    let closing = publisher.clone();
    let (finished, _) = watch::channel(0);
    let mes = Arc::new(Mes {
        publisher,
        topology: topology.clone(),
        orders: Mutex::new(Vec::new()),
        finished,
    });

    // New orders: one at a time, in order (the planner is a single machine). A failing or
    // panicking handler gets one retry half a second later (the order waits in
    // `mes.orders.retry.1`, not in front of the others), then its message goes to the dead-letter
    // queue. The consumers reconnect when the broker closes their connection.
    let connector = crate::amqp::connector("mes");
    let retries = crate::amqp::mes_retries(&topology);
    let m = Arc::clone(&mes);
    let options = RunOptions::new()
        .retries(retries, mes.publisher.channel())
        // Orders from publishers without baggage: the id is in the body.
        .order_from(|message| {
            let order: OrderMessage = serde_json::from_slice(message.data()).ok()?;
            OrderContext::new(order.order_id).ok()
        })
        .shutdown(stop.clone().wait());
    let consume = Consume::new(topology.mes_queue(), "mes").prefetch(1);
    let orders = tokio::spawn(async move {
        let handler = move |message: Message| {
            let mes = Arc::clone(&m);
            async move { mes.on_order(message).await }
        };
        if let Err(e) = run_reconnecting(connector, consume, handler, options).await {
            tracing::error!(error = %e, "the order consumer stopped");
        }
    });

    // Dead letters: parked for the operators, visible on the dashboard.
    let m = Arc::clone(&mes);
    let options = RunOptions::new()
        .retry(RetryPolicy::Requeue)
        .shutdown(stop.wait());
    let consume = Consume::new(topology.mes_dead_letter_queue(), "mes-dead-letters").prefetch(8);
    let dead = tokio::spawn(async move {
        let handler = move |message: Message| {
            let mes = Arc::clone(&m);
            async move { mes.on_dead_letter(&message) }
        };
        let connector = crate::amqp::connector("mes-dead-letters");
        if let Err(e) = run_reconnecting(connector, consume, handler, options).await {
            tracing::error!(error = %e, "the dead-letter consumer stopped");
        }
        closing.close().await;
    });

    let router = Router::new()
        .route("/dashboard/orders", get(dashboard))
        .route("/dashboard/orders/{id}", get(dashboard_order))
        .route("/internal/wait", get(wait))
        .with_state(mes);
    Ok((router, vec![orders, dead]))
}

/// Why MES does not schedule an order (`error_type="unknown_item"` or `"over_capacity"` in
/// `function_calls_total`).
#[derive(Debug, orderscope::ErrorType)]
pub(crate) enum Rejection {
    /// An item MES does not make.
    UnknownItem(String),
    /// More units than a line can take.
    OverCapacity(i64),
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::UnknownItem(sku) => write!(f, "unknown item {sku}"),
            Rejection::OverCapacity(qty) => {
                write!(f, "{qty} units exceed the line capacity of {MAX_QTY}")
            }
        }
    }
}

/// Plans the order on the machines: the time it takes grows with the motors in it.
#[orderscope::red]
async fn schedule(order: &OrderMessage) -> Result<Duration, Rejection> {
    let mut work = Duration::ZERO;
    for item in &order.items {
        let Some((_, per_unit)) = CATALOGUE.iter().find(|(sku, _)| *sku == item.sku) else {
            return Err(Rejection::UnknownItem(item.sku.clone()));
        };
        if item.qty > MAX_QTY {
            return Err(Rejection::OverCapacity(item.qty));
        }
        work += Duration::from_millis(per_unit * item.qty.unsigned_abs());
    }
    let work = work.min(Duration::from_secs(2));
    // Simulated planning time.
    tokio::time::sleep(work).await;
    Ok(work)
}

/// Why a delivery could not be handled.
#[derive(Debug)]
pub(crate) enum MesError {
    /// The body is not an order.
    Invalid(String),
}

impl std::fmt::Display for MesError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MesError::Invalid(e) => write!(f, "invalid order message: {e}"),
        }
    }
}

impl Mes {
    fn update(&self, id: &str, f: impl FnOnce(&mut MesOrder)) {
        let mut orders = self.orders.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(order) = orders.iter_mut().find(|o| o.order_id == id) {
            f(order);
        }
    }

    /// A new order from the CRM. The runner put the message's trace and order in scope.
    async fn on_order(&self, message: Message) -> Result<(), MesError> {
        let order: OrderMessage =
            serde_json::from_slice(message.data()).map_err(|e| MesError::Invalid(e.to_string()))?;
        orderscope::stage!(stage::MES_RECEIVED);
        {
            let mut orders = self.orders.lock().unwrap_or_else(PoisonError::into_inner);
            match orders.iter_mut().find(|o| o.order_id == order.order_id) {
                Some(known) => known.attempts += 1,
                None => orders.push(MesOrder {
                    order_id: order.order_id.clone(),
                    channel: order.channel.clone(),
                    items: order.items.len(),
                    units: order.items.iter().map(|i| i.qty).sum(),
                    deadline: order.deadline.clone(),
                    received_at: rfc3339(SystemTime::now()),
                    status: "received".to_owned(),
                    status_delivered: None,
                    overdue: false,
                    attempts: 1,
                }),
            }
        }
        tracing::info!(
            items = order.items.len(),
            redelivered = message.redelivered(),
            "order received"
        );

        if order.items.iter().any(|i| i.sku == SKU_PANIC) {
            // The demo's panicking handler: the runner catches it, records it, and nacks the
            // message (requeued once, then dead-lettered).
            panic!("planner crashed on item {SKU_PANIC}");
        }

        let status = match schedule(&order).await {
            Ok(work) => {
                orderscope::stage!(stage::MES_SCHEDULED);
                tracing::info!(planning_ms = work.as_millis() as u64, "order scheduled");
                "scheduled"
            }
            Err(rejection) => {
                orderscope::stage!(stage::MES_REJECTED);
                orderscope::order_event!(tracing::Level::WARN, "order rejected", reason = %rejection);
                "rejected"
            }
        };
        let overdue = order
            .deadline
            .as_deref()
            .and_then(parse_rfc3339)
            .is_some_and(|d| SystemTime::now() > d);
        self.update(&order.order_id, |o| {
            o.status = status.to_owned();
            o.overdue = overdue;
        });

        // Report back to the CRM. An order with the FAULT-UNROUTABLE item goes through MES's old
        // status path, whose routing key no queue is bound to any more.
        let routing_key = if order.items.iter().any(|i| i.sku == SKU_UNROUTABLE) {
            RETIRED_STATUS_KEY
        } else {
            ORDER_STATUS
        };
        let body = StatusMessage {
            order_id: order.order_id.clone(),
            status: status.to_owned(),
        };
        let payload = serde_json::to_vec(&body).map_err(|e| MesError::Invalid(e.to_string()))?;
        let published = self
            .publisher
            .publish(
                &self.topology.exchange(),
                routing_key,
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
        let delivered = match published {
            Ok(_) => true,
            Err(PublishError::Returned {
                reply_code,
                reply_text,
                ..
            }) => {
                tracing::error!(routing_key, reply_code, reply_text = %reply_text, "status update unroutable: the CRM will not hear of this order");
                false
            }
            Err(e) => {
                tracing::error!(error = %e, "status update not confirmed");
                false
            }
        };
        self.update(&order.order_id, |o| o.status_delivered = Some(delivered));
        self.finished.send_modify(|n| *n += 1);
        Ok(())
    }

    /// A message MES gave up on.
    fn on_dead_letter(&self, message: &Message) -> Result<(), MesError> {
        let order: OrderMessage =
            serde_json::from_slice(message.data()).map_err(|e| MesError::Invalid(e.to_string()))?;
        orderscope::stage!(stage::MES_DEAD_LETTERED);
        let id = OrderContext::current()
            .map(|o| o.id().to_owned())
            .unwrap_or(order.order_id);
        tracing::error!("order parked in the dead-letter queue");
        self.update(&id, |o| o.status = "dead_lettered".to_owned());
        self.finished.send_modify(|n| *n += 1);
        Ok(())
    }
}

#[derive(Serialize)]
struct Page {
    total: usize,
    page: usize,
    per_page: usize,
    orders: Vec<MesOrder>,
}

/// `GET /dashboard/orders?status=&channel=&overdue=true|false&q=&page=1&per_page=20`
async fn dashboard(State(mes): State<Arc<Mes>>, RawQuery(query): RawQuery) -> Response {
    let mut status = None;
    let mut channel = None;
    let mut overdue = None;
    let mut q = None;
    let mut page = 1usize;
    let mut per_page = 20usize;
    for (k, v) in query_pairs(query.as_deref()) {
        match k.as_str() {
            "status" => status = Some(v),
            "channel" => channel = Some(v),
            "overdue" => match v.as_str() {
                "true" => overdue = Some(true),
                "false" => overdue = Some(false),
                _ => return json_error(StatusCode::BAD_REQUEST, "overdue is true or false"),
            },
            "q" => q = Some(v),
            "page" => match v.parse::<usize>() {
                Ok(p) if p >= 1 => page = p,
                _ => return json_error(StatusCode::BAD_REQUEST, "page is a number from 1"),
            },
            "per_page" => match v.parse::<usize>() {
                Ok(p) if (1..=100).contains(&p) => per_page = p,
                _ => {
                    return json_error(
                        StatusCode::BAD_REQUEST,
                        "per_page is a number from 1 to 100",
                    );
                }
            },
            _ => return json_error(StatusCode::BAD_REQUEST, format!("unknown filter {k:?}")),
        }
    }
    // The "database" query gets a span of its own, so a slow dashboard names its slow part.
    let span = tracing::info_span!(
        "db.query",
        db.system = "memory",
        db.operation.name = "select"
    );
    let (total, orders) = async {
        let all = mes.orders.lock().unwrap_or_else(PoisonError::into_inner);
        let matching: Vec<&MesOrder> = all
            .iter()
            .filter(|o| status.as_deref().is_none_or(|s| o.status == s))
            .filter(|o| channel.as_deref().is_none_or(|c| o.channel == c))
            .filter(|o| overdue.is_none_or(|want| o.overdue == want))
            .filter(|o| q.as_deref().is_none_or(|q| o.order_id.contains(q)))
            .collect();
        let total = matching.len();
        let orders = matching
            .into_iter()
            .skip((page - 1) * per_page)
            .take(per_page)
            .cloned()
            .collect::<Vec<_>>();
        (total, orders)
    }
    .instrument(span)
    .await;
    json(
        StatusCode::OK,
        &Page {
            total,
            page,
            per_page,
            orders,
        },
    )
}

async fn dashboard_order(State(mes): State<Arc<Mes>>, Path(id): Path<String>) -> Response {
    let orders = mes.orders.lock().unwrap_or_else(PoisonError::into_inner);
    match orders.iter().find(|o| o.order_id == id) {
        Some(order) => json(StatusCode::OK, order),
        None => json_error(StatusCode::NOT_FOUND, "no such order"),
    }
}

/// `GET /internal/wait?finished=N&timeout_ms=T`: waits for N orders to reach an end in MES (see
/// [`wait_for_count`]).
async fn wait(State(mes): State<Arc<Mes>>, RawQuery(query): RawQuery) -> Response {
    wait_for_count(&mes.finished, "finished", query.as_deref()).await
}
