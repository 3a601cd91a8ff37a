//! The instrumented pool, and the instrumented connection and transaction it hands out.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_core::future::BoxFuture;
use futures_core::stream::BoxStream;
use futures_util::{StreamExt as _, TryStreamExt as _};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use sqlx::{Describe, Either, Error, Execute, Executor, PgConnection, PgPool, Postgres, SqlStr};
use sqlx_core::ext::async_stream::TryAsyncStream;

use crate::call::{Call, Prepared, Shared};
use crate::instruments::{
    CONNECTION_COUNT, CONNECTION_MAX, PENDING_REQUESTS, TIMEOUTS, WAIT_TIME, pool_labels,
};

/// Default threshold of the slow-query line.
pub const DEFAULT_SLOW_QUERY_THRESHOLD: Duration = Duration::from_millis(500);
/// Default N+1 threshold: a summary run more often than this in one request is reported.
pub const DEFAULT_REPEATED_QUERY_THRESHOLD: u32 = 10;

/// A [`PgPool`] whose every query is traced and measured.
///
/// Use `&pool` wherever sqlx takes an executor: `query`, `query_as`, `query_scalar`, `fetch_*`,
/// `execute` work unchanged. [`begin`](Self::begin) opens an instrumented transaction and
/// [`acquire`](Self::acquire) an instrumented connection; use `&mut *tx` / `&mut *conn` with
/// them as with sqlx's own.
///
/// Cloning is cheap and shares the pool.
///
/// # Example
///
/// ```no_run
/// use orderscope_sqlx::InstrumentedPool;
///
/// # async fn example() -> Result<(), sqlx::Error> {
/// let pool = InstrumentedPool::connect("postgres://postgres@127.0.0.1/test").await?;
/// let (total,): (i64,) = sqlx::query_as("SELECT count(*) FROM orders").fetch_one(&pool).await?;
///
/// let mut tx = pool.begin().await?;
/// sqlx::query("UPDATE orders SET status = $1 WHERE id = $2")
///     .bind("shipped")
///     .bind(42_i64)
///     .execute(&mut *tx)
///     .await?;
/// tx.commit().await?;
/// # let _ = total;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct InstrumentedPool {
    pool: PgPool,
    shared: Arc<Shared>,
}

impl fmt::Debug for InstrumentedPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstrumentedPool")
            .field("pool_name", &self.shared.pool_name)
            .field("size", &self.pool.size())
            .finish_non_exhaustive()
    }
}

/// Configures an [`InstrumentedPool`]; from [`InstrumentedPool::builder`].
#[derive(Clone, Debug)]
pub struct InstrumentedPoolBuilder {
    pool_name: Option<String>,
    slow_threshold: Duration,
    repeat_threshold: u32,
}

impl InstrumentedPoolBuilder {
    /// The pool's name in `db_client_connection_*{db_client_connection_pool_name}`.
    ///
    /// Defaults to `{server.address}:{server.port}/{db.namespace}`. Pool names are metric
    /// labels: give a fixed name per pool, declared in code.
    #[must_use]
    pub fn pool_name(mut self, name: impl Into<String>) -> Self {
        self.pool_name = Some(name.into());
        self
    }

    /// Queries taking at least this long are logged at WARN.
    ///
    /// Defaults to [`DEFAULT_SLOW_QUERY_THRESHOLD`] (500 ms).
    #[must_use]
    pub fn slow_query_threshold(mut self, threshold: Duration) -> Self {
        self.slow_threshold = threshold;
        self
    }

    /// A request or message that runs one query summary more than `threshold` times is
    /// reported as an N+1; 0 turns detection off.
    ///
    /// Defaults to [`DEFAULT_REPEATED_QUERY_THRESHOLD`] (10).
    #[must_use]
    pub fn repeated_query_threshold(mut self, threshold: u32) -> Self {
        self.repeat_threshold = threshold;
        self
    }

    /// Wraps an existing pool.
    pub fn build(self, pool: PgPool) -> InstrumentedPool {
        // The N+1 detector counts in the request's or message's operation.
        orderscope_context::Operation::enable();
        let options = pool.connect_options();
        let host = options.get_host().to_owned();
        let port = options.get_port();
        let namespace = options.get_database().map(str::to_owned);
        let pool_name = self.pool_name.unwrap_or_else(|| {
            format!("{host}:{port}/{}", namespace.as_deref().unwrap_or_default())
        });
        let shared = Arc::new(Shared::new(
            pool_name.into_boxed_str(),
            namespace,
            Some((host, port)),
            self.slow_threshold,
            self.repeat_threshold,
        ));
        let pool = InstrumentedPool { pool, shared };
        pool.record_connections();
        // The timeouts series exists from the start at 0, so that `rate` and `increase` see the
        // first timeout (a counter that appears at 1 has no increase to show).
        TIMEOUTS.increment(&pool.shared.pool_id, 0, |_| {
            pool_labels(&pool.shared.pool_name)
        });
        pool
    }
}

impl InstrumentedPool {
    /// Configuration: pool name and thresholds.
    pub fn builder() -> InstrumentedPoolBuilder {
        InstrumentedPoolBuilder {
            pool_name: None,
            slow_threshold: DEFAULT_SLOW_QUERY_THRESHOLD,
            repeat_threshold: DEFAULT_REPEATED_QUERY_THRESHOLD,
        }
    }

    /// Wraps `pool` with the default configuration.
    pub fn new(pool: PgPool) -> Self {
        Self::builder().build(pool)
    }

    /// Opens a pool to `url` with sqlx's default options, and wraps it.
    ///
    /// # Errors
    ///
    /// As [`PgPool::connect`]: an invalid URL, or no connection could be opened.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Ok(Self::new(PgPool::connect(url).await?))
    }

    /// The plain pool underneath, for what needs no instrumentation.
    pub fn inner(&self) -> &PgPool {
        &self.pool
    }

    /// The pool's name in the connection metrics.
    pub fn pool_name(&self) -> &str {
        &self.shared.pool_name
    }

    /// An instrumented connection from the pool, the wait measured.
    ///
    /// # Errors
    ///
    /// As [`PgPool::acquire`]: [`Error::PoolTimedOut`] (also counted in
    /// `db_client_connection_timeouts_total`), [`Error::PoolClosed`], or a failure to connect.
    pub async fn acquire(&self) -> Result<InstrumentedPoolConnection, Error> {
        let conn = self.acquire_timed().await?;
        Ok(InstrumentedPoolConnection {
            conn: InstrumentedConnection {
                conn,
                shared: self.shared.clone(),
            },
        })
    }

    /// Begins a transaction on a connection from the pool; its `BEGIN`, statements and
    /// `COMMIT` / `ROLLBACK` are traced.
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire), or when `BEGIN` fails.
    pub async fn begin(&self) -> Result<InstrumentedTransaction, Error> {
        let mut call = Call::start(&self.shared, "BEGIN");
        let conn = match self.acquire_timed().await {
            Ok(conn) => conn,
            Err(error) => {
                call.acquire_failed(&error);
                return Err(error);
            }
        };
        call.query_started();
        match sqlx::Transaction::begin(conn, None).await {
            Ok(tx) => {
                call.finish(None);
                Ok(InstrumentedTransaction {
                    conn: InstrumentedConnection {
                        conn: tx,
                        shared: self.shared.clone(),
                    },
                })
            }
            Err(error) => {
                call.finish(Some(&error));
                Err(error)
            }
        }
    }

    async fn acquire_timed(&self) -> Result<PoolConnection<Postgres>, Error> {
        let shared = &*self.shared;
        let pending = Pending::new(shared);
        let start = Instant::now();
        let result = self.pool.acquire().await;
        let waited = start.elapsed();
        drop(pending);
        WAIT_TIME.record(&shared.pool_id, waited.as_secs_f64(), |_| {
            pool_labels(&shared.pool_name)
        });
        if matches!(result, Err(Error::PoolTimedOut)) {
            TIMEOUTS.increment(&shared.pool_id, 1, |_| pool_labels(&shared.pool_name));
        }
        self.record_connections();
        result
    }

    /// Sets the connection gauges from the pool's state.
    fn record_connections(&self) {
        let shared = &*self.shared;
        let size = self.pool.size();
        let idle = u32::try_from(self.pool.num_idle())
            .unwrap_or(u32::MAX)
            .min(size);
        let labels = |used: bool| {
            let mut labels = pool_labels(&shared.pool_name);
            labels.push(metrics::Label::from_static_parts(
                orderscope_metrics::catalogue::labels::DB_CLIENT_CONNECTION_STATE,
                if used { "used" } else { "idle" },
            ));
            labels
        };
        CONNECTION_COUNT.set(&(shared.pool_id, false), f64::from(idle), |_| labels(false));
        CONNECTION_COUNT.set(&(shared.pool_id, true), f64::from(size - idle), |_| {
            labels(true)
        });
        CONNECTION_MAX.set(
            &shared.pool_id,
            f64::from(self.pool.options().get_max_connections()),
            |_| pool_labels(&shared.pool_name),
        );
    }
}

/// Counts a request waiting for a connection while it lives.
struct Pending<'a>(&'a Shared);

impl<'a> Pending<'a> {
    fn new(shared: &'a Shared) -> Self {
        let now = shared.pending.fetch_add(1, Ordering::AcqRel) + 1;
        set_pending(shared, now);
        Pending(shared)
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        let now = self.0.pending.fetch_sub(1, Ordering::AcqRel) - 1;
        set_pending(self.0, now);
    }
}

fn set_pending(shared: &Shared, value: i64) {
    PENDING_REQUESTS.set(&shared.pool_id, value.max(0) as f64, |_| {
        pool_labels(&shared.pool_name)
    });
}

type Step = Either<PgQueryResult, PgRow>;

/// Runs `inner` to its end, counting rows, and finishes `call`.
fn traced<'e>(
    mut call: Call,
    inner: BoxStream<'e, Result<Step, Error>>,
) -> BoxStream<'e, Result<Step, Error>> {
    Box::pin(TryAsyncStream::new(move |yielder| async move {
        let mut inner = inner;
        loop {
            match inner.try_next().await {
                Ok(Some(step)) => {
                    if step.is_right() {
                        call.rows(1);
                    }
                    yielder.r#yield(step).await;
                }
                Ok(None) => break,
                Err(error) => {
                    call.finish(Some(&error));
                    return Err(error);
                }
            }
        }
        call.finish(None);
        Ok(())
    }))
}

impl<'p> Executor<'p> for &'_ InstrumentedPool {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, Result<Step, Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let pool = self.clone();
        let prepared = Prepared::new(query);
        let mut call = Call::start(&self.shared, prepared.text());
        Box::pin(TryAsyncStream::new(move |yielder| async move {
            let mut conn = match pool.acquire_timed().await {
                Ok(conn) => conn,
                Err(error) => {
                    call.acquire_failed(&error);
                    return Err(error);
                }
            };
            call.query_started();
            let mut inner = traced(call, conn.fetch_many(prepared));
            while let Some(step) = inner.next().await {
                yielder.r#yield(step?).await;
            }
            Ok(())
        }))
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Option<PgRow>, Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let pool = self.clone();
        let prepared = Prepared::new(query);
        let mut call = Call::start(&self.shared, prepared.text());
        Box::pin(async move {
            let mut conn = match pool.acquire_timed().await {
                Ok(conn) => conn,
                Err(error) => {
                    call.acquire_failed(&error);
                    return Err(error);
                }
            };
            call.query_started();
            let result = conn.fetch_optional(prepared).await;
            finish_optional(&mut call, &result);
            result
        })
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement, Error>>
    where
        'p: 'e,
    {
        let pool = self.clone();
        Box::pin(async move {
            let mut conn = pool.acquire_timed().await?;
            conn.prepare_with(sql, parameters).await
        })
    }

    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<Describe<Postgres>, Error>>
    where
        'p: 'e,
    {
        let pool = self.clone();
        Box::pin(async move {
            let mut conn = pool.acquire_timed().await?;
            conn.describe(sql).await
        })
    }
}

fn finish_optional(call: &mut Call, result: &Result<Option<PgRow>, Error>) {
    match result {
        Ok(row) => {
            call.rows(u64::from(row.is_some()));
            call.finish(None);
        }
        Err(error) => call.finish(Some(error)),
    }
}

/// A connection or transaction whose queries are traced: `&mut InstrumentedConnection<C>` is
/// the executor. [`InstrumentedTransaction`] and [`InstrumentedPoolConnection`] dereference to
/// it, so `&mut *tx` reads as with sqlx's own types.
pub struct InstrumentedConnection<C> {
    conn: C,
    shared: Arc<Shared>,
}

impl<C> fmt::Debug for InstrumentedConnection<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstrumentedConnection")
            .field("pool_name", &self.shared.pool_name)
            .finish_non_exhaustive()
    }
}

impl<C> InstrumentedConnection<C> {
    /// The wrapped connection or transaction; queries run on it directly are not traced.
    pub fn inner_mut(&mut self) -> &mut C {
        &mut self.conn
    }
}

/// A connection from [`InstrumentedPool::acquire`], back to the pool when dropped.
#[derive(Debug)]
pub struct InstrumentedPoolConnection {
    conn: InstrumentedConnection<PoolConnection<Postgres>>,
}

impl Deref for InstrumentedPoolConnection {
    type Target = InstrumentedConnection<PoolConnection<Postgres>>;

    fn deref(&self) -> &Self::Target {
        &self.conn
    }
}

impl DerefMut for InstrumentedPoolConnection {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.conn
    }
}

/// A transaction from [`InstrumentedPool::begin`]: rolled back when dropped without
/// [`commit`](Self::commit).
#[derive(Debug)]
pub struct InstrumentedTransaction {
    conn: InstrumentedConnection<sqlx::Transaction<'static, Postgres>>,
}

impl Deref for InstrumentedTransaction {
    type Target = InstrumentedConnection<sqlx::Transaction<'static, Postgres>>;

    fn deref(&self) -> &Self::Target {
        &self.conn
    }
}

impl DerefMut for InstrumentedTransaction {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.conn
    }
}

impl InstrumentedTransaction {
    /// Commits the transaction; the `COMMIT` is traced.
    ///
    /// # Errors
    ///
    /// As [`sqlx::Transaction::commit`].
    pub async fn commit(self) -> Result<(), Error> {
        let InstrumentedConnection { conn, shared } = self.conn;
        let mut call = Call::start(&shared, "COMMIT");
        let result = conn.commit().await;
        call.finish(result.as_ref().err());
        result
    }

    /// Rolls the transaction back; the `ROLLBACK` is traced.
    ///
    /// # Errors
    ///
    /// As [`sqlx::Transaction::rollback`].
    pub async fn rollback(self) -> Result<(), Error> {
        let InstrumentedConnection { conn, shared } = self.conn;
        let mut call = Call::start(&shared, "ROLLBACK");
        let result = conn.rollback().await;
        call.finish(result.as_ref().err());
        result
    }
}

impl<'c, C> Executor<'c> for &'c mut InstrumentedConnection<C>
where
    C: DerefMut<Target = PgConnection> + Send,
{
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, Result<Step, Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let InstrumentedConnection { conn, shared } = self;
        let prepared = Prepared::new(query);
        let call = Call::start(shared, prepared.text());
        traced(call, (**conn).fetch_many(prepared))
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Option<PgRow>, Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let InstrumentedConnection { conn, shared } = self;
        let prepared = Prepared::new(query);
        let mut call = Call::start(shared, prepared.text());
        let inner = (**conn).fetch_optional(prepared);
        Box::pin(async move {
            let result = inner.await;
            finish_optional(&mut call, &result);
            result
        })
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement, Error>>
    where
        'c: 'e,
    {
        (*self.conn).prepare_with(sql, parameters)
    }

    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<Describe<Postgres>, Error>>
    where
        'c: 'e,
    {
        (*self.conn).describe(sql)
    }
}
