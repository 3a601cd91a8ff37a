//! W3C Baggage: reading with limits into order fields and generic entries, and writing.

use std::borrow::Cow;

use opentelemetry::baggage::{Baggage, BaggageMetadata};
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

use crate::drops::{DropReason, Tally};
use crate::keys::Field;
use crate::order::{Channel, OrderContext, Priority, validate_id};
use crate::time::Stamp;

/// The W3C limit on bytes read from `baggage` headers.
pub(crate) const MAX_BYTES: usize = 8192;
/// The W3C limit on list members read from `baggage` headers.
pub(crate) const MAX_ENTRIES: usize = 64;

/// Bytes escaped in values on write: everything outside `baggage-octet`, `%` itself, and `=`
/// and `+` for decoders that treat them specially (form decoding turns `+` into a space).
const VALUE_ESCAPES: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b',')
    .add(b';')
    .add(b'\\')
    .add(b'%')
    .add(b'=')
    .add(b'+');

/// RFC 7230 `tchar`.
const fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// W3C `baggage-octet`.
const fn is_baggage_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e)
}

const TCHAR: u8 = 1;
const OCTET: u8 = 2;
const ESCAPE: u8 = 4;
const DELIMITER: u8 = 8;

/// Byte classes, so that validation is one table load per byte.
static CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let mut class = 0;
        if is_tchar(b) {
            class |= TCHAR;
        }
        if is_baggage_octet(b) {
            class |= OCTET;
        } else {
            class |= ESCAPE;
        }
        if matches!(b, b'%' | b'=' | b'+') {
            class |= ESCAPE;
        }
        if matches!(b, b',' | b'=' | b';') {
            class |= DELIMITER;
        }
        table[i] = class;
        i += 1;
    }
    table
};

#[inline]
fn all(s: &str, class: u8) -> bool {
    s.bytes().all(|b| CLASS[usize::from(b)] & class != 0)
}

pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && all(s, TCHAR)
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// `s[start..end]` without surrounding OWS (spaces and tabs).
fn trimmed(s: &str, mut start: usize, mut end: usize) -> &str {
    let b = s.as_bytes();
    while start < end && is_ows(b[start]) {
        start += 1;
    }
    while end > start && is_ows(b[end - 1]) {
        end -= 1;
    }
    s.get(start..end).unwrap_or("")
}

/// Length of `value` once percent-encoded for a baggage value.
fn encoded_len(value: &str) -> usize {
    value.len()
        + 2 * value
            .bytes()
            .filter(|&b| CLASS[usize::from(b)] & ESCAPE != 0)
            .count()
}

fn push_encoded(out: &mut String, value: &str, encoded_len: usize) {
    if encoded_len == value.len() {
        out.push_str(value);
    } else {
        out.extend(utf8_percent_encode(value, VALUE_ESCAPES));
    }
}

fn decode(value: &str) -> Cow<'_, str> {
    if value.as_bytes().contains(&b'%') {
        percent_decode_str(value).decode_utf8_lossy()
    } else {
        Cow::Borrowed(value)
    }
}

/// The properties of a member (after its first `;`), trimmed; `None` when it has none or they
/// hold bytes that cannot be written back (control characters, non-ASCII).
fn properties<'a>(header: &'a str, m: &Member) -> Option<&'a str> {
    if m.semi >= m.end {
        return None;
    }
    let props = trimmed(header, m.semi + 1, m.end);
    (!props.is_empty() && props.bytes().all(|b| (0x20..=0x7e).contains(&b))).then_some(props)
}

/// Which keys a reader keeps.
#[derive(Clone, Copy, Debug)]
pub(crate) enum KeyFilter<'p> {
    All,
    Only(&'p [&'static str]),
}

impl KeyFilter<'_> {
    fn allows(&self, key: &str) -> bool {
        match self {
            KeyFilter::All => true,
            KeyFilter::Only(keys) => keys.contains(&key),
        }
    }
}

/// Raw (still percent-encoded) order fields as read.
#[derive(Debug, Default)]
struct OrderFields<'a> {
    id: Option<&'a str>,
    channel: Option<&'a str>,
    deadline: Option<&'a str>,
    priority: Option<&'a str>,
    created_at: Option<&'a str>,
}

/// Where a list member's parts are, as found by [`BaggageReader::read`].
#[derive(Debug)]
struct Member {
    start: usize,
    end: usize,
    eq: usize,
    semi: usize,
    /// Classes shared by every key byte (all bits when empty).
    key_acc: u8,
    /// Classes shared by every value byte up to `;` (all bits when empty).
    value_acc: u8,
}

/// Reads one or more `baggage` header values with shared limits.
#[derive(Debug)]
pub(crate) struct BaggageReader<'a, 'p> {
    filter: KeyFilter<'p>,
    max_bytes: usize,
    max_entries: usize,
    bytes: usize,
    entries: usize,
    full: bool,
    order: OrderFields<'a>,
    baggage: Option<Baggage>,
}

impl<'a, 'p> BaggageReader<'a, 'p> {
    pub(crate) fn new(filter: KeyFilter<'p>, max_bytes: usize, max_entries: usize) -> Self {
        Self {
            filter,
            max_bytes,
            max_entries,
            bytes: 0,
            entries: 0,
            full: false,
            order: OrderFields::default(),
            baggage: None,
        }
    }

    /// Reads one header value (several values of one header read as if joined by commas).
    pub(crate) fn read(&mut self, header: &'a str, tally: &mut Tally) {
        if self.full {
            return;
        }
        let b = header.as_bytes();
        let base = if self.bytes == 0 { 0 } else { self.bytes + 1 };
        // Bytes past the limit are never looked at.
        let scan_end = b.len().min((self.max_bytes + 1).saturating_sub(base));
        let mut start = 0;
        loop {
            // One pass finds the member's end, its first `=` and `;`, and the classes its key
            // and value bytes share (so that clean members need no second look).
            let (mut i, mut eq, mut semi) = (start, usize::MAX, usize::MAX);
            let (mut acc, mut key_acc) = (u8::MAX, 0u8);
            while i < scan_end {
                let class = CLASS[usize::from(b[i])];
                if class & DELIMITER != 0 {
                    match b[i] {
                        b',' => break,
                        b'=' if eq == usize::MAX => {
                            eq = i;
                            key_acc = acc;
                            acc = u8::MAX;
                            i += 1;
                            continue;
                        }
                        b';' => {
                            // Properties: ignored, skipped to the end of the member.
                            semi = i;
                            while i < scan_end && b[i] != b',' {
                                i += 1;
                            }
                            break;
                        }
                        _ => {}
                    }
                }
                acc &= class;
                i += 1;
            }
            let member = Member {
                start,
                end: i,
                eq,
                semi,
                key_acc,
                value_acc: acc,
            };
            if i == scan_end && scan_end < b.len() {
                tally.add(DropReason::BaggageTooLarge);
                self.full = true;
                return;
            }
            let blank =
                eq == usize::MAX && semi == usize::MAX && b[start..i].iter().all(|&c| is_ows(c));
            if !blank {
                if base + i > self.max_bytes {
                    tally.add(DropReason::BaggageTooLarge);
                    self.full = true;
                    return;
                }
                if self.entries == self.max_entries {
                    tally.add(DropReason::BaggageTooManyEntries);
                } else {
                    self.entries += 1;
                    self.member(header, &member, tally);
                }
            }
            if i >= b.len() {
                self.bytes = base + b.len();
                return;
            }
            start = i + 1;
        }
    }

    /// One list member of `header`.
    fn member(&mut self, header: &'a str, m: &Member, tally: &mut Tally) {
        let pair_end = m.semi.min(m.end);
        if m.eq >= pair_end {
            tally.add(DropReason::BaggageEntryInvalid);
            return;
        }
        // Clean parts (no OWS, every byte valid) were fully checked while scanning.
        let key = if m.eq > m.start && m.key_acc & TCHAR != 0 {
            header.get(m.start..m.eq)
        } else {
            Some(trimmed(header, m.start, m.eq)).filter(|k| is_token(k))
        };
        let value = if m.value_acc & OCTET != 0 {
            header.get(m.eq + 1..pair_end)
        } else {
            Some(trimmed(header, m.eq + 1, pair_end)).filter(|v| all(v, OCTET))
        };
        let (Some(key), Some(value)) = (key, value) else {
            tally.add(DropReason::BaggageEntryInvalid);
            return;
        };
        if !self.filter.allows(key) {
            tally.add(DropReason::UntrustedBaggage);
            return;
        }
        match Field::from_key(key) {
            Some(Field::Id) => self.order.id = Some(value),
            Some(Field::Channel) => self.order.channel = Some(value),
            Some(Field::Deadline) => self.order.deadline = Some(value),
            Some(Field::Priority) => self.order.priority = Some(value),
            Some(Field::CreatedAt) => self.order.created_at = Some(value),
            None => {
                let value = decode(value).into_owned();
                let baggage = self.baggage.get_or_insert_with(Baggage::new);
                // Properties (`;k=v`) travel on with their entry.
                match properties(header, m) {
                    Some(props) => {
                        let _ = baggage.insert_with_metadata(key.to_owned(), value, props);
                    }
                    None => {
                        let _ = baggage.insert(key.to_owned(), value);
                    }
                }
            }
        }
    }

    /// The order built from the `order.*` entries, and the other entries.
    pub(crate) fn finish(self, tally: &mut Tally) -> (Option<OrderContext>, Option<Baggage>) {
        (build_order(&self.order, true, tally), self.baggage)
    }
}

/// The order held as plain `order.*` entries of `baggage` (as a stock baggage propagator puts
/// them in a context), if it has a valid `order.id`. Invalid fields are dropped and counted.
pub(crate) fn order_from_baggage(baggage: &Baggage, tally: &mut Tally) -> Option<OrderContext> {
    if baggage.is_empty() {
        return None;
    }
    let mut raw = OrderFields::default();
    for (key, (value, _)) in baggage {
        let value = value.as_str();
        match Field::from_key(key.as_str()) {
            Some(Field::Id) => raw.id = Some(value),
            Some(Field::Channel) => raw.channel = Some(value),
            Some(Field::Deadline) => raw.deadline = Some(value),
            Some(Field::Priority) => raw.priority = Some(value),
            Some(Field::CreatedAt) => raw.created_at = Some(value),
            None => {}
        }
    }
    build_order(&raw, false, tally)
}

fn field<T>(
    raw: Option<&str>,
    encoded: bool,
    parse: impl Fn(&str) -> Option<T>,
    tally: &mut Tally,
) -> Option<T> {
    let raw = raw?;
    let value = if encoded {
        parse(&decode(raw))
    } else {
        parse(raw)
    };
    if value.is_none() {
        tally.add(DropReason::OrderFieldInvalid);
    }
    value
}

fn build_order(raw: &OrderFields<'_>, encoded: bool, tally: &mut Tally) -> Option<OrderContext> {
    let Some(id) = raw.id else {
        if raw.channel.is_some()
            || raw.deadline.is_some()
            || raw.priority.is_some()
            || raw.created_at.is_some()
        {
            tally.add(DropReason::OrderFieldInvalid);
        }
        return None;
    };
    let id = if encoded {
        decode(id)
    } else {
        Cow::Borrowed(id)
    };
    if validate_id(&id).is_err() {
        tally.add(DropReason::OrderFieldInvalid);
        return None;
    }
    let channel = field(raw.channel, encoded, Channel::from_wire, tally);
    let deadline = field(raw.deadline, encoded, Stamp::parse, tally);
    let priority = field(raw.priority, encoded, Priority::from_wire, tally);
    let created_at = field(raw.created_at, encoded, Stamp::parse, tally);
    Some(OrderContext::from_parts(
        &id, channel, deadline, priority, created_at,
    ))
}

/// Bytes the properties of an entry add (`;` and the properties); 0 when it has none or they
/// cannot be written (a `,` or a byte outside visible ASCII and space would break the list).
fn metadata_len(metadata: &BaggageMetadata) -> usize {
    let m = metadata.as_str().trim_matches(|c| c == ' ' || c == '\t');
    if m.is_empty() || !m.bytes().all(|b| (0x20..=0x7e).contains(&b) && b != b',') {
        0
    } else {
        1 + metadata.as_str().len()
    }
}

/// Writes the `baggage` header: the order fields first, then the other entries (the five
/// order keys are taken from the order only), within the W3C limits. `None` when empty.
///
/// The string is allocated once, at its exact length.
pub(crate) fn serialize(order: Option<&OrderContext>, baggage: &Baggage) -> Option<String> {
    let mut len = 0usize;
    let mut entries = 0usize;
    if let Some(order) = order {
        order.for_each_field(|key, value| {
            len += usize::from(entries > 0) + key.len() + 1 + encoded_len(value);
            entries += 1;
        });
    }
    // Which other entries fit, decided before writing so that the length is exact.
    let mut dropped = 0u64;
    let mut fits: Vec<bool> = Vec::new();
    if !baggage.is_empty() {
        fits.reserve_exact(baggage.len());
        for (key, (value, metadata)) in baggage {
            let key = key.as_str();
            if Field::from_key(key).is_some() || !is_token(key) {
                fits.push(false);
                continue;
            }
            let entry = usize::from(entries > 0)
                + key.len()
                + 1
                + encoded_len(value.as_str())
                + metadata_len(metadata);
            if entries == MAX_ENTRIES || len + entry > MAX_BYTES {
                dropped += 1;
                fits.push(false);
                continue;
            }
            len += entry;
            entries += 1;
            fits.push(true);
        }
    }
    crate::drops::count(DropReason::BaggageTooLarge, dropped);
    if len == 0 {
        return None;
    }
    let mut out = String::with_capacity(len);
    if let Some(order) = order {
        order.for_each_field(|key, value| {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(key);
            out.push('=');
            push_encoded(&mut out, value, encoded_len(value));
        });
    }
    for ((key, (value, metadata)), fits) in baggage.iter().zip(fits) {
        if fits {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(key.as_str());
            out.push('=');
            push_encoded(&mut out, value.as_str(), encoded_len(value.as_str()));
            if metadata_len(metadata) > 0 {
                out.push(';');
                out.push_str(metadata.as_str());
            }
        }
    }
    debug_assert_eq!(out.len(), len);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys;
    use opentelemetry::StringValue;

    fn read(
        headers: &[&str],
        filter: KeyFilter<'_>,
    ) -> (Option<OrderContext>, Option<Baggage>, Tally) {
        let mut tally = Tally::default();
        let mut r = BaggageReader::new(filter, MAX_BYTES, MAX_ENTRIES);
        for h in headers {
            r.read(h, &mut tally);
        }
        let (o, b) = r.finish(&mut tally);
        (o, b, tally)
    }

    #[test]
    fn order_keys_are_tokens() {
        for k in keys::ALL {
            assert!(is_token(k));
        }
    }

    #[test]
    fn reads_order_and_other_entries() {
        let (o, b, _) = read(
            &[
                "order.id=ORD-1, order.channel = api ;prop=1,userId=alice%20smith,order.priority=high",
            ],
            KeyFilter::All,
        );
        let o = o.unwrap();
        assert_eq!(o.id(), "ORD-1");
        assert_eq!(o.channel(), Some(Channel::Api));
        assert_eq!(o.priority(), Some(Priority::High));
        let b = b.unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(b.get("userId"), Some(&StringValue::from("alice smith")));
    }

    #[test]
    fn serializes_with_escapes() {
        let o = OrderContext::new("ÄÖ%\"\\+/?").unwrap();
        let mut b = Baggage::new();
        let _ = b.insert("k", "a b,c;d=e");
        let _ = b.insert(keys::ORDER_ID, "ignored");
        let s = serialize(Some(&o), &b).unwrap();
        assert_eq!(s, "order.id=%C3%84%C3%96%25%22%5C%2B/?,k=a%20b%2Cc%3Bd%3De");
        assert_eq!(serialize(None, &Baggage::new()), None);
    }
}
