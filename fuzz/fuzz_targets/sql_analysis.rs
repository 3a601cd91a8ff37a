//! SQL analysis: any text. Summarising and sanitising never panic nor loop, the summary stays
//! within its bound, and a string literal's content never survives sanitising.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (String, String)| {
    let (sql, secret) = input;
    let analysis = orderscope_sqlx::analyze(&sql);
    if let Some(summary) = analysis.summary() {
        assert!(summary.len() <= orderscope_sqlx::MAX_SUMMARY_LEN);
    }
    assert!(analysis.sanitized().len() <= sql.len());

    // A literal is replaced whole, whatever it holds (a keyword of the query itself included;
    // backslashes left out, which only `E''` strings treat as escapes):
    // the sanitised text is the query with `?` in its place.
    let secret: String = secret
        .chars()
        .filter(|c| !c.is_control() && *c != '\\')
        .take(32)
        .collect::<String>()
        .replace('\'', "''");
    let text = format!("SELECT * FROM t WHERE a = '{secret}'");
    assert_eq!(
        orderscope_sqlx::analyze(&text).sanitized(),
        "SELECT * FROM t WHERE a = ?",
        "{text:?}"
    );
});
