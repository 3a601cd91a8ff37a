//! MES's database: where it is, the schema and its migrations, and the seeded history.
//!
//! MES keeps its orders and their lines in PostgreSQL, in a schema of its own (`mes_demo`, or one
//! per test run), so that runs repeat and stay apart from anything else in the database. The
//! orchestrator prepares it before the services start: it drops and recreates the schema,
//! applies the first migration and loads the history. The second migration, the index behind
//! the dashboard's filter, is the fix the dashboard's telemetry points to; the orchestrator
//! applies it mid-run.

use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool, Postgres};

/// The database (`DATABASE_URL`).
pub(crate) const ENV_DATABASE_URL: &str = "DATABASE_URL";
/// The database when `DATABASE_URL` is not set.
pub(crate) const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// The schema MES uses (set by the orchestrator).
pub(crate) const ENV_SCHEMA: &str = "ORDERSCOPE_MES_SCHEMA";
/// The demo's schema.
pub(crate) const DEFAULT_SCHEMA: &str = "mes_demo";
/// MES's slow-query threshold in milliseconds.
pub(crate) const ENV_SLOW_QUERY_MS: &str = "ORDERSCOPE_MES_SLOW_QUERY_MS";
/// The demo's slow-query threshold: a dashboard query that scans the whole history takes longer
/// (20–35 ms on a quiet 2-core machine, more under load), one served by the index a small
/// fraction of it (2–5 ms).
pub(crate) const DEFAULT_SLOW_QUERY_MS: u64 = 15;
/// Past orders loaded before the run.
pub(crate) const HISTORY_ORDERS: i64 = 200_000;

/// The migration that adds the index behind the dashboard's filter.
pub(crate) const DASHBOARD_INDEX: i32 = 2;

/// One step of the schema.
pub(crate) struct Migration {
    /// Applied in this order; recorded in `schema_migrations`.
    pub(crate) version: i32,
    /// What it does.
    pub(crate) name: &'static str,
    /// The statements, run in one transaction.
    pub(crate) sql: &'static str,
}

/// The schema, step by step.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "orders and their lines",
        sql: "
CREATE TABLE orders (
    order_id text PRIMARY KEY,
    channel text NOT NULL,
    status text NOT NULL,
    deadline timestamptz,
    received_at timestamptz NOT NULL DEFAULT now(),
    status_delivered boolean,
    overdue boolean NOT NULL DEFAULT false,
    attempts integer NOT NULL DEFAULT 1,
    customer text NOT NULL DEFAULT '',
    ship_to text NOT NULL DEFAULT '',
    notes text NOT NULL DEFAULT ''
);
CREATE TABLE order_lines (
    order_id text NOT NULL,
    line_no integer NOT NULL,
    sku text NOT NULL,
    qty bigint NOT NULL,
    CONSTRAINT order_lines_pkey PRIMARY KEY (order_id, line_no),
    CONSTRAINT order_lines_order_fkey FOREIGN KEY (order_id)
        REFERENCES orders (order_id) ON DELETE CASCADE
);",
    },
    Migration {
        version: DASHBOARD_INDEX,
        name: "index behind the dashboard's filter and order",
        sql: "
CREATE INDEX orders_dashboard ON orders (status, channel, received_at DESC, order_id);
ANALYZE orders;",
    },
];

/// The past orders: two years of the web shop, EDI and phone orders (the B2B API is new, so
/// none came through it), mostly delivered, some shipped, a few cancelled; one to five lines
/// each. The keys of the lines are dropped during the load and rebuilt after it, as
/// PostgreSQL's guide to populating a database advises.
const SEED: &str = "
ALTER TABLE order_lines DROP CONSTRAINT order_lines_order_fkey, DROP CONSTRAINT order_lines_pkey;
INSERT INTO orders (order_id, channel, status, deadline, received_at, status_delivered, overdue,
                    customer, ship_to, notes)
SELECT format('ORD-2025-%s', lpad(i::text, 6, '0')),
       (ARRAY['web', 'web', 'edi', 'phone'])[1 + i % 4],
       CASE WHEN i % 50 = 0 THEN 'cancelled' WHEN i % 7 = 0 THEN 'shipped' ELSE 'delivered' END,
       timestamptz '2024-11-01 00:00:00Z' + i * interval '5 minutes' + interval '5 days',
       timestamptz '2024-11-01 00:00:00Z' + i * interval '5 minutes',
       true,
       i % 13 = 0,
       format('Customer %s GmbH', i % 3000),
       format('Werkstrasse %s, %s Musterstadt, DE', i % 200, 10000 + i % 80000),
       repeat('Deliver to gate 4, call ahead. ', 1 + i % 6)
FROM generate_series(1, $1::int8) AS i;
INSERT INTO order_lines (order_id, line_no, sku, qty)
SELECT format('ORD-2025-%s', lpad(i::text, 6, '0')), n,
       (ARRAY['MOTOR-S', 'MOTOR-L', 'BOLT', 'GEAR', 'SHAFT'])[1 + (i * 7 + n) % 5],
       1 + (i * 31 + n) % 20
FROM generate_series(1, $1::int8) AS i, generate_series(1, 1 + i % 5) AS n;
ALTER TABLE order_lines ADD CONSTRAINT order_lines_pkey PRIMARY KEY (order_id, line_no);
ALTER TABLE order_lines ADD CONSTRAINT order_lines_order_fkey FOREIGN KEY (order_id)
    REFERENCES orders (order_id) ON DELETE CASCADE;";

/// The database URL from the environment.
pub(crate) fn database_url() -> String {
    std::env::var(ENV_DATABASE_URL)
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned())
}

/// The schema of a run whose exchanges and queues carry `prefix`: `mes_demo`, or
/// `mes_demo_<prefix>` in lower case with anything but letters and digits turned into `_`.
pub(crate) fn schema_for_prefix(prefix: &str) -> String {
    let mut schema = DEFAULT_SCHEMA.to_owned();
    if !prefix.is_empty() {
        schema.push('_');
        schema.extend(prefix.chars().map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        }));
    }
    schema.truncate(63);
    schema
}

/// The schema MES uses: [`ENV_SCHEMA`] when it is a plain identifier, else [`DEFAULT_SCHEMA`].
pub(crate) fn schema_from_env() -> String {
    std::env::var(ENV_SCHEMA)
        .ok()
        .filter(|s| is_identifier(s))
        .unwrap_or_else(|| DEFAULT_SCHEMA.to_owned())
}

/// Lower-case letters, digits and `_`, not starting with a digit, at most 63 bytes.
fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Connection options for `url` with `schema` first on the search path, so queries name their
/// tables without it (and their summaries read `SELECT orders`).
///
/// # Errors
///
/// `url` is not a PostgreSQL URL.
pub(crate) fn connect_options(url: &str, schema: &str) -> Result<PgConnectOptions, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    Ok(options.options([("search_path", schema)]))
}

/// A small pool on `schema` that gives up after `timeout` when the server does not answer.
///
/// # Errors
///
/// The server is not reachable or refuses the connection.
pub(crate) async fn connect(
    url: &str,
    schema: &str,
    max_connections: u32,
    timeout: Duration,
) -> Result<PgPool, sqlx::Error> {
    let options = connect_options(url, schema)?;
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(timeout)
        .connect_with(options)
        .await
}

/// What preparing the database did.
#[derive(Clone, Debug)]
pub(crate) struct Prepared {
    /// The schema.
    pub(crate) schema: String,
    /// Orders loaded.
    pub(crate) orders: i64,
    /// Order lines loaded.
    pub(crate) lines: i64,
    /// How long the load took (inserts and keys, then `VACUUM ANALYZE`).
    pub(crate) seed: Duration,
}

/// Drops and recreates `schema`, applies the first migration and loads the history.
///
/// # Errors
///
/// Any statement that fails.
pub(crate) async fn prepare(pool: &PgPool, schema: &str) -> Result<Prepared, sqlx::Error> {
    debug_assert!(is_identifier(schema));
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};
         CREATE TABLE {schema}.schema_migrations (
             version integer PRIMARY KEY,
             name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );"
    )))
    .execute(pool)
    .await?;
    migrate(pool, 1).await?;

    let start = Instant::now();
    let mut tx = pool.begin().await?;
    // `raw_sql` takes no parameters: the one number is a constant, and the schema a checked
    // identifier.
    sqlx::raw_sql(AssertSqlSafe(
        SEED.replace("$1::int8", &HISTORY_ORDERS.to_string()),
    ))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    // One statement each: VACUUM cannot run in the implicit transaction of a multi-statement
    // string.
    for table in ["VACUUM ANALYZE orders", "VACUUM ANALYZE order_lines"] {
        sqlx::raw_sql(table).execute(pool).await?;
    }
    let seed = start.elapsed();
    let (orders, lines): (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM order_lines)")
            .fetch_one(pool)
            .await?;
    Ok(Prepared {
        schema: schema.to_owned(),
        orders,
        lines,
        seed,
    })
}

/// Applies the migrations up to `version` that are not applied yet; returns how many ran.
///
/// # Errors
///
/// Any statement that fails (that migration is rolled back).
pub(crate) async fn migrate(pool: &PgPool, version: i32) -> Result<usize, sqlx::Error> {
    let applied: Option<i32> = sqlx::query_scalar("SELECT max(version) FROM schema_migrations")
        .fetch_one(pool)
        .await?;
    let applied = applied.unwrap_or(0);
    let mut ran = 0;
    for migration in MIGRATIONS
        .iter()
        .filter(|m| m.version > applied && m.version <= version)
    {
        let mut tx = pool.begin().await?;
        sqlx::raw_sql(migration.sql).execute(&mut *tx).await?;
        sqlx::query::<Postgres>("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)")
            .bind(migration.version)
            .bind(migration.name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        ran += 1;
    }
    Ok(ran)
}

/// Drops `schema` (tests, at the end of their run).
pub(crate) async fn drop_schema(pool: &PgPool, schema: &str) {
    if is_identifier(schema) {
        let _ = sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE"
        )))
        .execute(pool)
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_identifiers() {
        assert_eq!(schema_for_prefix(""), "mes_demo");
        let s = schema_for_prefix("orderscope-e2e-123.");
        assert_eq!(s, "mes_demo_orderscope_e2e_123_");
        assert!(is_identifier(&s));
        assert!(is_identifier(&schema_for_prefix(&"X".repeat(100))));
        assert!(!is_identifier("a; DROP TABLE x"));
        assert!(!is_identifier("1abc"));
        assert!(!is_identifier(""));
    }
}
