//! End to end across HTTP and RabbitMQ, through the facade: a caller → service A (server layer),
//! whose handler publishes through a [`TracedChannel`] in confirm mode → a consumer on another
//! connection ([`run`]) → its client layer → service B (server layer), whose handler reads the
//! [`Order`] extractor. One trace, with the caller's trace id, from A's server span to B's.
//!
//! Needs RabbitMQ at `AMQP_ADDR` (default `amqp://guest:guest@127.0.0.1:5672`; `scripts/test`
//! starts one). Spans go by OTLP/gRPC to an in-process receiver, through tracer providers handed
//! to the layers and the channel: nothing global is installed.

use std::collections::HashMap;
use std::hash::{BuildHasher as _, Hasher as _};
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::routing::{get, post};
use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::{Client as HyperClient, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use orderscope::OrderContext;
use orderscope::amqp::{Message, RetryPolicy, RunOptions, TracedChannel, TracedConsumer, run};
use orderscope::context::OrderSpanProcessor;
use orderscope::opentelemetry::global::BoxedTracer;
use orderscope::opentelemetry::trace::TracerProvider as _;
use orderscope::opentelemetry_otlp::{self, WithExportConfig as _};
use orderscope::opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider,
};
use orderscope::tower::{Client, ClientLayer, Order, ServerLayer, UrlTemplate};
use orderscope_testing::{OtlpReceiver, ReceivedSpan, SpanKind, assert_child_of};
use tokio::sync::{mpsc, oneshot};
use tower::{Layer as _, ServiceExt as _};

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN: &str = "b7ad6b7169203331";
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const ORDER_ID: &str = "ORD-2026-000777";
const BAGGAGE: &str = "order.id=ORD-2026-000777,order.channel=web";
const B_ROUTE: &str = "/warehouse/orders/{id}";
const TIMEOUT: Duration = Duration::from_secs(10);

type Outbound = Client<HyperClient<HttpConnector, Empty<Bytes>>>;

/// The broker address: `AMQP_ADDR`, else the local RabbitMQ.
fn amqp_addr() -> String {
    std::env::var("AMQP_ADDR").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672".to_owned())
}

/// Connects to the broker, or fails the test loudly.
async fn connect() -> Connection {
    let addr = amqp_addr();
    match Connection::connect(&addr, ConnectionProperties::default()).await {
        Ok(conn) => conn,
        Err(error) => panic!(
            "this test needs a RabbitMQ broker at {addr} (set AMQP_ADDR to use another one; \
             `scripts/test` starts one): {error}"
        ),
    }
}

/// A name no other test run uses.
fn unique(prefix: &str) -> String {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    format!(
        "orderscope-test.{prefix}.{:012x}",
        hasher.finish() & 0xffff_ffff_ffff
    )
}

/// A tracer provider exporting by OTLP/gRPC to `receiver`, adding the order fields to every span.
/// The short batch delay only matters for a span that ends after the explicit flush.
fn provider_for(receiver: &OtlpReceiver) -> SdkTracerProvider {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(receiver.grpc_endpoint())
        .build()
        .expect("OTLP exporter");
    let batch = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_scheduled_delay(Duration::from_millis(100))
                .build(),
        )
        .build();
    SdkTracerProvider::builder()
        .with_span_processor(OrderSpanProcessor::wrap(batch))
        .build()
}

fn amqp_tracer(provider: &SdkTracerProvider) -> BoxedTracer {
    BoxedTracer::new(Box::new(provider.tracer("orderscope-amqp")))
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[derive(Clone)]
struct AState {
    publisher: std::sync::Arc<TracedChannel>,
    exchange: String,
    routing_key: String,
}

/// Service A: accepts the order and publishes it, the confirm awaited inside the publish span.
async fn accept_order(
    State(state): State<AState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, String), (StatusCode, String)> {
    let outcome = state
        .publisher
        .publish(
            state.exchange.as_str().into(),
            state.routing_key.as_str().into(),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            id.as_bytes(),
            BasicProperties::default(),
        )
        .await
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok((StatusCode::ACCEPTED, outcome.message_id().to_owned()))
}

/// What service B saw: the order id and channel from the [`Order`] extractor, and the path id.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    order_id: String,
    order_channel: Option<String>,
    path_id: String,
}

/// Service B: reserves stock for the order and reports what it saw.
async fn reserve(
    State(seen): State<mpsc::UnboundedSender<Seen>>,
    Path(id): Path<String>,
    order: Order,
) -> StatusCode {
    let report = Seen {
        order_id: order.id().to_owned(),
        order_channel: order.channel().map(|c| c.as_str().to_owned()),
        path_id: id,
    };
    match seen.send(report) {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The consumer's handler: calls service B for the order in scope (the message's, read from its
/// headers by the runner), after checking it is the one in the payload.
async fn call_b(client: Outbound, b: SocketAddr, message: Message) -> Result<(), String> {
    let order = OrderContext::current().ok_or("no order in scope in the handler")?;
    let id = order.id();
    if message.data() != id.as_bytes() {
        return Err(format!(
            "order in scope {id} but payload {:?}",
            String::from_utf8_lossy(message.data())
        ));
    }
    let mut request = Request::get(format!("http://{b}/warehouse/orders/{id}"))
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    request.extensions_mut().insert(UrlTemplate(B_ROUTE));
    let response = client.oneshot(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("service B answered {status}"))
    }
}

/// The one span of `kind` named `name`.
fn one<'a>(spans: &'a [ReceivedSpan], kind: SpanKind, name: &str) -> &'a ReceivedSpan {
    let found: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.kind == kind && s.name == name)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "exactly one {kind:?} span named {name:?} in {:#?}",
        spans.iter().map(ReceivedSpan::summary).collect::<Vec<_>>()
    );
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_to_amqp_to_http_is_one_trace() {
    let receiver = OtlpReceiver::start().await.expect("start OTLP receiver");
    let provider = provider_for(&receiver);

    // Topology: a direct exchange and a queue of this run's own. The queue expires after a minute
    // of disuse and the exchange is auto-deleted with its last binding, should cleanup not run.
    let publisher_conn = connect().await;
    let consumer_conn = connect().await;
    let exchange = unique("http-amqp-http.x");
    let queue = unique("http-amqp-http.q");
    let routing_key = "order.accepted";
    let setup = publisher_conn
        .create_channel()
        .await
        .expect("setup channel");
    setup
        .exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                auto_delete: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("exchange_declare");
    let mut queue_args = FieldTable::default();
    queue_args.insert("x-expires".into(), AMQPValue::LongInt(60_000));
    setup
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::default(),
            queue_args,
        )
        .await
        .expect("queue_declare");
    setup
        .queue_bind(
            queue.as_str().into(),
            exchange.as_str().into(),
            routing_key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("queue_bind");

    // Service B, reporting what its handler saw.
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
    let b = serve(
        Router::new()
            .route(B_ROUTE, get(reserve))
            .with_state(seen_tx)
            .layer(ServerLayer::new().tracer_provider(&provider)),
    )
    .await;

    // The consumer, on its own connection, calling B through the client layer.
    let consume_channel = consumer_conn
        .create_channel()
        .await
        .expect("consume channel");
    consume_channel
        .basic_qos(1, BasicQosOptions::default())
        .await
        .expect("basic_qos");
    let consumer = TracedConsumer::builder(
        consume_channel
            .basic_consume(
                queue.as_str().into(),
                "http-amqp-http".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("basic_consume"),
    )
    .tracer(amqp_tracer(&provider))
    .server("127.0.0.1", 5672)
    .build();
    let client: Outbound = ClientLayer::new()
        .tracer_provider(&provider)
        .layer(HyperClient::builder(TokioExecutor::new()).build_http());
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let runner = tokio::spawn(run(
        consumer,
        move |message: Message| call_b(client.clone(), b, message),
        RunOptions::new()
            .retry(RetryPolicy::DeadLetter)
            .discard_dead_letters()
            .shutdown(async move {
                let _ = stop_rx.await;
            }),
    ));

    // Service A, publishing in confirm mode.
    let publish_channel = publisher_conn
        .create_channel()
        .await
        .expect("publish channel");
    publish_channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm_select");
    let publisher = TracedChannel::builder(publish_channel)
        .tracer(amqp_tracer(&provider))
        .server("127.0.0.1", 5672)
        .build();
    let a = serve(
        Router::new()
            .route("/orders/{id}", post(accept_order))
            .with_state(AState {
                publisher: std::sync::Arc::new(publisher),
                exchange: exchange.clone(),
                routing_key: routing_key.to_owned(),
            })
            .layer(ServerLayer::new().tracer_provider(&provider)),
    )
    .await;

    // The caller, not instrumented: a W3C trace context and the order as baggage.
    let caller = HyperClient::builder(TokioExecutor::new()).build_http::<Body>();
    let request = Request::post(format!("http://{a}/orders/{ORDER_ID}"))
        .header("traceparent", TRACEPARENT)
        .header("baggage", BAGGAGE)
        .body(Body::empty())
        .expect("request");
    let response = tokio::time::timeout(TIMEOUT, caller.request(request))
        .await
        .expect("A answers within 10 s")
        .expect("A's response");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("A's body")
        .to_bytes();
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "A publishes and is confirmed: {}",
        String::from_utf8_lossy(&body)
    );
    let message_id = String::from_utf8(body.to_vec()).expect("message id");

    // B's handler saw the order that entered at A.
    let seen = tokio::time::timeout(TIMEOUT, seen_rx.recv())
        .await
        .expect("B is called within 10 s")
        .expect("B reports");
    assert_eq!(
        seen,
        Seen {
            order_id: ORDER_ID.to_owned(),
            order_channel: Some("web".to_owned()),
            path_id: ORDER_ID.to_owned(),
        }
    );

    // Stop the runner: it returns once the in-flight handler has finished and settled.
    stop_tx.send(()).expect("runner still running");
    let report = tokio::time::timeout(TIMEOUT, runner)
        .await
        .expect("runner stops within 10 s")
        .expect("runner task")
        .expect("runner");
    assert_eq!(report.handled, 1, "{report:?}");
    assert_eq!(report.acked, 1, "{report:?}");
    assert!(
        seen_rx.try_recv().is_err(),
        "B was called exactly once: {report:?}"
    );

    // Cleanup (before the span assertions, so a failure leaves nothing behind): the queue, then
    // the exchange.
    let _ = setup
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    let _ = setup
        .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
        .await;
    let _ = setup.close(200, "done".into()).await;
    let _ = consumer_conn.close(200, "done".into()).await;
    let _ = publisher_conn.close(200, "done".into()).await;

    let flushing = provider.clone();
    tokio::task::spawn_blocking(move || flushing.force_flush())
        .await
        .expect("flush task")
        .expect("flush");
    let spans = receiver
        .wait_for_spans(5, TIMEOUT)
        .await
        .expect("five spans arrive at the OTLP receiver");
    let summaries: Vec<String> = spans.iter().map(ReceivedSpan::summary).collect();
    assert_eq!(spans.len(), 5, "{summaries:#?}");

    let a_server = one(&spans, SpanKind::Server, "POST /orders/{id}");
    let publish = one(&spans, SpanKind::Producer, &format!("publish {exchange}"));
    let process = one(&spans, SpanKind::Consumer, &format!("process {queue}"));
    let client_span = one(&spans, SpanKind::Client, &format!("GET {B_ROUTE}"));
    let b_server = one(&spans, SpanKind::Server, &format!("GET {B_ROUTE}"));
    assert_ne!(client_span.span_id, b_server.span_id);

    // One trace, the caller's; the chain A server → publish → process → client → B server.
    for span in &spans {
        assert_eq!(span.trace_id, TRACE_ID, "one trace: {summaries:#?}");
        assert_eq!(
            span.attr_str("order.id"),
            Some(ORDER_ID),
            "order.id on {}",
            span.summary()
        );
        assert_eq!(
            span.attr_str("order.channel"),
            Some("web"),
            "order.channel on {}",
            span.summary()
        );
        assert!(!span.status.is_error(), "{}", span.summary());
    }
    assert_eq!(a_server.parent_span_id.as_deref(), Some(CALLER_SPAN));
    assert_child_of(publish, a_server);
    assert_child_of(process, publish);
    assert!(process.links_to(publish), "process span links to publish");
    assert_child_of(client_span, process);
    assert_child_of(b_server, client_span);
    let by_id: HashMap<&str, &ReceivedSpan> =
        spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    assert_eq!(by_id.len(), 5, "distinct span ids: {summaries:#?}");

    // A few attributes per hop, enough to tell the hops apart.
    assert_eq!(a_server.attr_str("http.route"), Some("/orders/{id}"));
    assert_eq!(a_server.attr_i64("http.response.status_code"), Some(202));
    assert_eq!(publish.attr_str("messaging.system"), Some("rabbitmq"));
    // The messaging conventions' RabbitMQ destination: `{exchange}:{routing key}`.
    assert_eq!(
        publish.attr_str("messaging.destination.name"),
        Some(format!("{exchange}:{routing_key}").as_str())
    );
    assert_eq!(
        publish.attr_str("messaging.rabbitmq.destination.routing_key"),
        Some(routing_key)
    );
    assert_eq!(publish.attr_str("orderscope.outcome"), Some("ack"));
    assert_eq!(
        publish.attr_str("messaging.message.id"),
        Some(message_id.as_str())
    );
    assert_eq!(
        process.attr_str("messaging.destination.name"),
        Some(format!("{exchange}:{routing_key}:{queue}").as_str())
    );
    assert_eq!(
        process.attr_str("messaging.message.id"),
        Some(message_id.as_str())
    );
    assert_eq!(process.attr_str("orderscope.outcome"), Some("ack"));
    assert_eq!(client_span.attr_str("url.template"), Some(B_ROUTE));
    assert_eq!(
        client_span.attr_i64("server.port"),
        Some(i64::from(b.port()))
    );
    assert_eq!(client_span.attr_i64("http.response.status_code"), Some(204));
    assert_eq!(b_server.attr_str("http.route"), Some(B_ROUTE));
    assert_eq!(
        b_server.attr_str("url.path"),
        Some(format!("/warehouse/orders/{ORDER_ID}").as_str())
    );

    tokio::task::spawn_blocking(move || provider.shutdown())
        .await
        .expect("shutdown task")
        .expect("provider shutdown");
}
