//! Against the real PostgreSQL (`DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/test`):
//! spans, metrics, errors, transactions, pool exhaustion, slow queries and N+1 detection.
//!
//! The tracer provider, metrics recorder and log subscriber are process-wide here, so the tests
//! of this file run one at a time (`SERIAL`).

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::Context;
use opentelemetry::trace::{FutureExt as _, TraceContextExt, Tracer as _};
use orderscope_context::{Operation, OrderContext};
use orderscope_sqlx::{InstrumentedPool, REPEATED_QUERY_EVENT};
use orderscope_testing::OrderSpanProcessor;
use orderscope_testing::{LocalMetrics, LogCapture, ReceivedSpan, SpanCapture, SpanKind};
use sqlx::postgres::PgPoolOptions;
use tracing_subscriber::layer::SubscriberExt as _;

struct Globals {
    spans: SpanCapture,
    metrics: LocalMetrics,
    logs: LogCapture,
}

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn globals() -> &'static Globals {
    static GLOBALS: OnceLock<Globals> = OnceLock::new();
    GLOBALS.get_or_init(|| {
        let spans = SpanCapture::builder()
            .with_processor(OrderSpanProcessor::new())
            .build();
        opentelemetry::global::set_tracer_provider(spans.provider().clone());
        let metrics = LocalMetrics::new();
        metrics.install_global().expect("no other recorder");
        let logs = LogCapture::new();
        let subscriber = tracing_subscriber::registry()
            .with(orderscope_logs::JsonLayer::new("sqlx-test").with_writer(logs.clone()));
        tracing::subscriber::set_global_default(subscriber).expect("no other subscriber");
        Globals {
            spans,
            metrics,
            logs,
        }
    })
}

fn url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

async fn pool(options: PgPoolOptions) -> sqlx::PgPool {
    options.connect(&url()).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is needed at {} (scripts/test starts it): {e}",
            url()
        )
    })
}

/// A table name no other test (or concurrent run) uses.
fn table(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}_{}_{nanos}_{n}", std::process::id())
}

fn spans_named(name: &str) -> Vec<ReceivedSpan> {
    let spans = globals().spans.spans();
    spans.into_iter().filter(|s| s.name == name).collect()
}

async fn create(pool: &sqlx::PgPool, table: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {table} (id bigint PRIMARY KEY, sku text NOT NULL)"
    )))
    .execute(pool)
    .await
    .unwrap();
}

async fn drop_table(pool: &sqlx::PgPool, table: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS {table}")))
        .execute(pool)
        .await
        .unwrap();
}

fn sql(text: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(text)
}

#[tokio::test]
async fn queries_make_client_spans_and_duration_metrics() {
    let g = globals();
    let _serial = SERIAL.lock().await;
    let plain = pool(PgPoolOptions::new().max_connections(2)).await;
    let pool = InstrumentedPool::new(plain.clone());
    let t = table("spans");
    create(&plain, &t).await;
    g.metrics.snapshot();

    let tracer = g.spans.tracer("test");
    let parent = tracer.start("handler");
    let order = OrderContext::new("ORD-2026-000777").unwrap();
    let cx = Context::current_with_value(order).with_span(parent);
    async {
        for (id, sku) in [(1_i64, "a"), (2, "b"), (3, "c")] {
            sqlx::query(sql(format!("INSERT INTO {t} (id, sku) VALUES ($1, $2)")))
                .bind(id)
                .bind(sku)
                .execute(&pool)
                .await
                .unwrap();
        }
        let rows: Vec<(i64, String)> =
            sqlx::query_as(sql(format!("SELECT id, sku FROM {t} ORDER BY id")))
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(rows.len(), 3);
        let count: i64 = sqlx::query_scalar(sql(format!("SELECT count(*) FROM {t} WHERE id > 1")))
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(count, 2);
        let none: Option<(i64,)> = sqlx::query_as(sql(format!("SELECT id FROM {t} WHERE id = $1")))
            .bind(99_i64)
            .fetch_optional(&pool)
            .await
            .unwrap();
        assert!(none.is_none());
    }
    .with_context(cx.clone())
    .await;
    cx.span().end();

    let summary = format!("SELECT {t}");
    let selects = spans_named(&summary);
    assert_eq!(selects.len(), 3, "{selects:#?}");
    let handler = spans_named("handler").pop().unwrap();
    let all = selects
        .iter()
        .find(|s| {
            s.attr_str("db.query.text") == Some(&*format!("SELECT id, sku FROM {t} ORDER BY id"))
        })
        .expect("the fetch_all span");
    assert_eq!(all.kind, SpanKind::Client);
    assert!(all.is_child_of(&handler));
    assert_eq!(all.attr_str("db.system.name"), Some("postgresql"));
    assert_eq!(all.attr_str("db.namespace"), Some("test"));
    assert_eq!(all.attr_str("server.address"), Some("127.0.0.1"));
    assert_eq!(all.attr_i64("server.port"), Some(5432));
    assert_eq!(all.attr_str("db.query.summary"), Some(&*summary));
    assert_eq!(all.attr_i64("db.response.returned_rows"), Some(3));
    assert_eq!(all.attr_str("order.id"), Some("ORD-2026-000777"));
    assert!(!all.status.is_error());

    // Literals are sanitised; the optional fetch returned no row.
    assert!(
        selects.iter().any(|s| s.attr_str("db.query.text")
            == Some(&*format!("SELECT count(*) FROM {t} WHERE id > ?")))
    );
    assert!(
        selects
            .iter()
            .any(|s| s.attr_i64("db.response.returned_rows") == Some(0))
    );
    let inserts = spans_named(&format!("INSERT {t}"));
    assert_eq!(inserts.len(), 3);

    let snapshot = g.metrics.snapshot();
    let labels = [
        ("db_system_name", "postgresql"),
        ("db_namespace", "test"),
        ("db_query_summary", summary.as_str()),
    ];
    let values = snapshot
        .histogram("db_client_operation_duration_seconds", &labels)
        .expect("the histogram");
    assert_eq!(values.len(), 3);
    assert!(values.iter().all(|v| *v > 0.0 && *v < 5.0));
    drop_table(&plain, &t).await;
}

#[tokio::test]
async fn errors_carry_the_sqlstate() {
    let g = globals();
    let _serial = SERIAL.lock().await;
    let pool = InstrumentedPool::new(pool(PgPoolOptions::new().max_connections(1)).await);
    g.metrics.snapshot();
    let t = table("missing");
    let error = sqlx::query(sql(format!("SELECT * FROM {t}")))
        .fetch_all(&pool)
        .await
        .unwrap_err();
    assert_eq!(
        error.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("42P01")
    );
    let span = spans_named(&format!("SELECT {t}")).pop().expect("the span");
    assert!(span.status.is_error());
    assert_eq!(span.attr_str("db.response.status_code"), Some("42P01"));
    assert_eq!(span.attr_str("error.type"), Some("42P01"));
    let snapshot = g.metrics.snapshot();
    let summary = format!("SELECT {t}");
    let values = snapshot
        .histogram(
            "db_client_operation_duration_seconds",
            &[
                ("db_system_name", "postgresql"),
                ("db_namespace", "test"),
                ("db_query_summary", summary.as_str()),
                ("error_type", "42P01"),
            ],
        )
        .expect("an error series");
    assert_eq!(values.len(), 1);
}

#[tokio::test]
async fn transactions_trace_begin_statements_and_commit_or_rollback() {
    let g = globals();
    let _serial = SERIAL.lock().await;
    let plain = pool(PgPoolOptions::new().max_connections(2)).await;
    let pool = InstrumentedPool::new(plain.clone());
    let t = table("tx");
    create(&plain, &t).await;
    g.spans.reset();

    let mut tx = pool.begin().await.unwrap();
    sqlx::query(sql(format!(
        "INSERT INTO {t} (id, sku) VALUES ($1, 'kept')"
    )))
    .bind(1_i64)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let mut tx = pool.begin().await.unwrap();
    sqlx::query(sql(format!(
        "INSERT INTO {t} (id, sku) VALUES ($1, 'undone')"
    )))
    .bind(2_i64)
    .execute(&mut *tx)
    .await
    .unwrap();
    let seen: i64 = sqlx::query_scalar(sql(format!("SELECT count(*) FROM {t}")))
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(seen, 2);
    tx.rollback().await.unwrap();

    let kept: i64 = sqlx::query_scalar(sql(format!("SELECT count(*) FROM {t}")))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(kept, 1);
    assert_eq!(spans_named("BEGIN").len(), 2);
    assert_eq!(spans_named("COMMIT").len(), 1);
    assert_eq!(spans_named("ROLLBACK").len(), 1);
    assert_eq!(spans_named(&format!("INSERT {t}")).len(), 2);
    assert_eq!(spans_named(&format!("SELECT {t}")).len(), 2);
    drop_table(&plain, &t).await;
}

#[tokio::test]
async fn pool_exhaustion_counts_timeouts_and_waits() {
    let g = globals();
    let _serial = SERIAL.lock().await;
    let plain = pool(
        PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_millis(300)),
    )
    .await;
    let pool = InstrumentedPool::builder()
        .pool_name("exhausted")
        .build(plain);
    g.metrics.snapshot();

    let held = pool.acquire().await.unwrap();
    let error = sqlx::query("SELECT 1 AS exhausted")
        .fetch_one(&pool)
        .await
        .unwrap_err();
    assert!(matches!(error, sqlx::Error::PoolTimedOut), "{error}");

    let labels = [("db_client_connection_pool_name", "exhausted")];
    let snapshot = g.metrics.snapshot();
    assert_eq!(
        snapshot.counter("db_client_connection_timeouts_total", &labels),
        Some(1)
    );
    let waits = snapshot
        .histogram("db_client_connection_wait_time_seconds", &labels)
        .unwrap();
    assert!(waits.iter().any(|w| *w >= 0.29), "{waits:?}");
    assert_eq!(
        snapshot.gauge("db_client_connection_pending_requests", &labels),
        Some(0.0)
    );
    assert_eq!(
        snapshot.gauge("db_client_connection_max", &labels),
        Some(1.0)
    );
    let used = [
        ("db_client_connection_pool_name", "exhausted"),
        ("db_client_connection_state", "used"),
    ];
    assert_eq!(
        snapshot.gauge("db_client_connections_usage", &used),
        Some(1.0)
    );
    let span = spans_named("SELECT")
        .into_iter()
        .rev()
        .find(|s| s.status.is_error());
    assert_eq!(
        span.expect("the failed span").attr_str("error.type"),
        Some("pool_timeout")
    );
    drop(held);
}

#[tokio::test]
async fn a_slow_query_logs_one_warn_line_with_its_context() {
    let g = globals();
    let _serial = SERIAL.lock().await;
    let pool = InstrumentedPool::builder()
        .slow_query_threshold(Duration::from_millis(50))
        .build(pool(PgPoolOptions::new().max_connections(1)).await);
    g.logs.clear();

    let tracer = g.spans.tracer("test");
    let server = tracer.start("GET /slow");
    let order = OrderContext::new("ORD-2026-000888").unwrap();
    let cx = Context::current_with_value(order)
        .with_span(server)
        .with_value(Operation::new("GET /slow"));
    let trace_id = cx.span().span_context().trace_id().to_string();
    async {
        sqlx::query("SELECT pg_sleep(0.08)")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("SELECT 1 AS fast")
            .execute(&pool)
            .await
            .unwrap();
    }
    .with_context(cx)
    .await;

    let lines = g.logs.json_lines().unwrap();
    let slow: Vec<_> = lines
        .iter()
        .filter(|l| l["message"] == "slow query")
        .collect();
    assert_eq!(slow.len(), 1, "{lines:#?}");
    let line = slow[0];
    assert_eq!(line["level"], "WARN");
    assert_eq!(line["summary"], "SELECT");
    assert!(line["duration_ms"].as_f64().unwrap() >= 80.0, "{line}");
    assert_eq!(line["rows"], 1);
    assert_eq!(line["operation"], "GET /slow");
    assert_eq!(line["trace_id"], trace_id.as_str());
    assert_eq!(line["order.id"], "ORD-2026-000888");
}

async fn run_repeated(
    pool: &InstrumentedPool,
    t: &str,
    operation: &'static str,
    times: usize,
) -> ReceivedSpan {
    let g = globals();
    let tracer = g.spans.tracer("test");
    let server = tracer.start(operation);
    let cx = Context::current()
        .with_span(server)
        .with_value(Operation::new(operation));
    async {
        for id in 0..times {
            let _: Option<(i64,)> =
                sqlx::query_as(sql(format!("SELECT id FROM {t} WHERE id = $1")))
                    .bind(id as i64)
                    .fetch_optional(pool)
                    .await
                    .unwrap();
        }
    }
    .with_context(cx.clone())
    .await;
    cx.span().end();
    drop(cx);
    spans_named(operation).pop().unwrap()
}

#[tokio::test]
async fn n_plus_one_is_reported_past_k_not_at_k() {
    let g = globals();
    let _serial = SERIAL.lock().await;
    let plain = pool(PgPoolOptions::new().max_connections(1)).await;
    let pool = InstrumentedPool::new(plain.clone());
    let t = table("lines");
    create(&plain, &t).await;
    g.metrics.snapshot();
    g.logs.clear();
    let summary = format!("SELECT {t}");

    // K = 10 runs: nothing.
    let at_k = run_repeated(&pool, &t, "GET /at-k", 10).await;
    assert!(at_k.event(REPEATED_QUERY_EVENT).is_none());
    let snapshot = g.metrics.snapshot();
    assert_eq!(snapshot.counter_sum("db_repeated_queries_total"), 0);

    // K + 1 runs: the event, the attributes, the counter.
    let past_k = run_repeated(&pool, &t, "GET /past-k", 11).await;
    let event = past_k.event(REPEATED_QUERY_EVENT).expect("the N+1 event");
    assert_eq!(event.attr_str("db.query.summary"), Some(summary.as_str()));
    assert_eq!(
        past_k.attr_str("orderscope.db.repeated_query.summary"),
        Some(summary.as_str())
    );
    let snapshot = g.metrics.snapshot();
    assert_eq!(
        snapshot.counter(
            "db_repeated_queries_total",
            &[
                ("operation", "GET /past-k"),
                ("db_query_summary", summary.as_str())
            ]
        ),
        Some(1)
    );

    // 30 runs: one line with the final count; a second request within the minute adds none.
    run_repeated(&pool, &t, "GET /many", 30).await;
    run_repeated(&pool, &t, "GET /many", 30).await;
    let lines = g.logs.json_lines().unwrap();
    let n1: Vec<_> = lines
        .iter()
        .filter(|l| l["message"].as_str().is_some_and(|m| m.starts_with("N+1")))
        .map(|l| l["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        n1,
        [
            format!("N+1: 11× {summary} in GET /past-k"),
            format!("N+1: 30× {summary} in GET /many"),
        ]
    );
    drop_table(&plain, &t).await;
}
