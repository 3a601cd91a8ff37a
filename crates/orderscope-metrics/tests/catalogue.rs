//! The catalogue matches CONVENTIONS.md.

use orderscope_metrics::catalogue::{self, CATALOGUE, MetricKind};

/// (name, kind, labels) as CONVENTIONS.md and the SDK-health additions list them.
const EXPECTED: &[(&str, MetricKind, &[&str])] = &[
    (
        "http_server_request_duration_seconds",
        MetricKind::Histogram,
        &[
            "http_request_method",
            "http_route",
            "http_response_status_code",
            "error_type",
        ],
    ),
    (
        "http_server_active_requests",
        MetricKind::Gauge,
        &["http_request_method", "http_route"],
    ),
    (
        "http_client_request_duration_seconds",
        MetricKind::Histogram,
        &[
            "http_request_method",
            "server_address",
            "http_response_status_code",
            "error_type",
        ],
    ),
    (
        "messaging_client_sent_messages_total",
        MetricKind::Counter,
        &[
            "messaging_system",
            "messaging_destination_name",
            "outcome",
            "error_type",
        ],
    ),
    (
        "messaging_client_operation_duration_seconds",
        MetricKind::Histogram,
        &[
            "messaging_system",
            "messaging_operation_name",
            "messaging_destination_name",
            "error_type",
        ],
    ),
    (
        "messaging_client_consumed_messages_total",
        MetricKind::Counter,
        &["messaging_system", "messaging_destination_name"],
    ),
    (
        "messaging_process_duration_seconds",
        MetricKind::Histogram,
        &[
            "messaging_system",
            "messaging_destination_name",
            "outcome",
            "error_type",
        ],
    ),
    (
        "messaging_queue_latency_seconds",
        MetricKind::Histogram,
        &["messaging_system", "messaging_destination_name"],
    ),
    (
        "messaging_redelivered_messages_total",
        MetricKind::Counter,
        &["messaging_system", "messaging_destination_name"],
    ),
    (
        "messaging_untraced_messages_total",
        MetricKind::Counter,
        &["messaging_system", "messaging_destination_name"],
    ),
    (
        "messaging_unsettled_messages",
        MetricKind::Gauge,
        &["messaging_system", "messaging_destination_name"],
    ),
    (
        "function_calls_total",
        MetricKind::Counter,
        &["function", "module", "result", "error_type"],
    ),
    (
        "function_calls_duration_seconds",
        MetricKind::Histogram,
        &["function", "module"],
    ),
    (
        "function_calls_concurrent",
        MetricKind::Gauge,
        &["function", "module"],
    ),
    (
        "order_stage_transitions_total",
        MetricKind::Counter,
        &["stage", "order_channel"],
    ),
    ("order_age_seconds", MetricKind::Histogram, &["stage"]),
    (
        "order_overdue_total",
        MetricKind::Counter,
        &["stage", "order_channel"],
    ),
    // In-flight tracker.
    ("order_in_flight", MetricKind::Gauge, &["stage"]),
    ("order_overdue_in_flight", MetricKind::Gauge, &["stage"]),
    ("order_oldest_age_seconds", MetricKind::Gauge, &["stage"]),
    ("order_stalled_total", MetricKind::Counter, &["stage"]),
    (
        "orderscope_order_tracker_evictions_total",
        MetricKind::Counter,
        &[],
    ),
    // USE: process (client_golang names), Tokio runtime, RabbitMQ queues.
    ("process_cpu_seconds_total", MetricKind::Counter, &[]),
    ("process_resident_memory_bytes", MetricKind::Gauge, &[]),
    ("process_open_fds", MetricKind::Gauge, &[]),
    ("process_max_fds", MetricKind::Gauge, &[]),
    ("process_threads", MetricKind::Gauge, &[]),
    ("process_start_time_seconds", MetricKind::Gauge, &[]),
    ("tokio_workers", MetricKind::Gauge, &[]),
    ("tokio_alive_tasks", MetricKind::Gauge, &[]),
    ("tokio_global_queue_depth", MetricKind::Gauge, &[]),
    ("tokio_busy_ratio", MetricKind::Gauge, &[]),
    ("tokio_parks_total", MetricKind::Counter, &[]),
    (
        "orderscope_queue_messages",
        MetricKind::Gauge,
        &["messaging_destination_name", "state"],
    ),
    (
        "orderscope_queue_consumers",
        MetricKind::Gauge,
        &["messaging_destination_name"],
    ),
    (
        "orderscope_queue_sample_errors_total",
        MetricKind::Counter,
        &["messaging_destination_name"],
    ),
    (
        "orderscope_consumer_prefetch",
        MetricKind::Gauge,
        &["messaging_system", "messaging_destination_name"],
    ),
    (
        "orderscope_propagation_dropped_total",
        MetricKind::Counter,
        &["reason"],
    ),
    (
        "orderscope_cardinality_overflow_total",
        MetricKind::Counter,
        &["metric"],
    ),
    (
        "orderscope_spans_dropped_total",
        MetricKind::Counter,
        &["reason"],
    ),
    (
        "orderscope_export_failures_total",
        MetricKind::Counter,
        &["signal"],
    ),
    (
        "db_client_operation_duration_seconds",
        MetricKind::Histogram,
        &[
            "db_system_name",
            "db_namespace",
            "db_query_summary",
            "error_type",
        ],
    ),
    (
        "db_client_connections_usage",
        MetricKind::Gauge,
        &[
            "db_client_connection_pool_name",
            "db_client_connection_state",
        ],
    ),
    (
        "db_client_connection_max",
        MetricKind::Gauge,
        &["db_client_connection_pool_name"],
    ),
    (
        "db_client_connection_pending_requests",
        MetricKind::Gauge,
        &["db_client_connection_pool_name"],
    ),
    (
        "db_client_connection_wait_time_seconds",
        MetricKind::Histogram,
        &["db_client_connection_pool_name"],
    ),
    (
        "db_client_connection_timeouts_total",
        MetricKind::Counter,
        &["db_client_connection_pool_name"],
    ),
    (
        "db_repeated_queries_total",
        MetricKind::Counter,
        &["operation", "db_query_summary"],
    ),
    (
        "cache_requests_total",
        MetricKind::Counter,
        &["cache_name", "result"],
    ),
    (
        "cache_evictions_total",
        MetricKind::Counter,
        &["cache_name", "reason"],
    ),
    ("cache_entries", MetricKind::Gauge, &["cache_name"]),
    (
        "cache_load_duration_seconds",
        MetricKind::Histogram,
        &["cache_name", "error_type"],
    ),
];

#[test]
fn catalogue_is_exactly_the_conventions() {
    assert_eq!(CATALOGUE.len(), EXPECTED.len());
    for (name, kind, labels) in EXPECTED {
        let def = catalogue::find(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(def.kind, *kind, "{name}");
        assert_eq!(def.labels, *labels, "{name}");
        assert!(!def.help.is_empty() && def.help.ends_with('.'), "{name}");
        match kind {
            MetricKind::Histogram => {
                assert_eq!(def.unit, Some("seconds"), "{name}");
                assert_eq!(def.metrics_unit(), Some(metrics::Unit::Seconds));
                assert!(def.buckets.is_some(), "{name}");
            }
            _ => assert!(def.buckets.is_none(), "{name}"),
        }
    }
    assert!(catalogue::find("nope").is_none());
    assert_eq!(catalogue::histograms().count(), 10);
}

#[test]
fn name_constants_match_entries() {
    for name in [
        catalogue::HTTP_SERVER_REQUEST_DURATION,
        catalogue::HTTP_SERVER_ACTIVE_REQUESTS,
        catalogue::HTTP_CLIENT_REQUEST_DURATION,
        catalogue::MESSAGING_CLIENT_SENT_MESSAGES,
        catalogue::MESSAGING_CLIENT_OPERATION_DURATION,
        catalogue::MESSAGING_CLIENT_CONSUMED_MESSAGES,
        catalogue::MESSAGING_PROCESS_DURATION,
        catalogue::MESSAGING_QUEUE_LATENCY,
        catalogue::MESSAGING_REDELIVERED_MESSAGES,
        catalogue::MESSAGING_UNTRACED_MESSAGES,
        catalogue::MESSAGING_UNSETTLED_MESSAGES,
        catalogue::FUNCTION_CALLS,
        catalogue::FUNCTION_CALLS_DURATION,
        catalogue::FUNCTION_CALLS_CONCURRENT,
        catalogue::ORDER_STAGE_TRANSITIONS,
        catalogue::ORDER_AGE,
        catalogue::ORDER_OVERDUE,
        catalogue::PROPAGATION_DROPPED,
        catalogue::CARDINALITY_OVERFLOW,
        catalogue::SPANS_DROPPED,
        catalogue::EXPORT_FAILURES,
    ] {
        assert!(catalogue::find(name).is_some(), "{name}");
    }
}

#[test]
fn bucket_ranges() {
    assert_eq!(
        catalogue::HTTP_BUCKETS,
        &[
            0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0
        ]
    );
    assert_eq!(catalogue::QUEUE_LATENCY_BUCKETS.last(), Some(&3600.0));
    assert_eq!(
        catalogue::ORDER_AGE_BUCKETS.last(),
        Some(&(7.0 * 24.0 * 3600.0))
    );
    assert_eq!(catalogue::FUNCTION_BUCKETS, catalogue::HTTP_BUCKETS);
    assert_eq!(
        catalogue::find(catalogue::MESSAGING_QUEUE_LATENCY)
            .unwrap()
            .buckets,
        Some(catalogue::QUEUE_LATENCY_BUCKETS)
    );
    assert_eq!(
        catalogue::find(catalogue::ORDER_AGE).unwrap().buckets,
        Some(catalogue::ORDER_AGE_BUCKETS)
    );
}
