//! A consumer runner for the common case: [`run`] a handler over a [`TracedConsumer`].

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::{FutureExt as _, StreamExt as _};
use opentelemetry::context::FutureExt as _;
use tokio::task::JoinSet;

use crate::consume::{Message, TracedConsumer, TracedDelivery};
use crate::instruments::SettleOutcome;
use crate::settle::Action;

/// What to do with a message whose handler failed or panicked.
///
/// How "redeliveries so far" is known: the `x-delivery-count` header (quorum and stream queues count every
/// requeue), else the sum of the `count` fields of the `x-death` header (dead-letter/TTL retry loops). A classic
/// queue only sets the boolean `redelivered` flag; when that flag is set and neither header is present,
/// [`DeadLetterAfter`](Self::DeadLetterAfter) treats the limit as reached, so a poison message on a classic
/// queue is retried once and then dead-lettered — never requeued forever.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryPolicy {
    /// Always nack with requeue (outcome `nack_requeue`). A message that always fails loops forever unless the
    /// queue has a delivery limit.
    Requeue,
    /// Always nack without requeue (outcome `nack_dead_letter`): dead-lettered when the queue has a dead-letter
    /// exchange, discarded otherwise.
    DeadLetter,
    /// Requeue until the message has been redelivered this many times, then dead-letter.
    DeadLetterAfter(u32),
}

impl Default for RetryPolicy {
    /// `DeadLetterAfter(3)`.
    fn default() -> Self {
        Self::DeadLetterAfter(3)
    }
}

impl RetryPolicy {
    /// Whether a failed message should be requeued, given its `redelivered` flag and precise delivery count.
    #[must_use]
    pub fn requeue(self, redelivered: bool, delivery_count: Option<u32>) -> bool {
        match self {
            Self::Requeue => true,
            Self::DeadLetter => false,
            Self::DeadLetterAfter(limit) => match delivery_count {
                Some(count) => count < limit,
                None => !redelivered && limit > 0,
            },
        }
    }
}

type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Options for [`run`].
pub struct RunOptions {
    retry: RetryPolicy,
    concurrency: usize,
    shutdown: Option<Shutdown>,
}

impl fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunOptions")
            .field("retry", &self.retry)
            .field("concurrency", &self.concurrency)
            .field("shutdown", &self.shutdown.is_some())
            .finish()
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl RunOptions {
    /// Default options: [`RetryPolicy::default`], one handler at a time, no shutdown signal (run until the
    /// consumer ends).
    #[must_use]
    pub fn new() -> Self {
        Self {
            retry: RetryPolicy::default(),
            concurrency: 1,
            shutdown: None,
        }
    }

    /// What to do with failed and panicked messages. Defaults to [`RetryPolicy::DeadLetterAfter(3)`](RetryPolicy).
    #[must_use]
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// How many handlers run at once. Defaults to 1 (messages handled in order). Values below 1 count as 1.
    /// Set the channel's `basic_qos` prefetch to at least this.
    #[must_use]
    pub fn concurrency(mut self, limit: usize) -> Self {
        self.concurrency = limit.max(1);
        self
    }

    /// Stops the runner gracefully when `signal` completes: no new deliveries are taken, in-flight handlers
    /// finish and settle, then [`run`] returns. Defaults to none: run until the consumer is cancelled.
    #[must_use]
    pub fn shutdown(mut self, signal: impl Future<Output = ()> + Send + 'static) -> Self {
        self.shutdown = Some(Box::pin(signal));
        self
    }
}

/// What [`run`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunReport {
    /// Deliveries handed to the handler.
    pub handled: u64,
    /// Acknowledged.
    pub acked: u64,
    /// Nacked with requeue.
    pub requeued: u64,
    /// Nacked without requeue (dead-lettered, or discarded when the queue has no dead-letter exchange).
    pub dead_lettered: u64,
    /// Handler panics (each also counted as requeued or dead-lettered).
    pub panicked: u64,
    /// Handler errors (each also counted as requeued or dead-lettered).
    pub failed: u64,
    /// Settles lapin refused or could not send; the broker redelivers these messages.
    pub settle_failed: u64,
    /// Handler tasks that ended without settling (the runtime shut down under them).
    pub lost_tasks: u64,
}

/// [`run`] ended because the consumer failed.
#[derive(Debug, thiserror::Error)]
#[error("the consumer failed: {source}")]
pub struct RunError {
    /// The consumer's error (its channel or connection closed).
    #[source]
    pub source: lapin::Error,
    /// What was done before, in-flight handlers included.
    pub report: RunReport,
}

struct TaskResult {
    outcome: SettleOutcome,
    requeue: bool,
    failed: bool,
    panicked: bool,
    settle_failed: bool,
}

/// Runs `handler` over every delivery of `consumer` until the consumer ends (cancelled, channel closed) or the
/// [`shutdown`](RunOptions::shutdown) signal completes, settling each message according to the handler's result:
///
/// - handler `Ok(())` → ack;
/// - handler `Err(_)` → nack, requeued or dead-lettered according to the [`RetryPolicy`]; the span gets status
///   ERROR with the error's `Display`, the process duration `error_type="handler_error"`;
/// - handler panic → caught, recorded (outcome `panic`, `error_type="panic"`, span status ERROR with the panic
///   message), the message nacked according to the [`RetryPolicy`], and the runner keeps consuming;
/// - up to [`RunOptions::concurrency`] handlers run at once, each on its own Tokio task, with the message's
///   context (its `process` span and its order) attached while the handler is polled — so
///   `OrderContext::current()`, log lines and child spans see them;
/// - graceful stop: when the [`shutdown`](RunOptions::shutdown) future completes, the runner stops taking
///   deliveries, lets in-flight handlers finish and settle, and returns. Messages lapin prefetched but no handler
///   started stay unacknowledged; the broker redelivers them when the channel closes.
///
/// Must run inside a Tokio runtime: handlers are spawned as tasks.
///
/// # Errors
///
/// [`RunError`] when the consumer yields an error (its channel or connection failed); in-flight handlers have
/// finished by then.
///
/// # Example
///
/// ```no_run
/// use lapin::{options::BasicConsumeOptions, types::FieldTable, Connection, ConnectionProperties};
/// use orderscope_amqp::{run, Message, RetryPolicy, RunOptions, TracedChannel};
/// use orderscope_context::OrderContext;
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let conn = Connection::connect("amqp://127.0.0.1:5672", ConnectionProperties::default()).await?;
/// let channel = TracedChannel::new(conn.create_channel().await?);
/// let consumer = channel
///     .consume("orders".into(), "billing".into(), BasicConsumeOptions::default(), FieldTable::default())
///     .await?;
///
/// let options = RunOptions::new()
///     .retry(RetryPolicy::DeadLetterAfter(5))
///     .concurrency(8)
///     .shutdown(async { tokio::signal::ctrl_c().await.ok(); });
/// let report = run(consumer, |message: Message| async move {
///     let order = OrderContext::current(); // the message's order is in scope
///     if message.data().is_empty() {
///         return Err(format!("empty message for {:?}", order.map(|o| o.id().to_owned())));
///     }
///     Ok(())
/// }, options)
/// .await?;
/// println!("{report:?}");
/// # Ok(())
/// # }
/// ```
pub async fn run<H, Fut, E>(
    mut consumer: TracedConsumer,
    handler: H,
    options: RunOptions,
) -> Result<RunReport, RunError>
where
    H: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: fmt::Display + Send + 'static,
{
    let RunOptions {
        retry,
        concurrency,
        shutdown,
    } = options;
    let handler = Arc::new(handler);
    let mut shutdown: Shutdown = shutdown.unwrap_or_else(|| Box::pin(std::future::pending()));
    let mut tasks = JoinSet::new();
    let mut report = RunReport::default();
    let mut failure = None;
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => add(&mut report, joined),
            next = consumer.next(), if tasks.len() < concurrency => match next {
                Some(Ok(delivery)) => {
                    report.handled += 1;
                    tasks.spawn(process(Arc::clone(&handler), delivery, retry));
                }
                Some(Err(error)) => {
                    failure = Some(error);
                    break;
                }
                None => break,
            },
        }
    }
    while let Some(joined) = tasks.join_next().await {
        add(&mut report, joined);
    }
    match failure {
        None => Ok(report),
        Some(source) => Err(RunError { source, report }),
    }
}

fn add(report: &mut RunReport, joined: Result<TaskResult, tokio::task::JoinError>) {
    let Ok(result) = joined else {
        report.lost_tasks += 1;
        return;
    };
    match result.outcome {
        SettleOutcome::Ack => report.acked += 1,
        _ if result.requeue => report.requeued += 1,
        _ => report.dead_lettered += 1,
    }
    report.failed += u64::from(result.failed);
    report.panicked += u64::from(result.panicked);
    report.settle_failed += u64::from(result.settle_failed);
}

async fn process<H, Fut, E>(
    handler: Arc<H>,
    delivery: TracedDelivery,
    retry: RetryPolicy,
) -> TaskResult
where
    H: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: fmt::Display + Send + 'static,
{
    let (message, mut pending) = delivery.into_parts();
    let cx = message.context().clone();
    let requeue = retry.requeue(message.redelivered(), message.delivery_count());
    let queue = message.shared.queue.clone();
    let result = AssertUnwindSafe(async move { handler(message).await })
        .catch_unwind()
        .with_context(cx.clone())
        .await;
    let (action, outcome, failed, panicked) = match result {
        Ok(Ok(())) => (Action::Ack, None, false, false),
        Ok(Err(error)) => {
            let description = error.to_string();
            {
                let _guard = cx.clone().attach();
                tracing::warn!(queue = queue.as_str(), requeue, error = %description, "message handler failed");
            }
            pending.record_error("handler_error", description);
            (Action::Nack { requeue }, None, true, false)
        }
        Err(panic) => {
            let description = panic_message(panic.as_ref());
            {
                let _guard = cx.clone().attach();
                tracing::error!(queue = queue.as_str(), requeue, panic = %description, "message handler panicked");
            }
            pending.record_error("panic", format!("handler panicked: {description}"));
            (
                Action::Nack { requeue },
                Some(SettleOutcome::Panic),
                false,
                true,
            )
        }
    };
    let settled = pending.settle(action, outcome).await;
    TaskResult {
        outcome: match action {
            Action::Ack => SettleOutcome::Ack,
            _ => outcome.unwrap_or(if requeue {
                SettleOutcome::NackRequeue
            } else {
                SettleOutcome::NackDeadLetter
            }),
        },
        requeue,
        failed,
        panicked,
        settle_failed: settled.is_err(),
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_after_uses_precise_counts() {
        let p = RetryPolicy::DeadLetterAfter(3);
        assert!(p.requeue(false, None));
        assert!(p.requeue(true, Some(2)));
        assert!(!p.requeue(true, Some(3)));
        // Classic queue: only the flag is known; retried once, then dead-lettered.
        assert!(!p.requeue(true, None));
        assert!(!RetryPolicy::DeadLetterAfter(0).requeue(false, None));
        assert!(RetryPolicy::Requeue.requeue(true, Some(100)));
        assert!(!RetryPolicy::DeadLetter.requeue(false, None));
    }

    #[test]
    fn panic_messages() {
        let p: Box<dyn Any + Send> = Box::new("boom");
        assert_eq!(panic_message(p.as_ref()), "boom");
        let p: Box<dyn Any + Send> = Box::new(String::from("bang"));
        assert_eq!(panic_message(p.as_ref()), "bang");
        let p: Box<dyn Any + Send> = Box::new(1_u8);
        assert_eq!(panic_message(p.as_ref()), "non-string panic payload");
    }
}
