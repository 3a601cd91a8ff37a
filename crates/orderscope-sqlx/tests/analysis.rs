//! The summariser and sanitiser on hostile and odd SQL: vectors and properties.

use orderscope_sqlx::{MAX_SUMMARY_LEN, MAX_TEXT_LEN, analyze};
use proptest::prelude::*;

/// Found by fuzzing (`fuzz/fuzz_targets/sql_analysis.rs`): a literal that reads like the query's
/// own keywords is replaced whole, and the text around it kept.
#[test]
fn literals_that_read_like_keywords_are_replaced_whole() {
    for literal in [
        "WHERE",
        "SELECT",
        "' OR ''1''=''1",
        "FROM t",
        "$1",
        "--",
        "/*",
    ] {
        let literal = literal.replace('\'', "''");
        let sql = format!("SELECT * FROM t WHERE a = '{literal}'");
        assert_eq!(
            analyze(&sql).sanitized(),
            "SELECT * FROM t WHERE a = ?",
            "{sql}"
        );
    }
}

#[test]
fn hostile_vectors_neither_panic_nor_leak() {
    let deep = "(".repeat(100_000);
    let comments = "/*".repeat(50_000);
    let huge = format!("SELECT '{}' FROM t", "x".repeat(MAX_TEXT_LEN * 2));
    let cases: Vec<(&str, Option<&str>, &str)> = vec![
        ("", None, ""),
        ("'", None, "?"),
        ("$", None, "$"),
        ("$$", None, "?"),
        ("$a$ never closed", None, "?"),
        ("E'\\", None, "?"),
        ("/* never closed SELECT 1", None, ""),
        ("-- only a comment", None, ""),
        ("SELECT\0 1 FROM\0t", Some("SELECT"), "SELECT\0 ? FROM\0t"),
        (
            "sElEcT * fRoM \"We\"\"ird\" WHERE x = 'a''b'",
            Some("SELECT \"We\"\"ird\""),
            "sElEcT * fRoM \"We\"\"ird\" WHERE x = ?",
        ),
        (
            "SELECT * FROM t WHERE a = 'it''s' AND b = E'\\'s' AND c = 0x1F",
            Some("SELECT t"),
            "SELECT * FROM t WHERE a = ? AND b = ? AND c = ?",
        ),
        (
            "SELECT 1;DROP TABLE users;--",
            Some("SELECT DROP TABLE users"),
            "SELECT ?;DROP TABLE users;",
        ),
        (
            "UPDATE ONLY public.orders SET a = 1 WHERE b IN (1,2)",
            Some("UPDATE public.orders"),
            "UPDATE ONLY public.orders SET a = ? WHERE b IN (?)",
        ),
        (
            "DELETE FROM ✓orders WHERE id = 1",
            Some("DELETE ✓orders"),
            "DELETE FROM ✓orders WHERE id = ?",
        ),
        (
            "SELECT a FROM t1 LEFT JOIN t2 USING (id) JOIN LATERAL (SELECT 1) x ON true",
            Some("SELECT t1 t2 SELECT"),
            "SELECT a FROM t1 LEFT JOIN t2 USING (id) JOIN LATERAL (SELECT ?) x ON true",
        ),
    ];
    for (sql, summary, text) in cases {
        let a = analyze(sql);
        assert_eq!(a.summary(), summary, "{sql:?}");
        assert_eq!(a.sanitized(), text, "{sql:?}");
    }
    for sql in [deep.as_str(), comments.as_str(), huge.as_str()] {
        let a = analyze(sql);
        assert!(a.sanitized().len() <= MAX_TEXT_LEN);
    }
    assert_eq!(analyze(&huge).summary(), Some("SELECT"));
}

proptest! {
    #[test]
    fn any_text_is_analysed_within_bounds(sql in ".{0,400}") {
        let a = analyze(&sql);
        prop_assert!(a.sanitized().len() <= sql.len());
        if let Some(summary) = a.summary() {
            prop_assert!(summary.len() <= MAX_SUMMARY_LEN);
            prop_assert!(!summary.is_empty());
        }
    }

    #[test]
    fn sql_like_soup_is_analysed_within_bounds(
        parts in proptest::collection::vec(
            prop_oneof![
                Just("SELECT "), Just("FROM "), Just("JOIN "), Just("INSERT INTO "), Just("UPDATE "),
                Just("(" ), Just(")"), Just(","), Just("'"), Just("''"), Just("$1"), Just("$$"), Just("$t$"),
                Just("--"), Just("/*"), Just("*/"), Just("E'\\'"), Just("\n"), Just("1.5e3"), Just("."),
                Just("orders "), Just("\"q\"\""), Just(";"), Just("é"), Just("IN (1, 2)"),
            ],
            0..60,
        )
    ) {
        let sql: String = parts.concat();
        let a = analyze(&sql);
        prop_assert!(a.sanitized().len() <= sql.len());
        if let Some(summary) = a.summary() {
            prop_assert!(summary.len() <= MAX_SUMMARY_LEN);
        }
    }

    #[test]
    fn string_literals_never_survive(secret in "[A-Za-z0-9]{6,24}", prefix in "(SELECT|UPDATE t SET a =|INSERT INTO t VALUES \\() ?") {
        let sql = format!("{prefix} '{secret}' , E'{secret}\\'', $x${secret}$x$, 4{}", secret.len());
        let a = analyze(&sql);
        prop_assert!(!a.sanitized().contains(&secret), "{}", a.sanitized());
    }

    #[test]
    fn parameterised_text_is_kept(table in "[a-z_]{1,20}", column in "[a-z_]{1,20}") {
        let sql = format!("SELECT {column} FROM {table} WHERE {column} = $1");
        let a = analyze(&sql);
        prop_assert_eq!(a.sanitized(), sql.as_str());
    }
}
