//! `#[red(result = ...)]`: overriding the detection of `Result` return types.

mod common;

use common::{capture, fn_labels};

const MODULE: &str = module_path!();
const CALLS: &str = "function_calls_total";

#[derive(Debug, orderscope::ErrorType)]
enum ParseError {
    Empty,
}

/// An alias whose name does not end in `Result`.
type Outcome = Result<u8, ParseError>;

#[orderscope::red(result = true)]
fn aliased(s: &str) -> Outcome {
    if s.is_empty() {
        Err(ParseError::Empty)
    } else {
        Ok(1)
    }
}

/// Detected by name: the path ends in `Result`.
type ParseResult<T> = Result<T, ParseError>;

#[orderscope::red]
fn detected(s: &str) -> ParseResult<u8> {
    if s.is_empty() {
        Err(ParseError::Empty)
    } else {
        Ok(1)
    }
}

/// A type named `…Result` that is not a `Result`.
#[derive(Debug, PartialEq)]
struct SearchResult(Vec<u32>);

#[orderscope::red(result = false)]
fn search() -> SearchResult {
    SearchResult(vec![1])
}

/// Not classified: every call is ok, even an `Err`.
#[orderscope::red(result = false)]
fn probe() -> Result<(), ParseError> {
    Err(ParseError::Empty)
}

#[test]
fn result_true_classifies_an_alias() {
    let (_, m) = capture(|| {
        let _ = aliased("");
        let _ = detected("");
    });
    for f in ["aliased", "detected"] {
        assert_eq!(
            m.counter(
                CALLS,
                &fn_labels(f, MODULE, &[("result", "error"), ("error_type", "empty")])
            ),
            Some(1),
            "{f}"
        );
    }
}

#[test]
fn result_false_records_ok() {
    let ((found, probed), m) = capture(|| (search(), probe()));
    assert_eq!(found, SearchResult(vec![1]));
    assert!(probed.is_err());
    assert_eq!(
        m.counter(CALLS, &fn_labels("search", MODULE, &[("result", "ok")])),
        Some(1)
    );
    assert_eq!(
        m.counter(CALLS, &fn_labels("probe", MODULE, &[("result", "ok")])),
        Some(1)
    );
}
