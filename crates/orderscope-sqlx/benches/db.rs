//! `db`: a primary-key SELECT on loopback PostgreSQL, plain sqlx (`plain_pk_select`) against
//! the instrumented pool (`instrumented_pk_select`), with an SDK tracer provider (AlwaysOn, no
//! exporter) and the Prometheus recorder installed, as in a service.
//! `sql_analysis/seen_text`: the analysis of an already-seen text, through the cache.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use opentelemetry_sdk::trace::SdkTracerProvider;
use orderscope_sqlx::InstrumentedPool;
use sqlx::postgres::PgPoolOptions;

fn url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

fn db(c: &mut Criterion) {
    opentelemetry::global::set_tracer_provider(SdkTracerProvider::builder().build());
    let recorder = orderscope_metrics::build_recorder();
    metrics::set_global_recorder(recorder).expect("no other recorder");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let table = format!("bench_pk_{}", std::process::id());
    let plain = rt.block_on(async {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(&url())
            .await
            .expect("PostgreSQL at DATABASE_URL");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE {table} (id bigint PRIMARY KEY, sku text NOT NULL);
             INSERT INTO {table} SELECT g, 'sku-' || g FROM generate_series(1, 1000) g"
        )))
        .execute(&pool)
        .await
        .unwrap();
        pool
    });
    let instrumented = InstrumentedPool::new(plain.clone());
    let sql = format!("SELECT id, sku FROM {table} WHERE id = $1");

    let mut group = c.benchmark_group("db");
    group.bench_function("plain_pk_select", |b| {
        b.to_async(&rt).iter(|| async {
            let row: (i64, String) = sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(black_box(42_i64))
                .fetch_one(&plain)
                .await
                .unwrap();
            black_box(row)
        })
    });
    group.bench_function("instrumented_pk_select", |b| {
        b.to_async(&rt).iter(|| async {
            let row: (i64, String) = sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(black_box(42_i64))
                .fetch_one(&instrumented)
                .await
                .unwrap();
            black_box(row)
        })
    });
    group.finish();

    let mut group = c.benchmark_group("sql_analysis");
    let text = "SELECT o.id, o.status, l.sku, l.quantity FROM orderscope_demo.orders o \
                JOIN orderscope_demo.order_lines l ON l.order_id = o.id WHERE o.status = $1 \
                ORDER BY o.created_at DESC LIMIT 50";
    orderscope_sqlx::__analyze_cached(text);
    group.bench_function("seen_text", |b| {
        b.iter(|| orderscope_sqlx::__analyze_cached(black_box(text)))
    });
    group.bench_function("first_analysis", |b| {
        b.iter(|| orderscope_sqlx::analyze(black_box(text)))
    });
    group.finish();

    rt.block_on(async {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP TABLE {table}")))
            .execute(&plain)
            .await
            .unwrap();
    });
}

criterion_group!(benches, db);
criterion_main!(benches);
