//! Counting what the wire path drops: `orderscope_propagation_dropped_total{reason}`.

use metrics::{Key, Label, Level, Metadata};

/// Counter of header values and entries dropped while reading or writing propagation headers.
///
/// Label `reason`: one of [`PROPAGATION_DROPPED_REASONS`] (see [`DropReason`]).
pub const PROPAGATION_DROPPED_METRIC: &str = "orderscope_propagation_dropped_total";

/// The label of [`PROPAGATION_DROPPED_METRIC`].
pub const PROPAGATION_DROPPED_REASON_LABEL: &str = "reason";

/// Every value of the `reason` label, as [`DropReason::as_str`] spells them.
pub const PROPAGATION_DROPPED_REASONS: &[&str] = &[
    DropReason::TraceparentInvalid.as_str(),
    DropReason::TracestateInvalid.as_str(),
    DropReason::BaggageTooLarge.as_str(),
    DropReason::BaggageTooManyEntries.as_str(),
    DropReason::BaggageEntryInvalid.as_str(),
    DropReason::OrderFieldInvalid.as_str(),
    DropReason::HeaderType.as_str(),
    DropReason::HeaderInvalid.as_str(),
    DropReason::UntrustedBaggage.as_str(),
];

/// Why something was dropped from a propagation header (the `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// A `traceparent` that is not of the exact W3C shape (`traceparent_invalid`); the trace
    /// starts anew.
    TraceparentInvalid,
    /// A `tracestate` that does not follow W3C Trace Context (`tracestate_invalid`); dropped
    /// whole, the `traceparent` is kept.
    TracestateInvalid,
    /// Baggage entries beyond 8,192 bytes (`baggage_too_large`).
    BaggageTooLarge,
    /// Baggage entries beyond the 64th (`baggage_too_many_entries`).
    BaggageTooManyEntries,
    /// A baggage entry that is not `key=value` with a token key and baggage-octet value
    /// (`baggage_entry_invalid`).
    BaggageEntryInvalid,
    /// An `order.*` value that is not valid for its field, or order fields without `order.id`
    /// (`order_field_invalid`).
    OrderFieldInvalid,
    /// An AMQP header of a type other than long string or byte array (`header_type`).
    HeaderType,
    /// A header that is not UTF-8 / visible ASCII, or a key or value the carrier cannot hold
    /// (`header_invalid`).
    HeaderInvalid,
    /// A baggage entry not on the allow-list of an untrusted [`Propagation`](crate::Propagation)
    /// (`untrusted_baggage`).
    UntrustedBaggage,
}

impl DropReason {
    /// Every reason, in the order of [`PROPAGATION_DROPPED_REASONS`].
    pub const ALL: [DropReason; 9] = [
        DropReason::TraceparentInvalid,
        DropReason::TracestateInvalid,
        DropReason::BaggageTooLarge,
        DropReason::BaggageTooManyEntries,
        DropReason::BaggageEntryInvalid,
        DropReason::OrderFieldInvalid,
        DropReason::HeaderType,
        DropReason::HeaderInvalid,
        DropReason::UntrustedBaggage,
    ];

    /// The `reason` label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::TraceparentInvalid => "traceparent_invalid",
            DropReason::TracestateInvalid => "tracestate_invalid",
            DropReason::BaggageTooLarge => "baggage_too_large",
            DropReason::BaggageTooManyEntries => "baggage_too_many_entries",
            DropReason::BaggageEntryInvalid => "baggage_entry_invalid",
            DropReason::OrderFieldInvalid => "order_field_invalid",
            DropReason::HeaderType => "header_type",
            DropReason::HeaderInvalid => "header_invalid",
            DropReason::UntrustedBaggage => "untrusted_baggage",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

macro_rules! reason_keys {
    ($($reason:ident),* $(,)?) => {
        [$(
            Key::from_static_parts(PROPAGATION_DROPPED_METRIC, {
                const LABELS: &[Label] = &[Label::from_static_parts(
                    PROPAGATION_DROPPED_REASON_LABEL,
                    DropReason::$reason.as_str(),
                )];
                LABELS
            }),
        )*]
    };
}

/// Keys resolved at compile time: counting does no hashing of names or label allocation.
static KEYS: [Key; 9] = reason_keys![
    TraceparentInvalid,
    TracestateInvalid,
    BaggageTooLarge,
    BaggageTooManyEntries,
    BaggageEntryInvalid,
    OrderFieldInvalid,
    HeaderType,
    HeaderInvalid,
    UntrustedBaggage,
];

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

impl DropReason {
    /// Counts one drop for this reason in [`PROPAGATION_DROPPED_METRIC`], for integrations that
    /// read order fields from elsewhere (a payload) and drop what is invalid.
    pub fn count(self) {
        count(self, 1);
    }
}

/// Adds `n` to the counter for `reason`.
pub(crate) fn count(reason: DropReason, n: u64) {
    if n == 0 {
        return;
    }
    metrics::with_recorder(|recorder| {
        recorder
            .register_counter(&KEYS[reason.index()], &METADATA)
            .increment(n);
    });
}

/// Drops tallied during one extraction, reported together at the end.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    counts: [u32; 9],
}

impl Tally {
    pub(crate) fn add(&mut self, reason: DropReason) {
        self.counts[reason.index()] = self.counts[reason.index()].saturating_add(1);
    }

    #[inline]
    pub(crate) fn flush(&self) {
        if self.counts == [0; 9] {
            return;
        }
        self.flush_counts();
    }

    #[cold]
    fn flush_counts(&self) {
        for (reason, &n) in DropReason::ALL.iter().zip(&self.counts) {
            count(*reason, u64::from(n));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_line_up() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert_eq!(PROPAGATION_DROPPED_REASONS[i], r.as_str());
            assert_eq!(KEYS[i].name(), PROPAGATION_DROPPED_METRIC);
            let labels: Vec<_> = KEYS[i].labels().map(|l| (l.key(), l.value())).collect();
            assert_eq!(labels, [("reason", r.as_str())]);
        }
    }
}
