//! RabbitMQ instrumentation over [lapin]: every message of an order visible from publish to settle.
//!
//! # Overview
//!
//! - **Publish** — [`TracedChannel::publish`] opens the PRODUCER span `publish {exchange}`, writes the trace
//!   context and baggage as long-string headers (and `x-order-id` when asked), sets `message_id`, `timestamp`
//!   and `x-published-at-ms`, and — on a channel in confirm mode — waits for the broker's confirm inside the span.
//!   The outcome (`ack`, `nack`, `returned`, `timeout`, `channel_closed`) goes to the span, to
//!   `messaging_client_sent_messages_total` and `messaging_client_operation_duration_seconds`, and anything
//!   but `ack` to the caller as a [`PublishError`]. A mandatory message no queue takes — the silent loss —
//!   is [`PublishError::Returned`].
//! - **Consume** — [`TracedConsumer`] yields [`TracedDelivery`]s, each with a CONSUMER span
//!   `process {queue}`: a child of the producer's span and linked to it, or — for a redelivered message — a new
//!   root linked to it, so retry loops never grow one endless trace. Queue latency, redeliveries and untraced
//!   messages are counted; [`Message::context`] carries the span and the order for the handler.
//! - **Settle** — [`TracedDelivery::ack`], [`nack`](TracedDelivery::nack) and
//!   [`reject`](TracedDelivery::reject) consume the delivery (exactly once), record the outcome on the span and
//!   in `messaging_process_duration_seconds`, and surface lapin's `Ok(false)` (a closed channel: the broker
//!   redelivers the message) as [`SettleError::ChannelClosed`]. `messaging_unsettled_messages` counts
//!   deliveries received and not yet settled; a delivery dropped unsettled is logged, counted and requeued.
//! - **Run** — [`run`] drives a handler over a consumer: `Ok` acks; `Err` and panics (caught, recorded) are
//!   retried — with [`RunOptions::retries`], republished with confirms to a delay queue ([`Retries`], jittered
//!   [`Backoff`]) and, after the last attempt, to a dead-letter queue, the original acked only once the copy is
//!   confirmed; without, nacked per the [`RetryPolicy`]. It refuses to start when failed messages would have
//!   nowhere to go, unless told to discard them. [`Message::attempt`] counts attempts on every queue type. A
//!   shutdown signal stops it once in-flight handlers have settled.
//! - **Reconnect** — [`run_reconnecting`] connects through a [`Connector`] and consumes again, with the same
//!   prefetch, whenever the broker closes the channel or the connection; [`TracedChannel::rebuild`] does the
//!   same for a publisher.
//! - **At least once** — handlers must be idempotent. lapin reports an ack done once its frame is written to
//!   the socket, not when the broker has it: when the connection closes right then, the broker never saw the
//!   ack and redelivers the message (so does a settle refused on a closed channel, [`SettleError`]). A
//!   publisher that publishes again after [`PublishError::ChannelClosed`] may send a message the broker had
//!   already routed. Key the work on the order id or [`Message::properties`]' `message_id`.
//! - **One trace per message** — every attempt's `process` span is a child of the publish span, numbered
//!   (`orderscope.attempt`) and linked to the previous attempt.
//!
//! Names follow the orderscope telemetry contract (`CONVENTIONS.md`, section "AMQP"). Spans are created
//! directly with the OpenTelemetry tracer (by default the global provider's `orderscope-amqp` tracer, looked up
//! when spans start until a provider is installed); metrics go through the [`metrics`] facade, with series keys
//! built once per exchange or queue and handles bound to the recorder current when they record. Channels and
//! consumers wrapped before `orderscope::init` therefore trace and record into the pipeline it installs. Add
//! `orderscope::OrderSpanProcessor` to the tracer provider to get the order fields as
//! span attributes.
//!
//! # Example
//!
//! ```no_run
//! use lapin::options::{BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
//! use lapin::types::FieldTable;
//! use lapin::{BasicProperties, Connection, ConnectionProperties};
//! use orderscope_amqp::{run, Message, RetryPolicy, RunOptions, TracedChannel};
//! use orderscope_context::{OrderContext, WithOrder};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let conn = Connection::connect("amqp://127.0.0.1:5672", ConnectionProperties::default()).await?;
//!
//! // Publisher: confirm mode, so every publish learns the broker's answer.
//! let channel = conn.create_channel().await?;
//! channel.confirm_select(ConfirmSelectOptions::default()).await?;
//! channel
//!     .queue_declare("orders".into(), QueueDeclareOptions::default(), FieldTable::default())
//!     .await?;
//! let publisher = TracedChannel::new(channel);
//! let order = OrderContext::new("ORD-2026-000123")?;
//! publisher
//!     .publish(
//!         "".into(),
//!         "orders".into(),
//!         BasicPublishOptions { mandatory: true, ..Default::default() },
//!         b"{}",
//!         BasicProperties::default(),
//!     )
//!     .with_order(order) // the order in scope while publishing: it travels in the headers
//!     .await?;
//!
//! // Consumer: the order is in scope while the handler runs.
//! let consumer = TracedChannel::new(conn.create_channel().await?)
//!     .consume("orders".into(), "billing".into(), BasicConsumeOptions::default(), FieldTable::default())
//!     .await?;
//! run(consumer, |message: Message| async move {
//!     let order = OrderContext::current().expect("the publisher's order");
//!     println!("{}: {} bytes", order.id(), message.data().len());
//!     Ok::<(), std::io::Error>(())
//! }, RunOptions::new().retry(RetryPolicy::Requeue))
//! .await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Feature flags
//!
//! This crate has no feature flags. It uses lapin without default features: enable lapin's runtime and TLS
//! features in your own dependency on lapin (its defaults, `tokio` and `rustls`, fit most services). Confirm
//! timeouts and the [`run`] runner need a Tokio runtime.
//!
//! # Supported Rust versions
//!
//! The minimum supported Rust version is the workspace's `rust-version` (1.88). It is raised only in a minor
//! release, and never to a version released less than six months earlier.
//!
//! [lapin]: https://docs.rs/lapin

#![deny(missing_docs)]

mod attempt;
mod connector;
mod consume;
mod instruments;
mod publish;
mod queue_depth;
mod retry;
mod runner;
mod settle;

pub use self::attempt::{ATTEMPT_HEADER, PREVIOUS_ATTEMPT_HEADER};
pub use self::connector::{Connector, Consume, run_reconnecting};
pub use self::consume::{
    ATTEMPT_ATTRIBUTE, Message, TracedConsumer, TracedConsumerBuilder, TracedDelivery,
};
pub use self::publish::{
    OUTCOME_ATTRIBUTE, PUBLISHED_AT_MS_HEADER, PublishError, PublishOutcome, TracedChannel,
    TracedChannelBuilder,
};
pub use self::queue_depth::{MAX_WATCHED_QUEUES, QueueWatcher, append_queue_metrics};
pub use self::retry::{Backoff, Retries};
pub use self::runner::{
    DEAD_LETTER_CAUSE_HEADER, RetryPolicy, RunError, RunOptions, RunReport, run,
};
pub use self::settle::{SettleError, SettleOutcome};
