//! A consumer runner for the common case: [`run`] a handler over a [`TracedConsumer`].

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt as _, StreamExt as _};
use tokio::task::JoinSet;

use lapin::types::AMQPValue;
use opentelemetry::trace::TraceContextExt as _;
use orderscope_context::OrderContext;

use crate::attempt::{ATTEMPT_HEADER, PREVIOUS_ATTEMPT_HEADER};
use crate::consume::{Message, TracedConsumer, TracedDelivery};
use crate::instruments::SettleOutcome;
use crate::publish::TracedChannel;
use crate::retry::{Retries, republish_properties};
use crate::settle::{Action, Pending};

/// How many settles (acks, nacks, retry copies) one handler at a time may leave in flight before the runner
/// waits for one to complete: the consumer's prefetch bounds them too, but not with a prefetch of 0.
const SETTLES_IN_FLIGHT: usize = 128;

/// Header naming why a message went to the dead-letter queue (`handler_error` or `panic`), on the copy the
/// runner publishes there.
pub const DEAD_LETTER_CAUSE_HEADER: &str = "x-orderscope-dead-letter-cause";

/// What to do with a message whose handler failed or panicked.
///
/// This is the broker-side policy: a failed message is nacked, requeued at once or dead-lettered by the
/// queue's own dead-letter exchange. For retries that wait between attempts, and a dead-letter queue the SDK
/// publishes to itself, use [`RunOptions::retries`] instead (it takes precedence over this policy).
///
/// How "redeliveries so far" is known: see [`Message::delivery_count`] — the `x-delivery-count` header (quorum
/// queues count every requeue) and this queue's own `x-death` entries; entries other queues left are not
/// counted. A classic queue only sets the boolean `redelivered` flag; when that flag is set and no count is
/// known, [`DeadLetterAfter`](Self::DeadLetterAfter) treats the limit as reached, so a poison message on a
/// classic queue is retried once and then dead-lettered — never requeued forever.
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
type OrderFrom = Arc<dyn Fn(&Message) -> Option<OrderContext> + Send + Sync>;

/// Where failed messages that are not retried any more go, as far as [`run`] knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DeadLetters {
    /// Nothing said: [`run`] refuses a policy that dead-letters.
    Unknown,
    /// The user says the queue has a dead-letter exchange (argument or policy).
    Broker,
    /// The user accepts that they are discarded.
    Discard,
}

/// Options for [`run`].
pub struct RunOptions {
    retry: RetryPolicy,
    concurrency: usize,
    shutdown: Option<Shutdown>,
    retries: Option<(Retries, TracedChannel)>,
    dead_letters: DeadLetters,
    order_from: Option<OrderFrom>,
}

impl fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunOptions")
            .field("retry", &self.retry)
            .field("concurrency", &self.concurrency)
            .field("shutdown", &self.shutdown.is_some())
            .field("retries", &self.retries.as_ref().map(|(r, _)| r))
            .field("dead_letters", &self.dead_letters)
            .field("order_from", &self.order_from.is_some())
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
    /// consumer ends), no delayed retries, and no dead-letter route: set one of [`retries`](Self::retries),
    /// [`broker_dead_letters`](Self::broker_dead_letters) or [`discard_dead_letters`](Self::discard_dead_letters)
    /// unless the policy is [`RetryPolicy::Requeue`].
    #[must_use]
    pub fn new() -> Self {
        Self {
            retry: RetryPolicy::default(),
            concurrency: 1,
            shutdown: None,
            retries: None,
            dead_letters: DeadLetters::Unknown,
            order_from: None,
        }
    }

    /// What to do with failed and panicked messages. Defaults to [`RetryPolicy::DeadLetterAfter(3)`](RetryPolicy).
    /// Not used with [`retries`](Self::retries).
    #[must_use]
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Delayed retries, then the dead-letter queue, per [`Retries`]; `publisher` (a channel in confirm mode,
    /// on the consumer's connection or another) republishes the copies. Defaults to none: failed messages are
    /// nacked per the [`RetryPolicy`].
    ///
    /// When [`run`] starts it checks (or, with [`Retries::declare_at_start`], declares) the delay queues and the
    /// dead-letter queue, and that `publisher` is in confirm mode. A copy that cannot be published (the broker
    /// nacks or returns it, no confirm in time, the channel closed) leaves the original unacked: it is nacked
    /// with requeue (`error_type="republish_failed"`), so nothing is lost.
    ///
    /// The runner keeps the payload and properties of each delivery while its handler runs (a copy, since the
    /// handler owns the [`Message`]), to republish it on failure.
    #[must_use]
    pub fn retries(mut self, retries: Retries, publisher: TracedChannel) -> Self {
        self.retries = Some((retries, publisher));
        self
    }

    /// States that the consumed queue has a dead-letter exchange (a `x-dead-letter-exchange` argument or a
    /// policy), so messages the [`RetryPolicy`] dead-letters are kept. RabbitMQ does not tell a client a
    /// queue's arguments or policies, so [`run`] takes your word for it. Defaults to not stated.
    #[must_use]
    pub fn broker_dead_letters(mut self) -> Self {
        self.dead_letters = DeadLetters::Broker;
        self
    }

    /// Accepts that messages the [`RetryPolicy`] gives up on are discarded (nacked without requeue on a queue
    /// without a dead-letter exchange). Each is counted (`outcome="discarded"`) and logged at ERROR with its
    /// order id and trace id. Defaults to not accepted: [`run`] refuses to start with a policy that
    /// dead-letters and no dead-letter route.
    #[must_use]
    pub fn discard_dead_letters(mut self) -> Self {
        self.dead_letters = DeadLetters::Discard;
        self
    }

    /// Finds the order in the message itself when its baggage carries none (a publisher that does not use
    /// orderscope): `order_from` gets the message and returns its order, which is then in scope while the
    /// handler runs (`OrderContext::current()`, log lines) and recorded on the `process` span. Defaults to none.
    ///
    /// ```
    /// use orderscope_amqp::RunOptions;
    /// use orderscope_context::OrderContext;
    ///
    /// // The order id is the JSON body's "order_id" field.
    /// let options = RunOptions::new().order_from(|message| {
    ///     let body: serde_json::Value = serde_json::from_slice(message.data()).ok()?;
    ///     OrderContext::new(body.get("order_id")?.as_str()?).ok()
    /// });
    /// ```
    #[must_use]
    pub fn order_from(
        mut self,
        order_from: impl Fn(&Message) -> Option<OrderContext> + Send + Sync + 'static,
    ) -> Self {
        self.order_from = Some(Arc::new(order_from));
        self
    }

    /// How many handlers run at once. Defaults to 1 (messages handled in order, in the runner's own task).
    /// Values below 1 count as 1. Above 1, each handler runs on a Tokio task of its own. Set the channel's
    /// `basic_qos` prefetch to at least this.
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
    /// Nacked with requeue (by the policy, or because a retry copy could not be published).
    pub requeued: u64,
    /// Republished to a delay queue for a later attempt (the original acked).
    pub retried: u64,
    /// Dead-lettered: republished to the dead-letter queue, or nacked without requeue to the queue's
    /// dead-letter exchange.
    pub dead_lettered: u64,
    /// Nacked without requeue with [`RunOptions::discard_dead_letters`]: gone.
    pub discarded: u64,
    /// Handler panics (each also counted as requeued, retried, dead-lettered or discarded).
    pub panicked: u64,
    /// Handler errors (each also counted as requeued, retried, dead-lettered or discarded).
    pub failed: u64,
    /// Settles lapin refused or could not send; the broker redelivers these messages.
    pub settle_failed: u64,
    /// Times [`run_reconnecting`](crate::run_reconnecting) consumed again on a new connection.
    pub reconnects: u64,
    /// Handlers that ended without settling: their task was lost (the runtime shut down under it) or, at
    /// concurrency 1, the runner's own settling code panicked.
    pub lost_tasks: u64,
}

/// Why [`run`] ended with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The consumer failed: its channel or connection closed.
    #[error("the consumer failed: {source}")]
    Consumer {
        /// The consumer's error.
        #[source]
        source: lapin::Error,
        /// What was done before, in-flight handlers included.
        report: RunReport,
    },
    /// Refused to start: the retry policy dead-letters, and nothing says where to.
    #[error(
        "queue {queue}: the retry policy dead-letters failed messages but no dead-letter route is set; \
         use RunOptions::retries, state the queue's dead-letter exchange with RunOptions::broker_dead_letters, \
         or accept losing them with RunOptions::discard_dead_letters"
    )]
    NoDeadLetterRoute {
        /// The consumed queue.
        queue: String,
    },
    /// Refused to start: the retry topology is missing or could not be declared, or the publisher is not in
    /// confirm mode.
    #[error("queue {queue}: retry topology not usable: {reason}")]
    Topology {
        /// The consumed queue.
        queue: String,
        /// What is wrong.
        reason: String,
    },
}

impl RunError {
    /// What was done before the consumer failed (empty when [`run`] refused to start).
    #[must_use]
    pub fn report(&self) -> RunReport {
        match self {
            Self::Consumer { report, .. } => *report,
            _ => RunReport::default(),
        }
    }
}

/// What happened to one delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Acked,
    Requeued,
    Retried,
    DeadLettered,
    Discarded,
}

struct TaskResult {
    fate: Fate,
    failed: bool,
    panicked: bool,
    settle_failed: bool,
}

/// Per-session state shared by the handler tasks.
struct Runtime<H> {
    handler: Arc<H>,
    policy: RetryPolicy,
    retries: Option<(Retries, TracedChannel)>,
    dead_letters: DeadLetters,
    order_from: Option<OrderFrom>,
}

/// Runs `handler` over every delivery of `consumer` until the consumer ends (cancelled, channel closed) or the
/// [`shutdown`](RunOptions::shutdown) signal completes, settling each message according to the handler's result:
///
/// - handler `Ok(())` → ack;
/// - handler `Err(_)` → with [`RunOptions::retries`]: republished to the next delay queue (outcome `retry`) or,
///   after the last attempt, to the dead-letter queue (outcome `dead_letter`), the original acked once the
///   copy is confirmed; without: nacked, requeued (`nack_requeue`), dead-lettered (`nack_dead_letter`) or
///   discarded (`discarded`) according to the [`RetryPolicy`]. The span gets status ERROR with the error's
///   `Display`, the process duration `error_type="handler_error"`;
/// - handler panic → caught and settled the same way, with `error_type="panic"` (span status ERROR with the
///   panic message), and the runner keeps consuming; the outcome says where the message went, the error type
///   why;
/// - up to [`RunOptions::concurrency`] handlers run at once, each on its own Tokio task — at concurrency 1
///   (the default) in the runner's own task, one after the other, with no task spawned per message — with the
///   message's context (its `process` span and its order) attached while the handler is polled — so
///   `OrderContext::current()`, log lines and child spans see them;
/// - graceful stop: when the [`shutdown`](RunOptions::shutdown) future completes, the runner stops taking
///   deliveries, lets in-flight handlers finish and settle, and returns. Messages lapin prefetched but no handler
///   started stay unacknowledged; the broker redelivers them when the channel closes.
///
/// Must run inside a Tokio runtime: above concurrency 1, handlers are spawned as tasks.
///
/// # Errors
///
/// - [`RunError::NoDeadLetterRoute`] at start: the [`RetryPolicy`] dead-letters, and there is neither
///   [`RunOptions::retries`], nor [`broker_dead_letters`](RunOptions::broker_dead_letters), nor
///   [`discard_dead_letters`](RunOptions::discard_dead_letters).
/// - [`RunError::Topology`] at start: a delay or dead-letter queue of [`RunOptions::retries`] is missing (or
///   could not be declared), or its publisher is not in confirm mode.
/// - [`RunError::Consumer`] when the consumer yields an error (its channel or connection failed); in-flight
///   handlers have finished by then.
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
///     .broker_dead_letters() // the queue was declared with x-dead-letter-exchange
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
    consumer: TracedConsumer,
    handler: H,
    options: RunOptions,
) -> Result<RunReport, RunError>
where
    H: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: fmt::Display + Send + 'static,
{
    let mut start = Start::new(handler, options);
    start.prepare(consumer.queue()).await?;
    match start.session(consumer).await {
        None => Ok(start.report),
        Some(source) => Err(RunError::Consumer {
            source,
            report: start.report,
        }),
    }
}

/// A runner between sessions: the handler, the options, the shutdown signal and the report so far.
pub(crate) struct Start<H> {
    handler: Arc<H>,
    policy: RetryPolicy,
    concurrency: usize,
    shutdown: Shutdown,
    stopped: bool,
    retries: Option<(Retries, TracedChannel)>,
    dead_letters: DeadLetters,
    order_from: Option<OrderFrom>,
    report: RunReport,
}

impl<H, Fut, E> Start<H>
where
    H: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: fmt::Display + Send + 'static,
{
    pub(crate) fn new(handler: H, options: RunOptions) -> Self {
        let RunOptions {
            retry,
            concurrency,
            shutdown,
            retries,
            dead_letters,
            order_from,
        } = options;
        Self {
            handler: Arc::new(handler),
            policy: retry,
            concurrency,
            shutdown: shutdown.unwrap_or_else(|| Box::pin(std::future::pending())),
            stopped: false,
            retries,
            dead_letters,
            order_from,
            report: RunReport::default(),
        }
    }

    /// The start checks. (Borrows only `Sync` fields, so the future stays `Send`.)
    pub(crate) fn prepare<'a>(
        &'a self,
        queue: &'a str,
    ) -> impl Future<Output = Result<(), RunError>> + Send + 'a {
        prepare(queue, self.policy, self.retries.as_ref(), self.dead_letters)
    }

    pub(crate) fn has_retries(&self) -> bool {
        self.retries.is_some()
    }

    /// Republishes retries through `channel` from now on (same tracer and metric handles).
    pub(crate) fn replace_publisher(&mut self, channel: lapin::Channel) {
        if let Some((_, publisher)) = &mut self.retries {
            *publisher = publisher.rebuild(channel);
        }
    }

    pub(crate) fn count_reconnect(&mut self) {
        self.report.reconnects += 1;
    }

    pub(crate) fn stopped(&self) -> bool {
        self.stopped
    }

    pub(crate) fn into_report(self) -> RunReport {
        self.report
    }

    /// Runs `future` unless the shutdown signal completes first (then `None`).
    pub(crate) async fn until_shutdown<T>(&mut self, future: impl Future<Output = T>) -> Option<T> {
        if self.stopped {
            return None;
        }
        tokio::select! {
            biased;
            () = &mut self.shutdown => {
                self.stopped = true;
                None
            }
            value = future => Some(value),
        }
    }

    /// One session over `consumer`; the consumer's error, if it failed.
    pub(crate) async fn session(&mut self, mut consumer: TracedConsumer) -> Option<lapin::Error> {
        consumer.cap_prefetch(self.concurrency);
        let runtime = Arc::new(Runtime {
            handler: Arc::clone(&self.handler),
            policy: self.policy,
            retries: self.retries.clone(),
            dead_letters: self.dead_letters,
            order_from: self.order_from.clone(),
        });
        session(
            consumer,
            &runtime,
            self.concurrency,
            &mut self.shutdown,
            &mut self.stopped,
            &mut self.report,
        )
        .await
    }
}

/// The start checks: a dead-letter route, and the retry topology.
async fn prepare(
    queue: &str,
    policy: RetryPolicy,
    retries: Option<&(Retries, TracedChannel)>,
    dead_letters: DeadLetters,
) -> Result<(), RunError> {
    let Some((retries, publisher)) = retries else {
        if policy != RetryPolicy::Requeue && dead_letters == DeadLetters::Unknown {
            return Err(RunError::NoDeadLetterRoute {
                queue: queue.to_owned(),
            });
        }
        return Ok(());
    };
    let topology = |reason: String| RunError::Topology {
        queue: queue.to_owned(),
        reason,
    };
    let channel = publisher.get_ref();
    if !channel.status().confirm() {
        return Err(topology(
            "the retry publisher's channel is not in confirm mode (call confirm_select first)"
                .to_owned(),
        ));
    }
    if retries.prepare_at_start() {
        retries.declare(channel).await.map_err(|e| {
            topology(format!(
                "declaring the delay and dead-letter queues failed: {e}"
            ))
        })
    } else {
        retries.check(channel).await.map_err(|e| {
            topology(format!(
                "a delay or dead-letter queue is missing ({e}); declare them with Retries::declare or \
                 Retries::declare_at_start"
            ))
        })
    }
}

/// Consumes until the consumer ends, fails (the error is returned) or `shutdown` completes; waits for in-flight
/// handlers.
async fn session<H, Fut, E>(
    mut consumer: TracedConsumer,
    runtime: &Arc<Runtime<H>>,
    concurrency: usize,
    shutdown: &mut Shutdown,
    stopped: &mut bool,
    report: &mut RunReport,
) -> Option<lapin::Error>
where
    H: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: fmt::Display + Send + 'static,
{
    if concurrency <= 1 {
        return session_in_place(consumer, runtime, shutdown, stopped, report).await;
    }
    let mut tasks = JoinSet::new();
    let mut failure = None;
    loop {
        tokio::select! {
            biased;
            () = &mut *shutdown, if !*stopped => {
                *stopped = true;
                break;
            }
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => add(report, joined.ok()),
            next = consumer.next(), if tasks.len() < concurrency => match next {
                Some(Ok(delivery)) => {
                    report.handled += 1;
                    tasks.spawn(process(Arc::clone(runtime), delivery));
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
        add(report, joined.ok());
    }
    failure
}

/// [`session`] with one handler at a time: each delivery is handled in the runner's own task, no task spawned
/// and joined per message. A panic outside the handler (which [`handle`] catches itself) is caught here, like
/// a spawned task's, and counted in [`RunReport::lost_tasks`].
///
/// Settling overlaps the next handlers: once a handler is done, its delivery's ack (or nack, or retry copy) is
/// started — in the normal case sent before the next handler starts — and the runner goes on while it
/// completes. Up to [`SETTLES_IN_FLIGHT`] settles complete side by side; each is counted when it does, and all
/// are done when the session ends. Lapin answers an ack only when its frame is written to the socket: waiting
/// for that before taking the next delivery would make the consumer's throughput the round trip to lapin's
/// I/O thread, not its handler's; and a retry copy waiting for its publisher confirm holds up no other
/// message.
async fn session_in_place<H, Fut, E>(
    mut consumer: TracedConsumer,
    runtime: &Arc<Runtime<H>>,
    shutdown: &mut Shutdown,
    stopped: &mut bool,
    report: &mut RunReport,
) -> Option<lapin::Error>
where
    H: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: fmt::Display + Send + 'static,
{
    let start_settle = |handled: Handled| AssertUnwindSafe(settle(runtime, handled)).catch_unwind();
    let mut settling = no_settles(&start_settle);
    let failure = loop {
        let next = tokio::select! {
            biased;
            () = &mut *shutdown, if !*stopped => {
                *stopped = true;
                break None;
            }
            Some(settled) = settling.next(), if !settling.is_empty() => {
                add(report, settled.ok());
                continue;
            }
            next = consumer.next(), if settling.len() < SETTLES_IN_FLIGHT => next,
        };
        match next {
            Some(Ok(delivery)) => {
                report.handled += 1;
                let mut handler =
                    std::pin::pin!(AssertUnwindSafe(handle(runtime, delivery)).catch_unwind());
                // The settles in flight complete while the handler runs.
                let handled = loop {
                    tokio::select! {
                        biased;
                        handled = &mut handler => break handled,
                        Some(settled) = settling.next(), if !settling.is_empty() => add(report, settled.ok()),
                    }
                };
                match handled {
                    Ok(handled) => settling.push(start_settle(handled)),
                    Err(_) => add(report, None),
                }
            }
            Some(Err(error)) => break Some(error),
            None => break None,
        }
    };
    while let Some(settled) = settling.next().await {
        add(report, settled.ok());
    }
    failure
}

/// An empty set of the futures `start` makes: the settle future's type has no name, so the set's type is
/// inferred from the closure that makes them.
fn no_settles<A, F>(_start: &impl Fn(A) -> F) -> FuturesUnordered<F> {
    FuturesUnordered::new()
}

fn add(report: &mut RunReport, joined: Option<TaskResult>) {
    let Some(result) = joined else {
        report.lost_tasks += 1;
        return;
    };
    match result.fate {
        Fate::Acked => report.acked += 1,
        Fate::Requeued => report.requeued += 1,
        Fate::Retried => report.retried += 1,
        Fate::DeadLettered => report.dead_lettered += 1,
        Fate::Discarded => report.discarded += 1,
    }
    report.failed += u64::from(result.failed);
    report.panicked += u64::from(result.panicked);
    report.settle_failed += u64::from(result.settle_failed);
}

/// A copy of what is needed to republish a delivery, taken before the handler owns the message.
struct Copy {
    data: Vec<u8>,
    properties: lapin::BasicProperties,
    attempt: u32,
}

async fn process<H, Fut, E>(runtime: Arc<Runtime<H>>, delivery: TracedDelivery) -> TaskResult
where
    H: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: fmt::Display + Send + 'static,
{
    let handled = handle(&runtime, delivery).await;
    settle(&runtime, handled).await
}

/// A delivery its handler is done with, to be settled.
struct Handled {
    pending: Pending,
    cx: opentelemetry::Context,
    /// Whether the [`RetryPolicy`] requeues it if it failed.
    requeue: bool,
    /// Boxed: only with retries, and it would double the size of every settle future.
    copy: Option<Box<Copy>>,
    /// `None` when the handler succeeded.
    failure: Option<Failure>,
    shared: Arc<crate::consume::ConsumerShared>,
}

/// How a handler failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    /// It returned an error.
    HandlerError,
    /// It panicked.
    Panic,
}

impl Failure {
    /// The `error_type` label value and dead-letter cause.
    fn as_str(self) -> &'static str {
        match self {
            Self::HandlerError => "handler_error",
            Self::Panic => "panic",
        }
    }
}

/// Runs the handler over `delivery` (its context attached, panics caught); a failure is logged and
/// recorded on the span.
async fn handle<H, Fut, E>(runtime: &Arc<Runtime<H>>, delivery: TracedDelivery) -> Handled
where
    H: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: fmt::Display + Send + 'static,
{
    let (mut message, mut pending) = delivery.into_parts();
    if let Some(order_from) = &runtime.order_from
        && message.order().is_none()
        && let Some(order) = order_from(&message)
    {
        let span = message.cx.span();
        for kv in order.attributes() {
            span.set_attribute(kv);
        }
        message.cx = message.cx.with_value(order);
        pending.set_context(message.cx.clone());
    }
    let cx = message.context().clone();
    let requeue = runtime
        .policy
        .requeue(message.redelivered(), message.delivery_count());
    let copy = runtime.retries.as_ref().map(|_| {
        Box::new(Copy {
            data: message.data().to_vec(),
            properties: message.properties().clone(),
            attempt: message.attempt(),
        })
    });
    // For the log lines of the failure paths: no copy of the queue name per message.
    let shared = Arc::clone(&message.shared);
    let result = {
        // The call, then every poll of its future, with the message's context attached and panics caught.
        let called = {
            let _guard = cx.clone().attach();
            std::panic::catch_unwind(AssertUnwindSafe(|| (runtime.handler)(message)))
        };
        match called {
            Ok(future) => Guarded { future, cx: &cx }.await,
            Err(panic) => Err(panic),
        }
    };
    let queue = shared.queue.as_str();
    let failure = match result {
        Ok(Ok(())) => None,
        Ok(Err(error)) => {
            let description = error.to_string();
            {
                let _guard = cx.clone().attach();
                tracing::warn!(queue, error = %description, "message handler failed");
            }
            pending.record_error(Failure::HandlerError.as_str(), description);
            Some(Failure::HandlerError)
        }
        Err(panic) => {
            let description = panic_message(panic.as_ref());
            {
                let _guard = cx.clone().attach();
                tracing::error!(queue, panic = %description, "message handler panicked");
            }
            pending.record_error(
                Failure::Panic.as_str(),
                format!("handler panicked: {description}"),
            );
            Some(Failure::Panic)
        }
    };
    Handled {
        pending,
        cx,
        requeue,
        copy,
        failure,
        shared,
    }
}

/// A handler's future, polled with its message's context attached, a panic caught and returned.
#[pin_project::pin_project]
struct Guarded<'a, F> {
    #[pin]
    future: F,
    cx: &'a opentelemetry::Context,
}

impl<F: Future> Future for Guarded<'_, F> {
    type Output = std::thread::Result<F::Output>;

    fn poll(
        self: Pin<&mut Self>,
        task: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.project();
        let _guard = this.cx.clone().attach();
        match std::panic::catch_unwind(AssertUnwindSafe(|| this.future.poll(task))) {
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Ok(std::task::Poll::Ready(output)) => std::task::Poll::Ready(Ok(output)),
            Err(panic) => std::task::Poll::Ready(Err(panic)),
        }
    }
}

/// Settles a handled delivery: ack, or per the retries and the [`RetryPolicy`].
async fn settle<H>(runtime: &Runtime<H>, handled: Handled) -> TaskResult {
    let Handled {
        mut pending,
        cx,
        requeue,
        copy,
        failure,
        shared,
    } = handled;
    // The handler slot is free once the handler is done, also while a retry copy waits for its confirm.
    pending.release();
    let Some(failure) = failure else {
        let settled = pending.settle(Action::Ack, None).await;
        return TaskResult {
            fate: Fate::Acked,
            failed: false,
            panicked: false,
            settle_failed: settled.is_err(),
        };
    };
    let error_type = failure.as_str();
    let queue = shared.queue.as_str();
    let (fate, settled) = match (&runtime.retries, copy) {
        (Some((retries, publisher)), Some(copy)) => {
            republish(retries, publisher, *copy, &cx, error_type, pending).await
        }
        _ if requeue => (
            Fate::Requeued,
            pending.settle(Action::Nack { requeue: true }, None).await,
        ),
        _ if runtime.dead_letters == DeadLetters::Discard => {
            {
                let _guard = cx.clone().attach();
                let span_context = cx.span().span_context().clone();
                tracing::error!(
                    queue,
                    order_id = cx.get::<OrderContext>().map(OrderContext::id),
                    trace_id = %span_context.trace_id(),
                    cause = error_type,
                    "message discarded: the retry policy gave up and the queue has no dead-letter route"
                );
            }
            (
                Fate::Discarded,
                pending
                    .settle(
                        Action::Nack { requeue: false },
                        Some(SettleOutcome::Discarded),
                    )
                    .await,
            )
        }
        _ => (
            Fate::DeadLettered,
            pending.settle(Action::Nack { requeue: false }, None).await,
        ),
    };
    TaskResult {
        fate,
        failed: failure == Failure::HandlerError,
        panicked: failure == Failure::Panic,
        settle_failed: settled.is_err(),
    }
}

/// Republishes a failed delivery to its delay queue or the dead-letter queue, then acks the original; if the
/// copy is not confirmed, nacks the original with requeue instead.
async fn republish(
    retries: &Retries,
    publisher: &TracedChannel,
    copy: Copy,
    cx: &opentelemetry::Context,
    error_type: &'static str,
    mut pending: Pending,
) -> (Fate, Result<(), crate::SettleError>) {
    let (target, delay) = retries.route(copy.attempt);
    // The queue's requeue count restarts with the copy: the attempt header carries the history.
    let mut headers = match copy.properties.headers() {
        Some(h) if h.contains_key("x-delivery-count") => {
            let mut map = h.inner().clone();
            map.remove("x-delivery-count");
            lapin::types::FieldTable::from(map)
        }
        Some(h) => h.clone(),
        None => lapin::types::FieldTable::default(),
    };
    headers.insert(
        ATTEMPT_HEADER.into(),
        AMQPValue::LongLongInt(i64::from(copy.attempt.saturating_add(1))),
    );
    let span_context = cx.span().span_context().clone();
    if span_context.is_valid() {
        let traceparent = format!(
            "00-{}-{}-{:02x}",
            span_context.trace_id(),
            span_context.span_id(),
            span_context.trace_flags().to_u8()
        );
        headers.insert(
            PREVIOUS_ATTEMPT_HEADER.into(),
            AMQPValue::LongString(traceparent.into()),
        );
    }
    if delay.is_none() {
        headers.insert(
            DEAD_LETTER_CAUSE_HEADER.into(),
            AMQPValue::LongString(error_type.into()),
        );
    }
    let properties = republish_properties(&copy.properties, headers, delay);
    let (fate, outcome) = match delay {
        Some(_) => (Fate::Retried, SettleOutcome::Retry),
        None => (Fate::DeadLettered, SettleOutcome::DeadLetter),
    };
    match publisher.republish(&target, &copy.data, properties).await {
        Ok(()) => {
            cx.span().set_attribute(opentelemetry::KeyValue::new(
                "orderscope.retry.destination",
                target,
            ));
            if let Some(delay) = delay {
                #[allow(clippy::cast_possible_truncation)]
                cx.span().set_attribute(opentelemetry::KeyValue::new(
                    "orderscope.retry.delay_ms",
                    delay.as_millis().min(i64::MAX as u128) as i64,
                ));
            }
            (fate, pending.settle(Action::Ack, Some(outcome)).await)
        }
        Err(error) => {
            {
                let _guard = cx.clone().attach();
                tracing::error!(
                    target_queue = target.as_str(),
                    error = %error,
                    "the retry copy was not confirmed; the message is requeued instead"
                );
            }
            pending.record_error("republish_failed", error.to_string());
            (
                Fate::Requeued,
                pending.settle(Action::Nack { requeue: true }, None).await,
            )
        }
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
