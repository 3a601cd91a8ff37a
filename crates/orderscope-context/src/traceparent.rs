//! W3C Trace Context: `traceparent` and `tracestate`, parsed and written by hand.

use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

/// Length of a version-00 `traceparent`.
pub(crate) const TRACEPARENT_LEN: usize = 55;

/// Most list members a `tracestate` may hold.
const MAX_TRACESTATE_MEMBERS: usize = 32;

/// Longest `tracestate` read: 32 members of the longest key and value, with separators.
const MAX_TRACESTATE_LEN: usize = 32 * (256 + 1 + 256) + 31;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Marks a byte that is not a lower-case hex digit in [`HEX_VALUE`].
const NOT_HEX: u8 = 0x80;

/// The value of each lower-case hex digit, [`NOT_HEX`] for every other byte: one table load per
/// digit and no branch.
static HEX_VALUE: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut i = 0;
    while i < 16 {
        table[HEX[i] as usize] = i as u8;
        i += 1;
    }
    table
};

#[inline]
fn hex_val(b: u8) -> Option<u8> {
    let v = HEX_VALUE[usize::from(b)];
    (v & NOT_HEX == 0).then_some(v)
}

/// Lower-case hex of at most 16 digits.
#[inline]
fn parse_hex(b: &[u8]) -> Option<u64> {
    let (mut v, mut seen) = (0u64, 0u8);
    for &c in b {
        let digit = HEX_VALUE[usize::from(c)];
        seen |= digit;
        v = (v << 4) | u64::from(digit & 0x0f);
    }
    (seen & NOT_HEX == 0).then_some(v)
}

/// Eight lower-case hex digits, read eight bytes at a time: each byte is range-checked and
/// turned into its nibble within one `u64` (no byte reaches `0x80` once the first check
/// passed, so the additions never carry into the next byte), then the nibbles are packed.
#[inline]
fn hex8(chunk: [u8; 8]) -> Option<u32> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES * 0x80;
    let x = u64::from_be_bytes(chunk);
    if x & HIGH != 0 {
        return None;
    }
    // The high bit of each byte says "at least" the bound: `b + (0x80 - bound)`.
    let at_least = |bound: u8| x + ONES * (0x80 - u64::from(bound));
    let digit = at_least(b'0') & !at_least(b'9' + 1);
    let letter = at_least(b'a') & !at_least(b'f' + 1);
    if (digit | letter) & HIGH != HIGH {
        return None;
    }
    let nibbles = (x & (ONES * 0x0f)) + ((letter & HIGH) >> 7) * 9;
    let v = (nibbles | (nibbles >> 4)) & 0x00ff_00ff_00ff_00ff;
    let v = (v | (v >> 8)) & 0x0000_ffff_0000_ffff;
    let v = (v | (v >> 16)) & 0x0000_0000_ffff_ffff;
    u32::try_from(v).ok()
}

/// Sixteen lower-case hex digits.
#[inline]
fn hex16(b: &[u8; 16]) -> Option<u64> {
    let (high, low) = b.split_at(8);
    let high = hex8(high.try_into().ok()?)?;
    let low = hex8(low.try_into().ok()?)?;
    Some((u64::from(high) << 32) | u64::from(low))
}

/// The range of `value` without leading and trailing spaces and tabs (a value without them
/// costs one look at each end). Only ASCII bytes are left out, so it splits a `str` on character
/// boundaries.
#[inline]
fn without_ows(value: &[u8]) -> std::ops::Range<usize> {
    let is_ows = |b: &u8| matches!(b, b' ' | b'\t');
    let start = value.iter().position(|b| !is_ows(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |last| last + 1);
    start..end
}

#[inline]
fn trim_ows(s: &str) -> &str {
    &s[without_ows(s.as_bytes())]
}

/// The parts of a valid `traceparent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TraceParent {
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
    pub(crate) flags: TraceFlags,
}

/// [`parse_traceparent_bytes`] of a string.
#[cfg(test)]
pub(crate) fn parse_traceparent(value: &str) -> Option<TraceParent> {
    parse_traceparent_bytes(value.as_bytes())
}

/// Whether a header value may hold `c` as text: visible ASCII, space or tab (what
/// `http::HeaderValue::to_str` accepts).
fn is_header_text(c: u8) -> bool {
    c == b'\t' || (b' '..=b'~').contains(&c)
}

/// Parses a `traceparent` of the exact W3C shape from raw header bytes (a value it accepts is
/// header text: its fixed part visible ASCII, a later version's further fields [`is_header_text`]).
///
/// Version `00` must be exactly 55 characters; a later version (`01`–`fe`) may carry further
/// `-`-separated fields after the first four. Version `ff`, upper-case hex, all-zero ids and
/// any other length are rejected. Only the sampled flag is kept.
pub(crate) fn parse_traceparent_bytes(value: &[u8]) -> Option<TraceParent> {
    let b = &value[without_ows(value)];
    let fixed: &[u8; TRACEPARENT_LEN] = b.get(..TRACEPARENT_LEN)?.try_into().ok()?;
    let version = (hex_val(fixed[0])? << 4) | hex_val(fixed[1])?;
    match version {
        0xff => return None,
        0 if b.len() != TRACEPARENT_LEN => return None,
        // A later version's further fields: after a `-`, and header text, as the fixed part is.
        _ if b.len() > TRACEPARENT_LEN
            && (b[TRACEPARENT_LEN] != b'-'
                || !b[TRACEPARENT_LEN..].iter().copied().all(is_header_text)) =>
        {
            return None;
        }
        _ => {}
    }
    if fixed[2] != b'-' || fixed[35] != b'-' || fixed[52] != b'-' {
        return None;
    }
    let high = hex16(fixed[3..19].try_into().ok()?)?;
    let low = hex16(fixed[19..35].try_into().ok()?)?;
    let trace_id = (u128::from(high) << 64) | u128::from(low);
    let span_id = hex16(fixed[36..52].try_into().ok()?)?;
    let flags = parse_hex(&fixed[53..55])? as u8;
    if trace_id == 0 || span_id == 0 {
        return None;
    }
    Some(TraceParent {
        trace_id: TraceId::from_bytes(trace_id.to_be_bytes()),
        span_id: SpanId::from_bytes(span_id.to_be_bytes()),
        flags: TraceFlags::new(flags) & TraceFlags::SAMPLED,
    })
}

/// Writes a version-00 `traceparent` for a valid span context.
pub(crate) fn format_traceparent(sc: &SpanContext) -> String {
    // Only ASCII hex digits and dashes were written.
    String::from_utf8(traceparent_bytes(sc).to_vec()).unwrap_or_default()
}

/// The bytes of a version-00 `traceparent` for a valid span context, for carriers that store
/// bytes (an AMQP long string): no allocation, no UTF-8 check.
pub(crate) fn traceparent_bytes(sc: &SpanContext) -> [u8; TRACEPARENT_LEN] {
    let mut out = *b"00-00000000000000000000000000000000-0000000000000000-00";
    let mut at = 3;
    for b in sc.trace_id().to_bytes() {
        out[at..at + 2].copy_from_slice(&HEX_PAIR[usize::from(b)]);
        at += 2;
    }
    at += 1;
    for b in sc.span_id().to_bytes() {
        out[at..at + 2].copy_from_slice(&HEX_PAIR[usize::from(b)]);
        at += 2;
    }
    if sc.is_sampled() {
        out[54] = b'1';
    }
    out
}

/// The two lower-case hex digits of each byte: one table load per byte written.
static HEX_PAIR: [[u8; 2]; 256] = {
    let mut table = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = [HEX[i >> 4], HEX[i & 0xf]];
        i += 1;
    }
    table
};

fn is_key_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'*' | b'/')
}

/// W3C `tracestate` key: `simple-key` or `tenant-id@system-id`.
fn valid_tracestate_key(key: &str) -> bool {
    let b = key.as_bytes();
    match key.split_once('@') {
        None => {
            (1..=256).contains(&b.len())
                && b[0].is_ascii_lowercase()
                && b.iter().all(|&c| is_key_char(c))
        }
        Some((tenant, system)) => {
            let (t, s) = (tenant.as_bytes(), system.as_bytes());
            (1..=241).contains(&t.len())
                && (t[0].is_ascii_lowercase() || t[0].is_ascii_digit())
                && t.iter().all(|&c| is_key_char(c))
                && (1..=14).contains(&s.len())
                && s[0].is_ascii_lowercase()
                && s.iter().all(|&c| is_key_char(c))
        }
    }
}

/// W3C `tracestate` value: 1–256 printable ASCII characters, no `,` or `=`, not ending in a space.
fn valid_tracestate_value(value: &str) -> bool {
    let b = value.as_bytes();
    (1..=256).contains(&b.len())
        && b.iter()
            .all(|&c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=')
        && b[b.len() - 1] != b' '
}

/// Parses a `tracestate` header. `Ok(TraceState::NONE)` for an empty one, `Err(())` when it
/// breaks the W3C rules (it is then dropped whole).
pub(crate) fn parse_tracestate(value: &str) -> Result<TraceState, ()> {
    if value.len() > MAX_TRACESTATE_LEN {
        return Err(());
    }
    let mut members: [(&str, &str); MAX_TRACESTATE_MEMBERS] = [("", ""); MAX_TRACESTATE_MEMBERS];
    let mut n = 0;
    for member in value.split(',') {
        let member = trim_ows(member);
        if member.is_empty() {
            continue;
        }
        let (key, val) = member.split_once('=').ok_or(())?;
        if !valid_tracestate_key(key) || !valid_tracestate_value(val) {
            return Err(());
        }
        if n == MAX_TRACESTATE_MEMBERS || members[..n].iter().any(|(k, _)| *k == key) {
            return Err(());
        }
        members[n] = (key, val);
        n += 1;
    }
    if n == 0 {
        return Ok(TraceState::NONE);
    }
    TraceState::from_key_value(members[..n].iter().copied()).map_err(|_| ())
}

/// Writes a `tracestate` header; `None` when it has no members.
pub(crate) fn format_tracestate(ts: &TraceState) -> Option<String> {
    let mut iter = ts.into_iter().peekable();
    iter.peek()?;
    let mut out = String::new();
    for (i, (k, v)) in iter.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_formats_version_00() {
        let tp = parse_traceparent(TP).unwrap();
        assert_eq!(
            tp.trace_id,
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
        );
        assert_eq!(tp.span_id, SpanId::from_hex("00f067aa0ba902b7").unwrap());
        assert_eq!(tp.flags, TraceFlags::SAMPLED);
        let sc = SpanContext::new(tp.trace_id, tp.span_id, tp.flags, true, TraceState::NONE);
        assert_eq!(format_traceparent(&sc), TP);
    }

    #[test]
    fn shape_rules() {
        let ok = [
            TP,
            " \t00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\t ",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds",
            "fe-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff",
        ];
        for s in ok {
            assert!(parse_traceparent(s).is_some(), "{s}");
        }
        let bad = [
            "",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.extra",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
            "0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902g7-01",
            "0-04bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ];
        for s in bad {
            assert!(parse_traceparent(s).is_none(), "{s}");
        }
    }

    /// The eight-at-a-time reader agrees with the byte-at-a-time one on every byte value in
    /// every position, and on every hex digit in every position.
    #[test]
    fn hex8_agrees_with_the_table() {
        let base = *b"0123abcd";
        for position in 0..8 {
            for byte in 0..=255u8 {
                let mut chunk = base;
                chunk[position] = byte;
                let expected = parse_hex(&chunk).map(|v| v as u32);
                assert_eq!(hex8(chunk), expected, "{chunk:?}");
            }
        }
        for digit in HEX {
            let chunk = [*digit; 8];
            assert_eq!(hex8(chunk), parse_hex(&chunk).map(|v| v as u32));
        }
        assert_eq!(hex8(*b"ffffffff"), Some(u32::MAX));
        assert_eq!(hex8(*b"00f067aa"), Some(0x00f0_67aa));
        assert_eq!(hex16(b"4bf92f3577b34da6"), Some(0x4bf9_2f35_77b3_4da6));
        assert_eq!(hex8(*b"0000000G"), None);
        assert_eq!(hex8(*b"A0000000"), None);
    }

    #[test]
    fn surrounding_spaces_and_tabs_only_are_trimmed() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(parse_traceparent_bytes(format!(" \t{tp}\t ").as_bytes()).is_some());
        assert!(parse_traceparent_bytes(format!("\n{tp}").as_bytes()).is_none());
        assert!(parse_traceparent_bytes(format!("{tp}\r").as_bytes()).is_none());
        assert!(parse_traceparent_bytes(b" \t ").is_none());
        assert!(parse_traceparent_bytes(b"").is_none());
    }

    #[test]
    fn only_the_sampled_flag_is_kept() {
        let tp =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-08").unwrap();
        assert_eq!(tp.flags, TraceFlags::NOT_SAMPLED);
        let tp =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03").unwrap();
        assert_eq!(tp.flags, TraceFlags::SAMPLED);
    }

    #[test]
    fn tracestate_rules() {
        let ts = parse_tracestate("rojo=00f067aa0ba902b7, congo=t61rcWkgMzE ,,").unwrap();
        assert_eq!(
            format_tracestate(&ts).as_deref(),
            Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
        );
        assert_eq!(parse_tracestate(""), Ok(TraceState::NONE));
        assert_eq!(parse_tracestate(" , "), Ok(TraceState::NONE));
        assert!(parse_tracestate("tenant@vendor=x,1tenant@v=y").is_ok());
        for bad in [
            "Upper=1",
            "1simple=1",
            "k=",
            "k=a,b",
            "k=a=b",
            "k=a\tb",
            "k",
            "k=1,k=2",
            "t@Vendor=1",
            "t@vendorvendorvendor=1",
            "k=\u{e9}",
        ] {
            assert_eq!(parse_tracestate(bad), Err(()), "{bad}");
        }
        let many: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        assert_eq!(parse_tracestate(&many.join(",")), Err(()));
        assert!(parse_tracestate(&many[..32].join(",")).is_ok());
        assert_eq!(format_tracestate(&TraceState::NONE), None);
    }
}
