//! The cache counters, the entries gauge, evictions and the load span, with the process-wide
//! tracer provider and recorder (this file's tests run one at a time).

use opentelemetry::Context;
use opentelemetry::trace::{TraceContextExt as _, Tracer as _};
use orderscope_moka::{CacheName, InstrumentedCache};
use orderscope_testing::{LocalMetrics, SpanCapture, SpanKind};

const ORDER_COUNT: CacheName = CacheName::new("order_count");
const SMALL: CacheName = CacheName::new("small");
const FLAKY: CacheName = CacheName::new("flaky");

struct Globals {
    spans: SpanCapture,
    metrics: LocalMetrics,
}

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn globals() -> &'static Globals {
    static GLOBALS: std::sync::OnceLock<Globals> = std::sync::OnceLock::new();
    GLOBALS.get_or_init(|| {
        let spans = SpanCapture::new();
        opentelemetry::global::set_tracer_provider(spans.provider().clone());
        let metrics = LocalMetrics::new();
        metrics.install_global().expect("no other recorder");
        Globals { spans, metrics }
    })
}

#[tokio::test]
async fn hits_misses_and_the_load_span() {
    let g = globals();
    let _serial = SERIAL.lock().await;
    g.metrics.snapshot();
    g.spans.reset();
    let cache: InstrumentedCache<String, i64> = InstrumentedCache::new(
        ORDER_COUNT,
        moka::future::Cache::builder().max_capacity(100),
    );

    let tracer = g.spans.tracer("test");
    let page = tracer.start("GET /dashboard/orders");
    let cx = Context::current().with_span(page);
    let _guard = cx.clone().attach();

    assert_eq!(cache.get("open").await, None);
    let loaded = cache
        .get_with("open".to_owned(), async {
            // Work done by the loader, e.g. the COUNT(*) query, nests under the load span.
            tracer.in_span("SELECT orders", |_| ());
            200_000
        })
        .await;
    assert_eq!(loaded, 200_000);
    let again = cache
        .get_with("open".to_owned(), async { panic!("a hit runs no loader") })
        .await;
    assert_eq!(again, 200_000);
    assert_eq!(cache.get("open").await, Some(200_000));
    drop(_guard);
    cx.span().end();
    cache.run_pending_tasks().await;

    let snapshot = g.metrics.snapshot();
    let by_result = |result| {
        snapshot.counter(
            "cache_requests_total",
            &[("cache_name", "order_count"), ("result", result)],
        )
    };
    assert_eq!(by_result("miss"), Some(2));
    assert_eq!(by_result("hit"), Some(2));
    let loads = snapshot
        .histogram(
            "cache_load_duration_seconds",
            &[("cache_name", "order_count")],
        )
        .unwrap();
    assert_eq!(loads.len(), 1);
    assert_eq!(
        snapshot.gauge("cache_entries", &[("cache_name", "order_count")]),
        Some(1.0)
    );

    let spans = g.spans.spans();
    let loads: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "cache.load order_count")
        .collect();
    assert_eq!(loads.len(), 1, "one load span, for the miss only");
    let load = loads[0];
    assert_eq!(load.kind, SpanKind::Internal);
    assert_eq!(load.attr_str("cache.name"), Some("order_count"));
    let page = spans
        .iter()
        .find(|s| s.name == "GET /dashboard/orders")
        .unwrap();
    let query = spans.iter().find(|s| s.name == "SELECT orders").unwrap();
    assert!(load.is_child_of(page));
    assert!(query.is_child_of(load));
}

#[tokio::test]
async fn evictions_by_reason() {
    let g = globals();
    let _serial = SERIAL.lock().await;
    g.metrics.snapshot();
    let cache: InstrumentedCache<u32, u32> =
        InstrumentedCache::new(SMALL, moka::future::Cache::builder().max_capacity(2));

    cache.insert(1, 1).await;
    cache.insert(1, 2).await; // replaced
    cache.invalidate(&1).await; // explicit
    for k in 10..30 {
        cache.insert(k, k).await;
    }
    cache.run_pending_tasks().await; // size
    let snapshot = g.metrics.snapshot();
    let by_reason = |reason| {
        snapshot
            .counter(
                "cache_evictions_total",
                &[("cache_name", "small"), ("reason", reason)],
            )
            .unwrap_or(0)
    };
    assert_eq!(by_reason("replaced"), 1);
    assert_eq!(by_reason("explicit"), 1);
    assert!(by_reason("size") >= 18, "{}", by_reason("size"));
    assert_eq!(
        snapshot.gauge("cache_entries", &[("cache_name", "small")]),
        Some(2.0)
    );
}

#[tokio::test]
async fn a_failed_load_is_recorded_and_not_cached() {
    let g = globals();
    let _serial = SERIAL.lock().await;
    g.metrics.snapshot();
    g.spans.reset();
    let cache: InstrumentedCache<u32, u32> =
        InstrumentedCache::new(FLAKY, moka::future::Cache::builder().max_capacity(10));

    let failed = cache
        .try_get_with(1, async { Err::<u32, _>("database down") })
        .await;
    assert_eq!(failed.unwrap_err().to_string(), "database down");
    let loaded = cache.try_get_with(1, async { Ok::<_, String>(7) }).await;
    assert_eq!(loaded.unwrap(), 7);

    let snapshot = g.metrics.snapshot();
    let failed = snapshot
        .histogram(
            "cache_load_duration_seconds",
            &[("cache_name", "flaky"), ("error_type", "error")],
        )
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(
        snapshot.counter(
            "cache_requests_total",
            &[("cache_name", "flaky"), ("result", "miss")]
        ),
        Some(2)
    );
    let spans = g.spans.spans();
    let loads: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "cache.load flaky")
        .collect();
    assert_eq!(loads.len(), 2);
    assert_eq!(loads.iter().filter(|s| s.status.is_error()).count(), 1);
}
