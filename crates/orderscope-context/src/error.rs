//! Errors returned when an [`OrderContext`](crate::OrderContext) is built from user input.

/// Why an [`OrderContext`](crate::OrderContext) (or one of its fields) was rejected.
///
/// Only the user-facing constructors return this error. The wire path (extraction from headers)
/// never fails: it drops what it cannot accept and counts it in
/// [`PROPAGATION_DROPPED_METRIC`](crate::PROPAGATION_DROPPED_METRIC).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OrderContextError {
    /// The order id is empty.
    #[error("order id is empty")]
    EmptyId,
    /// The order id is longer than [`OrderContext::MAX_ID_CHARS`](crate::OrderContext::MAX_ID_CHARS)
    /// characters.
    #[error("order id is {chars} characters long, the limit is 128")]
    IdTooLong {
        /// Length of the rejected id, in characters.
        chars: usize,
    },
    /// The order id contains a control character, white space or one of `,` `;` `=`.
    #[error("order id contains the character {ch:?}, which is not allowed")]
    InvalidIdChar {
        /// The first offending character.
        ch: char,
    },
    /// A channel outside the known set (`web`, `api`, `crm`, `phone`, `email`, `edi`).
    #[error("unknown order channel {0:?} (expected one of web, api, crm, phone, email, edi)")]
    UnknownChannel(String),
    /// A priority outside the known set (`low`, `normal`, `high`, `urgent`).
    #[error("unknown order priority {0:?} (expected one of low, normal, high, urgent)")]
    UnknownPriority(String),
    /// A timestamp that cannot be written as RFC 3339 (before year 0 or after year 9999).
    #[error("order {field} is outside the years 0000-9999 and cannot be written as RFC 3339")]
    TimestampOutOfRange {
        /// The field: `deadline` or `created_at`.
        field: &'static str,
    },
}
