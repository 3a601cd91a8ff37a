//! The MES: schedules orders from `mes.orders`, publishes `order.status` back to the CRM, parks
//! dead letters, and serves the operators' dashboard `GET /dashboard/orders` (filters, paging).
//!
//! Orders and their lines live in PostgreSQL (see `mes_db`), behind orderscope's instrumented
//! pool. The dashboard's page exists in two versions: as first written (a `COUNT(*)` for the
//! pager, a filter no index serves, one query per order for its lines) and as fixed after its
//! telemetry was read (the count cached, the index, one query with a JOIN).
//! `POST /internal/dashboard?version=fixed` switches to the fixed one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
use orderscope::moka::{CacheName, InstrumentedCache};
use orderscope::sqlx::InstrumentedPool;
use serde::Serialize;
use sqlx::AssertSqlSafe;
use tokio::sync::watch;

use crate::amqp::{Publisher, declare_topology};
use crate::mes_db;
use crate::model::{
    CATALOGUE, MAX_QTY, ORDER_STATUS, OrderMessage, RETIRED_STATUS_KEY, SKU_PANIC, SKU_UNROUTABLE,
    StatusMessage, Topology, parse_rfc3339, stage,
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

/// The cache of the dashboard's pager counts, by filter.
const ORDER_COUNT: CacheName = CacheName::new("dashboard_order_count");

/// How long a pager count is reused: the pager may lag new orders by this much.
const ORDER_COUNT_TTL: Duration = Duration::from_secs(30);

/// The columns of an order as the dashboard shows it, `o` being `orders`.
const ORDER_COLUMNS: &str = "o.order_id, o.channel, o.status, \
    to_char(o.deadline AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
    to_char(o.received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
    o.status_delivered, o.overdue, o.attempts";

/// A row of [`ORDER_COLUMNS`].
type OrderRow = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<bool>,
    bool,
    i32,
);

/// A row of [`ORDER_COLUMNS`] followed by the order's line count and units (the JOINed queries).
type OrderRowWithLines = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<bool>,
    bool,
    i32,
    i64,
    i64,
);

impl MesOrder {
    fn from_row_with_lines(row: OrderRowWithLines) -> Self {
        let (a, b, c, d, e, f, g, h, items, units) = row;
        Self::from_row((a, b, c, d, e, f, g, h), items, units)
    }

    fn from_row(row: OrderRow, items: i64, units: i64) -> Self {
        let (order_id, channel, status, deadline, received_at, status_delivered, overdue, attempts) =
            row;
        MesOrder {
            order_id,
            channel,
            items: usize::try_from(items).unwrap_or_default(),
            units,
            deadline,
            received_at: received_at.unwrap_or_default(),
            status,
            status_delivered,
            overdue,
            attempts: u32::try_from(attempts).unwrap_or_default(),
        }
    }
}

struct Mes {
    /// `order.status` to the CRM, on a connection that comes back when the broker closes it.
    publisher: Publisher,
    topology: Topology,
    db: InstrumentedPool,
    /// Pager counts by filter (the fixed dashboard).
    counts: InstrumentedCache<String, i64>,
    /// Whether the dashboard runs its fixed version.
    fixed: AtomicBool,
    /// Orders that reached an end in MES (scheduled or rejected and reported, or dead-lettered).
    finished: watch::Sender<usize>,
}

/// Connects to PostgreSQL and RabbitMQ, starts the order and dead-letter consumers; returns the
/// routes.
pub(crate) async fn start(stop: Stop) -> Built {
    let slow = std::env::var(mes_db::ENV_SLOW_QUERY_MS)
        .ok()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(mes_db::DEFAULT_SLOW_QUERY_MS);
    let pool = mes_db::connect(
        &mes_db::database_url(),
        &mes_db::schema_from_env(),
        4,
        Duration::from_secs(5),
    )
    .await?;
    let db = InstrumentedPool::builder()
        .pool_name("mes")
        .slow_query_threshold(Duration::from_millis(slow))
        .build(pool);
    let counts = InstrumentedCache::new(
        ORDER_COUNT,
        moka::future::Cache::builder()
            .max_capacity(1_000)
            .time_to_live(ORDER_COUNT_TTL),
    );
    let topology = Topology::from_env();
    let publisher = Publisher::connect(crate::amqp::connector("mes-publisher")).await?;
    declare_topology(publisher.channel().get_ref(), &topology).await?;
    let closing = publisher.clone();
    let (finished, _) = watch::channel(0);
    let mes = Arc::new(Mes {
        publisher,
        topology: topology.clone(),
        db,
        counts,
        fixed: AtomicBool::new(false),
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
            async move { mes.on_dead_letter(&message).await }
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
        .route("/internal/dashboard", axum::routing::post(switch_dashboard))
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
    /// The database failed.
    Database(sqlx::Error),
}

impl From<sqlx::Error> for MesError {
    fn from(e: sqlx::Error) -> Self {
        MesError::Database(e)
    }
}

impl std::fmt::Display for MesError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MesError::Invalid(e) => write!(f, "invalid order message: {e}"),
            MesError::Database(e) => write!(f, "database: {e}"),
        }
    }
}

impl Mes {
    /// Records a new order with its lines, or one more delivery of a known one.
    async fn record(&self, order: &OrderMessage) -> Result<(), sqlx::Error> {
        // Only a deadline PostgreSQL will read the same way.
        let deadline = order
            .deadline
            .as_deref()
            .filter(|d| parse_rfc3339(d).is_some());
        let mut tx = self.db.begin().await?;
        let inserted: bool = sqlx::query_scalar(
            "INSERT INTO orders (order_id, channel, status, deadline) \
             VALUES ($1, $2, 'received', $3::timestamptz) \
             ON CONFLICT (order_id) DO UPDATE SET attempts = orders.attempts + 1 \
             RETURNING xmax = 0",
        )
        .bind(&order.order_id)
        .bind(&order.channel)
        .bind(deadline)
        .fetch_one(&mut *tx)
        .await?;
        if inserted {
            let skus: Vec<&str> = order.items.iter().map(|i| i.sku.as_str()).collect();
            let qtys: Vec<i64> = order.items.iter().map(|i| i.qty).collect();
            sqlx::query(
                "INSERT INTO order_lines (order_id, line_no, sku, qty) \
                 SELECT $1, t.n::int4, t.sku, t.qty \
                 FROM UNNEST($2::text[], $3::int8[]) WITH ORDINALITY AS t(sku, qty, n)",
            )
            .bind(&order.order_id)
            .bind(skus)
            .bind(qtys)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// Runs an `UPDATE` of one order; a failure is logged (the order's state in MES lags).
    async fn update(
        &self,
        query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) {
        if let Err(e) = query.execute(&self.db).await {
            tracing::error!(error = %e, "cannot update the order in the database");
        }
    }

    /// A new order from the CRM. The runner put the message's trace and order in scope.
    async fn on_order(&self, message: Message) -> Result<(), MesError> {
        let order: OrderMessage =
            serde_json::from_slice(message.data()).map_err(|e| MesError::Invalid(e.to_string()))?;
        orderscope::stage!(stage::MES_RECEIVED);
        self.record(&order).await?;
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
        self.update(
            sqlx::query("UPDATE orders SET status = $2, overdue = $3 WHERE order_id = $1")
                .bind(&order.order_id)
                .bind(status)
                .bind(overdue),
        )
        .await;

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
        self.update(
            sqlx::query("UPDATE orders SET status_delivered = $2 WHERE order_id = $1")
                .bind(&order.order_id)
                .bind(delivered),
        )
        .await;
        self.finished.send_modify(|n| *n += 1);
        Ok(())
    }

    /// A message MES gave up on.
    async fn on_dead_letter(&self, message: &Message) -> Result<(), MesError> {
        let order: OrderMessage =
            serde_json::from_slice(message.data()).map_err(|e| MesError::Invalid(e.to_string()))?;
        orderscope::stage!(stage::MES_DEAD_LETTERED);
        let id = OrderContext::current()
            .map(|o| o.id().to_owned())
            .unwrap_or(order.order_id);
        tracing::error!("order parked in the dead-letter queue");
        self.update(
            sqlx::query("UPDATE orders SET status = 'dead_lettered' WHERE order_id = $1").bind(id),
        )
        .await;
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

/// A value a dashboard filter binds.
enum Bind {
    Text(String),
    Bool(bool),
}

/// The dashboard's filter as SQL: ` WHERE …` with `$1…$n`, and the values to bind.
struct Filter {
    sql: String,
    binds: Vec<Bind>,
}

impl Filter {
    fn new(
        status: Option<String>,
        channel: Option<String>,
        overdue: Option<bool>,
        q: Option<String>,
    ) -> Self {
        let mut terms = Vec::new();
        let mut binds = Vec::new();
        let mut push = |term: &str, bind: Bind| {
            binds.push(bind);
            terms.push(term.replace('?', &format!("${}", binds.len())));
        };
        if let Some(v) = status {
            push("o.status = ?", Bind::Text(v));
        }
        if let Some(v) = channel {
            push("o.channel = ?", Bind::Text(v));
        }
        if let Some(v) = overdue {
            push("o.overdue = ?", Bind::Bool(v));
        }
        if let Some(v) = q {
            push("strpos(o.order_id, ?) > 0", Bind::Text(v));
        }
        let sql = if terms.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", terms.join(" AND "))
        };
        Filter { sql, binds }
    }

    /// The next parameter's number.
    fn next(&self) -> usize {
        self.binds.len() + 1
    }

    /// A key for the filter's cached count.
    fn key(&self) -> String {
        let mut key = self.sql.clone();
        for bind in &self.binds {
            key.push('\u{1f}');
            match bind {
                Bind::Text(v) => key.push_str(v),
                Bind::Bool(v) => key.push_str(if *v { "t" } else { "f" }),
            }
        }
        key
    }

    fn bind<'q, O>(
        &self,
        mut query: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
        for bind in &self.binds {
            query = match bind {
                Bind::Text(v) => query.bind(v.clone()),
                Bind::Bool(v) => query.bind(*v),
            };
        }
        query
    }
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
                Ok(p) if (1..=1_000_000).contains(&p) => page = p,
                _ => {
                    return json_error(
                        StatusCode::BAD_REQUEST,
                        "page is a number from 1 to 1000000",
                    );
                }
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
    let filter = Filter::new(status, channel, overdue, q);
    let offset = ((page - 1) * per_page) as i64;
    let limit = per_page as i64;
    let result = if mes.fixed.load(Ordering::Relaxed) {
        page_fixed(&mes, &filter, limit, offset).await
    } else {
        page_as_first_written(&mes, &filter, limit, offset).await
    };
    match result {
        Ok((total, orders)) => json(
            StatusCode::OK,
            &Page {
                total: usize::try_from(total).unwrap_or_default(),
                page,
                per_page,
                orders,
            },
        ),
        Err(e) => {
            tracing::error!(error = %e, "dashboard query failed");
            json_error(StatusCode::SERVICE_UNAVAILABLE, "the database failed")
        }
    }
}

/// The page as first written: the pager's `COUNT(*)` over every matching order, the page itself
/// (no index serves the filter or the order), then each order's lines, one query per order.
async fn page_as_first_written(
    mes: &Mes,
    filter: &Filter,
    limit: i64,
    offset: i64,
) -> Result<(i64, Vec<MesOrder>), sqlx::Error> {
    let count = format!("SELECT count(*) FROM orders o{}", filter.sql);
    let (total,): (i64,) = filter
        .bind(sqlx::query_as(AssertSqlSafe(count)))
        .fetch_one(&mes.db)
        .await?;
    let n = filter.next();
    let page = format!(
        "SELECT {ORDER_COLUMNS} FROM orders o{} \
         ORDER BY o.received_at DESC, o.order_id LIMIT ${n} OFFSET ${}",
        filter.sql,
        n + 1
    );
    let rows: Vec<OrderRow> = filter
        .bind(sqlx::query_as(AssertSqlSafe(page)))
        .bind(limit)
        .bind(offset)
        .fetch_all(&mes.db)
        .await?;
    let mut orders = Vec::with_capacity(rows.len());
    for row in rows {
        let lines: Vec<(String, i64)> =
            sqlx::query_as("SELECT sku, qty FROM order_lines WHERE order_id = $1 ORDER BY line_no")
                .bind(&row.0)
                .fetch_all(&mes.db)
                .await?;
        let units = lines.iter().map(|(_, qty)| qty).sum();
        orders.push(MesOrder::from_row(row, lines.len() as i64, units));
    }
    Ok((total, orders))
}

/// The page as fixed: the count from the cache (loaded on a miss), the page and its lines in one
/// query, the filter and order served by the `orders_dashboard` index.
async fn page_fixed(
    mes: &Mes,
    filter: &Filter,
    limit: i64,
    offset: i64,
) -> Result<(i64, Vec<MesOrder>), sqlx::Error> {
    let total = mes
        .counts
        .try_get_with(filter.key(), async {
            let count = format!("SELECT count(*) FROM orders o{}", filter.sql);
            let (total,): (i64,) = filter
                .bind(sqlx::query_as(AssertSqlSafe(count)))
                .fetch_one(&mes.db)
                .await?;
            Ok::<_, sqlx::Error>(total)
        })
        .await
        .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
    let n = filter.next();
    let page = format!(
        "SELECT {ORDER_COLUMNS}, count(l.line_no), coalesce(sum(l.qty), 0)::int8 \
         FROM (SELECT * FROM orders o{} \
               ORDER BY o.received_at DESC, o.order_id LIMIT ${n} OFFSET ${}) o \
         LEFT JOIN order_lines l ON l.order_id = o.order_id \
         GROUP BY o.order_id, o.channel, o.status, o.deadline, o.received_at, \
                  o.status_delivered, o.overdue, o.attempts \
         ORDER BY o.received_at DESC, o.order_id",
        filter.sql,
        n + 1
    );
    let rows: Vec<OrderRowWithLines> = filter
        .bind(sqlx::query_as(AssertSqlSafe(page)))
        .bind(limit)
        .bind(offset)
        .fetch_all(&mes.db)
        .await?;
    let orders = rows
        .into_iter()
        .map(MesOrder::from_row_with_lines)
        .collect();
    Ok((total, orders))
}

async fn dashboard_order(State(mes): State<Arc<Mes>>, Path(id): Path<String>) -> Response {
    let row: Result<Option<OrderRowWithLines>, sqlx::Error> =
        sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {ORDER_COLUMNS}, count(l.line_no), coalesce(sum(l.qty), 0)::int8 \
         FROM orders o LEFT JOIN order_lines l ON l.order_id = o.order_id \
         WHERE o.order_id = $1 GROUP BY o.order_id"
        )))
        .bind(&id)
        .fetch_optional(&mes.db)
        .await;
    match row {
        Ok(Some(row)) => json(StatusCode::OK, &MesOrder::from_row_with_lines(row)),
        Ok(None) => json_error(StatusCode::NOT_FOUND, "no such order"),
        Err(e) => {
            tracing::error!(error = %e, "order query failed");
            json_error(StatusCode::SERVICE_UNAVAILABLE, "the database failed")
        }
    }
}

/// `POST /internal/dashboard?version=fixed|first`: which version of the dashboard's page runs.
async fn switch_dashboard(State(mes): State<Arc<Mes>>, RawQuery(query): RawQuery) -> Response {
    let version = query_pairs(query.as_deref())
        .into_iter()
        .find(|(k, _)| k == "version")
        .map(|(_, v)| v);
    let fixed = match version.as_deref() {
        Some("fixed") => true,
        Some("first") => false,
        _ => return json_error(StatusCode::BAD_REQUEST, "version is fixed or first"),
    };
    mes.fixed.store(fixed, Ordering::Relaxed);
    tracing::info!(fixed, "dashboard version switched");
    json(StatusCode::OK, &serde_json::json!({ "fixed": fixed }))
}

/// `GET /internal/wait?finished=N&timeout_ms=T`: waits for N orders to reach an end in MES (see
/// [`wait_for_count`]).
async fn wait(State(mes): State<Arc<Mes>>, RawQuery(query): RawQuery) -> Response {
    wait_for_count(&mes.finished, "finished", query.as_deref()).await
}
