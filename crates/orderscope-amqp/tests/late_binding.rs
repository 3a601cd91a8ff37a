//! A channel wrapped before the metrics recorder and the tracer provider are installed publishes
//! into them once they are (own test process: installs both globals).

mod common;

use common::{bind, cleanup, confirm_channel, connect, declare_exchange, declare_queue, unique};
use lapin::BasicProperties;
use lapin::options::BasicPublishOptions;
use lapin::types::FieldTable;
use opentelemetry::trace::SpanKind;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use orderscope_amqp::TracedChannel;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_wrapped_before_init_records_into_the_pipeline_installed_later() {
    let conn = connect().await;
    let exchange = unique("late");
    let queue = unique("late-q");
    let channel = confirm_channel(&conn).await;
    declare_exchange(&channel, &exchange).await;
    declare_queue(&channel, &queue, FieldTable::default()).await;
    bind(&channel, &queue, &exchange, "k").await;

    // Wrapped, and used, before anything is installed.
    let traced = TracedChannel::new(channel.clone());
    let publish = || {
        traced.publish(
            exchange.as_str().into(),
            "k".into(),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        )
    };
    publish().await.expect("acked");

    // What `orderscope::init` does: a global recorder and a global tracer provider.
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).expect("first recorder");
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());

    for _ in 0..2 {
        publish().await.expect("acked");
    }
    provider.force_flush().expect("flush");

    let text = handle.render();
    let sent = format!(
        "messaging_client_sent_messages_total{{messaging_system=\"rabbitmq\",messaging_destination_name=\"{exchange}\",outcome=\"ack\"}} 2"
    );
    assert!(text.contains(&sent), "missing {sent}:\n{text}");
    let spans = exporter.get_finished_spans().expect("spans");
    let publishes = spans
        .iter()
        .filter(|s| s.span_kind == SpanKind::Producer && s.name == format!("publish {exchange}"))
        .count();
    assert_eq!(publishes, 2, "{spans:#?}");
    cleanup(&conn, &[&queue], &[&exchange]).await;
}
