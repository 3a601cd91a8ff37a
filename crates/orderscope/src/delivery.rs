//! What happened to the exports of one signal: failures counted in
//! `orderscope_export_failures_total`, one WARN line per burst of failures, and the batches
//! still on their way, so that a shutdown that runs out of time can say what was not delivered,
//! where to, and why.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Counter of failed exports, label `signal` (`traces`, `logs`).
pub const EXPORT_FAILURES_METRIC: &str = "orderscope_export_failures_total";

/// The export accounting of one signal (spans or log records).
#[derive(Debug)]
pub(crate) struct Delivery {
    /// `traces` or `logs`: the `signal` label.
    signal: &'static str,
    /// What one item is called in messages: `span`, `log record`.
    item: &'static str,
    /// Where exports go: the endpoint, or "the custom exporter".
    destination: String,
    /// Exports started and not finished.
    batches: AtomicUsize,
    /// Items in those exports.
    items: AtomicUsize,
    /// Exports that failed, since the start.
    failed_batches: AtomicUsize,
    /// Items in those exports.
    failed_items: AtomicUsize,
    /// Set by the first failure of a burst, cleared by the next success.
    failing: AtomicBool,
    /// Why the last export failed.
    last_error: Mutex<Option<String>>,
    /// Why the last request failed, as the transport said it (the exporter's error often says
    /// only "network error").
    cause: Mutex<Option<String>>,
}

impl Delivery {
    pub(crate) fn new(signal: &'static str, item: &'static str, destination: String) -> Self {
        Self {
            signal,
            item,
            destination,
            batches: AtomicUsize::new(0),
            items: AtomicUsize::new(0),
            failed_batches: AtomicUsize::new(0),
            failed_items: AtomicUsize::new(0),
            failing: AtomicBool::new(false),
            last_error: Mutex::new(None),
            cause: Mutex::new(None),
        }
    }

    /// An export of `items` starts.
    pub(crate) fn started(&self, items: usize) {
        self.batches.fetch_add(1, Ordering::AcqRel);
        self.items.fetch_add(items, Ordering::AcqRel);
    }

    /// The export of `items` started earlier finished with `error` (or successfully).
    pub(crate) fn finished(&self, items: usize, error: Option<&dyn fmt::Display>) {
        self.batches.fetch_sub(1, Ordering::AcqRel);
        self.items.fetch_sub(items, Ordering::AcqRel);
        match error {
            None => {
                if self.failing.swap(false, Ordering::AcqRel) {
                    tracing::info!(
                        target: "orderscope",
                        signal = self.signal,
                        "{} export to {} works again",
                        self.item,
                        self.destination
                    );
                }
            }
            Some(error) => {
                self.failed_batches.fetch_add(1, Ordering::AcqRel);
                self.failed_items.fetch_add(items, Ordering::AcqRel);
                metrics::counter!(EXPORT_FAILURES_METRIC, "signal" => self.signal).increment(1);
                let cause = self
                    .cause
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                let message = match cause {
                    Some(cause) => format!("{error}: {cause}"),
                    None => error.to_string(),
                };
                *self
                    .last_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(message.clone());
                // One line per burst: the next one after an export succeeds again.
                if !self.failing.swap(true, Ordering::AcqRel) {
                    tracing::warn!(
                        target: "orderscope",
                        signal = self.signal,
                        error = %message,
                        "{} export to {} failed; further failures are counted in {}{{signal=\"{}\"}} until an export succeeds",
                        self.item,
                        self.destination,
                        EXPORT_FAILURES_METRIC,
                        self.signal
                    );
                }
            }
        }
    }

    /// Records why a request of the current export failed, for the failure's message.
    pub(crate) fn note_cause(&self, cause: String) {
        *self.cause.lock().unwrap_or_else(PoisonError::into_inner) = Some(cause);
    }

    /// How many exports (and items) failed so far: taken before a flush, to tell the failures
    /// of that flush.
    pub(crate) fn failures(&self) -> (usize, usize) {
        (
            self.failed_batches.load(Ordering::Acquire),
            self.failed_items.load(Ordering::Acquire),
        )
    }

    /// Says what was not delivered by a flush bounded by `bound`: what is still on its way (with
    /// `queued` items still waiting in the processor's queue), else what failed since
    /// `before` (from [`failures`](Self::failures)); `None` when everything was delivered.
    pub(crate) fn undelivered(
        &self,
        queued: usize,
        bound: Duration,
        before: (usize, usize),
    ) -> Option<String> {
        let last_error = self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let batches = self.batches.load(Ordering::Acquire);
        let items = self.items.load(Ordering::Acquire) + queued;
        if items > 0 {
            let why = match last_error {
                Some(error) if self.failing.load(Ordering::Acquire) => error,
                _ => "no answer".to_owned(),
            };
            return Some(format!(
                "{} not delivered to {} within {bound:?}: {why}",
                self.describe(batches, items),
                self.destination
            ));
        }
        let (failed_batches, failed_items) = self.failures();
        let (batches, items) = (failed_batches - before.0, failed_items - before.1);
        if batches == 0 {
            return None;
        }
        Some(format!(
            "{} not delivered to {}: {}",
            self.describe(batches, items),
            self.destination,
            last_error.unwrap_or_else(|| "the export failed".to_owned())
        ))
    }

    /// "2 span batches (7 spans)", or "7 spans" when none is being exported.
    fn describe(&self, batches: usize, items: usize) -> String {
        let items = format!("{items} {}{}", self.item, if items == 1 { "" } else { "s" });
        match batches {
            0 => items,
            1 => format!("1 {} batch ({items})", self.item),
            n => format!("{n} {} batches ({items})", self.item),
        }
    }
}
