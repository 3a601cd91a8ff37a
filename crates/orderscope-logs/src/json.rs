//! The JSON log layer: one JSON object per line, correlated with the trace and the order in scope.

use std::cell::RefCell;
use std::fmt;
use std::io::{self, Write as _};
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::TraceContextExt as _;
use orderscope_context::OrderContext;
use tracing_core::field::{Field, Visit};
use tracing_core::{Event, Level, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};

/// A [`tracing_subscriber::Layer`] that writes every event as one JSON object on one line.
///
/// The fields are exactly those of the orderscope telemetry contract (CONVENTIONS.md, "Logs"), in this
/// order:
///
/// | field | when | value |
/// | --- | --- | --- |
/// | `timestamp` | always | RFC 3339, UTC, microseconds: `2026-11-24T09:15:02.123456Z` |
/// | `level` | always | `TRACE`, `DEBUG`, `INFO`, `WARN`, `ERROR` |
/// | `message` | always | the event's message (`""` when it has none) |
/// | `target` | always | the event's target |
/// | `service.name` | always | the name given to [`JsonLayer::new`] |
/// | `trace_id`, `span_id` | a span is active in [`opentelemetry::Context::current`] | 32 / 16 lower-case hex digits |
/// | `order.id`, `order.channel`, … | an [`OrderContext`] is in scope | the order's fields |
/// | event fields | always | with their own names; integers and floats stay JSON numbers, booleans JSON booleans, everything else a string |
///
/// The trace and order come from [`opentelemetry::Context::current`] when the event is written. That
/// is where `tracing-opentelemetry` puts a span's context while the span is entered, and where the
/// orderscope HTTP and AMQP layers put theirs, so log lines inside either kind of span are
/// correlated. Nothing is formatted or stored per span.
///
/// Each event is rendered into a reusable per-thread buffer and handed to the writer with one
/// `write_all`. Strings are escaped per RFC 8259, so a message with quotes, control characters or
/// newlines still makes exactly one line.
///
/// # Example
///
/// ```
/// use orderscope_logs::JsonLayer;
/// use tracing_subscriber::layer::SubscriberExt as _;
///
/// let subscriber = tracing_subscriber::registry().with(JsonLayer::new("mes").with_writer(std::io::sink));
/// tracing::subscriber::with_default(subscriber, || {
///     tracing::info!(items = 3, urgent = true, "order accepted");
/// });
/// ```
pub struct JsonLayer<W = fn() -> io::Stdout> {
    make_writer: W,
    service_name: Box<str>,
    /// `,"service.name":"<escaped name>"`, rendered once.
    service_field: Box<[u8]>,
}

impl JsonLayer {
    /// A layer that writes to standard output, with `service.name` set to `service_name`.
    pub fn new(service_name: &str) -> Self {
        let mut service_field = Vec::with_capacity(service_name.len() + 20);
        service_field.extend_from_slice(b",\"service.name\":\"");
        escape_into(&mut service_field, service_name);
        service_field.push(b'"');
        Self {
            make_writer: io::stdout,
            service_name: service_name.into(),
            service_field: service_field.into_boxed_slice(),
        }
    }
}

impl<W> JsonLayer<W> {
    /// Writes lines to `make_writer` instead. Defaults to standard output.
    ///
    /// Any [`MakeWriter`] works: `std::io::stderr`, `std::io::sink`, a
    /// [`tracing_subscriber::fmt::writer::BoxMakeWriter`], a non-blocking writer, a test buffer.
    pub fn with_writer<W2>(self, make_writer: W2) -> JsonLayer<W2>
    where
        W2: for<'a> MakeWriter<'a> + 'static,
    {
        JsonLayer {
            make_writer,
            service_name: self.service_name,
            service_field: self.service_field,
        }
    }

    /// The `service.name` written on every line.
    pub fn service_name(&self) -> &str {
        &self.service_name
    }
}

impl<W> fmt::Debug for JsonLayer<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonLayer")
            .field("service_name", &self.service_name)
            .finish_non_exhaustive()
    }
}

impl<S, W> Layer<S> for JsonLayer<W>
where
    S: Subscriber,
    W: for<'a> MakeWriter<'a> + 'static,
{
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        BUFFERS.with(|cell| match cell.try_borrow_mut() {
            Ok(mut buffers) => self.write_event(&mut buffers, event),
            // Re-entered from inside a `Debug` impl or the writer: use a fresh buffer.
            Err(_) => self.write_event(&mut Buffers::default(), event),
        });
    }
}

impl<W> JsonLayer<W>
where
    W: for<'a> MakeWriter<'a> + 'static,
{
    fn write_event(&self, buffers: &mut Buffers, event: &Event<'_>) {
        let Buffers { line, fields } = buffers;
        line.clear();
        fields.clear();
        render_event(line, fields, &self.service_field, event, SystemTime::now());
        let mut writer = self.make_writer.make_writer_for(event.metadata());
        // A log line that cannot be written is lost; there is nowhere to report it.
        let _ = writer.write_all(line);
    }
}

/// The per-thread buffers one event is rendered into.
#[derive(Default)]
struct Buffers {
    line: Vec<u8>,
    fields: Vec<u8>,
}

/// Buffers above this capacity are not kept for the next event.
const MAX_RETAINED_CAPACITY: usize = 64 * 1024;

thread_local! {
    static BUFFERS: RefCell<Buffers> = RefCell::new(Buffers {
        line: Vec::with_capacity(512),
        fields: Vec::with_capacity(256),
    });
}

/// Renders one event, newline included, into `line`; `fields` is scratch space.
fn render_event(
    line: &mut Vec<u8>,
    fields: &mut Vec<u8>,
    service_field: &[u8],
    event: &Event<'_>,
    now: SystemTime,
) {
    let meta = event.metadata();
    line.extend_from_slice(b"{\"timestamp\":\"");
    write_timestamp(line, now);
    line.extend_from_slice(b"\",\"level\":\"");
    line.extend_from_slice(level_str(meta.level()).as_bytes());
    line.extend_from_slice(b"\",\"message\":");

    // The order fields of the context are written once, below; an event that carries them too
    // (`order_event!`, `stage!`) must not repeat them, or the line would hold duplicate keys.
    let order_in_scope =
        opentelemetry::Context::map_current(|cx| cx.get::<OrderContext>().is_some());
    let mut visitor = FieldVisitor {
        line,
        fields,
        message_written: false,
        skip_order_fields: order_in_scope,
    };
    event.record(&mut visitor);
    if !visitor.message_written {
        line.extend_from_slice(b"\"\"");
    }

    line.extend_from_slice(b",\"target\":\"");
    escape_into(line, meta.target());
    line.push(b'"');
    line.extend_from_slice(service_field);

    opentelemetry::Context::map_current(|cx| {
        let span = cx.span();
        let span_context = span.span_context();
        if span_context.is_valid() {
            line.extend_from_slice(b",\"trace_id\":\"");
            write_hex(line, &span_context.trace_id().to_bytes());
            line.extend_from_slice(b"\",\"span_id\":\"");
            write_hex(line, &span_context.span_id().to_bytes());
            line.push(b'"');
        }
        if let Some(order) = OrderContext::from_context(cx) {
            order.for_each_field(|key, value| {
                line.extend_from_slice(b",\"");
                escape_into(line, key);
                line.extend_from_slice(b"\":\"");
                escape_into(line, value);
                line.push(b'"');
            });
        }
    });

    line.extend_from_slice(fields);
    line.extend_from_slice(b"}\n");

    if line.capacity() > MAX_RETAINED_CAPACITY {
        line.shrink_to(MAX_RETAINED_CAPACITY);
    }
    if fields.capacity() > MAX_RETAINED_CAPACITY {
        fields.shrink_to(MAX_RETAINED_CAPACITY);
    }
}

fn level_str(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => "INFO",
        Level::WARN => "WARN",
        Level::ERROR => "ERROR",
    }
}

/// Fields that `tracing-log` adds to events bridged from the `log` crate; not ours to emit.
fn is_log_bridge_field(name: &str) -> bool {
    matches!(
        name,
        "log.target" | "log.module_path" | "log.file" | "log.line"
    )
}

/// The order fields that [`OrderContext::for_each_field`] writes.
fn is_order_field(name: &str) -> bool {
    use orderscope_context::keys;
    matches!(
        name,
        keys::ORDER_ID
            | keys::ORDER_CHANNEL
            | keys::ORDER_DEADLINE
            | keys::ORDER_PRIORITY
            | keys::ORDER_CREATED_AT
    )
}

struct FieldVisitor<'a> {
    /// Positioned right after `"message":` until the message is written.
    line: &'a mut Vec<u8>,
    fields: &'a mut Vec<u8>,
    message_written: bool,
    /// Whether the order fields come from the context, so event fields of the same name are dropped.
    skip_order_fields: bool,
}

impl FieldVisitor<'_> {
    /// Starts a non-message field: `,"name":`. Returns `None` for fields that are not written.
    fn key(&mut self, field: &Field) -> Option<&mut Vec<u8>> {
        let name = field.name();
        if is_log_bridge_field(name) || (self.skip_order_fields && is_order_field(name)) {
            return None;
        }
        self.fields.extend_from_slice(b",\"");
        escape_into(self.fields, name);
        self.fields.extend_from_slice(b"\":");
        Some(self.fields)
    }

    /// Where a string value of `field` goes: the message slot, or a new event field.
    fn string_target(&mut self, field: &Field) -> Option<&mut Vec<u8>> {
        if field.name() == "message" {
            if self.message_written {
                // A second `message` field: keep the first, drop this one.
                return None;
            }
            self.message_written = true;
            Some(self.line)
        } else {
            self.key(field)
        }
    }
}

impl Visit for FieldVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "message" {
            return self.record_debug(field, &value);
        }
        if let Some(out) = self.key(field) {
            if value.is_finite() {
                out.extend_from_slice(ryu::Buffer::new().format_finite(value).as_bytes());
            } else {
                // JSON has no NaN or infinity.
                out.extend_from_slice(b"null");
            }
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if field.name() == "message" {
            return self.record_debug(field, &value);
        }
        if let Some(out) = self.key(field) {
            out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "message" {
            return self.record_debug(field, &value);
        }
        if let Some(out) = self.key(field) {
            out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        }
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        if field.name() == "message" {
            return self.record_debug(field, &value);
        }
        if let Some(out) = self.key(field) {
            out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        }
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        if field.name() == "message" {
            return self.record_debug(field, &value);
        }
        if let Some(out) = self.key(field) {
            out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == "message" {
            return self.record_debug(field, &value);
        }
        if let Some(out) = self.key(field) {
            out.extend_from_slice(if value { b"true" } else { b"false" });
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if let Some(out) = self.string_target(field) {
            out.push(b'"');
            escape_into(out, value);
            out.push(b'"');
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.record_debug(field, &format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if let Some(out) = self.string_target(field) {
            out.push(b'"');
            let _ = fmt::write(&mut EscapingWriter(out), format_args!("{value:?}"));
            out.push(b'"');
        }
    }
}

/// A `fmt::Write` that JSON-escapes everything written through it into a byte buffer.
struct EscapingWriter<'a>(&'a mut Vec<u8>);

impl fmt::Write for EscapingWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape_into(self.0, s);
        Ok(())
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn write_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0x0f)]);
    }
}

// `0`: copy as is; `u`: `\u00XX`; anything else: a backslash followed by that byte.
const __: u8 = 0;
const UU: u8 = b'u';
const BB: u8 = b'b';
const TT: u8 = b't';
const NN: u8 = b'n';
const FF: u8 = b'f';
const RR: u8 = b'r';
const QU: u8 = b'"';
const BS: u8 = b'\\';

static ESCAPE: [u8; 256] = {
    let mut table = [__; 256];
    let mut i = 0;
    while i < 0x20 {
        table[i] = UU;
        i += 1;
    }
    table[0x08] = BB;
    table[0x09] = TT;
    table[0x0a] = NN;
    table[0x0c] = FF;
    table[0x0d] = RR;
    table[b'"' as usize] = QU;
    table[b'\\' as usize] = BS;
    table[0x7f] = UU;
    table
};

/// Appends `s` to `out` as the inside of a JSON string (RFC 8259 escaping; DEL escaped too).
pub(crate) fn escape_into(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape = ESCAPE[usize::from(b)];
        if escape == __ {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        if escape == UU {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0x0f)]);
        } else {
            out.push(b'\\');
            out.push(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Appends `now` as RFC 3339 UTC with microseconds: `2026-11-24T09:15:02.123456Z`.
pub(crate) fn write_timestamp(out: &mut Vec<u8>, now: SystemTime) {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let micros = since_epoch.subsec_micros();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let second_of_day = secs % 86_400;
    let hour = second_of_day / 3600;
    let minute = second_of_day % 3600 / 60;
    let second = second_of_day % 60;

    let mut text = *b"0000-00-00T00:00:00.000000Z";
    put_digits(&mut text[0..4], year);
    put_digits(&mut text[5..7], month);
    put_digits(&mut text[8..10], day);
    put_digits(&mut text[11..13], hour);
    put_digits(&mut text[14..16], minute);
    put_digits(&mut text[17..19], second);
    put_digits(&mut text[20..26], u64::from(micros));
    out.extend_from_slice(&text);
}

/// Writes the low `slot.len()` decimal digits of `value` into `slot`, zero-padded.
fn put_digits(slot: &mut [u8], mut value: u64) {
    for digit in slot.iter_mut().rev() {
        // `value % 10` is below 10, so the narrowing is exact.
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
/// (Howard Hinnant's `civil_from_days`, for non-negative day counts.)
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// How log lines are rendered.
///
/// Parsed from `ORDERSCOPE_LOG_FORMAT` by the `orderscope` facade (`json` or `pretty`, case-insensitive).
///
/// # Example
///
/// ```
/// use orderscope_logs::LogFormat;
///
/// assert_eq!("pretty".parse::<LogFormat>(), Ok(LogFormat::Pretty));
/// assert_eq!(LogFormat::default(), LogFormat::Json);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum LogFormat {
    /// One JSON object per line ([`JsonLayer`]). The default.
    #[default]
    Json,
    /// Human-readable multi-line output (`tracing-subscriber`'s pretty formatter), for local development.
    Pretty,
}

impl LogFormat {
    /// The name used in `ORDERSCOPE_LOG_FORMAT`: `json` or `pretty`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Pretty => "pretty",
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error returned when a string names no [`LogFormat`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseLogFormatError(());

impl fmt::Display for ParseLogFormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown log format, expected `json` or `pretty`")
    }
}

impl std::error::Error for ParseLogFormatError {}

impl FromStr for LogFormat {
    type Err = ParseLogFormatError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("json") {
            Ok(Self::Json)
        } else if s.eq_ignore_ascii_case("pretty") {
            Ok(Self::Pretty)
        } else {
            Err(ParseLogFormatError(()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ts(secs: u64, micros: u32) -> String {
        let mut out = Vec::new();
        write_timestamp(
            &mut out,
            UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(u64::from(micros)),
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn timestamps_are_rfc3339_utc_micros() {
        assert_eq!(ts(0, 0), "1970-01-01T00:00:00.000000Z");
        // 2026-11-24T09:15:02.123456Z
        assert_eq!(ts(1_795_511_702, 123_456), "2026-11-24T09:15:02.123456Z");
        // Leap day.
        assert_eq!(ts(951_782_400, 1), "2000-02-29T00:00:00.000001Z");
        assert_eq!(ts(253_402_300_799, 999_999), "9999-12-31T23:59:59.999999Z");
    }

    #[test]
    fn escaping_matches_serde_json() {
        for s in [
            "plain",
            "quote \" backslash \\ slash /",
            "new\nline\r\ttab\u{8}\u{c}",
            "\u{0}\u{1f}\u{7f}",
            "replacement \u{fffd} and emoji 🦀 and \u{2028}",
        ] {
            let mut out = vec![b'"'];
            escape_into(&mut out, s);
            out.push(b'"');
            let text = String::from_utf8(out).unwrap();
            assert!(!text.contains('\n'));
            let parsed: String = serde_json::from_str(&text).unwrap();
            assert_eq!(parsed, s);
        }
    }

    #[test]
    fn log_format_parses() {
        assert_eq!("JSON".parse(), Ok(LogFormat::Json));
        assert_eq!(" pretty ".parse(), Ok(LogFormat::Pretty));
        assert!("yaml".parse::<LogFormat>().is_err());
    }
}
