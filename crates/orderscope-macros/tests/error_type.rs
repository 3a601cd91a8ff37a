//! `#[derive(ErrorType)]` and hand-written `ErrorType` implementations.

mod common;

use common::{capture, fn_labels};
use orderscope::ErrorType;

#[derive(Debug, ErrorType)]
enum MesError {
    NoCapacity,
    PLCTimeout {
        line: u8,
    },
    #[error_type(name = "db")]
    Database(#[allow(dead_code)] String),
    #[error_type(transparent)]
    Stock(StockError),
}

#[derive(Debug, ErrorType)]
enum StockError {
    OutOfStock,
}

#[derive(Debug, ErrorType)]
struct HttpError;

#[derive(Debug, ErrorType)]
#[error_type(name = "upstream")]
struct UpstreamError(#[allow(dead_code)] u16);

#[derive(Debug, ErrorType)]
enum Generic<E: std::fmt::Debug> {
    Inner(#[allow(dead_code)] E),
}

#[derive(Debug)]
struct Manual;

impl ErrorType for Manual {
    fn error_type(&self) -> &'static str {
        "manual"
    }
}

#[test]
fn derived_values() {
    assert_eq!(MesError::NoCapacity.error_type(), "no_capacity");
    assert_eq!(MesError::PLCTimeout { line: 1 }.error_type(), "plc_timeout");
    assert_eq!(MesError::Database(String::new()).error_type(), "db");
    assert_eq!(
        MesError::Stock(StockError::OutOfStock).error_type(),
        "out_of_stock"
    );
    assert_eq!(HttpError.error_type(), "http_error");
    assert_eq!(UpstreamError(502).error_type(), "upstream");
    assert_eq!(Generic::Inner(1).error_type(), "inner");
    if let MesError::PLCTimeout { line } = (MesError::PLCTimeout { line: 1 }) {
        assert_eq!(line, 1);
    }
}

#[orderscope::red]
fn manual() -> Result<(), Manual> {
    Err(Manual)
}

#[orderscope::red]
fn boxed() -> Result<(), Box<MesError>> {
    Err(Box::new(MesError::NoCapacity))
}

#[orderscope::red]
fn generic_bound<E: ErrorType>(e: E) -> Result<(), E> {
    Err(e)
}

#[orderscope::red]
fn generic_unbound<E>(e: E) -> Result<(), E> {
    Err(e)
}

#[test]
fn classification_reaches_the_label() {
    let (_, m) = capture(|| {
        let _ = manual();
        let _ = boxed();
        let _ = generic_bound(HttpError);
        let _ = generic_unbound(HttpError);
    });
    let module = module_path!();
    let err = |f: &'static str, t: &'static str| {
        m.counter(
            "function_calls_total",
            &fn_labels(f, module, &[("result", "error"), ("error_type", t)]),
        )
    };
    assert_eq!(err("manual", "manual"), Some(1));
    assert_eq!(err("boxed", "no_capacity"), Some(1));
    assert_eq!(err("generic_bound", "http_error"), Some(1));
    // Without an `ErrorType` bound, a generic error cannot be classified.
    assert_eq!(err("generic_unbound", "error"), Some(1));
}
