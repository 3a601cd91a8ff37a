//! Delayed retries: the topology (delay queues and a dead-letter queue per work queue) and the backoff.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel};

/// Jittered exponential backoff: the delay before retry `n` (1 = the first retry) is
/// `min(initial × multiplierⁿ⁻¹, max)`, spread uniformly by ± `jitter` of itself.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use orderscope_amqp::Backoff;
///
/// let backoff = Backoff::exponential(Duration::from_millis(500))
///     .multiplier(3.0)
///     .max(Duration::from_secs(60))
///     .jitter(0.1);
/// let second = backoff.delay(2);
/// assert!(second >= Duration::from_millis(1350) && second <= Duration::from_millis(1650));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    initial: Duration,
    multiplier: f64,
    max: Duration,
    jitter: f64,
}

impl Default for Backoff {
    /// One second, doubling, at most five minutes, ± 20 %.
    fn default() -> Self {
        Self::exponential(Duration::from_secs(1))
    }
}

impl Backoff {
    /// Starts at `initial`, doubling on each retry, at most five minutes, ± 20 % jitter.
    #[must_use]
    pub fn exponential(initial: Duration) -> Self {
        Self {
            initial,
            multiplier: 2.0,
            max: Duration::from_secs(300),
            jitter: 0.2,
        }
    }

    /// The factor between two consecutive delays. Defaults to 2. Values below 1 (and NaN) count as 1.
    #[must_use]
    pub fn multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = if multiplier >= 1.0 { multiplier } else { 1.0 };
        self
    }

    /// The longest delay, before jitter. Defaults to five minutes.
    #[must_use]
    pub fn max(mut self, max: Duration) -> Self {
        self.max = max;
        self
    }

    /// The spread, as a fraction of the delay: 0.2 spreads a 10 s delay over 8–12 s, so messages that failed
    /// together do not all come back at once. Defaults to 0.2; clamped to `0.0..=1.0`.
    #[must_use]
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = if jitter.is_nan() {
            0.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        self
    }

    /// The delay before retry `retry` (1 = the first retry), jittered.
    #[must_use]
    pub fn delay(&self, retry: u32) -> Duration {
        self.delay_with(retry, random_unit())
    }

    /// The delay before retry `retry` with the jitter drawn as `unit` in `0.0..1.0`.
    fn delay_with(&self, retry: u32, unit: f64) -> Duration {
        let exponent = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        let base = self.initial.as_secs_f64() * self.multiplier.powi(exponent);
        let base = base.min(self.max.as_secs_f64());
        let spread = 1.0 + self.jitter * (2.0 * unit - 1.0);
        Duration::try_from_secs_f64(base * spread).unwrap_or(self.max)
    }
}

/// A uniform number in `0.0..1.0` from the standard library's per-instance random hasher keys.
fn random_unit() -> f64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u8(0);
    #[allow(clippy::cast_precision_loss)]
    let unit = (hasher.finish() >> 11) as f64 / (1_u64 << 53) as f64;
    unit
}

/// Retries through delay queues, and a dead-letter queue after the last attempt, for one work queue.
///
/// With [`RunOptions::retries`](crate::RunOptions::retries), a message whose handler failed or panicked is
/// republished — with publisher confirms — to the delay queue of its attempt, `{queue}.retry.{n}`; the original
/// is acked only once the broker confirmed the copy. The copy waits there for [`Backoff::delay`]`(n)` (its
/// per-message `expiration`), then the delay queue dead-letters it back to the work queue through the default
/// exchange. Its attempt number travels in [`ATTEMPT_HEADER`](crate::ATTEMPT_HEADER). When the last attempt
/// fails, the message is republished the same way to `{queue}.dead-letter`. The work queue is never blocked: a
/// waiting message sits in a delay queue, not in front of the others. One delay queue per attempt keeps a long
/// delay from holding back a shorter one.
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
/// use orderscope_amqp::{Backoff, Retries};
///
/// # async fn example(channel: lapin::Channel) -> Result<(), lapin::Error> {
/// let retries = Retries::new("orders")
///     .max_attempts(5)
///     .backoff(Backoff::exponential(Duration::from_secs(2)));
/// retries.declare(&channel).await?; // idempotent: delay queues and the dead-letter queue
/// assert_eq!(retries.delay_queue(1), "orders.retry.1");
/// assert_eq!(retries.dead_letter_queue(), "orders.dead-letter");
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Retries {
    queue: String,
    max_attempts: u32,
    backoff: Backoff,
    dead_letter_queue: String,
    arguments: FieldTable,
    declare_at_start: bool,
}

impl Retries {
    /// Retries for the work queue `queue`: 4 attempts, [`Backoff::default`], dead-letter queue
    /// `{queue}.dead-letter`.
    #[must_use]
    pub fn new(queue: impl Into<String>) -> Self {
        let queue = queue.into();
        Self {
            dead_letter_queue: format!("{queue}.dead-letter"),
            queue,
            max_attempts: 4,
            backoff: Backoff::default(),
            arguments: FieldTable::default(),
            declare_at_start: false,
        }
    }

    /// How many times a message is handed to the handler before it goes to the dead-letter queue, the first
    /// attempt included. Defaults to 4. Values below 1 count as 1 (no retry: straight to the dead-letter queue).
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The delays between attempts. Defaults to [`Backoff::default`].
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The dead-letter queue's name. Defaults to `{queue}.dead-letter`.
    #[must_use]
    pub fn dead_letter_queue_name(mut self, name: impl Into<String>) -> Self {
        self.dead_letter_queue = name.into();
        self
    }

    /// Extra arguments for the queues [`declare`](Self::declare) creates (e.g. `x-queue-type`,
    /// `x-expires`). Defaults to none.
    #[must_use]
    pub fn queue_arguments(mut self, arguments: FieldTable) -> Self {
        self.arguments = arguments;
        self
    }

    /// Whether [`run`](crate::run) declares the topology when it starts ([`declare`](Self::declare)), rather
    /// than only checking that it exists. Defaults to `false`: check only.
    #[must_use]
    pub fn declare_at_start(mut self, declare: bool) -> Self {
        self.declare_at_start = declare;
        self
    }

    /// The work queue.
    #[must_use]
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The number of attempts, the first included.
    #[must_use]
    pub fn attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The delay queue a message waits in after failed attempt `attempt`: `{queue}.retry.{attempt}`.
    #[must_use]
    pub fn delay_queue(&self, attempt: u32) -> String {
        format!("{}.retry.{attempt}", self.queue)
    }

    /// The dead-letter queue.
    #[must_use]
    pub fn dead_letter_queue(&self) -> &str {
        &self.dead_letter_queue
    }

    /// Declares the delay queues (durable, dead-lettering to the work queue through the default exchange) and
    /// the dead-letter queue (durable). Idempotent: declaring again with the same settings changes nothing.
    ///
    /// # Errors
    ///
    /// The broker's answer to `queue.declare`, e.g. `PRECONDITION_FAILED` when a queue of that name exists with
    /// other arguments (the channel is then closed).
    pub async fn declare(&self, channel: &Channel) -> lapin::Result<()> {
        let options = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        for attempt in 1..self.max_attempts {
            let mut arguments = self.arguments.clone();
            arguments.insert(
                "x-dead-letter-exchange".into(),
                AMQPValue::LongString(LongString::from("")),
            );
            arguments.insert(
                "x-dead-letter-routing-key".into(),
                AMQPValue::LongString(LongString::from(self.queue.as_str())),
            );
            channel
                .queue_declare(self.delay_queue(attempt).into(), options, arguments)
                .await?;
        }
        channel
            .queue_declare(
                self.dead_letter_queue.as_str().into(),
                options,
                self.arguments.clone(),
            )
            .await?;
        Ok(())
    }

    /// Checks that the delay queues and the dead-letter queue exist (passive declares).
    ///
    /// # Errors
    ///
    /// `NOT_FOUND` for the first missing queue (the channel is then closed).
    pub async fn check(&self, channel: &Channel) -> lapin::Result<()> {
        let options = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        for attempt in 1..self.max_attempts {
            channel
                .queue_declare(
                    self.delay_queue(attempt).into(),
                    options,
                    FieldTable::default(),
                )
                .await?;
        }
        channel
            .queue_declare(
                self.dead_letter_queue.as_str().into(),
                options,
                FieldTable::default(),
            )
            .await?;
        Ok(())
    }

    pub(crate) fn prepare_at_start(&self) -> bool {
        self.declare_at_start
    }

    /// Where a message goes after failed attempt `attempt`, and with which expiration.
    pub(crate) fn route(&self, attempt: u32) -> (String, Option<Duration>) {
        if attempt < self.max_attempts {
            (self.delay_queue(attempt), Some(self.backoff.delay(attempt)))
        } else {
            (self.dead_letter_queue.clone(), None)
        }
    }
}

/// The properties of a republished copy: the original's, minus `user_id` (the broker checks it against the
/// publishing connection's user) and `expiration`, with `headers` and the new `expiration`.
pub(crate) fn republish_properties(
    original: &BasicProperties,
    headers: FieldTable,
    expiration: Option<Duration>,
) -> BasicProperties {
    let mut p = BasicProperties::default().with_headers(headers);
    macro_rules! copy {
        ($($get:ident => $with:ident),*) => {$(
            if let Some(v) = original.$get() {
                p = p.$with(v.clone());
            }
        )*};
    }
    copy!(
        content_type => with_content_type,
        content_encoding => with_content_encoding,
        delivery_mode => with_delivery_mode,
        priority => with_priority,
        correlation_id => with_correlation_id,
        reply_to => with_reply_to,
        message_id => with_message_id,
        timestamp => with_timestamp,
        kind => with_type,
        app_id => with_app_id
    );
    if let Some(delay) = expiration {
        p = p.with_expiration(ShortString::from(delay.as_millis().max(1).to_string()));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_up_to_the_max() {
        let b = Backoff::exponential(Duration::from_millis(100))
            .max(Duration::from_millis(700))
            .jitter(0.0);
        let delays: Vec<u128> = (1..=5).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 700, 700]);
        assert_eq!(b.delay(0).as_millis(), 100);
        assert_eq!(b.delay(u32::MAX).as_millis(), 700);
    }

    #[test]
    fn jitter_spreads_within_its_bounds() {
        let b = Backoff::exponential(Duration::from_secs(10)).jitter(0.2);
        assert_eq!(b.delay_with(1, 0.0), Duration::from_secs(8));
        assert_eq!(b.delay_with(1, 0.5), Duration::from_secs(10));
        let high = b.delay_with(1, 0.999_999).as_secs_f64();
        assert!((11.99..12.0).contains(&high), "{high}");
        let samples: Vec<Duration> = (0..200).map(|_| b.delay(1)).collect();
        assert!(
            samples
                .iter()
                .all(|d| (8.0..=12.0).contains(&d.as_secs_f64()))
        );
        assert!(samples.iter().any(|d| *d != samples[0]), "jitter varies");
        // Bad settings are clamped.
        let b = Backoff::exponential(Duration::from_secs(1))
            .jitter(f64::NAN)
            .multiplier(0.1);
        assert_eq!(b.delay(3), Duration::from_secs(1));
        assert_eq!(
            Backoff::default().jitter(7.0).delay_with(1, 0.0),
            Duration::ZERO
        );
    }

    #[test]
    fn routes_go_to_delay_queues_then_the_dead_letter_queue() {
        let r = Retries::new("work").max_attempts(3);
        assert_eq!(r.route(1).0, "work.retry.1");
        assert!(r.route(1).1.is_some());
        assert_eq!(r.route(2).0, "work.retry.2");
        assert_eq!(r.route(3), ("work.dead-letter".to_owned(), None));
        assert_eq!(r.route(9).0, "work.dead-letter");
        let r = Retries::new("work")
            .max_attempts(0)
            .dead_letter_queue_name("dlq");
        assert_eq!(r.attempts(), 1);
        assert_eq!(r.route(1).0, "dlq");
    }

    #[test]
    fn republished_properties_keep_the_message_but_not_its_user_or_expiration() {
        let original = BasicProperties::default()
            .with_message_id("m-1".into())
            .with_content_type("application/json".into())
            .with_user_id("someone".into())
            .with_expiration("5".into())
            .with_delivery_mode(2);
        let p = republish_properties(
            &original,
            FieldTable::default(),
            Some(Duration::from_millis(250)),
        );
        assert_eq!(
            p.message_id().as_ref().map(ShortString::as_str),
            Some("m-1")
        );
        assert_eq!(
            p.content_type().as_ref().map(ShortString::as_str),
            Some("application/json")
        );
        assert_eq!(*p.delivery_mode(), Some(2));
        assert_eq!(*p.user_id(), None);
        assert_eq!(
            p.expiration().as_ref().map(ShortString::as_str),
            Some("250")
        );
        let p = republish_properties(&original, FieldTable::default(), None);
        assert_eq!(*p.expiration(), None);
    }
}
