//! The metrics of this crate, through the shared handle caches of orderscope-metrics.

use metrics::Label;
use orderscope_metrics::catalogue::{defs, labels as l};
use orderscope_metrics::{CounterCache, GaugeCache, HistogramCache, SeriesLimit, StrInterner};

/// `db.system.name`, the only system this crate instruments.
pub(crate) const SYSTEM: &str = "postgresql";

/// The `error.type` of a failed call: the SQLSTATE for an error the server reported, else a
/// class of client-side failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ErrorType {
    SqlState([u8; 5]),
    Kind(&'static str),
}

impl ErrorType {
    pub(crate) fn of(error: &sqlx::Error) -> ErrorType {
        match error {
            sqlx::Error::Database(db) => db
                .code()
                .and_then(|code| <[u8; 5]>::try_from(code.as_bytes()).ok())
                .filter(|code| code.iter().all(u8::is_ascii_alphanumeric))
                .map_or(ErrorType::Kind("database"), ErrorType::SqlState),
            sqlx::Error::PoolTimedOut => ErrorType::Kind("pool_timeout"),
            sqlx::Error::PoolClosed => ErrorType::Kind("pool_closed"),
            sqlx::Error::Io(_) => ErrorType::Kind("io"),
            sqlx::Error::Tls(_) => ErrorType::Kind("tls"),
            sqlx::Error::Protocol(_) => ErrorType::Kind("protocol"),
            sqlx::Error::Encode(_) => ErrorType::Kind("encode"),
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => ErrorType::Kind("decode"),
            sqlx::Error::RowNotFound => ErrorType::Kind("row_not_found"),
            sqlx::Error::WorkerCrashed => ErrorType::Kind("worker_crashed"),
            _ => ErrorType::Kind("_OTHER"),
        }
    }

    /// The SQLSTATE, when the server reported one.
    pub(crate) fn sqlstate(&self) -> Option<&str> {
        match self {
            ErrorType::SqlState(code) => std::str::from_utf8(code).ok(),
            ErrorType::Kind(_) => None,
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            ErrorType::SqlState(_) => self.sqlstate().unwrap_or("_OTHER"),
            ErrorType::Kind(kind) => kind,
        }
    }
}

/// Series limit of the operation histogram: summaries are bounded before, this backs it up.
const LIMIT: SeriesLimit = SeriesLimit::new(2000);

/// Key: pool id (namespace label), summary label, error type.
pub(crate) static OPERATION_DURATION: HistogramCache<(u32, &'static str, Option<ErrorType>)> =
    HistogramCache::for_def(&defs::DB_CLIENT_OPERATION_DURATION, LIMIT);

pub(crate) static CONNECTION_COUNT: GaugeCache<(u32, bool)> =
    GaugeCache::for_def(&defs::DB_CLIENT_CONNECTION_COUNT, SeriesLimit::new(256));
pub(crate) static CONNECTION_MAX: GaugeCache<u32> =
    GaugeCache::for_def(&defs::DB_CLIENT_CONNECTION_MAX, SeriesLimit::new(128));
pub(crate) static PENDING_REQUESTS: GaugeCache<u32> = GaugeCache::for_def(
    &defs::DB_CLIENT_CONNECTION_PENDING_REQUESTS,
    SeriesLimit::new(128),
);
pub(crate) static WAIT_TIME: HistogramCache<u32> =
    HistogramCache::for_def(&defs::DB_CLIENT_CONNECTION_WAIT_TIME, SeriesLimit::new(128));
pub(crate) static TIMEOUTS: CounterCache<u32> =
    CounterCache::for_def(&defs::DB_CLIENT_CONNECTION_TIMEOUTS, SeriesLimit::new(128));
pub(crate) static REPEATED: CounterCache<(Box<str>, &'static str)> =
    CounterCache::for_def(&defs::DB_REPEATED_QUERIES, SeriesLimit::new(1000));

/// Pool names, so that keys stay small: pools are declared in code, a handful per process.
pub(crate) static POOLS: StrInterner = StrInterner::new(128);

/// Labels of the pool `name`.
pub(crate) fn pool_labels(name: &str) -> Vec<Label> {
    vec![Label::new(
        l::DB_CLIENT_CONNECTION_POOL_NAME,
        name.to_owned(),
    )]
}

/// Labels of the operation histogram.
pub(crate) fn operation_labels(
    namespace: Option<&str>,
    summary: &'static str,
    error: Option<ErrorType>,
) -> Vec<Label> {
    let mut labels = Vec::with_capacity(4);
    labels.push(Label::from_static_parts(l::DB_SYSTEM_NAME, SYSTEM));
    if let Some(namespace) = namespace {
        labels.push(Label::new(l::DB_NAMESPACE, namespace.to_owned()));
    }
    if !summary.is_empty() {
        labels.push(Label::from_static_parts(l::DB_QUERY_SUMMARY, summary));
    }
    if let Some(error) = error {
        labels.push(Label::new(l::ERROR_TYPE, error.as_str().to_owned()));
    }
    labels
}
