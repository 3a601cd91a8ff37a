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

    // A literal made of the secret (quotes doubled) is replaced whole.
    let secret: String = secret.chars().filter(|c| c.is_alphanumeric()).take(32).collect();
    if secret.len() >= 4 {
        let text = format!("SELECT * FROM t WHERE a = '{secret}'");
        assert!(!orderscope_sqlx::analyze(&text).sanitized().contains(&secret));
    }
});
