//! The in-flight order tracker.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher as _;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use hashbrown::{DefaultHashBuilder, HashTable};

use opentelemetry::trace::{TraceContextExt as _, TraceId};
use orderscope_context::OrderContext;
use orderscope_metrics::catalogue::{
    ORDER_IN_FLIGHT, ORDER_OLDEST_AGE, ORDER_OVERDUE_IN_FLIGHT, ORDER_STALLED,
    ORDER_TRACKER_EVICTIONS, labels,
};

use crate::stage::with_registered;

/// Number of shards; a power of two.
const SHARDS: usize = 16;

/// The default capacity, in orders.
pub const DEFAULT_TRACKER_CAPACITY: usize = 100_000;

static INSTALLED: OnceLock<Tracker> = OnceLock::new();

/// The tracker [`stage!`](crate::stage) feeds, once one is [installed](Tracker::install).
pub fn tracker() -> Option<&'static Tracker> {
    INSTALLED.get()
}

/// Configures a [`Tracker`].
#[derive(Debug, Clone)]
pub struct TrackerBuilder {
    capacity: usize,
    limits: HashMap<&'static str, Duration>,
}

impl TrackerBuilder {
    /// The most orders tracked at once. Defaults to 100,000. At least 16 (one per shard).
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// An order that stays in `stage` longer than `limit` is stalled, whatever its deadline.
    /// Defaults to none: only the order's deadline applies.
    pub fn stage_limit(mut self, stage: &'static str, limit: Duration) -> Self {
        self.limits.insert(stage, limit);
        self
    }

    /// The tracker, not yet installed.
    pub fn build(self) -> Tracker {
        let per_shard = self.capacity.max(SHARDS).div_ceil(SHARDS);
        Tracker {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: DefaultHashBuilder::default(),
            per_shard,
            limits: self.limits,
        }
    }
}

/// The in-flight order tracker: which orders are in which stage right now, and which are stuck.
///
/// Once a [`Tracker`] is [installed](Tracker::install), every [`stage!`](crate::stage) of an order
/// in scope records the order's current stage, when it entered it, its deadline and the trace id
/// of the span that entered it. Reaching a terminal stage (declared with
/// [`register_terminal_stages`](crate::register_terminal_stages)) removes the order. Without an
/// installed tracker `stage!` records nothing of this.
///
/// [`Tracker::sample`], called on a tick (the `orderscope` facade runs it every 5 s), sets the
/// gauges and reports stalls:
///
/// | Prometheus metric | type | labels | meaning |
/// | --- | --- | --- | --- |
/// | `order_in_flight` | gauge | `stage` | orders whose current stage is `stage` |
/// | `order_overdue_in_flight` | gauge | `stage` | of those, orders whose deadline has passed |
/// | `order_oldest_age_seconds` | gauge | `stage` | the longest time an order has been in `stage` |
/// | `order_stalled_total` | counter | `stage` | orders reported stalled in `stage` |
/// | `orderscope_order_tracker_evictions_total` | counter | — | orders dropped because the tracker was full |
///
/// An order *stalls* when it stays in a stage past its deadline, or past the stage's limit
/// ([`TrackerBuilder::stage_limit`]). It is reported once per stage it stalls in: one WARN line
/// (`message="order stalled"`, the order fields, `order.stage`, `order.stage_age_seconds` and the
/// `trace_id` of the span that entered the stage) and `order_stalled_total{stage}`.
///
/// # Cost and memory
///
/// The orders live in 16 shards chosen by a hash of the order id, each behind its own mutex: a
/// transition takes exactly one lock, that of its order's shard, and never one shared by every
/// request. The id is hashed once per transition, and a transition of an order already tracked
/// allocates nothing.
///
/// Capacity is bounded (100,000 orders by default) and split evenly: each shard holds at most
/// capacity ÷ 16 orders. Eviction is oldest-first *within a shard*, not across the tracker:
/// when an order arrives at a full shard, that shard's oldest order (the one first tracked the
/// longest ago) is evicted and counted, even if an older order sits in another shard, and even
/// if other shards still have room. With ids spread by the hash, the shards fill within a few
/// percent of each other, so evictions start once the tracker is close to full.
///
/// A tracked order costs about 420 bytes of resident memory with a 16-character id (measured by
/// `tests/tracker_memory.rs`: 100,000 orders ≈ 42 MB).
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use orderscope_context::OrderContext;
/// use orderscope_logs::{Tracker, register_stages, register_terminal_stages, stage};
///
/// register_stages(&["crm.accepted"]);
/// register_terminal_stages(&["crm.done"]);
/// let tracker = Tracker::builder()
///     .capacity(10_000)
///     .stage_limit("crm.accepted", Duration::from_secs(300))
///     .build()
///     .install()
///     .expect("the first tracker of the process");
///
/// let order = OrderContext::new("ORD-7")?;
/// order.in_scope(|| stage!("crm.accepted"));
/// assert_eq!(tracker.get("ORD-7").unwrap().stage, "crm.accepted");
/// order.in_scope(|| stage!("crm.done"));
/// assert!(tracker.get("ORD-7").is_none());
/// # Ok::<(), orderscope_context::OrderContextError>(())
/// ```
#[derive(Debug)]
pub struct Tracker {
    shards: Box<[Mutex<Shard>]>,
    hasher: DefaultHashBuilder,
    per_shard: usize,
    limits: HashMap<&'static str, Duration>,
}

/// One tracked order, as [`Tracker::get`] and [`Tracker::orders`] return it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TrackedOrder {
    /// The order (id, channel, priority, created_at as first tracked).
    pub order: OrderContext,
    /// Its current stage (a registered name, or `"other"`).
    pub stage: &'static str,
    /// When it entered that stage.
    pub entered_at: SystemTime,
    /// Its deadline, as of its last transition.
    pub deadline: Option<SystemTime>,
    /// The trace of the span that entered the stage, when one was active.
    pub trace_id: Option<TraceId>,
    /// Whether it was reported stalled in this stage.
    pub stalled: bool,
}

impl TrackedOrder {
    /// Whether its deadline has passed at `now`.
    pub fn overdue(&self, now: SystemTime) -> bool {
        self.deadline.is_some_and(|d| now > d)
    }

    /// How long it has been in its stage at `now`.
    pub fn stage_age(&self, now: SystemTime) -> Duration {
        now.duration_since(self.entered_at).unwrap_or_default()
    }
}

/// Orders per stage, as [`Tracker::counts`] returns them.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct StageCount {
    /// The stage.
    pub stage: &'static str,
    /// Orders in it.
    pub in_flight: u64,
    /// Of those, orders past their deadline.
    pub overdue: u64,
    /// The longest time an order has been in it (zero when empty).
    pub oldest: Duration,
}

/// Bytes of the order id kept in the entry itself, so that finding an order compares ids
/// without following a pointer.
const INLINE_ID: usize = 24;

/// One tracked order. The id's hash is computed once per transition and serves both to pick
/// the shard and to find the entry in the shard's table.
#[derive(Debug)]
struct Entry {
    hash: u64,
    id_len: usize,
    id_head: [u8; INLINE_ID],
    order: OrderContext,
    seq: u64,
    stage: &'static str,
    entered_at: SystemTime,
    deadline: Option<SystemTime>,
    trace_id: Option<TraceId>,
    stalled: bool,
}

impl Entry {
    fn is(&self, hash: u64, id: &str) -> bool {
        let head = id.len().min(INLINE_ID);
        self.hash == hash
            && self.id_len == id.len()
            && self.id_head[..head] == id.as_bytes()[..head]
            && (id.len() <= INLINE_ID || self.order.id() == id)
    }
}

fn id_head(id: &str) -> [u8; INLINE_ID] {
    let mut head = [0; INLINE_ID];
    let n = id.len().min(INLINE_ID);
    head[..n].copy_from_slice(&id.as_bytes()[..n]);
    head
}

#[derive(Debug, Default)]
struct Shard {
    orders: HashTable<Entry>,
    /// First-tracked order (sequence number) → its hash, for oldest-first eviction.
    by_age: BTreeMap<u64, u64>,
    next_seq: u64,
}

/// A stall found by [`Tracker::sample`], reported after the shard lock is released.
struct Stall {
    order: TrackedOrder,
    age: Duration,
}

impl Default for Tracker {
    fn default() -> Self {
        Self::builder().build()
    }
}

impl Tracker {
    /// Starts a tracker configuration: capacity 100,000, no stage limits.
    pub fn builder() -> TrackerBuilder {
        TrackerBuilder {
            capacity: DEFAULT_TRACKER_CAPACITY,
            limits: HashMap::new(),
        }
    }

    /// Makes this the tracker [`stage!`](crate::stage) feeds, for the rest of the process.
    ///
    /// # Errors
    ///
    /// Gives the tracker back when one is already installed; [`tracker`] returns that one.
    pub fn install(self) -> Result<&'static Tracker, Tracker> {
        let mut this = Some(self);
        let installed = INSTALLED.get_or_init(|| this.take().unwrap_or_default());
        match this {
            None => Ok(installed),
            Some(rejected) => Err(rejected),
        }
    }

    /// The most orders this tracker holds.
    pub fn capacity(&self) -> usize {
        self.per_shard * SHARDS
    }

    fn hash(&self, id: &str) -> u64 {
        self.hasher.hash_one(id)
    }

    /// The shard of an id's hash. Bits 32–35: the table uses the low bits to place an entry
    /// and the top seven as its tag, so these leave both spread out within a shard.
    fn shard(&self, hash: u64) -> &Mutex<Shard> {
        &self.shards[((hash >> 32) as usize) & (SHARDS - 1)]
    }

    /// Records that `order` reached `stage` (a registered label) at `now`.
    pub(crate) fn transition(
        &self,
        order: &OrderContext,
        stage: &'static str,
        terminal: bool,
        now: SystemTime,
    ) {
        let id = order.id();
        let hash = self.hash(id);
        let trace_id = if terminal { None } else { current_trace_id() };
        let mut evicted = false;
        {
            let mut shard = self
                .shard(hash)
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let shard = &mut *shard;
            if terminal {
                if let Ok(found) = shard.orders.find_entry(hash, |e| e.is(hash, id)) {
                    let (entry, _) = found.remove();
                    shard.by_age.remove(&entry.seq);
                }
                return;
            }
            if let Some(entry) = shard.orders.find_mut(hash, |e| e.is(hash, id)) {
                entry.stage = stage;
                entry.entered_at = now;
                entry.deadline = order.deadline();
                entry.trace_id = trace_id;
                entry.stalled = false;
                return;
            }
            if shard.orders.len() >= self.per_shard
                && let Some((seq, oldest)) = shard.by_age.pop_first()
                && let Ok(found) = shard.orders.find_entry(oldest, |e| e.seq == seq)
            {
                found.remove();
                evicted = true;
            }
            let seq = shard.next_seq;
            shard.next_seq += 1;
            shard.by_age.insert(seq, hash);
            shard.orders.insert_unique(
                hash,
                Entry {
                    hash,
                    id_len: id.len(),
                    id_head: id_head(id),
                    order: order.clone(),
                    seq,
                    stage,
                    entered_at: now,
                    deadline: order.deadline(),
                    trace_id,
                    stalled: false,
                },
                |e| e.hash,
            );
        }
        if evicted {
            metrics::counter!(ORDER_TRACKER_EVICTIONS).increment(1);
        }
    }

    /// The order with this id, when it is tracked.
    pub fn get(&self, id: &str) -> Option<TrackedOrder> {
        let hash = self.hash(id);
        let shard = self
            .shard(hash)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        shard.orders.find(hash, |e| e.is(hash, id)).map(tracked)
    }

    /// Orders tracked right now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .orders
                    .len()
            })
            .sum()
    }

    /// Whether no order is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// At most `limit` tracked orders whose id contains `search` (all when `None`), late first:
    /// overdue or stalled orders, then the others, each group longest in its stage first.
    pub fn orders(&self, search: Option<&str>, limit: usize, now: SystemTime) -> Vec<TrackedOrder> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            out.extend(
                shard
                    .orders
                    .iter()
                    .filter(|entry| search.is_none_or(|s| entry.order.id().contains(s)))
                    .map(tracked),
            );
        }
        let rank = |o: &TrackedOrder| (!(o.overdue(now) || o.stalled), o.entered_at);
        if out.len() > limit && limit > 0 {
            out.select_nth_unstable_by_key(limit - 1, rank);
        }
        out.truncate(limit);
        out.sort_by_key(rank);
        out
    }

    /// Orders per stage right now, for every registered non-terminal stage (and `"other"` when
    /// some order is in it), sorted by stage.
    pub fn counts(&self, now: SystemTime) -> Vec<StageCount> {
        self.scan(now, false).0
    }

    /// Sets `order_in_flight`, `order_overdue_in_flight` and `order_oldest_age_seconds` per
    /// stage, and reports the orders that stalled since the last call (a WARN line each and
    /// `order_stalled_total`). Call it on a tick, never on a request path: it visits every order.
    pub fn sample(&self) {
        self.sample_at(SystemTime::now());
    }

    /// [`sample`](Self::sample) as of `now`.
    pub fn sample_at(&self, now: SystemTime) {
        let (counts, stalls) = self.scan(now, true);
        for c in &counts {
            metrics::gauge!(ORDER_IN_FLIGHT, labels::STAGE => c.stage).set(c.in_flight as f64);
            metrics::gauge!(ORDER_OVERDUE_IN_FLIGHT, labels::STAGE => c.stage)
                .set(c.overdue as f64);
            metrics::gauge!(ORDER_OLDEST_AGE, labels::STAGE => c.stage).set(c.oldest.as_secs_f64());
        }
        for stall in stalls {
            report(&stall);
        }
    }

    fn scan(&self, now: SystemTime, mark_stalls: bool) -> (Vec<StageCount>, Vec<Stall>) {
        let mut counts: BTreeMap<&'static str, StageCount> = BTreeMap::new();
        with_registered(|stages| {
            for (&stage, &terminal) in stages {
                if !terminal {
                    counts.insert(stage, StageCount::empty(stage));
                }
            }
        });
        let mut stalls = Vec::new();
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            for entry in shard.orders.iter_mut() {
                let age = now.duration_since(entry.entered_at).unwrap_or_default();
                let overdue = entry.deadline.is_some_and(|d| now > d);
                let c = counts
                    .entry(entry.stage)
                    .or_insert_with(|| StageCount::empty(entry.stage));
                c.in_flight += 1;
                c.overdue += u64::from(overdue);
                c.oldest = c.oldest.max(age);
                if mark_stalls && !entry.stalled {
                    let over_limit = self.limits.get(entry.stage).is_some_and(|l| age > *l);
                    if overdue || over_limit {
                        entry.stalled = true;
                        stalls.push(Stall {
                            order: tracked(entry),
                            age,
                        });
                    }
                }
            }
        }
        (counts.into_values().collect(), stalls)
    }
}

impl StageCount {
    fn empty(stage: &'static str) -> Self {
        StageCount {
            stage,
            in_flight: 0,
            overdue: 0,
            oldest: Duration::ZERO,
        }
    }
}

fn tracked(entry: &Entry) -> TrackedOrder {
    TrackedOrder {
        order: entry.order.clone(),
        stage: entry.stage,
        entered_at: entry.entered_at,
        deadline: entry.deadline,
        trace_id: entry.trace_id,
        stalled: entry.stalled,
    }
}

fn current_trace_id() -> Option<TraceId> {
    opentelemetry::Context::map_current(|cx| {
        let span = cx.span();
        let sc = span.span_context();
        sc.is_valid().then(|| sc.trace_id())
    })
}

fn report(stall: &Stall) {
    let order = &stall.order;
    let fields = crate::stage::__macro_support::OrderFields::of(Some(order.order.clone()));
    let trace_id = order.trace_id.map(|t| t.to_string());
    metrics::counter!(ORDER_STALLED, labels::STAGE => order.stage).increment(1);
    tracing::warn!(
        order.id = fields.id(),
        order.channel = fields.channel(),
        order.deadline = fields.deadline(),
        order.priority = fields.priority(),
        order.created_at = fields.created_at(),
        order.stage = order.stage,
        order.stage_age_seconds = stall.age.as_secs_f64(),
        trace_id = trace_id.as_deref(),
        "order stalled"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    #[test]
    fn a_full_shard_evicts_its_oldest_order_and_counts_it() {
        let tracker = Tracker::builder().capacity(2 * SHARDS).build();
        assert_eq!(tracker.capacity(), 2 * SHARDS);
        let orders: Vec<OrderContext> = (0..200)
            .map(|i| OrderContext::new(format!("ORD-EVICT-{i}")).unwrap())
            .collect();
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let now = SystemTime::now();
        metrics::with_local_recorder(&recorder, || {
            for order in &orders {
                tracker.transition(order, "unit.wait", false, now);
            }
            // Moving an order already tracked evicts nothing.
            tracker.transition(&orders[199], "unit.next", false, now);
        });
        // Per shard, the survivors are the two orders that reached it last.
        for shard in tracker.shards.iter() {
            let mine: Vec<&OrderContext> = orders
                .iter()
                .filter(|o| std::ptr::eq(tracker.shard(tracker.hash(o.id())), shard))
                .collect();
            for (i, order) in mine.iter().enumerate() {
                let kept = tracker.get(order.id()).is_some();
                assert_eq!(kept, i + 2 >= mine.len(), "{}", order.id());
            }
        }
        assert_eq!(tracker.len(), 2 * SHARDS);
        let evictions = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .find(|(k, ..)| k.key().name() == ORDER_TRACKER_EVICTIONS)
            .map(|(.., v)| v);
        assert_eq!(
            evictions,
            Some(DebugValue::Counter(200 - 2 * SHARDS as u64))
        );
    }

    #[test]
    fn long_ids_sharing_their_inline_head_are_told_apart() {
        let tracker = Tracker::default();
        let head = "ORD-LONG-".repeat(4);
        let a = OrderContext::new(format!("{head}-A")).unwrap();
        let b = OrderContext::new(format!("{head}-B")).unwrap();
        let short = OrderContext::new("ORD-S").unwrap();
        let now = SystemTime::now();
        tracker.transition(&a, "unit.a", false, now);
        tracker.transition(&b, "unit.b", false, now);
        tracker.transition(&short, "unit.c", false, now);
        assert_eq!(tracker.get(a.id()).unwrap().stage, "unit.a");
        assert_eq!(tracker.get(b.id()).unwrap().stage, "unit.b");
        assert_eq!(tracker.get("ORD-S").unwrap().stage, "unit.c");
        assert!(tracker.get(&head).is_none());
        assert!(tracker.get("ORD-").is_none());
        tracker.transition(&a, "unit.done", true, now);
        assert!(tracker.get(a.id()).is_none());
        assert_eq!(tracker.len(), 2);
    }

    #[test]
    fn a_terminal_stage_removes_and_an_untracked_terminal_is_ignored() {
        let tracker = Tracker::default();
        let order = OrderContext::new("ORD-T").unwrap();
        let now = SystemTime::now();
        tracker.transition(&order, "unit.a", false, now);
        assert_eq!(tracker.len(), 1);
        tracker.transition(&order, "unit.done", true, now);
        assert!(tracker.is_empty());
        tracker.transition(&order, "unit.done", true, now);
        assert!(tracker.is_empty());
        // Every order and index entry is gone.
        assert!(
            tracker
                .shards
                .iter()
                .all(|s| s.lock().unwrap().by_age.is_empty())
        );
    }
}
