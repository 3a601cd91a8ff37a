//! N+1 detection: the same query summary run more than K times in one request or message.
//!
//! The counts live in the request's own [`Operation`] (put in scope by the HTTP server layer or
//! the AMQP consumer), in a small fixed table of atomics: nothing is shared between requests,
//! no lock is taken. The threshold crossing (K+1) adds an event and attributes to the enclosing
//! span and counts `db_repeated_queries_total`; when the request ends, one WARN line per
//! (operation, summary) and minute gives the final count.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use metrics::Label;
use opentelemetry::trace::TraceContextExt;
use opentelemetry::{Context, KeyValue};
use orderscope_context::Operation;
use orderscope_metrics::catalogue::labels as l;

use crate::cache::{Analyzed, OTHER};
use crate::call::Shared;
use crate::instruments::REPEATED;

/// Distinct summaries counted per request; further ones are not counted.
const SLOTS: usize = 32;
/// One WARN line per (operation, summary) per this long.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The span event added when a summary crosses the threshold.
pub const REPEATED_QUERY_EVENT: &str = "orderscope.db.repeated_query";

pub(crate) struct Tracker {
    operation: Box<str>,
    threshold: u32,
    slots: [(AtomicUsize, AtomicU32); SLOTS],
}

impl Tracker {
    fn new(operation: &str, threshold: u32) -> Self {
        Tracker {
            operation: operation.into(),
            threshold,
            slots: std::array::from_fn(|_| (AtomicUsize::new(0), AtomicU32::new(0))),
        }
    }

    /// Counts one run of `label`; the new count, 0 when the table is full.
    fn count(&self, label: &'static str) -> u32 {
        let key = label.as_ptr() as usize;
        for (slot_key, count) in &self.slots {
            match slot_key.compare_exchange(0, key, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return count.fetch_add(1, Ordering::AcqRel) + 1,
                Err(existing) if existing == key => {
                    return count.fetch_add(1, Ordering::AcqRel) + 1;
                }
                Err(_) => {}
            }
        }
        0
    }
}

/// Labels are interned: a key maps back to its label through the cache's summaries.
fn label_of(key: usize, labels: &HashMap<usize, &'static str>) -> Option<&'static str> {
    labels.get(&key).copied()
}

/// The labels seen crossing a threshold, by key, to name them in the final line.
static CROSSED: OnceLock<Mutex<HashMap<usize, &'static str>>> = OnceLock::new();
/// When each (operation, summary) was last reported.
static LAST_WARN: OnceLock<Mutex<HashMap<Pair, Instant>>> = OnceLock::new();

/// (operation, summary).
type Pair = (Box<str>, &'static str);

impl Drop for Tracker {
    fn drop(&mut self) {
        let mut findings = Vec::new();
        for (key, count) in &self.slots {
            let count = count.load(Ordering::Acquire);
            if count > self.threshold {
                findings.push((key.load(Ordering::Acquire), count));
            }
        }
        if findings.is_empty() {
            return;
        }
        let crossed = CROSSED
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut last = LAST_WARN
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        for (key, count) in findings {
            let Some(summary) = label_of(key, &crossed) else {
                continue;
            };
            let pair = (self.operation.clone(), summary);
            if last
                .get(&pair)
                .is_some_and(|at| now.duration_since(*at) < WARN_EVERY)
            {
                continue;
            }
            last.insert(pair, now);
            tracing::warn!(
                target: "orderscope_sqlx",
                operation = &*self.operation,
                summary = summary,
                count,
                "N+1: {count}× {summary} in {}",
                self.operation
            );
        }
    }
}

/// Counts a call of `entry` in the operation of `parent`, if any.
pub(crate) fn count(parent: &Context, shared: &Shared, entry: &Analyzed) {
    let label = entry.label;
    if label.is_empty() || label == OTHER || shared.repeat_threshold == 0 {
        return;
    }
    let Some(operation) = parent.get::<Operation>() else {
        return;
    };
    let threshold = shared.repeat_threshold;
    let Some(tracker) = operation.extension(|name| Tracker::new(name, threshold)) else {
        return;
    };
    if tracker.count(label) != tracker.threshold.saturating_add(1) {
        return;
    }
    crossed(parent, tracker, label);
}

#[cold]
fn crossed(parent: &Context, tracker: &Tracker, label: &'static str) {
    CROSSED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(label.as_ptr() as usize, label);
    let count = i64::from(tracker.threshold.saturating_add(1));
    let span = parent.span();
    span.add_event(
        REPEATED_QUERY_EVENT,
        vec![
            KeyValue::new("db.query.summary", label),
            KeyValue::new("orderscope.db.repeated_query.count", count),
        ],
    );
    span.set_attribute(KeyValue::new("orderscope.db.repeated_query.summary", label));
    span.set_attribute(KeyValue::new(
        "orderscope.db.repeated_query.threshold",
        i64::from(tracker.threshold),
    ));
    let key = (tracker.operation.clone(), label);
    REPEATED.increment(&key, 1, |(operation, summary)| {
        vec![
            Label::new(l::OPERATION, operation.to_string()),
            Label::from_static_parts(l::DB_QUERY_SUMMARY, summary),
        ]
    });
}
