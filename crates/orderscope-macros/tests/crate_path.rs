//! `#[red(crate = "...")]` and `#[order_handler(crate = "...")]`: a renamed or re-exported
//! `orderscope`.

mod common;

use common::{capture, fn_labels};

/// Stands for `orderscope = { package = "orderscope", ... }` renamed in a user's Cargo.toml.
mod telemetry {
    pub(crate) use orderscope::*;
}

#[orderscope_macros::red(crate = "crate::telemetry")]
fn renamed() -> u8 {
    7
}

#[orderscope_macros::order_handler(order = "ORD-9", crate = "crate::telemetry")]
fn handler() -> Option<String> {
    orderscope::OrderContext::current().map(|o| o.id().to_owned())
}

#[derive(orderscope_macros::ErrorType)]
#[error_type(crate = "crate::telemetry")]
struct RenamedError;

#[test]
fn renamed_crate_path_is_used() {
    let ((a, b), m) = capture(|| (renamed(), handler()));
    assert_eq!(a, 7);
    assert_eq!(b.as_deref(), Some("ORD-9"));
    assert_eq!(
        m.counter(
            "function_calls_total",
            &fn_labels("renamed", module_path!(), &[("result", "ok")])
        ),
        Some(1)
    );
    assert_eq!(
        orderscope::ErrorType::error_type(&RenamedError),
        "renamed_error"
    );
}
