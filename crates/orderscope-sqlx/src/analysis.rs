//! SQL analysis: the query summary (`db.query.summary`) and the sanitised text
//! (`db.query.text`), computed once per distinct text.
//!
//! The rules follow the OpenTelemetry database semantic conventions:
//!
//! - **Summary:** the operations (`SELECT`, `INSERT`, `UPDATE`, `DELETE`, `MERGE`, `CREATE
//!   TABLE`, …) and the tables they act on, in the order they appear in the text, separated by
//!   one space: `SELECT orders`, `INSERT shipping_details SELECT orders`, `SELECT songs
//!   artists` for a join. Table names are kept as written (with their schema). At most
//!   [`MAX_SUMMARY_LEN`] bytes, cut at a word boundary.
//! - **Sanitising:** string, dollar-quoted, numeric, hexadecimal and bit-string literals become
//!   `?`; a list of literals in parentheses (`IN (1, 2, 3)`) collapses to `(?)`; comments are
//!   removed. Parameter placeholders (`$1`) and everything else are kept as written, so a
//!   parameterised text comes out unchanged.
//!
//! Analysis runs in one pass over the bytes, with no recursion and no backtracking: every step
//! consumes at least one byte, so no input can make it loop, and no input can make it panic
//! (`fuzz/fuzz_targets/sql_analysis.rs`). Texts longer than [`MAX_TEXT_LEN`] are analysed up to
//! that length.

/// The longest summary, in bytes.
pub const MAX_SUMMARY_LEN: usize = 255;
/// The longest text analysed, in bytes; the rest is cut off (at a character boundary).
pub const MAX_TEXT_LEN: usize = 64 * 1024;

/// The result of analysing one SQL text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Analysis {
    summary: Option<String>,
    text: String,
    operation: Option<&'static str>,
}

impl Analysis {
    /// The query summary (`SELECT orders`), `None` when the text names no known operation.
    pub fn summary(&self) -> Option<&str> {
        self.summary.as_deref()
    }

    /// The text with its literals replaced by `?` and its comments removed.
    pub fn sanitized(&self) -> &str {
        &self.text
    }

    /// The first operation (`SELECT`), upper case.
    pub fn operation(&self) -> Option<&'static str> {
        self.operation
    }
}

/// Analyses `sql`: summary and sanitised text.
///
/// ```
/// let a = orderscope_sqlx::analyze("SELECT * FROM orders WHERE id = 42 AND status IN ('new', 'paid')");
/// assert_eq!(a.summary(), Some("SELECT orders"));
/// assert_eq!(a.sanitized(), "SELECT * FROM orders WHERE id = ? AND status IN (?)");
/// ```
pub fn analyze(sql: &str) -> Analysis {
    let sql = truncate(sql, MAX_TEXT_LEN);
    let mut out = Output::new(sql);
    let mut summary = Summary::default();
    let bytes = sql.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => i += 1,
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                let end = find_byte(bytes, i, b'\n');
                out.remove(i, end);
                i = end;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let end = block_comment_end(bytes, i);
                out.remove(i, end);
                i = end;
            }
            b'\'' => {
                let end = string_end(bytes, i + 1, false);
                out.literal(i, end);
                summary.other();
                i = end;
            }
            b'"' => {
                let end = quoted_ident_end(bytes, i + 1);
                summary.word(&sql[i..end], false);
                i = end;
            }
            b'$' => {
                if let Some(end) = dollar_quote_end(bytes, i) {
                    out.literal(i, end);
                    summary.other();
                    i = end;
                } else {
                    // A parameter placeholder ($1) or a lone `$`: kept as written.
                    let end = i + 1 + digits(bytes, i + 1);
                    summary.other();
                    i = end;
                }
            }
            b'0'..=b'9' => {
                let end = number_end(bytes, i);
                out.literal(i, end);
                summary.other();
                i = end;
            }
            b'.' if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                let end = number_end(bytes, i);
                out.literal(i, end);
                summary.other();
                i = end;
            }
            b if is_ident_start(b) => {
                let end = ident_end(bytes, i);
                // Prefixed strings: E'…' (escapes), B'…' / X'…' (bits), U&'…' (unicode), N'…'.
                let word = &sql[i..end];
                let prefix = end - i == 1 && matches!(b | 0x20, b'e' | b'b' | b'x' | b'n');
                if prefix && bytes.get(end) == Some(&b'\'') {
                    let stop = string_end(bytes, end + 1, b | 0x20 == b'e');
                    out.literal(i, stop);
                    summary.other();
                    i = stop;
                } else if word.eq_ignore_ascii_case("u")
                    && bytes.get(end) == Some(&b'&')
                    && bytes.get(end + 1) == Some(&b'\'')
                {
                    let stop = string_end(bytes, end + 2, false);
                    out.literal(i, stop);
                    summary.other();
                    i = stop;
                } else {
                    summary.word(word, true);
                    i = end;
                }
            }
            b'(' => {
                summary.open();
                out.open(i);
                i += 1;
            }
            b')' => {
                summary.close();
                out.close(i);
                i += 1;
            }
            b',' => {
                summary.comma();
                out.comma();
                i += 1;
            }
            b'.' => {
                summary.dot();
                i += 1;
            }
            b';' => {
                summary.statement_end();
                out.other();
                i += 1;
            }
            _ => {
                // Operators and anything else: one character at a time.
                summary.other();
                out.other();
                i += char_len(b);
            }
        }
    }
    let operation = summary.first_operation;
    Analysis {
        summary: summary.finish(),
        text: out.finish(),
        operation,
    }
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn char_len(b: u8) -> usize {
    match b {
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => 1,
    }
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_continue(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

fn ident_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() && is_ident_continue(bytes[i]) {
        i += 1;
    }
    // Stay on a character boundary even for malformed UTF-8 (cannot happen for `&str`, cheap).
    i
}

fn digits(bytes: &[u8], start: usize) -> usize {
    bytes[start.min(bytes.len())..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count()
}

fn find_byte(bytes: &[u8], start: usize, needle: u8) -> usize {
    bytes[start..]
        .iter()
        .position(|&b| b == needle)
        .map_or(bytes.len(), |p| start + p)
}

/// End of a `/* … */` comment starting at `start` (PostgreSQL nests them); the whole rest of
/// the text when unterminated.
fn block_comment_end(bytes: &[u8], start: usize) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    while i < bytes.len() {
        if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
            depth += 1;
            i += 2;
        } else if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

/// End (past the closing quote) of a string whose body starts at `start`; `''` is an escaped
/// quote, and with `backslash` so is `\'`. The rest of the text when unterminated.
fn string_end(bytes: &[u8], start: usize, backslash: bool) -> usize {
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if backslash => i += 2,
            b'\'' if bytes.get(i + 1) == Some(&b'\'') => i += 2,
            b'\'' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

fn quoted_ident_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'"' if bytes.get(i + 1) == Some(&b'"') => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// End of a dollar-quoted string (`$$…$$`, `$tag$…$tag$`) starting at `start`, `None` when
/// `start` begins no such string (a `$1` placeholder). The rest of the text when unterminated.
fn dollar_quote_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    if bytes.get(i).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    while i < bytes.len() && bytes[i] != b'$' {
        if !is_ident_continue(bytes[i]) || bytes[i] == b'$' {
            return None;
        }
        i += 1;
    }
    if i >= bytes.len() {
        return None;
    }
    let tag = &bytes[start..=i];
    let body = i + 1;
    let rest = &bytes[body.min(bytes.len())..];
    Some(
        rest.windows(tag.len())
            .position(|w| w == tag)
            .map_or(bytes.len(), |p| body + p + tag.len()),
    )
}

/// End of a numeric literal: digits, a fraction, an exponent, `0x…` / `0o…` / `0b…`, `_`
/// separators.
fn number_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start;
    if bytes[i] == b'0'
        && bytes
            .get(i + 1)
            .is_some_and(|b| matches!(b | 0x20, b'x' | b'o' | b'b'))
    {
        i += 2;
        while i < bytes.len() && (bytes[i].is_ascii_hexdigit() || bytes[i] == b'_') {
            i += 1;
        }
        return i;
    }
    while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'_' || bytes[i] == b'.') {
        i += 1;
    }
    if i < bytes.len() && bytes[i] | 0x20 == b'e' {
        let mut j = i + 1;
        if j < bytes.len() && matches!(bytes[j], b'+' | b'-') {
            j += 1;
        }
        if j < bytes.len() && bytes[j].is_ascii_digit() {
            i = j + digits(bytes, j);
        }
    }
    i
}

/// The sanitised text under construction: the input copied in slices, literals replaced.
struct Output<'a> {
    sql: &'a str,
    /// Built lazily: `None` while nothing differs from the input.
    text: Option<String>,
    /// Input copied up to here.
    copied: usize,
    /// Where the current parenthesised list of literals started in `text`, while every item
    /// so far has been a single literal: `(start, items, expecting_item)`.
    list: Option<(usize, usize, bool)>,
}

impl<'a> Output<'a> {
    fn new(sql: &'a str) -> Self {
        Output {
            sql,
            text: None,
            copied: 0,
            list: None,
        }
    }

    fn text(&mut self) -> &mut String {
        let sql = self.sql;
        self.text
            .get_or_insert_with(|| String::with_capacity(sql.len()))
    }

    fn copy_to(&mut self, end: usize) {
        let sql = self.sql;
        let from = self.copied;
        if end > from {
            self.text().push_str(&sql[from..end]);
        }
        self.copied = self.copied.max(end);
    }

    fn remove(&mut self, start: usize, end: usize) {
        self.copy_to(start);
        self.text();
        self.copied = end;
    }

    fn literal(&mut self, start: usize, end: usize) {
        self.copy_to(start);
        self.text().push('?');
        self.copied = end;
        self.list = match self.list {
            Some((at, items, true)) => Some((at, items + 1, false)),
            _ => None,
        };
    }

    fn open(&mut self, at: usize) {
        self.copy_to(at);
        let len = self.text.as_ref().map_or(at, String::len);
        self.list = Some((len, 0, true));
    }

    fn comma(&mut self) {
        self.list = match self.list {
            Some((at, items, false)) => Some((at, items, true)),
            _ => None,
        };
    }

    fn close(&mut self, at: usize) {
        if let Some((start, items, false)) = self.list.take()
            && items > 1
            && let Some(text) = self.text.as_mut()
        {
            text.truncate(start);
            text.push_str("(?)");
            self.copied = at + 1;
        }
    }

    fn other(&mut self) {
        self.list = None;
    }

    fn finish(mut self) -> String {
        if self.text.is_none() {
            return self.sql.to_owned();
        }
        self.copy_to(self.sql.len());
        self.text.unwrap_or_default()
    }
}

/// What the summary expects next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// A table name (after `FROM`, `JOIN`, `INTO`, `UPDATE`, `TABLE`, …).
    Target,
    /// The object kind after `CREATE` / `DROP` / `ALTER` (`TABLE`, `INDEX`, …).
    Kind,
}

#[derive(Default)]
struct Summary {
    out: String,
    full: bool,
    first_operation: Option<&'static str>,
    expect: Option<Expect>,
    /// Inside a `FROM a, b` list at this parenthesis depth.
    from_list: Option<usize>,
    depth: usize,
    /// The previous word, upper-cased when it was a keyword of interest.
    previous: Option<&'static str>,
    /// The last item pushed was a target that may continue with `.name`.
    target_open: bool,
    /// Expecting the part after a `.` of a target.
    after_dot: bool,
}

const OPERATIONS: &[&str] = &[
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "MERGE",
    "CREATE",
    "DROP",
    "ALTER",
    "TRUNCATE",
    "CALL",
    "COPY",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT",
    "RELEASE",
    "SET",
    "SHOW",
    "EXPLAIN",
    "VACUUM",
    "ANALYZE",
    "LISTEN",
    "NOTIFY",
    "LOCK",
    "GRANT",
    "REVOKE",
    "REFRESH",
    "PREPARE",
    "EXECUTE",
    "DEALLOCATE",
    "VALUES",
];

const KEYWORDS: &[&str] = &[
    "FROM",
    "JOIN",
    "INTO",
    "TABLE",
    "ONLY",
    "WHERE",
    "ON",
    "USING",
    "GROUP",
    "ORDER",
    "LIMIT",
    "OFFSET",
    "HAVING",
    "UNION",
    "INTERSECT",
    "EXCEPT",
    "RETURNING",
    "SET",
    "VALUES",
    "FOR",
    "DO",
    "KEY",
    "AS",
    "WITH",
    "LATERAL",
    "IF",
    "NOT",
    "EXISTS",
    "WINDOW",
    "FETCH",
    "NO",
    "CONFLICT",
    "INDEX",
    "VIEW",
    "SCHEMA",
    "SEQUENCE",
    "MATERIALIZED",
    "UNIQUE",
    "TEMP",
    "TEMPORARY",
    "UNLOGGED",
    "CONCURRENTLY",
    "TRANSACTION",
    "WORK",
    "TO",
    "DEFAULT",
];

fn keyword(word: &str) -> Option<&'static str> {
    OPERATIONS
        .iter()
        .chain(KEYWORDS)
        .find(|k| k.eq_ignore_ascii_case(word))
        .copied()
}

impl Summary {
    fn push(&mut self, item: &str) {
        if self.full {
            return;
        }
        let extra = usize::from(!self.out.is_empty()) + item.len();
        if self.out.len() + extra > MAX_SUMMARY_LEN {
            self.full = true;
            return;
        }
        if !self.out.is_empty() {
            self.out.push(' ');
        }
        self.out.push_str(item);
    }

    fn append(&mut self, part: &str) {
        if self.full {
            return;
        }
        if self.out.len() + 1 + part.len() > MAX_SUMMARY_LEN {
            self.full = true;
            return;
        }
        self.out.push('.');
        self.out.push_str(part);
    }

    fn word(&mut self, word: &str, bare: bool) {
        if self.after_dot {
            self.after_dot = false;
            if self.target_open {
                self.append(word);
                return;
            }
        }
        self.target_open = false;
        let kw = if bare { keyword(word) } else { None };
        match (self.expect, kw) {
            (Some(Expect::Kind), Some(kind)) if !OPERATIONS.contains(&kind) || kind == "TABLE" => {
                match kind {
                    "TABLE" | "INDEX" | "VIEW" | "SCHEMA" | "SEQUENCE" => {
                        self.push(kind);
                        self.expect = Some(Expect::Target);
                    }
                    // CREATE UNIQUE INDEX, CREATE TEMP TABLE, MATERIALIZED VIEW …: keep going.
                    _ => {}
                }
                self.previous = Some(kind);
                return;
            }
            (Some(Expect::Target), Some(k))
                if matches!(
                    k,
                    "ONLY" | "IF" | "NOT" | "EXISTS" | "LATERAL" | "CONCURRENTLY"
                ) =>
            {
                self.previous = Some(k);
                return;
            }
            (Some(Expect::Target), kw)
                if kw.is_none() || !OPERATIONS.contains(&kw.unwrap_or("")) =>
            {
                if kw.is_none() || matches!(kw, Some("KEY" | "NO" | "DEFAULT")) {
                    self.push(word);
                    self.target_open = true;
                    self.expect = None;
                    self.previous = None;
                    return;
                }
                self.expect = None;
            }
            _ => {}
        }
        let Some(kw) = kw else {
            self.previous = None;
            self.expect = None;
            return;
        };
        if OPERATIONS.contains(&kw) && self.is_operation(kw) {
            self.first_operation.get_or_insert(kw);
            self.from_list = None;
            match kw {
                "CREATE" | "DROP" | "ALTER" => {
                    self.push(kw);
                    self.expect = Some(Expect::Kind);
                }
                "UPDATE" | "TRUNCATE" | "COPY" | "LOCK" | "REFRESH" => {
                    self.push(kw);
                    self.expect = Some(Expect::Target);
                }
                "VALUES" => self.expect = None,
                _ => {
                    self.push(kw);
                    self.expect = None;
                }
            }
        } else {
            match kw {
                "FROM" => {
                    self.expect = Some(Expect::Target);
                    self.from_list = Some(self.depth);
                }
                "JOIN" | "INTO" | "TABLE" => self.expect = Some(Expect::Target),
                "AS" | "ONLY" | "LATERAL" => {}
                _ => {
                    self.expect = None;
                    self.from_list = None;
                }
            }
        }
        self.previous = Some(kw);
    }

    /// Whether `kw` starts an operation here rather than being part of a clause
    /// (`FOR UPDATE`, `DO UPDATE`, `ON DELETE`, `ON CONFLICT … DO UPDATE SET`, `SET` after
    /// `UPDATE t`).
    fn is_operation(&self, kw: &str) -> bool {
        match kw {
            "UPDATE" | "DELETE" => {
                !matches!(self.previous, Some("FOR" | "DO" | "KEY" | "ON" | "NO"))
            }
            "SET" => self.out.is_empty(),
            "VALUES" => false,
            "ANALYZE" => self.out.is_empty(),
            "EXECUTE" | "PREPARE" | "SHOW" | "BEGIN" | "COMMIT" | "ROLLBACK" | "SAVEPOINT"
            | "RELEASE" | "LISTEN" | "NOTIFY" | "GRANT" | "REVOKE" | "VACUUM" | "EXPLAIN"
            | "DEALLOCATE" | "CALL" => self.out.is_empty() || self.previous.is_none(),
            _ => true,
        }
    }

    fn dot(&mut self) {
        self.after_dot = true;
    }

    fn open(&mut self) {
        self.depth += 1;
        self.other_keep_from();
        if self.expect == Some(Expect::Target) {
            // FROM (SELECT …): a subquery, not a table.
            self.expect = None;
        }
    }

    fn close(&mut self) {
        self.depth = self.depth.saturating_sub(1);
        if self.from_list.is_some_and(|d| d > self.depth) {
            self.from_list = None;
        }
        self.other_keep_from();
    }

    fn comma(&mut self) {
        self.other_keep_from();
        if self.from_list == Some(self.depth) {
            self.expect = Some(Expect::Target);
        } else if self.expect == Some(Expect::Target) {
            self.expect = None;
        }
    }

    fn statement_end(&mut self) {
        self.other();
        self.from_list = None;
        self.depth = 0;
    }

    fn other_keep_from(&mut self) {
        self.target_open = false;
        self.after_dot = false;
        self.previous = None;
    }

    fn other(&mut self) {
        self.other_keep_from();
        if self.expect == Some(Expect::Target) || self.expect == Some(Expect::Kind) {
            self.expect = None;
        }
    }

    fn finish(self) -> Option<String> {
        (!self.out.is_empty()).then_some(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(sql: &str) -> Option<String> {
        analyze(sql).summary().map(str::to_owned)
    }

    #[test]
    fn summaries_of_the_conventions_examples() {
        let cases = [
            ("SELECT * FROM wuser_table", "SELECT wuser_table"),
            (
                "INSERT INTO shipping_details (order_id, address) SELECT order_id, address FROM orders WHERE order_id = ?",
                "INSERT shipping_details SELECT orders",
            ),
            (
                "SELECT * FROM songs s JOIN artists a ON s.artist_id = a.id",
                "SELECT songs artists",
            ),
            (
                "SELECT order_date FROM (SELECT * FROM orders o JOIN customers c ON o.customer_id = c.customer_id)",
                "SELECT SELECT orders customers",
            ),
            ("SELECT * FROM a, b WHERE a.id = b.id", "SELECT a b"),
            (
                "UPDATE orders SET status = $1 WHERE id = $2",
                "UPDATE orders",
            ),
            ("DELETE FROM orders WHERE id = $1", "DELETE orders"),
            (
                "SELECT id FROM orderscope_demo.orders WHERE id = $1 FOR UPDATE",
                "SELECT orderscope_demo.orders",
            ),
            (
                "INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET a = 2",
                "INSERT t",
            ),
            (
                "CREATE TABLE IF NOT EXISTS orders (id bigint)",
                "CREATE TABLE orders",
            ),
            (
                "create unique index orders_status on orders (status)",
                "CREATE INDEX orders_status",
            ),
            ("DROP TABLE orders", "DROP TABLE orders"),
            ("BEGIN", "BEGIN"),
            ("commit", "COMMIT"),
            ("SELECT 1", "SELECT"),
            ("select count(*) from \"Orders\"", "SELECT \"Orders\""),
            (
                "WITH x AS (SELECT * FROM a) SELECT * FROM x",
                "SELECT a SELECT x",
            ),
            ("TRUNCATE orders", "TRUNCATE orders"),
        ];
        for (sql, expected) in cases {
            assert_eq!(summary(sql).as_deref(), Some(expected), "{sql}");
        }
    }

    #[test]
    fn no_summary_without_an_operation() {
        assert_eq!(summary(""), None);
        assert_eq!(summary("   "), None);
        assert_eq!(summary("'abc'"), None);
    }

    #[test]
    fn sanitising() {
        let cases = [
            (
                "SELECT * FROM t WHERE id = $1",
                "SELECT * FROM t WHERE id = $1",
            ),
            (
                "SELECT * FROM t WHERE name = 'O''Brien'",
                "SELECT * FROM t WHERE name = ?",
            ),
            (
                "SELECT * FROM t WHERE id IN (1, 2, 3)",
                "SELECT * FROM t WHERE id IN (?)",
            ),
            (
                "SELECT * FROM t WHERE id IN ($1, $2)",
                "SELECT * FROM t WHERE id IN ($1, $2)",
            ),
            ("SELECT 1.5e-3, .5, 0xFF, 1_000", "SELECT ?, ?, ?, ?"),
            (
                "SELECT E'it\\'s', B'101', X'ff', U&'d\\0061t'",
                "SELECT ?, ?, ?, ?",
            ),
            ("SELECT $$secret$$, $tag$a$b$tag$", "SELECT ?, ?"),
            ("SELECT a -- card 4111\nFROM t", "SELECT a \nFROM t"),
            ("SELECT /* a /* nested */ b */ 1", "SELECT  ?"),
            ("SELECT col1, t2 FROM t3", "SELECT col1, t2 FROM t3"),
            ("SELECT 'unterminated", "SELECT ?"),
            ("SELECT 'é' || ümlaut FROM t", "SELECT ? || ümlaut FROM t"),
        ];
        for (sql, expected) in cases {
            assert_eq!(analyze(sql).sanitized(), expected, "{sql}");
        }
    }

    #[test]
    fn long_summaries_stop_at_a_word() {
        let sql = (0..100)
            .map(|i| format!("SELECT * FROM table_{i};"))
            .collect::<String>();
        let s = summary(&sql).unwrap();
        assert!(s.len() <= MAX_SUMMARY_LEN);
        assert!(
            s.split(' ').all(|w| w == "SELECT"
                || w.strip_prefix("table_")
                    .is_some_and(|n| n.parse::<u32>().is_ok())),
            "{s}"
        );
    }

    #[test]
    fn long_texts_are_cut_at_a_character_boundary() {
        let sql = format!("SELECT '{}'", "é".repeat(MAX_TEXT_LEN));
        let a = analyze(&sql);
        assert_eq!(a.sanitized(), "SELECT ?");
    }
}
