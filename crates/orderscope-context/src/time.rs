//! RFC 3339 timestamps (UTC) without a date-time dependency.
//!
//! Only what the order fields need: formatting a [`SystemTime`] as `YYYY-MM-DDTHH:MM:SS[.fff]Z`
//! into a stack buffer, and parsing any RFC 3339 `date-time` (with an offset) back.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest text [`Stamp`] writes: `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
pub(crate) const MAX_LEN: usize = 30;

/// Longest input accepted by [`parse`]; anything longer is not a timestamp we accept.
const MAX_INPUT: usize = 64;

/// A timestamp together with its canonical RFC 3339 text, kept inline (no allocation).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Stamp {
    time: SystemTime,
    text: [u8; MAX_LEN],
    len: u8,
}

impl Stamp {
    /// Formats `time`; `None` when it falls outside the years 0000–9999.
    pub(crate) fn new(time: SystemTime) -> Option<Self> {
        let mut text = [0u8; MAX_LEN];
        let len = format(time, &mut text)?;
        Some(Self {
            time,
            text,
            len: len as u8,
        })
    }

    /// Parses an RFC 3339 timestamp that can be written back (years 0000–9999).
    ///
    /// Text already in the canonical form (as [`format`] writes it) is kept as it is.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        let (time, canonical) = parse_with_form(s)?;
        if !canonical {
            return Self::new(time);
        }
        let mut text = [0u8; MAX_LEN];
        text[..s.len()].copy_from_slice(s.as_bytes());
        Some(Self {
            time,
            text,
            len: s.len() as u8,
        })
    }

    pub(crate) fn time(&self) -> SystemTime {
        self.time
    }

    pub(crate) fn as_str(&self) -> &str {
        // The buffer only ever holds ASCII written by `format`.
        std::str::from_utf8(&self.text[..usize::from(self.len)]).unwrap_or("")
    }
}

impl std::fmt::Debug for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Days since 1970-01-01 for a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let d = i64::from(d);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Date for a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Seconds (floor) and nanoseconds since the epoch, for times either side of it.
fn split(time: SystemTime) -> Option<(i64, u32)> {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => Some((i64::try_from(d.as_secs()).ok()?, d.subsec_nanos())),
        Err(e) => {
            let d = e.duration();
            let secs = i64::try_from(d.as_secs()).ok()?;
            let nanos = d.subsec_nanos();
            if nanos == 0 {
                Some((-secs, 0))
            } else {
                Some((-secs - 1, 1_000_000_000 - nanos))
            }
        }
    }
}

fn put2(out: &mut [u8], at: usize, v: u32) {
    out[at] = b'0' + (v / 10) as u8;
    out[at + 1] = b'0' + (v % 10) as u8;
}

/// Digits [`format`] writes for a non-zero fraction of a second: 3, 6 or 9.
fn fraction_digits(nanos: u32) -> usize {
    if nanos.is_multiple_of(1_000_000) {
        3
    } else if nanos.is_multiple_of(1_000) {
        6
    } else {
        9
    }
}

/// Writes `time` as RFC 3339 UTC; returns the length, or `None` outside the years 0000–9999.
///
/// Fractional seconds are written only when present, with 3, 6 or 9 digits.
pub(crate) fn format(time: SystemTime, out: &mut [u8; MAX_LEN]) -> Option<usize> {
    let (secs, nanos) = split(time)?;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u32;
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return None;
    }
    let y = y as u32;
    put2(out, 0, y / 100);
    put2(out, 2, y % 100);
    out[4] = b'-';
    put2(out, 5, m);
    out[7] = b'-';
    put2(out, 8, d);
    out[10] = b'T';
    put2(out, 11, sod / 3600);
    out[13] = b':';
    put2(out, 14, sod / 60 % 60);
    out[16] = b':';
    put2(out, 17, sod % 60);
    let mut len = 19;
    if nanos != 0 {
        let digits = fraction_digits(nanos);
        let mut value = nanos / 10u32.pow(9 - digits as u32);
        out[len] = b'.';
        for i in (0..digits).rev() {
            out[len + 1 + i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
        len += 1 + digits;
    }
    out[len] = b'Z';
    Some(len + 1)
}

fn digits(b: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

/// Parses an RFC 3339 `date-time` (`T` or `t`, `Z`, `z` or a numeric offset, optional fraction).
#[cfg(test)]
pub(crate) fn parse(s: &str) -> Option<SystemTime> {
    parse_with_form(s).map(|(t, _)| t)
}

/// Parses an RFC 3339 `date-time`; also says whether `s` is exactly what [`format`] writes.
fn parse_with_form(s: &str) -> Option<(SystemTime, bool)> {
    let b = s.as_bytes();
    if b.len() < 20 || b.len() > MAX_INPUT {
        return None;
    }
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let year = i64::from(digits(&b[0..4])?);
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let second = digits(&b[17..19])?;
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0u32;
    let mut fraction = 0;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 9 {
                nanos = nanos * 10 + u32::from(b[i] - b'0');
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return None;
        }
        fraction = n;
        for _ in n..9 {
            nanos *= 10;
        }
    }
    let offset: i64 = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let h = digits(&[*h1, *h2])?;
            let m = digits(&[*m1, *m2])?;
            if h > 23 || m > 59 {
                return None;
            }
            let off = i64::from(h * 3600 + m * 60);
            if *sign == b'-' { -off } else { off }
        }
        _ => return None,
    };
    let secs = days_from_civil(year, month, day) * 86_400
        + i64::from(hour * 3600 + minute * 60 + second)
        - offset;
    let time = if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::new(secs as u64, nanos))?
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(secs.unsigned_abs()))?
            .checked_add(Duration::from_nanos(u64::from(nanos)))?
    };
    let canonical = b[10] == b'T'
        && b[i] == b'Z'
        && second < 60
        && if nanos == 0 {
            fraction == 0
        } else {
            fraction == fraction_digits(nanos)
        };
    Some((time, canonical))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(t: SystemTime) -> String {
        Stamp::new(t)
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default()
    }

    #[test]
    fn formats_epoch_and_known_dates() {
        assert_eq!(fmt(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_796_040_000);
        assert_eq!(fmt(t), "2026-11-30T12:00:00Z");
        let t = UNIX_EPOCH + Duration::new(1_795_511_702, 120_000_000);
        assert_eq!(fmt(t), "2026-11-24T09:15:02.120Z");
        let t = UNIX_EPOCH + Duration::new(0, 1_000);
        assert_eq!(fmt(t), "1970-01-01T00:00:00.000001Z");
        let t = UNIX_EPOCH + Duration::new(0, 1);
        assert_eq!(fmt(t), "1970-01-01T00:00:00.000000001Z");
        let t = UNIX_EPOCH - Duration::new(0, 500_000_000);
        assert_eq!(fmt(t), "1969-12-31T23:59:59.500Z");
    }

    #[test]
    fn parses_what_it_formats() {
        for secs in [
            0i64,
            1,
            86_399,
            951_782_400,
            1_796_040_000,
            -1,
            -86_401,
            253_402_300_799,
        ] {
            for nanos in [0u32, 1, 1_000, 120_000_000, 999_999_999] {
                let t = if secs >= 0 {
                    UNIX_EPOCH + Duration::new(secs as u64, nanos)
                } else {
                    UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
                        + Duration::from_nanos(u64::from(nanos))
                };
                let s = fmt(t);
                assert_eq!(parse(&s), Some(t), "{s}");
            }
        }
    }

    #[test]
    fn parses_offsets_and_lower_case() {
        let z = parse("2026-11-30T12:00:00Z");
        assert_eq!(parse("2026-11-30t12:00:00z"), z);
        assert_eq!(parse("2026-11-30T13:30:00+01:30"), z);
        assert_eq!(parse("2026-11-30T07:00:00-05:00"), z);
        assert_eq!(
            parse("2026-11-30T12:00:00.5Z"),
            z.map(|t| t + Duration::from_millis(500))
        );
        assert_eq!(
            parse("2026-11-30T12:00:00.1234567891Z"),
            z.map(|t| t + Duration::from_nanos(123_456_789))
        );
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "",
            "2026-11-30",
            "2026-11-30T12:00:00",
            "2026-13-30T12:00:00Z",
            "2026-02-29T12:00:00Z",
            "2026-11-30T24:00:00Z",
            "2026-11-30T12:00:00.Z",
            "2026-11-30T12:00:00+1:00",
            "2026-11-30 12:00:00Z",
            "+026-11-30T12:00:00Z",
            "2026-11-30T12:00:00ZZ",
        ] {
            assert_eq!(parse(s), None, "{s}");
        }
        assert!(parse("2024-02-29T00:00:00Z").is_some());
    }

    #[test]
    fn parsed_stamps_are_canonical() {
        for (input, canonical) in [
            ("2026-11-30T12:00:00Z", "2026-11-30T12:00:00Z"),
            ("2026-11-30t12:00:00z", "2026-11-30T12:00:00Z"),
            ("2026-11-30T12:00:00.000Z", "2026-11-30T12:00:00Z"),
            ("2026-11-30T12:00:00.100000Z", "2026-11-30T12:00:00.100Z"),
            ("2026-11-30T12:00:00.120Z", "2026-11-30T12:00:00.120Z"),
            ("2026-11-30T12:00:00.000001Z", "2026-11-30T12:00:00.000001Z"),
            (
                "2026-11-30T12:00:00.0000010Z",
                "2026-11-30T12:00:00.000001Z",
            ),
            ("2026-11-30T12:00:60Z", "2026-11-30T12:01:00Z"),
            ("2026-11-30T13:00:00+01:00", "2026-11-30T12:00:00Z"),
        ] {
            let stamp = Stamp::parse(input).unwrap();
            assert_eq!(stamp.as_str(), canonical, "{input}");
            assert_eq!(Some(stamp), Stamp::new(stamp.time()), "{input}");
        }
    }

    #[test]
    fn out_of_range_years_are_not_formatted() {
        assert!(Stamp::new(UNIX_EPOCH + Duration::from_secs(253_402_300_800)).is_none());
        assert!(Stamp::new(UNIX_EPOCH - Duration::from_secs(62_167_219_201)).is_none());
        assert!(Stamp::new(UNIX_EPOCH - Duration::from_secs(62_167_219_200)).is_some());
    }
}
