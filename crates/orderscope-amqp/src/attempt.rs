//! Which attempt a delivery is: from the SDK's attempt header, `x-delivery-count`, this queue's own `x-death`
//! entries and the `redelivered` flag.

use lapin::types::{AMQPValue, FieldTable};

/// Header carrying the attempt number (1 = first attempt) of a message the SDK republished for a retry, as a
/// long-long integer.
pub const ATTEMPT_HEADER: &str = "x-orderscope-attempt";

/// Header carrying the `traceparent` of the previous attempt's `process` span, so the next attempt links to it.
pub const PREVIOUS_ATTEMPT_HEADER: &str = "x-orderscope-previous-attempt";

/// How many times a delivery was attempted, as far as the broker and the SDK's headers say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Attempt {
    /// This delivery's attempt number, from 1.
    pub(crate) number: u32,
    /// `true` when a count backs the number (attempt header, `x-delivery-count`, own `x-death` entries);
    /// `false` when it rests on the `redelivered` flag alone (a classic queue requeue), which says "at least 2".
    pub(crate) precise: bool,
}

impl Attempt {
    /// Reads the attempt of a delivery of `queue`.
    ///
    /// - [`ATTEMPT_HEADER`]: attempts before the SDK's last republish;
    /// - `x-delivery-count` (quorum queues): requeues since the message entered this queue;
    /// - without the attempt header, this queue's own `x-death` entries with reason `rejected` or
    ///   `delivery_limit` (a dead-letter loop through another queue and back); entries of other queues, and
    ///   `expired` entries (the message waited, it was not attempted), are not attempts here;
    /// - the `redelivered` flag as a floor: a redelivered message is at least the second attempt.
    pub(crate) fn read(headers: Option<&FieldTable>, queue: &str, redelivered: bool) -> Self {
        let map = headers.map(FieldTable::inner);
        let header = |key: &str| map.and_then(|m| m.get(key));
        let republished = header(ATTEMPT_HEADER)
            .and_then(as_u64)
            .filter(|n| *n >= 1)
            .map(|n| n - 1);
        let requeued = header("x-delivery-count").and_then(as_u64);
        let deaths = match republished {
            Some(_) => None,
            None => header("x-death").and_then(|d| own_deaths(d, queue)),
        };
        let precise = republished.is_some() || requeued.is_some() || deaths.is_some();
        let before = republished
            .unwrap_or(0)
            .saturating_add(requeued.unwrap_or(0))
            .saturating_add(deaths.unwrap_or(0));
        let mut number = u32::try_from(before.saturating_add(1)).unwrap_or(u32::MAX);
        if redelivered && number < 2 {
            number = 2;
        }
        Self { number, precise }
    }

    /// Deliveries before this one, when counted precisely.
    pub(crate) fn before(self) -> Option<u32> {
        self.precise.then(|| self.number - 1)
    }
}

/// The sum of the counts of `queue`'s own `rejected` and `delivery_limit` entries in an `x-death` header;
/// `None` when it has none.
fn own_deaths(x_death: &AMQPValue, queue: &str) -> Option<u64> {
    let AMQPValue::FieldArray(deaths) = x_death else {
        return None;
    };
    let mut total = None;
    for death in deaths.as_slice() {
        let AMQPValue::FieldTable(death) = death else {
            continue;
        };
        let death = death.inner();
        let is = |key: &str, want: &[&str]| {
            death
                .get(key)
                .and_then(as_str)
                .is_some_and(|v| want.contains(&v))
        };
        if is("queue", &[queue]) && is("reason", &["rejected", "delivery_limit"]) {
            let count = death.get("count").and_then(as_u64).unwrap_or(1);
            total = Some(total.unwrap_or(0_u64).saturating_add(count));
        }
    }
    total
}

fn as_str(value: &AMQPValue) -> Option<&str> {
    match value {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
        AMQPValue::ShortString(s) => Some(s.as_str()),
        AMQPValue::ByteArray(b) => std::str::from_utf8(b.as_slice()).ok(),
        _ => None,
    }
}

/// Any integer-typed AMQP value (or a decimal string) as `u64`; negative values are `None`.
pub(crate) fn as_u64(value: &AMQPValue) -> Option<u64> {
    match value {
        AMQPValue::ShortShortInt(v) => u64::try_from(*v).ok(),
        AMQPValue::ShortShortUInt(v) => Some(u64::from(*v)),
        AMQPValue::ShortInt(v) => u64::try_from(*v).ok(),
        AMQPValue::ShortUInt(v) => Some(u64::from(*v)),
        AMQPValue::LongInt(v) => u64::try_from(*v).ok(),
        AMQPValue::LongUInt(v) => Some(u64::from(*v)),
        AMQPValue::LongLongInt(v) => u64::try_from(*v).ok(),
        AMQPValue::Timestamp(v) => Some(*v),
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok()?.trim().parse().ok(),
        AMQPValue::ShortString(s) => s.as_str().trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::{FieldArray, LongString};

    fn long(s: &str) -> AMQPValue {
        AMQPValue::LongString(LongString::from(s))
    }

    fn death(queue: &str, reason: &str, count: i64) -> AMQPValue {
        let mut d = FieldTable::default();
        d.insert("queue".into(), long(queue));
        d.insert("reason".into(), long(reason));
        d.insert("count".into(), AMQPValue::LongLongInt(count));
        d.insert("exchange".into(), long(""));
        AMQPValue::FieldTable(d)
    }

    fn x_death(entries: Vec<AMQPValue>) -> FieldTable {
        let mut h = FieldTable::default();
        h.insert(
            "x-death".into(),
            AMQPValue::FieldArray(FieldArray::from(entries)),
        );
        h
    }

    fn read(h: &FieldTable, redelivered: bool) -> Attempt {
        Attempt::read(Some(h), "work", redelivered)
    }

    #[test]
    fn a_first_delivery_is_attempt_one() {
        let a = Attempt::read(None, "work", false);
        assert_eq!(
            a,
            Attempt {
                number: 1,
                precise: false
            }
        );
        assert_eq!(a.before(), None);
    }

    #[test]
    fn classic_redelivery_is_at_least_the_second_attempt() {
        let a = Attempt::read(None, "work", true);
        assert_eq!(
            a,
            Attempt {
                number: 2,
                precise: false
            }
        );
    }

    #[test]
    fn the_sdk_attempt_header_counts_republished_attempts() {
        let mut h = FieldTable::default();
        h.insert(ATTEMPT_HEADER.into(), AMQPValue::LongLongInt(3));
        assert_eq!(
            read(&h, false),
            Attempt {
                number: 3,
                precise: true
            }
        );
        // Requeued once more after the republish (a redelivery on a classic queue: the flag is a floor only).
        assert_eq!(read(&h, true).number, 3);
        // Garbage and zero are ignored.
        h.insert(ATTEMPT_HEADER.into(), AMQPValue::Boolean(true));
        assert_eq!(
            read(&h, false),
            Attempt {
                number: 1,
                precise: false
            }
        );
        h.insert(ATTEMPT_HEADER.into(), AMQPValue::LongLongInt(0));
        assert_eq!(read(&h, false).number, 1);
        h.insert(ATTEMPT_HEADER.into(), AMQPValue::LongLongInt(-4));
        assert_eq!(read(&h, false).number, 1);
    }

    #[test]
    fn quorum_delivery_count_adds_to_the_attempt_header() {
        let mut h = FieldTable::default();
        h.insert("x-delivery-count".into(), AMQPValue::LongLongInt(2));
        assert_eq!(
            read(&h, true),
            Attempt {
                number: 3,
                precise: true
            }
        );
        h.insert(ATTEMPT_HEADER.into(), AMQPValue::LongLongInt(2));
        assert_eq!(read(&h, true).number, 4);
    }

    #[test]
    fn only_this_queues_own_rejections_count() {
        // Dead-lettered from another queue, then waited in a TTL queue: foreign, not attempts here.
        let h = x_death(vec![
            death("elsewhere", "rejected", 1),
            death("work.wait", "expired", 5),
        ]);
        assert_eq!(
            read(&h, false),
            Attempt {
                number: 1,
                precise: false
            }
        );
        // Rejected here twice and routed back through a wait queue: the third attempt.
        let h = x_death(vec![
            death("work.wait", "expired", 2),
            death("work", "rejected", 2),
            death("elsewhere", "rejected", 7),
        ]);
        assert_eq!(
            read(&h, false),
            Attempt {
                number: 3,
                precise: true
            }
        );
        // Expired on this queue: it waited, it was not attempted.
        let h = x_death(vec![death("work", "expired", 4)]);
        assert_eq!(read(&h, false).number, 1);
        // A delivery limit reached on this queue counts.
        let h = x_death(vec![death("work", "delivery_limit", 1)]);
        assert_eq!(read(&h, false).number, 2);
    }

    #[test]
    fn own_deaths_are_not_counted_twice_after_a_republish() {
        let mut h = x_death(vec![death("work", "rejected", 2)]);
        h.insert(ATTEMPT_HEADER.into(), AMQPValue::LongLongInt(4));
        assert_eq!(read(&h, false).number, 4);
    }

    #[test]
    fn malformed_x_death_is_ignored() {
        let mut h = FieldTable::default();
        h.insert("x-death".into(), long("x"));
        assert_eq!(read(&h, false).number, 1);
        let h = x_death(vec![long("not a table"), AMQPValue::Boolean(false)]);
        assert_eq!(read(&h, false).number, 1);
        // An entry without a count counts once.
        let mut d = FieldTable::default();
        d.insert("queue".into(), long("work"));
        d.insert("reason".into(), long("rejected"));
        let h = x_death(vec![AMQPValue::FieldTable(d)]);
        assert_eq!(read(&h, false).number, 2);
    }
}
