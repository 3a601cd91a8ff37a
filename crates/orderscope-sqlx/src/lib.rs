//! PostgreSQL instrumentation for sqlx: a span and a metric per query, pool saturation, SQL
//! summaries and sanitising, slow-query lines and N+1 detection.
//!
//! # Overview
//!
//! [`InstrumentedPool`] wraps a [`sqlx::PgPool`]. Pass `&pool` where sqlx takes an executor —
//! `query`, `query_as`, `query_scalar`, `fetch_*`, `execute` work as before — and use
//! [`InstrumentedPool::begin`] for transactions (`&mut *tx`, `tx.commit()`), so that adopting it
//! is a one-line change where the pool is built.
//!
//! Per query:
//!
//! - a CLIENT span named by the query summary (`SELECT orders`), or `postgresql` when the text
//!   has none, with `db.system.name`, `db.namespace`, `server.address`, `server.port`,
//!   `db.query.text` (literals replaced by `?`), `db.query.summary`,
//!   `db.response.returned_rows`, and on failure `db.response.status_code` (the SQLSTATE) and
//!   `error.type`; the order fields are added by orderscope's span processor as on every span.
//!   Spans are created through the OpenTelemetry API with the global tracer provider, resolved
//!   at the pool's first query. The span starts before the wait for a connection;
//! - `db_client_operation_duration_seconds{db_system_name, db_namespace, db_query_summary,
//!   error_type}`, the time from sending the query to its last row (the wait for a connection
//!   is measured apart). Summaries are bounded: past 200 distinct ones they are labelled
//!   `_OTHER`. Never the text, the parameters or an order id;
//! - a WARN line (`slow query`, target `orderscope_sqlx`) when it takes at least the slow-query
//!   threshold (default 500 ms), with the summary, `duration_ms`, the rows and the enclosing
//!   `operation` (route or queue); orderscope's JSON log layer adds `trace_id` and `order.id`;
//! - N+1 detection: in one HTTP request or one AMQP message (the server layer and the consumer
//!   put an [`Operation`](orderscope_context::Operation) in scope), the same summary run more
//!   than K times (default 10) adds the [`REPEATED_QUERY_EVENT`] event and
//!   `orderscope.db.repeated_query.*` attributes to the enclosing span, counts
//!   `db_repeated_queries_total{operation, db_query_summary}`, and logs one WARN line per
//!   pair and minute when the request ends: `N+1: 50× SELECT order_lines in GET
//!   /dashboard/orders`.
//!
//! Per pool (label `db_client_connection_pool_name`): `db_client_connections_usage` by
//! `db_client_connection_state` (`idle`, `used`; semconv `db.client.connection.count`, whose
//! `_count` suffix Prometheus reserves for histograms), and `db_client_connection_max`,
//! `_pending_requests`, `_wait_time_seconds` and `_timeouts_total`.
//!
//! [`analyze`] is the summariser and sanitiser; each distinct text is analysed once and kept
//! in a bounded, lock-free cache (a seen text costs a hash and a comparison).
//!
//! # Example
//!
//! ```no_run
//! use orderscope_sqlx::InstrumentedPool;
//!
//! # async fn example() -> Result<(), sqlx::Error> {
//! let pool = InstrumentedPool::builder()
//!     .pool_name("mes")
//!     .slow_query_threshold(std::time::Duration::from_millis(200))
//!     .build(sqlx::PgPool::connect("postgres://postgres@127.0.0.1/test").await?);
//!
//! let lines: Vec<(i64, String)> =
//!     sqlx::query_as("SELECT id, sku FROM order_lines WHERE order_id = $1")
//!         .bind(42_i64)
//!         .fetch_all(&pool)
//!         .await?;
//! # let _ = lines;
//! # Ok(())
//! # }
//! ```
//!
//! # Feature flags
//!
//! None.
//!
//! # Supported Rust versions
//!
//! This crate needs Rust 1.94, the minimum of sqlx 0.9: newer than the rest of the workspace
//! (1.88), which does not depend on it unless the facade's `sqlx` feature is turned on.

#![deny(missing_docs)]

mod analysis;
mod cache;
mod call;
mod instruments;
mod pool;
mod repeat;

pub use self::analysis::{Analysis, MAX_SUMMARY_LEN, MAX_TEXT_LEN, analyze};
pub use self::pool::{
    DEFAULT_REPEATED_QUERY_THRESHOLD, DEFAULT_SLOW_QUERY_THRESHOLD, InstrumentedConnection,
    InstrumentedPool, InstrumentedPoolBuilder, InstrumentedPoolConnection, InstrumentedTransaction,
};
pub use self::repeat::REPEATED_QUERY_EVENT;

/// Analyses `sql` through the cache, as a query does; for benchmarks.
#[doc(hidden)]
pub fn __analyze_cached(sql: &str) -> usize {
    cache::lookup(sql).label.len()
}
