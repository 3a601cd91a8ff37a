//! `#[red(name = "...")]`: the `function` label.

mod common;

use common::{capture, fn_labels};

const MODULE: &str = module_path!();

#[orderscope::red(name = "stock.reserve")]
fn reserve() -> Result<(), std::io::Error> {
    Ok(())
}

#[test]
fn name_sets_the_function_label() {
    let (_, m) = capture(reserve);
    assert_eq!(
        m.counter(
            "function_calls_total",
            &fn_labels("stock.reserve", MODULE, &[("result", "ok")])
        ),
        Some(1)
    );
    assert_eq!(
        m.series("function_calls_total"),
        vec![vec![
            ("function".to_owned(), "stock.reserve".to_owned()),
            ("module".to_owned(), MODULE.to_owned()),
            ("result".to_owned(), "ok".to_owned()),
        ]]
    );
}
