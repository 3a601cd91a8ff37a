//! Settling a [`TracedDelivery`]: exactly once, recorded.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use lapin::Acker;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions};
use opentelemetry::trace::{Status, TraceContextExt};
use opentelemetry::{Context, KeyValue};

use crate::consume::{ConsumerShared, TracedDelivery};
pub use crate::instruments::SettleOutcome;
use crate::publish::OUTCOME_ATTRIBUTE;

/// Why a delivery could not be settled. The broker will redeliver the message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettleError {
    /// The channel the message arrived on is closed: lapin refused the settle (`Ok(false)`). The broker
    /// requeues the message and delivers it again, so it will be processed twice.
    #[error(
        "the channel was closed before the delivery could be settled; the broker will redeliver it"
    )]
    ChannelClosed,
    /// The delivery had already been settled through lapin directly.
    #[error("the delivery was already settled")]
    AlreadySettled,
    /// The settle frame could not be sent.
    #[error("settling the delivery failed: {0}")]
    Failed(#[source] lapin::Error),
}

impl SettleError {
    fn error_type(&self) -> &'static str {
        match self {
            Self::ChannelClosed => "channel_closed",
            Self::AlreadySettled | Self::Failed(_) => "settle_failed",
        }
    }
}

/// What to tell the broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Ack,
    Nack { requeue: bool },
    Reject { requeue: bool },
}

impl Action {
    fn default_outcome(self) -> SettleOutcome {
        match self {
            Self::Ack => SettleOutcome::Ack,
            Self::Nack { requeue: true } => SettleOutcome::NackRequeue,
            Self::Nack { requeue: false } => SettleOutcome::NackDeadLetter,
            Self::Reject { .. } => SettleOutcome::Reject,
        }
    }

    fn operation(self) -> &'static str {
        match self {
            Self::Ack => "ack",
            Self::Nack { .. } => "nack",
            Self::Reject { .. } => "reject",
        }
    }
}

/// The part of a delivery that settles it. Drop without settling is recorded (see [`TracedDelivery`]).
pub(crate) struct Pending {
    acker: Acker,
    cx: Context,
    received: Instant,
    shared: Arc<ConsumerShared>,
    error_type: Option<&'static str>,
    settled: bool,
    /// Counted in `messaging_unsettled_messages`: until the settle is started (see [`Pending::release`]).
    unsettled: bool,
    /// The outcome of the ack, nack or reject handed to lapin, not yet answered: a drop from here on
    /// records it rather than a requeue (lapin sends the frame whatever becomes of its future).
    sent: Option<SettleOutcome>,
}

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pending")
            .field("acker", &self.acker)
            .field("error_type", &self.error_type)
            .field("settled", &self.settled)
            .finish_non_exhaustive()
    }
}

impl Pending {
    pub(crate) fn new(
        acker: Acker,
        cx: Context,
        received: Instant,
        shared: Arc<ConsumerShared>,
    ) -> Self {
        Self {
            acker,
            cx,
            received,
            shared,
            error_type: None,
            settled: false,
            unsettled: true,
            sent: None,
        }
    }

    /// Replaces the context (same span, more values: an order found in the message).
    pub(crate) fn set_context(&mut self, cx: Context) {
        self.cx = cx;
    }

    /// Frees the delivery's handler slot: no longer counted in `messaging_unsettled_messages`. Called
    /// when its settle starts — before a retry copy waits for its confirm — and at the latest when it
    /// is settled or dropped.
    pub(crate) fn release(&mut self) {
        if self.unsettled {
            self.shared.handles.unsettled.decrement(1.0);
            self.unsettled = false;
        }
    }

    /// Marks the processing as failed: span status ERROR, and `error_type` on the process duration.
    pub(crate) fn record_error(&mut self, error_type: &'static str, description: String) {
        self.error_type = Some(error_type);
        let span = self.cx.span();
        span.set_attribute(KeyValue::new("error.type", error_type));
        span.set_status(Status::error(description));
    }

    pub(crate) async fn settle(
        mut self,
        action: Action,
        outcome: Option<SettleOutcome>,
    ) -> Result<(), SettleError> {
        let outcome = outcome.unwrap_or_else(|| action.default_outcome());
        self.release();
        self.sent = Some(outcome);
        let call_start = Instant::now();
        let result = match action {
            Action::Ack => self.acker.ack(BasicAckOptions::default()).await,
            Action::Nack { requeue } => {
                self.acker
                    .nack(BasicNackOptions {
                        requeue,
                        ..BasicNackOptions::default()
                    })
                    .await
            }
            Action::Reject { requeue } => self.acker.reject(BasicRejectOptions { requeue }).await,
        };
        let result = match result {
            Ok(true) => Ok(()),
            Ok(false) if self.acker.poisoned() => Err(SettleError::ChannelClosed),
            Ok(false) => Err(SettleError::AlreadySettled),
            Err(error) => Err(SettleError::Failed(error)),
        };
        let handles = &self.shared.handles;
        handles.record_settle_call(
            action.operation(),
            result.is_err(),
            call_start.elapsed().as_secs_f64(),
        );
        let span = self.cx.span();
        span.set_attribute(KeyValue::new(OUTCOME_ATTRIBUTE, outcome.as_str()));
        if let Err(error) = &result {
            tracing::error!(
                queue = self.shared.queue.as_str(),
                outcome = outcome.as_str(),
                error = %error,
                "delivery could not be settled; the broker will redeliver it"
            );
            // A settle failure overrides the handler's error type: it is the one that causes a duplicate.
            self.error_type = Some(error.error_type());
            span.set_attribute(KeyValue::new("error.type", error.error_type()));
            span.set_status(Status::error(error.to_string()));
        }
        handles.record_process(
            outcome,
            self.error_type,
            self.received.elapsed().as_secs_f64(),
        );
        span.end();
        self.settled = true;
        result
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        self.release();
        let handles = &self.shared.handles;
        if let Some(outcome) = self.sent {
            // Dropped while lapin writes the settle: it goes out all the same.
            handles.record_process(
                outcome,
                self.error_type,
                self.received.elapsed().as_secs_f64(),
            );
            let span = self.cx.span();
            span.set_attribute(KeyValue::new(OUTCOME_ATTRIBUTE, outcome.as_str()));
            span.end();
            return;
        }
        handles.record_process(
            SettleOutcome::NackRequeue,
            Some("dropped"),
            self.received.elapsed().as_secs_f64(),
        );
        let span = self.cx.span();
        span.set_attribute(KeyValue::new(OUTCOME_ATTRIBUTE, "nack_requeue"));
        span.set_attribute(KeyValue::new("error.type", "dropped"));
        span.set_status(Status::error("delivery dropped without being settled"));
        span.end();
        let requeued = match tokio::runtime::Handle::try_current() {
            Ok(runtime) if self.acker.usable() => {
                let acker = self.acker.clone();
                let queue = self.shared.queue.clone();
                runtime.spawn(async move {
                    let options = BasicNackOptions {
                        requeue: true,
                        ..BasicNackOptions::default()
                    };
                    match acker.nack(options).await {
                        Ok(true) => {}
                        Ok(false) => tracing::error!(
                            queue = queue.as_str(),
                            "dropped delivery could not be requeued: channel closed"
                        ),
                        Err(error) => tracing::error!(
                            queue = queue.as_str(),
                            error = %error,
                            "dropped delivery could not be requeued"
                        ),
                    }
                });
                true
            }
            _ => false,
        };
        tracing::error!(
            queue = self.shared.queue.as_str(),
            requeued,
            "delivery dropped without ack, nack or reject; the broker will redeliver it"
        );
    }
}

impl TracedDelivery {
    /// Acknowledges the message: outcome `ack`.
    ///
    /// # Errors
    ///
    /// [`SettleError`] when lapin could not send the ack; the broker will redeliver the message.
    pub async fn ack(self) -> Result<(), SettleError> {
        self.settle(Action::Ack).await
    }

    /// Negatively acknowledges the message: requeued (outcome `nack_requeue`), or not (outcome
    /// `nack_dead_letter`: dead-lettered when the queue has a dead-letter exchange, discarded otherwise).
    ///
    /// # Errors
    ///
    /// [`SettleError`] when lapin could not send the nack; the broker will redeliver the message.
    pub async fn nack(self, requeue: bool) -> Result<(), SettleError> {
        self.settle(Action::Nack { requeue }).await
    }

    /// Rejects the message, requeued or not: outcome `reject`.
    ///
    /// # Errors
    ///
    /// [`SettleError`] when lapin could not send the reject; the broker will redeliver the message.
    pub async fn reject(self, requeue: bool) -> Result<(), SettleError> {
        self.settle(Action::Reject { requeue }).await
    }

    /// Marks the processing as failed before settling: the span gets status ERROR with `description`, and
    /// the process duration `error_type="handler_error"`.
    pub fn record_error(&mut self, description: impl fmt::Display) {
        self.pending
            .record_error("handler_error", description.to_string());
    }

    async fn settle(self, action: Action) -> Result<(), SettleError> {
        let (_message, pending) = self.into_parts();
        pending.settle(action, None).await
    }
}
