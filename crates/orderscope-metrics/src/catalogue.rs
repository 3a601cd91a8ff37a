//! Every metric orderscope emits: Prometheus name, kind, unit, help, labels and buckets.
//!
//! The names are final Prometheus names (`_total`, `_seconds` included): the recorder from
//! [`prometheus_builder`](crate::prometheus_builder) adds no suffix of its own.
//!
//! # Example
//!
//! ```
//! use orderscope_metrics::catalogue::{self, MetricKind};
//!
//! let def = catalogue::find(catalogue::HTTP_SERVER_REQUEST_DURATION).unwrap();
//! assert_eq!(def.kind, MetricKind::Histogram);
//! assert_eq!(def.buckets, Some(catalogue::HTTP_BUCKETS));
//! assert!(def.labels.contains(&"http_route"));
//! ```

/// The kind of a metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// Monotonic counter (name ends in `_total`).
    Counter,
    /// Gauge.
    Gauge,
    /// Histogram, always rendered with explicit buckets.
    Histogram,
}

/// One entry of the catalogue.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MetricDef {
    /// The Prometheus name, also the `metrics` key name.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// Unit as `metrics::Unit::as_str` spells it (`"seconds"`), `None` for plain counts.
    pub unit: Option<&'static str>,
    /// The `# HELP` text.
    pub help: &'static str,
    /// Every label the metric may carry (some only on errors, such as `error_type`).
    pub labels: &'static [&'static str],
    /// Bucket upper bounds for histograms, `None` for counters and gauges.
    pub buckets: Option<&'static [f64]>,
}

impl MetricDef {
    /// The unit as a [`metrics::Unit`].
    pub fn metrics_unit(&self) -> Option<metrics::Unit> {
        self.unit.and_then(metrics::Unit::from_string)
    }
}

/// Label names used in the catalogue.
pub mod labels {
    /// `http_request_method`.
    pub const HTTP_REQUEST_METHOD: &str = "http_request_method";
    /// `http_route`.
    pub const HTTP_ROUTE: &str = "http_route";
    /// `http_response_status_code`.
    pub const HTTP_RESPONSE_STATUS_CODE: &str = "http_response_status_code";
    /// `server_address`.
    pub const SERVER_ADDRESS: &str = "server_address";
    /// `error_type`.
    pub const ERROR_TYPE: &str = "error_type";
    /// `messaging_system`.
    pub const MESSAGING_SYSTEM: &str = "messaging_system";
    /// `messaging_destination_name`.
    pub const MESSAGING_DESTINATION_NAME: &str = "messaging_destination_name";
    /// `messaging_operation_name`.
    pub const MESSAGING_OPERATION_NAME: &str = "messaging_operation_name";
    /// `outcome`.
    pub const OUTCOME: &str = "outcome";
    /// `function`.
    pub const FUNCTION: &str = "function";
    /// `module`.
    pub const MODULE: &str = "module";
    /// `result`.
    pub const RESULT: &str = "result";
    /// `stage`.
    pub const STAGE: &str = "stage";
    /// `order_channel`.
    pub const ORDER_CHANNEL: &str = "order_channel";
    /// `reason`.
    pub const REASON: &str = "reason";
    /// `metric`.
    pub const METRIC: &str = "metric";
    /// `db_system_name`.
    pub const DB_SYSTEM_NAME: &str = "db_system_name";
    /// `db_namespace`.
    pub const DB_NAMESPACE: &str = "db_namespace";
    /// `db_query_summary`.
    pub const DB_QUERY_SUMMARY: &str = "db_query_summary";
    /// `db_client_connection_pool_name`.
    pub const DB_CLIENT_CONNECTION_POOL_NAME: &str = "db_client_connection_pool_name";
    /// `db_client_connection_state` (`idle`, `used`).
    pub const DB_CLIENT_CONNECTION_STATE: &str = "db_client_connection_state";
    /// `operation`: the route template or the queue a repeated query ran under.
    pub const OPERATION: &str = "operation";
    /// `cache_name`.
    pub const CACHE_NAME: &str = "cache_name";
    /// `signal`.
    pub const SIGNAL: &str = "signal";
    /// `state`.
    pub const STATE: &str = "state";
}

/// Label values with a fixed meaning.
pub mod values {
    /// Every label value of the overflow series of a metric that hit its series limit.
    pub const OVERFLOW: &str = "_overflow";
    /// `http_request_method` of a method outside the known set.
    pub const OTHER_METHOD: &str = "_OTHER";
    /// `http_route` of a request that matched no route.
    pub const UNMATCHED_ROUTE: &str = "unmatched";
    /// `error_type` of a request or call abandoned before completion.
    pub const CANCELLED: &str = "cancelled";
    /// `error_type` of a call that panicked.
    pub const PANIC: &str = "panic";
    /// `result` of a successful call.
    pub const OK: &str = "ok";
    /// `result` of a failed call.
    pub const ERROR: &str = "error";
    /// `messaging_system` for RabbitMQ.
    pub const RABBITMQ: &str = "rabbitmq";
    /// `reason` of `orderscope_spans_dropped_total`: the batch queue was full.
    pub const QUEUE_FULL: &str = "queue_full";
    /// `reason` of `orderscope_spans_dropped_total`: the export failed.
    pub const EXPORT_FAILED: &str = "export_failed";
}

// ---- buckets ------------------------------------------------------------------------------------

/// Database and cache-load durations (seconds), the semconv `db.client.operation.duration`
/// advice: 1 ms to 10 s.
pub const DB_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0];

/// HTTP durations (seconds), as CONVENTIONS.md lists them; also the OpenTelemetry HTTP advice.
pub const HTTP_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Messaging client operations (publish with confirm, settle), seconds: the HTTP set.
pub const MESSAGING_OPERATION_BUCKETS: &[f64] = HTTP_BUCKETS;

/// Message processing, seconds: the HTTP set extended to 5 minutes, since handlers of order
/// messages may call slow systems.
pub const PROCESS_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 30.0, 60.0,
    120.0, 300.0,
];

/// Time a message waited in the queue, seconds, up to one hour.
pub const QUEUE_LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    1800.0, 3600.0,
];

/// Age of an order when it reaches a stage, seconds, up to seven days.
pub const ORDER_AGE_BUCKETS: &[f64] = &[
    1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 43200.0,
    86400.0, 172800.0, 259200.0, 432000.0, 604800.0,
];

/// Function call durations, seconds: autometrics' default buckets.
pub const FUNCTION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

// ---- names --------------------------------------------------------------------------------------

/// `http_server_request_duration_seconds` (histogram).
pub const HTTP_SERVER_REQUEST_DURATION: &str = "http_server_request_duration_seconds";
/// `http_server_active_requests` (gauge).
pub const HTTP_SERVER_ACTIVE_REQUESTS: &str = "http_server_active_requests";
/// `http_client_request_duration_seconds` (histogram).
pub const HTTP_CLIENT_REQUEST_DURATION: &str = "http_client_request_duration_seconds";

/// `messaging_client_sent_messages_total` (counter).
pub const MESSAGING_CLIENT_SENT_MESSAGES: &str = "messaging_client_sent_messages_total";
/// `messaging_client_operation_duration_seconds` (histogram).
pub const MESSAGING_CLIENT_OPERATION_DURATION: &str = "messaging_client_operation_duration_seconds";
/// `messaging_client_consumed_messages_total` (counter).
pub const MESSAGING_CLIENT_CONSUMED_MESSAGES: &str = "messaging_client_consumed_messages_total";
/// `messaging_process_duration_seconds` (histogram).
pub const MESSAGING_PROCESS_DURATION: &str = "messaging_process_duration_seconds";
/// `messaging_queue_latency_seconds` (histogram).
pub const MESSAGING_QUEUE_LATENCY: &str = "messaging_queue_latency_seconds";
/// `messaging_redelivered_messages_total` (counter).
pub const MESSAGING_REDELIVERED_MESSAGES: &str = "messaging_redelivered_messages_total";
/// `messaging_untraced_messages_total` (counter).
pub const MESSAGING_UNTRACED_MESSAGES: &str = "messaging_untraced_messages_total";
/// `messaging_unsettled_messages` (gauge).
pub const MESSAGING_UNSETTLED_MESSAGES: &str = "messaging_unsettled_messages";

/// `function_calls_total` (counter).
pub const FUNCTION_CALLS: &str = "function_calls_total";
/// `function_calls_duration_seconds` (histogram).
pub const FUNCTION_CALLS_DURATION: &str = "function_calls_duration_seconds";
/// `function_calls_concurrent` (gauge).
pub const FUNCTION_CALLS_CONCURRENT: &str = "function_calls_concurrent";

/// `order_stage_transitions_total` (counter).
pub const ORDER_STAGE_TRANSITIONS: &str = "order_stage_transitions_total";
/// `order_age_seconds` (histogram).
pub const ORDER_AGE: &str = "order_age_seconds";
/// `order_overdue_total` (counter).
pub const ORDER_OVERDUE: &str = "order_overdue_total";

/// `order_in_flight` (gauge).
pub const ORDER_IN_FLIGHT: &str = "order_in_flight";
/// `order_overdue_in_flight` (gauge).
pub const ORDER_OVERDUE_IN_FLIGHT: &str = "order_overdue_in_flight";
/// `order_oldest_age_seconds` (gauge).
pub const ORDER_OLDEST_AGE: &str = "order_oldest_age_seconds";
/// `order_stalled_total` (counter).
pub const ORDER_STALLED: &str = "order_stalled_total";
/// `orderscope_order_tracker_evictions_total` (counter).
pub const ORDER_TRACKER_EVICTIONS: &str = "orderscope_order_tracker_evictions_total";

/// `process_cpu_seconds_total` (counter, fractional seconds).
pub const PROCESS_CPU_SECONDS: &str = "process_cpu_seconds_total";
/// `process_resident_memory_bytes` (gauge).
pub const PROCESS_RESIDENT_MEMORY: &str = "process_resident_memory_bytes";
/// `process_open_fds` (gauge).
pub const PROCESS_OPEN_FDS: &str = "process_open_fds";
/// `process_max_fds` (gauge).
pub const PROCESS_MAX_FDS: &str = "process_max_fds";
/// `process_threads` (gauge).
pub const PROCESS_THREADS: &str = "process_threads";
/// `process_start_time_seconds` (gauge).
pub const PROCESS_START_TIME: &str = "process_start_time_seconds";

/// `tokio_workers` (gauge).
pub const TOKIO_WORKERS: &str = "tokio_workers";
/// `tokio_alive_tasks` (gauge).
pub const TOKIO_ALIVE_TASKS: &str = "tokio_alive_tasks";
/// `tokio_global_queue_depth` (gauge).
pub const TOKIO_GLOBAL_QUEUE_DEPTH: &str = "tokio_global_queue_depth";
/// `tokio_busy_ratio` (gauge).
pub const TOKIO_BUSY_RATIO: &str = "tokio_busy_ratio";
/// `tokio_parks_total` (counter).
pub const TOKIO_PARKS: &str = "tokio_parks_total";

/// `orderscope_queue_messages` (gauge).
pub const QUEUE_MESSAGES: &str = "orderscope_queue_messages";
/// `orderscope_queue_consumers` (gauge).
pub const QUEUE_CONSUMERS: &str = "orderscope_queue_consumers";
/// `orderscope_queue_sample_errors_total` (counter).
pub const QUEUE_SAMPLE_ERRORS: &str = "orderscope_queue_sample_errors_total";
/// `orderscope_consumer_prefetch` (gauge).
pub const CONSUMER_PREFETCH: &str = "orderscope_consumer_prefetch";

/// `orderscope_propagation_dropped_total` (counter).
pub const PROPAGATION_DROPPED: &str = "orderscope_propagation_dropped_total";
/// `orderscope_cardinality_overflow_total` (counter).
pub const CARDINALITY_OVERFLOW: &str = "orderscope_cardinality_overflow_total";
/// `orderscope_spans_dropped_total` (counter).
pub const SPANS_DROPPED: &str = "orderscope_spans_dropped_total";
/// `orderscope_export_failures_total` (counter).
pub const EXPORT_FAILURES: &str = "orderscope_export_failures_total";

/// `db_client_operation_duration_seconds` (semconv `db.client.operation.duration`).
pub const DB_CLIENT_OPERATION_DURATION: &str = "db_client_operation_duration_seconds";
/// `db_client_connections_usage` (semconv `db.client.connection.count`, under the name of its
/// predecessor `db.client.connections.usage`: Prometheus reserves the `_count` suffix for
/// histograms and summaries, and `promtool check metrics` rejects a gauge that ends with it).
pub const DB_CLIENT_CONNECTION_COUNT: &str = "db_client_connections_usage";
/// `db_client_connection_max` (semconv `db.client.connection.max`).
pub const DB_CLIENT_CONNECTION_MAX: &str = "db_client_connection_max";
/// `db_client_connection_pending_requests` (semconv `db.client.connection.pending_requests`).
pub const DB_CLIENT_CONNECTION_PENDING_REQUESTS: &str = "db_client_connection_pending_requests";
/// `db_client_connection_wait_time_seconds` (semconv `db.client.connection.wait_time`).
pub const DB_CLIENT_CONNECTION_WAIT_TIME: &str = "db_client_connection_wait_time_seconds";
/// `db_client_connection_timeouts_total` (semconv `db.client.connection.timeouts`).
pub const DB_CLIENT_CONNECTION_TIMEOUTS: &str = "db_client_connection_timeouts_total";
/// `db_repeated_queries_total`: requests or messages that ran one query summary more than the
/// N+1 threshold.
pub const DB_REPEATED_QUERIES: &str = "db_repeated_queries_total";
/// `cache_requests_total`.
pub const CACHE_REQUESTS: &str = "cache_requests_total";
/// `cache_evictions_total`.
pub const CACHE_EVICTIONS: &str = "cache_evictions_total";
/// `cache_entries`.
pub const CACHE_ENTRIES: &str = "cache_entries";
/// `cache_load_duration_seconds`.
pub const CACHE_LOAD_DURATION: &str = "cache_load_duration_seconds";

// ---- the catalogue ------------------------------------------------------------------------------

const fn counter(
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
) -> MetricDef {
    MetricDef {
        name,
        kind: MetricKind::Counter,
        unit: None,
        help,
        labels,
        buckets: None,
    }
}

const fn gauge(
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
) -> MetricDef {
    MetricDef {
        name,
        kind: MetricKind::Gauge,
        unit: None,
        help,
        labels,
        buckets: None,
    }
}

const fn gauge_in(
    name: &'static str,
    unit: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
) -> MetricDef {
    MetricDef {
        name,
        kind: MetricKind::Gauge,
        unit: Some(unit),
        help,
        labels,
        buckets: None,
    }
}

const fn seconds(
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    buckets: &'static [f64],
) -> MetricDef {
    MetricDef {
        name,
        kind: MetricKind::Histogram,
        unit: Some("seconds"),
        help,
        labels,
        buckets: Some(buckets),
    }
}

/// One `const` [`MetricDef`] per metric, for `static` initialisers (`&defs::ORDER_AGE`).
pub mod defs {
    use super::labels as l;
    use super::{
        DB_BUCKETS, FUNCTION_BUCKETS, HTTP_BUCKETS, MESSAGING_OPERATION_BUCKETS, MetricDef,
        ORDER_AGE_BUCKETS, PROCESS_BUCKETS, QUEUE_LATENCY_BUCKETS, counter, gauge, gauge_in,
        seconds,
    };

    /// The [`HTTP_SERVER_REQUEST_DURATION`](super::HTTP_SERVER_REQUEST_DURATION) entry.
    pub const HTTP_SERVER_REQUEST_DURATION: MetricDef = seconds(
        super::HTTP_SERVER_REQUEST_DURATION,
        "Duration of HTTP server requests.",
        &[
            l::HTTP_REQUEST_METHOD,
            l::HTTP_ROUTE,
            l::HTTP_RESPONSE_STATUS_CODE,
            l::ERROR_TYPE,
        ],
        HTTP_BUCKETS,
    );

    /// The [`HTTP_SERVER_ACTIVE_REQUESTS`](super::HTTP_SERVER_ACTIVE_REQUESTS) entry.
    pub const HTTP_SERVER_ACTIVE_REQUESTS: MetricDef = gauge(
        super::HTTP_SERVER_ACTIVE_REQUESTS,
        "Number of active HTTP server requests.",
        &[l::HTTP_REQUEST_METHOD, l::HTTP_ROUTE],
    );

    /// The [`HTTP_CLIENT_REQUEST_DURATION`](super::HTTP_CLIENT_REQUEST_DURATION) entry.
    pub const HTTP_CLIENT_REQUEST_DURATION: MetricDef = seconds(
        super::HTTP_CLIENT_REQUEST_DURATION,
        "Duration of HTTP client requests.",
        &[
            l::HTTP_REQUEST_METHOD,
            l::SERVER_ADDRESS,
            l::HTTP_RESPONSE_STATUS_CODE,
            l::ERROR_TYPE,
        ],
        HTTP_BUCKETS,
    );

    /// The [`MESSAGING_CLIENT_SENT_MESSAGES`](super::MESSAGING_CLIENT_SENT_MESSAGES) entry.
    pub const MESSAGING_CLIENT_SENT_MESSAGES: MetricDef = counter(
        super::MESSAGING_CLIENT_SENT_MESSAGES,
        "Messages published, by broker outcome (unconfirmed without publisher confirms).",
        &[
            l::MESSAGING_SYSTEM,
            l::MESSAGING_DESTINATION_NAME,
            l::OUTCOME,
            l::ERROR_TYPE,
        ],
    );

    /// The [`MESSAGING_CLIENT_OPERATION_DURATION`](super::MESSAGING_CLIENT_OPERATION_DURATION) entry.
    pub const MESSAGING_CLIENT_OPERATION_DURATION: MetricDef = seconds(
        super::MESSAGING_CLIENT_OPERATION_DURATION,
        "Duration of messaging client operations (publish until confirmed, settle).",
        &[
            l::MESSAGING_SYSTEM,
            l::MESSAGING_OPERATION_NAME,
            l::MESSAGING_DESTINATION_NAME,
            l::ERROR_TYPE,
        ],
        MESSAGING_OPERATION_BUCKETS,
    );

    /// The [`MESSAGING_CLIENT_CONSUMED_MESSAGES`](super::MESSAGING_CLIENT_CONSUMED_MESSAGES) entry.
    pub const MESSAGING_CLIENT_CONSUMED_MESSAGES: MetricDef = counter(
        super::MESSAGING_CLIENT_CONSUMED_MESSAGES,
        "Messages delivered to a consumer.",
        &[l::MESSAGING_SYSTEM, l::MESSAGING_DESTINATION_NAME],
    );

    /// The [`MESSAGING_PROCESS_DURATION`](super::MESSAGING_PROCESS_DURATION) entry.
    pub const MESSAGING_PROCESS_DURATION: MetricDef = seconds(
        super::MESSAGING_PROCESS_DURATION,
        "Duration of processing a consumed message, by settle outcome.",
        &[
            l::MESSAGING_SYSTEM,
            l::MESSAGING_DESTINATION_NAME,
            l::OUTCOME,
            l::ERROR_TYPE,
        ],
        PROCESS_BUCKETS,
    );

    /// The [`MESSAGING_QUEUE_LATENCY`](super::MESSAGING_QUEUE_LATENCY) entry.
    pub const MESSAGING_QUEUE_LATENCY: MetricDef = seconds(
        super::MESSAGING_QUEUE_LATENCY,
        "Time between publish and delivery to a consumer.",
        &[l::MESSAGING_SYSTEM, l::MESSAGING_DESTINATION_NAME],
        QUEUE_LATENCY_BUCKETS,
    );

    /// The [`MESSAGING_REDELIVERED_MESSAGES`](super::MESSAGING_REDELIVERED_MESSAGES) entry.
    pub const MESSAGING_REDELIVERED_MESSAGES: MetricDef = counter(
        super::MESSAGING_REDELIVERED_MESSAGES,
        "Messages delivered with the redelivered flag set.",
        &[l::MESSAGING_SYSTEM, l::MESSAGING_DESTINATION_NAME],
    );

    /// The [`MESSAGING_UNTRACED_MESSAGES`](super::MESSAGING_UNTRACED_MESSAGES) entry.
    pub const MESSAGING_UNTRACED_MESSAGES: MetricDef = counter(
        super::MESSAGING_UNTRACED_MESSAGES,
        "Messages consumed without trace context headers.",
        &[l::MESSAGING_SYSTEM, l::MESSAGING_DESTINATION_NAME],
    );

    /// The [`MESSAGING_UNSETTLED_MESSAGES`](super::MESSAGING_UNSETTLED_MESSAGES) entry.
    pub const MESSAGING_UNSETTLED_MESSAGES: MetricDef = gauge(
        super::MESSAGING_UNSETTLED_MESSAGES,
        "Messages delivered and not yet acked, nacked or rejected.",
        &[l::MESSAGING_SYSTEM, l::MESSAGING_DESTINATION_NAME],
    );

    /// The [`FUNCTION_CALLS`](super::FUNCTION_CALLS) entry.
    pub const FUNCTION_CALLS: MetricDef = counter(
        super::FUNCTION_CALLS,
        "Calls to instrumented functions, by result.",
        &[l::FUNCTION, l::MODULE, l::RESULT, l::ERROR_TYPE],
    );

    /// The [`FUNCTION_CALLS_DURATION`](super::FUNCTION_CALLS_DURATION) entry.
    pub const FUNCTION_CALLS_DURATION: MetricDef = seconds(
        super::FUNCTION_CALLS_DURATION,
        "Duration of calls to instrumented functions.",
        &[l::FUNCTION, l::MODULE],
        FUNCTION_BUCKETS,
    );

    /// The [`FUNCTION_CALLS_CONCURRENT`](super::FUNCTION_CALLS_CONCURRENT) entry.
    pub const FUNCTION_CALLS_CONCURRENT: MetricDef = gauge(
        super::FUNCTION_CALLS_CONCURRENT,
        "Calls to instrumented functions in progress.",
        &[l::FUNCTION, l::MODULE],
    );

    /// The [`ORDER_STAGE_TRANSITIONS`](super::ORDER_STAGE_TRANSITIONS) entry.
    pub const ORDER_STAGE_TRANSITIONS: MetricDef = counter(
        super::ORDER_STAGE_TRANSITIONS,
        "Orders reaching a pipeline stage.",
        &[l::STAGE, l::ORDER_CHANNEL],
    );

    /// The [`ORDER_AGE`](super::ORDER_AGE) entry.
    pub const ORDER_AGE: MetricDef = seconds(
        super::ORDER_AGE,
        "Age of an order (since order.created_at) when it reaches a stage.",
        &[l::STAGE],
        ORDER_AGE_BUCKETS,
    );

    /// The [`ORDER_OVERDUE`](super::ORDER_OVERDUE) entry.
    pub const ORDER_OVERDUE: MetricDef = counter(
        super::ORDER_OVERDUE,
        "Orders reaching a stage after their deadline.",
        &[l::STAGE, l::ORDER_CHANNEL],
    );

    /// The [`ORDER_IN_FLIGHT`](super::ORDER_IN_FLIGHT) entry.
    pub const ORDER_IN_FLIGHT: MetricDef = gauge(
        super::ORDER_IN_FLIGHT,
        "Orders whose current stage is this one (in-flight tracker).",
        &[l::STAGE],
    );

    /// The [`ORDER_OVERDUE_IN_FLIGHT`](super::ORDER_OVERDUE_IN_FLIGHT) entry.
    pub const ORDER_OVERDUE_IN_FLIGHT: MetricDef = gauge(
        super::ORDER_OVERDUE_IN_FLIGHT,
        "Orders in this stage whose deadline has passed.",
        &[l::STAGE],
    );

    /// The [`ORDER_OLDEST_AGE`](super::ORDER_OLDEST_AGE) entry.
    pub const ORDER_OLDEST_AGE: MetricDef = gauge_in(
        super::ORDER_OLDEST_AGE,
        "seconds",
        "Longest time an order in flight has been in this stage.",
        &[l::STAGE],
    );

    /// The [`ORDER_STALLED`](super::ORDER_STALLED) entry.
    pub const ORDER_STALLED: MetricDef = counter(
        super::ORDER_STALLED,
        "Orders that stayed in a stage past their deadline or the stage's limit.",
        &[l::STAGE],
    );

    /// The [`ORDER_TRACKER_EVICTIONS`](super::ORDER_TRACKER_EVICTIONS) entry.
    pub const ORDER_TRACKER_EVICTIONS: MetricDef = counter(
        super::ORDER_TRACKER_EVICTIONS,
        "Orders dropped from the in-flight tracker because it was full (oldest first).",
        &[],
    );

    /// The [`PROCESS_CPU_SECONDS`](super::PROCESS_CPU_SECONDS) entry.
    pub const PROCESS_CPU_SECONDS: MetricDef = MetricDef {
        unit: Some("seconds"),
        ..counter(
            super::PROCESS_CPU_SECONDS,
            "Total user and system CPU time spent in seconds.",
            &[],
        )
    };

    /// The [`PROCESS_RESIDENT_MEMORY`](super::PROCESS_RESIDENT_MEMORY) entry.
    pub const PROCESS_RESIDENT_MEMORY: MetricDef = gauge_in(
        super::PROCESS_RESIDENT_MEMORY,
        "bytes",
        "Resident memory size in bytes.",
        &[],
    );

    /// The [`PROCESS_OPEN_FDS`](super::PROCESS_OPEN_FDS) entry.
    pub const PROCESS_OPEN_FDS: MetricDef = gauge(
        super::PROCESS_OPEN_FDS,
        "Number of open file descriptors.",
        &[],
    );

    /// The [`PROCESS_MAX_FDS`](super::PROCESS_MAX_FDS) entry.
    pub const PROCESS_MAX_FDS: MetricDef = gauge(
        super::PROCESS_MAX_FDS,
        "Maximum number of open file descriptors.",
        &[],
    );

    /// The [`PROCESS_THREADS`](super::PROCESS_THREADS) entry.
    pub const PROCESS_THREADS: MetricDef = gauge(
        super::PROCESS_THREADS,
        "Number of OS threads in the process.",
        &[],
    );

    /// The [`PROCESS_START_TIME`](super::PROCESS_START_TIME) entry.
    pub const PROCESS_START_TIME: MetricDef = gauge_in(
        super::PROCESS_START_TIME,
        "seconds",
        "Start time of the process since the Unix epoch in seconds.",
        &[],
    );

    /// The [`TOKIO_WORKERS`](super::TOKIO_WORKERS) entry.
    pub const TOKIO_WORKERS: MetricDef = gauge(
        super::TOKIO_WORKERS,
        "Worker threads of the Tokio runtime.",
        &[],
    );

    /// The [`TOKIO_ALIVE_TASKS`](super::TOKIO_ALIVE_TASKS) entry.
    pub const TOKIO_ALIVE_TASKS: MetricDef = gauge(
        super::TOKIO_ALIVE_TASKS,
        "Tasks alive in the Tokio runtime (spawned, not yet completed).",
        &[],
    );

    /// The [`TOKIO_GLOBAL_QUEUE_DEPTH`](super::TOKIO_GLOBAL_QUEUE_DEPTH) entry.
    pub const TOKIO_GLOBAL_QUEUE_DEPTH: MetricDef = gauge(
        super::TOKIO_GLOBAL_QUEUE_DEPTH,
        "Tasks waiting in the Tokio runtime's global (injection) queue.",
        &[],
    );

    /// The [`TOKIO_BUSY_RATIO`](super::TOKIO_BUSY_RATIO) entry.
    pub const TOKIO_BUSY_RATIO: MetricDef = gauge(
        super::TOKIO_BUSY_RATIO,
        "Share of the last sampling interval the Tokio workers were busy (0 to 1).",
        &[],
    );

    /// The [`TOKIO_PARKS`](super::TOKIO_PARKS) entry.
    pub const TOKIO_PARKS: MetricDef = counter(
        super::TOKIO_PARKS,
        "Times Tokio worker threads parked (went idle).",
        &[],
    );

    /// The [`QUEUE_MESSAGES`](super::QUEUE_MESSAGES) entry.
    pub const QUEUE_MESSAGES: MetricDef = gauge(
        super::QUEUE_MESSAGES,
        "Messages in a watched RabbitMQ queue, by state.",
        &[l::MESSAGING_DESTINATION_NAME, l::STATE],
    );

    /// The [`QUEUE_CONSUMERS`](super::QUEUE_CONSUMERS) entry.
    pub const QUEUE_CONSUMERS: MetricDef = gauge(
        super::QUEUE_CONSUMERS,
        "Consumers of a watched RabbitMQ queue.",
        &[l::MESSAGING_DESTINATION_NAME],
    );

    /// The [`CONSUMER_PREFETCH`](super::CONSUMER_PREFETCH) entry.
    pub const CONSUMER_PREFETCH: MetricDef = gauge(
        super::CONSUMER_PREFETCH,
        "Prefetch (basic.qos) of orderscope's consumers of a queue, summed; messaging_unsettled_messages over it is their saturation.",
        &[l::MESSAGING_SYSTEM, l::MESSAGING_DESTINATION_NAME],
    );

    /// The [`QUEUE_SAMPLE_ERRORS`](super::QUEUE_SAMPLE_ERRORS) entry.
    pub const QUEUE_SAMPLE_ERRORS: MetricDef = counter(
        super::QUEUE_SAMPLE_ERRORS,
        "Watched queues that could not be read (missing queue, closed channel).",
        &[l::MESSAGING_DESTINATION_NAME],
    );

    /// The [`PROPAGATION_DROPPED`](super::PROPAGATION_DROPPED) entry.
    pub const PROPAGATION_DROPPED: MetricDef = counter(
        super::PROPAGATION_DROPPED,
        "Incoming propagation entries dropped (over limits, malformed, untrusted).",
        &[l::REASON],
    );

    /// The [`CARDINALITY_OVERFLOW`](super::CARDINALITY_OVERFLOW) entry.
    pub const CARDINALITY_OVERFLOW: MetricDef = counter(
        super::CARDINALITY_OVERFLOW,
        "Measurements redirected to a metric's overflow series after its series limit.",
        &[l::METRIC],
    );

    /// The [`SPANS_DROPPED`](super::SPANS_DROPPED) entry.
    pub const SPANS_DROPPED: MetricDef = counter(
        super::SPANS_DROPPED,
        "Spans dropped before reaching the collector.",
        &[l::REASON],
    );

    /// The [`DB_CLIENT_OPERATION_DURATION`](super::DB_CLIENT_OPERATION_DURATION) entry.
    pub const DB_CLIENT_OPERATION_DURATION: MetricDef = seconds(
        super::DB_CLIENT_OPERATION_DURATION,
        "Duration of database client operations, from sending the query to the last row (pool wait excluded).",
        &[
            l::DB_SYSTEM_NAME,
            l::DB_NAMESPACE,
            l::DB_QUERY_SUMMARY,
            l::ERROR_TYPE,
        ],
        DB_BUCKETS,
    );

    /// The [`DB_CLIENT_CONNECTION_COUNT`](super::DB_CLIENT_CONNECTION_COUNT) entry.
    pub const DB_CLIENT_CONNECTION_COUNT: MetricDef = gauge(
        super::DB_CLIENT_CONNECTION_COUNT,
        "Connections of a pool, by state (idle, used).",
        &[
            l::DB_CLIENT_CONNECTION_POOL_NAME,
            l::DB_CLIENT_CONNECTION_STATE,
        ],
    );

    /// The [`DB_CLIENT_CONNECTION_MAX`](super::DB_CLIENT_CONNECTION_MAX) entry.
    pub const DB_CLIENT_CONNECTION_MAX: MetricDef = gauge(
        super::DB_CLIENT_CONNECTION_MAX,
        "The most connections a pool may open.",
        &[l::DB_CLIENT_CONNECTION_POOL_NAME],
    );

    /// The [`DB_CLIENT_CONNECTION_PENDING_REQUESTS`](super::DB_CLIENT_CONNECTION_PENDING_REQUESTS) entry.
    pub const DB_CLIENT_CONNECTION_PENDING_REQUESTS: MetricDef = gauge(
        super::DB_CLIENT_CONNECTION_PENDING_REQUESTS,
        "Requests waiting for a connection of a pool.",
        &[l::DB_CLIENT_CONNECTION_POOL_NAME],
    );

    /// The [`DB_CLIENT_CONNECTION_WAIT_TIME`](super::DB_CLIENT_CONNECTION_WAIT_TIME) entry.
    pub const DB_CLIENT_CONNECTION_WAIT_TIME: MetricDef = seconds(
        super::DB_CLIENT_CONNECTION_WAIT_TIME,
        "Time spent waiting for a connection of a pool.",
        &[l::DB_CLIENT_CONNECTION_POOL_NAME],
        DB_BUCKETS,
    );

    /// The [`DB_CLIENT_CONNECTION_TIMEOUTS`](super::DB_CLIENT_CONNECTION_TIMEOUTS) entry.
    pub const DB_CLIENT_CONNECTION_TIMEOUTS: MetricDef = counter(
        super::DB_CLIENT_CONNECTION_TIMEOUTS,
        "Requests for a connection that timed out waiting.",
        &[l::DB_CLIENT_CONNECTION_POOL_NAME],
    );

    /// The [`DB_REPEATED_QUERIES`](super::DB_REPEATED_QUERIES) entry.
    pub const DB_REPEATED_QUERIES: MetricDef = counter(
        super::DB_REPEATED_QUERIES,
        "Requests or messages that ran one query summary more often than the N+1 threshold.",
        &[l::OPERATION, l::DB_QUERY_SUMMARY],
    );

    /// The [`CACHE_REQUESTS`](super::CACHE_REQUESTS) entry.
    pub const CACHE_REQUESTS: MetricDef = counter(
        super::CACHE_REQUESTS,
        "Cache lookups, by result (hit, miss).",
        &[l::CACHE_NAME, l::RESULT],
    );

    /// The [`CACHE_EVICTIONS`](super::CACHE_EVICTIONS) entry.
    pub const CACHE_EVICTIONS: MetricDef = counter(
        super::CACHE_EVICTIONS,
        "Cache entries removed, by reason (size, expired, explicit, replaced).",
        &[l::CACHE_NAME, l::REASON],
    );

    /// The [`CACHE_ENTRIES`](super::CACHE_ENTRIES) entry.
    pub const CACHE_ENTRIES: MetricDef = gauge(
        super::CACHE_ENTRIES,
        "Entries in a cache.",
        &[l::CACHE_NAME],
    );

    /// The [`CACHE_LOAD_DURATION`](super::CACHE_LOAD_DURATION) entry.
    pub const CACHE_LOAD_DURATION: MetricDef = seconds(
        super::CACHE_LOAD_DURATION,
        "Duration of loading a missing cache entry.",
        &[l::CACHE_NAME, l::ERROR_TYPE],
        DB_BUCKETS,
    );

    /// The [`EXPORT_FAILURES`](super::EXPORT_FAILURES) entry.
    pub const EXPORT_FAILURES: MetricDef = counter(
        super::EXPORT_FAILURES,
        "Failed export attempts, by signal.",
        &[l::SIGNAL],
    );
}

const DEFS: &[MetricDef] = &[
    defs::HTTP_SERVER_REQUEST_DURATION,
    defs::HTTP_SERVER_ACTIVE_REQUESTS,
    defs::HTTP_CLIENT_REQUEST_DURATION,
    defs::MESSAGING_CLIENT_SENT_MESSAGES,
    defs::MESSAGING_CLIENT_OPERATION_DURATION,
    defs::MESSAGING_CLIENT_CONSUMED_MESSAGES,
    defs::MESSAGING_PROCESS_DURATION,
    defs::MESSAGING_QUEUE_LATENCY,
    defs::MESSAGING_REDELIVERED_MESSAGES,
    defs::MESSAGING_UNTRACED_MESSAGES,
    defs::MESSAGING_UNSETTLED_MESSAGES,
    defs::FUNCTION_CALLS,
    defs::FUNCTION_CALLS_DURATION,
    defs::FUNCTION_CALLS_CONCURRENT,
    defs::ORDER_STAGE_TRANSITIONS,
    defs::ORDER_AGE,
    defs::ORDER_OVERDUE,
    defs::ORDER_IN_FLIGHT,
    defs::ORDER_OVERDUE_IN_FLIGHT,
    defs::ORDER_OLDEST_AGE,
    defs::ORDER_STALLED,
    defs::ORDER_TRACKER_EVICTIONS,
    defs::PROCESS_CPU_SECONDS,
    defs::PROCESS_RESIDENT_MEMORY,
    defs::PROCESS_OPEN_FDS,
    defs::PROCESS_MAX_FDS,
    defs::PROCESS_THREADS,
    defs::PROCESS_START_TIME,
    defs::TOKIO_WORKERS,
    defs::TOKIO_ALIVE_TASKS,
    defs::TOKIO_GLOBAL_QUEUE_DEPTH,
    defs::TOKIO_BUSY_RATIO,
    defs::TOKIO_PARKS,
    defs::QUEUE_MESSAGES,
    defs::QUEUE_CONSUMERS,
    defs::QUEUE_SAMPLE_ERRORS,
    defs::CONSUMER_PREFETCH,
    defs::PROPAGATION_DROPPED,
    defs::CARDINALITY_OVERFLOW,
    defs::SPANS_DROPPED,
    defs::EXPORT_FAILURES,
    defs::DB_CLIENT_OPERATION_DURATION,
    defs::DB_CLIENT_CONNECTION_COUNT,
    defs::DB_CLIENT_CONNECTION_MAX,
    defs::DB_CLIENT_CONNECTION_PENDING_REQUESTS,
    defs::DB_CLIENT_CONNECTION_WAIT_TIME,
    defs::DB_CLIENT_CONNECTION_TIMEOUTS,
    defs::DB_REPEATED_QUERIES,
    defs::CACHE_REQUESTS,
    defs::CACHE_EVICTIONS,
    defs::CACHE_ENTRIES,
    defs::CACHE_LOAD_DURATION,
];

/// The catalogue, in CONVENTIONS.md order.
pub static CATALOGUE: &[MetricDef] = DEFS;

// Compile-time checks: histograms have non-empty, strictly increasing buckets; counters end in
// `_total`; histograms in seconds end in `_seconds`; names are unique.
const _: () = {
    let mut i = 0;
    while i < DEFS.len() {
        let def = &DEFS[i];
        match def.kind {
            MetricKind::Histogram => match def.buckets {
                Some(b) => {
                    assert!(!b.is_empty(), "empty buckets");
                    let mut j = 1;
                    while j < b.len() {
                        assert!(b[j - 1] < b[j], "buckets not increasing");
                        j += 1;
                    }
                    assert!(
                        ends_with(def.name, "_seconds"),
                        "histogram without _seconds"
                    );
                }
                None => panic!("histogram without buckets"),
            },
            MetricKind::Counter => {
                assert!(def.buckets.is_none(), "counter with buckets");
                assert!(ends_with(def.name, "_total"), "counter without _total");
            }
            MetricKind::Gauge => assert!(def.buckets.is_none(), "gauge with buckets"),
        }
        let mut k = i + 1;
        while k < DEFS.len() {
            assert!(!str_eq(def.name, DEFS[k].name), "duplicate metric name");
            k += 1;
        }
        i += 1;
    }
};

const fn ends_with(s: &str, suffix: &str) -> bool {
    let (s, suffix) = (s.as_bytes(), suffix.as_bytes());
    if suffix.len() > s.len() {
        return false;
    }
    let offset = s.len() - suffix.len();
    let mut i = 0;
    while i < suffix.len() {
        if s[offset + i] != suffix[i] {
            return false;
        }
        i += 1;
    }
    true
}

const fn str_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && ends_with(a, b)
}

/// The definition of the metric named `name` (its Prometheus name).
pub fn find(name: &str) -> Option<&'static MetricDef> {
    CATALOGUE.iter().find(|d| d.name == name)
}

/// The histograms of the catalogue.
pub fn histograms() -> impl Iterator<Item = &'static MetricDef> {
    CATALOGUE.iter().filter(|d| d.kind == MetricKind::Histogram)
}
