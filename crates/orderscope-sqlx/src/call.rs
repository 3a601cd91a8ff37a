//! One database call: its span, its metric, the slow-query line and the N+1 count.

use std::borrow::Cow;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use opentelemetry::global::BoxedTracer;
use opentelemetry::trace::{SpanBuilder, SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, InstrumentationScope, KeyValue, StringValue};
use sqlx::postgres::{PgArguments, PgStatement};
use sqlx::{Execute, Postgres, SqlStr};
use sqlx_core::error::BoxDynError;

use crate::cache::{self, Analyzed};
use crate::instruments::{self, ErrorType, OPERATION_DURATION, SYSTEM};
use crate::repeat;

/// What every call of one pool shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) pool_id: u32,
    pub(crate) pool_name: Box<str>,
    pub(crate) namespace: Option<StringValue>,
    pub(crate) server_address: Option<StringValue>,
    pub(crate) server_port: Option<i64>,
    pub(crate) slow_threshold: Duration,
    pub(crate) repeat_threshold: u32,
    pub(crate) pending: AtomicI64,
    tracer: OnceLock<BoxedTracer>,
}

impl Shared {
    pub(crate) fn new(
        pool_name: Box<str>,
        namespace: Option<String>,
        server: Option<(String, u16)>,
        slow_threshold: Duration,
        repeat_threshold: u32,
    ) -> Self {
        Shared {
            pool_id: instruments::POOLS.intern(&pool_name).unwrap_or(u32::MAX),
            pool_name,
            namespace: namespace.map(StringValue::from),
            server_address: server.as_ref().map(|(a, _)| StringValue::from(a.clone())),
            server_port: server.map(|(_, p)| i64::from(p)),
            slow_threshold,
            repeat_threshold,
            pending: AtomicI64::new(0),
            tracer: OnceLock::new(),
        }
    }

    /// The global provider's tracer, as it is at the first call.
    fn tracer(&self) -> &BoxedTracer {
        self.tracer.get_or_init(|| {
            let scope = InstrumentationScope::builder("orderscope-sqlx")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build();
            opentelemetry::global::tracer_with_scope(scope)
        })
    }
}

/// A query taken apart so that its text can be read before it runs: sqlx hands the text out
/// only by value.
pub(crate) struct Prepared {
    sql: SqlStr,
    statement: Option<PgStatement>,
    arguments: Option<Result<Option<PgArguments>, BoxDynError>>,
    persistent: bool,
}

impl Prepared {
    pub(crate) fn new<'q, E: Execute<'q, Postgres>>(mut query: E) -> Self {
        let statement = query.statement().cloned();
        let persistent = query.persistent();
        let arguments = Some(query.take_arguments());
        Prepared {
            sql: query.sql(),
            statement,
            arguments,
            persistent,
        }
    }

    pub(crate) fn text(&self) -> &str {
        self.sql.as_str()
    }
}

impl<'q> Execute<'q, Postgres> for Prepared {
    fn sql(self) -> SqlStr {
        self.sql
    }

    fn statement(&self) -> Option<&PgStatement> {
        self.statement.as_ref()
    }

    fn take_arguments(&mut self) -> Result<Option<PgArguments>, BoxDynError> {
        self.arguments.take().unwrap_or(Ok(None))
    }

    fn persistent(&self) -> bool {
        self.persistent
    }
}

/// One call in progress; records when finished, or when dropped unfinished.
pub(crate) struct Call {
    shared: Arc<Shared>,
    entry: Analyzed,
    cx: Context,
    start: Instant,
    rows: Option<u64>,
    done: bool,
}

impl Call {
    /// Starts the span of a call running `sql`, under the current context.
    pub(crate) fn start(shared: &Arc<Shared>, sql: &str) -> Call {
        let entry = cache::lookup(sql);
        let parent = Context::current();
        repeat::count(&parent, shared, &entry);

        let name: Cow<'static, str> = match (&entry, entry.summary.as_deref()) {
            (Analyzed::Cached(cached), Some(_)) => {
                Cow::Borrowed(cached.summary.as_deref().unwrap_or(SYSTEM))
            }
            (Analyzed::Fresh(_), Some(summary)) => Cow::Owned(summary.to_owned()),
            (_, None) => Cow::Borrowed(SYSTEM),
        };
        let mut attributes = Vec::with_capacity(7);
        attributes.push(KeyValue::new("db.system.name", SYSTEM));
        if let Some(namespace) = &shared.namespace {
            attributes.push(KeyValue::new("db.namespace", namespace.clone()));
        }
        if let Some(address) = &shared.server_address {
            attributes.push(KeyValue::new("server.address", address.clone()));
        }
        if let Some(port) = shared.server_port {
            attributes.push(KeyValue::new("server.port", port));
        }
        match &entry {
            Analyzed::Cached(cached) => {
                attributes.push(KeyValue::new("db.query.text", cached.text.as_str()));
                if let Some(summary) = &cached.summary {
                    attributes.push(KeyValue::new("db.query.summary", summary.as_str()));
                }
            }
            Analyzed::Fresh(fresh) => {
                attributes.push(KeyValue::new("db.query.text", fresh.text.clone()));
                if let Some(summary) = &fresh.summary {
                    attributes.push(KeyValue::new("db.query.summary", summary.clone()));
                }
            }
        }
        let builder = SpanBuilder::from_name(name)
            .with_kind(SpanKind::Client)
            .with_attributes(attributes);
        let span = shared.tracer().build_with_context(builder, &parent);
        Call {
            shared: shared.clone(),
            entry,
            cx: parent.with_span(span),
            start: Instant::now(),
            rows: None,
            done: false,
        }
    }

    /// The connection is there: the operation's own time starts now.
    pub(crate) fn query_started(&mut self) {
        self.start = Instant::now();
    }

    /// Counts `n` rows returned.
    pub(crate) fn rows(&mut self, n: u64) {
        *self.rows.get_or_insert(0) += n;
    }

    /// No connection could be had: the span fails, no operation is recorded.
    pub(crate) fn acquire_failed(&mut self, error: &sqlx::Error) {
        self.done = true;
        let span = self.cx.span();
        let error_type = ErrorType::of(error);
        span.set_attribute(KeyValue::new("error.type", error_type.as_str().to_owned()));
        span.set_status(Status::error(error.to_string()));
        span.end();
    }

    /// Records the call: the metric, the span's end, the slow-query line.
    pub(crate) fn finish(&mut self, error: Option<&sqlx::Error>) {
        if self.done {
            return;
        }
        self.done = true;
        let elapsed = self.start.elapsed();
        let error_type = error.map(ErrorType::of);
        let shared = &*self.shared;
        let label = self.entry.label;
        OPERATION_DURATION.record(
            &(shared.pool_id, label, error_type),
            elapsed.as_secs_f64(),
            |_| {
                instruments::operation_labels(
                    shared.namespace.as_ref().map(StringValue::as_str),
                    label,
                    error_type,
                )
            },
        );

        let span = self.cx.span();
        if let Some(rows) = self.rows {
            span.set_attribute(KeyValue::new(
                "db.response.returned_rows",
                i64::try_from(rows).unwrap_or(i64::MAX),
            ));
        }
        if let (Some(error), Some(error_type)) = (error, error_type) {
            if let Some(code) = error_type.sqlstate() {
                span.set_attribute(KeyValue::new("db.response.status_code", code.to_owned()));
            }
            span.set_attribute(KeyValue::new("error.type", error_type.as_str().to_owned()));
            span.set_status(Status::error(error.to_string()));
        }
        span.end();

        if elapsed >= shared.slow_threshold {
            self.slow(elapsed);
        }
    }

    #[cold]
    fn slow(&self, elapsed: Duration) {
        let _guard = self.cx.clone().attach();
        let operation = orderscope_context::Operation::with_current(|op| op.name().to_owned());
        tracing::warn!(
            target: "orderscope_sqlx",
            summary = self.entry.summary.as_deref().unwrap_or(SYSTEM),
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            rows = self.rows,
            operation = operation.as_deref(),
            "slow query"
        );
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        // Dropped before the end (a stream not read to its end, a cancelled future).
        self.finish(None);
    }
}
