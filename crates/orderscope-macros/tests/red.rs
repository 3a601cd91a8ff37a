//! `#[red]` with no options: ok, error, panic, non-`Result` returns, methods, generics.

mod common;

use common::{capture, expect_panic, fn_labels};
use orderscope::{ErrorType, red};

const MODULE: &str = module_path!();
const CALLS: &str = "function_calls_total";
const DURATION: &str = "function_calls_duration_seconds";
const CONCURRENT: &str = "function_calls_concurrent";

#[derive(Debug, ErrorType)]
enum StockError {
    OutOfStock,
    #[allow(dead_code)]
    Warehouse(String),
}

#[red]
fn reserve(qty: u32) -> Result<u32, StockError> {
    if qty == 0 {
        return Err(StockError::OutOfStock);
    }
    Ok(qty)
}

#[red]
fn unclassified(fail: bool) -> Result<(), std::io::Error> {
    if fail {
        Err(std::io::Error::other("disk on fire: secret detail"))?;
    }
    Ok(())
}

#[red]
fn plain(x: u32) -> u32 {
    x + 1
}

#[red]
fn unit() {}

#[red]
fn boom() -> Result<(), StockError> {
    panic!("boom")
}

#[test]
fn ok_call_counts_ok_and_observes_duration() {
    let (out, m) = capture(|| reserve(3));
    assert_eq!(out.unwrap(), 3);
    assert_eq!(
        m.counter(CALLS, &fn_labels("reserve", MODULE, &[("result", "ok")])),
        Some(1)
    );
    let durations = m
        .histogram(DURATION, &fn_labels("reserve", MODULE, &[]))
        .unwrap();
    assert_eq!(durations.len(), 1);
    assert!(durations[0] >= 0.0 && durations[0] < 1.0);
    // No concurrency gauge without `track_concurrency`.
    assert!(m.series(CONCURRENT).is_empty());
}

#[test]
fn error_call_takes_error_type_from_the_classification() {
    let (out, m) = capture(|| {
        let _ = reserve(1);
        reserve(0)
    });
    assert!(matches!(out, Err(StockError::OutOfStock)));
    assert_eq!(
        m.counter(CALLS, &fn_labels("reserve", MODULE, &[("result", "ok")])),
        Some(1)
    );
    assert_eq!(
        m.counter(
            CALLS,
            &fn_labels(
                "reserve",
                MODULE,
                &[("result", "error"), ("error_type", "out_of_stock")]
            )
        ),
        Some(1)
    );
    assert_eq!(
        m.histogram(DURATION, &fn_labels("reserve", MODULE, &[]))
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn unclassified_error_is_error_never_the_display_text() {
    let (_, m) = capture(|| {
        let _ = unclassified(true);
        let _ = unclassified(false);
    });
    assert_eq!(
        m.counter(
            CALLS,
            &fn_labels(
                "unclassified",
                MODULE,
                &[("result", "error"), ("error_type", "error")]
            )
        ),
        Some(1)
    );
    assert_eq!(
        m.counter(
            CALLS,
            &fn_labels("unclassified", MODULE, &[("result", "ok")])
        ),
        Some(1)
    );
}

#[test]
fn non_result_returns_are_always_ok() {
    let (out, m) = capture(|| {
        unit();
        plain(1)
    });
    assert_eq!(out, 2);
    assert_eq!(
        m.counter(CALLS, &fn_labels("plain", MODULE, &[("result", "ok")])),
        Some(1)
    );
    assert_eq!(
        m.counter(CALLS, &fn_labels("unit", MODULE, &[("result", "ok")])),
        Some(1)
    );
}

#[test]
fn panic_is_an_error_of_type_panic() {
    let ((), m) = capture(|| expect_panic(boom));
    assert_eq!(
        m.counter(
            CALLS,
            &fn_labels(
                "boom",
                MODULE,
                &[("result", "error"), ("error_type", "panic")]
            )
        ),
        Some(1)
    );
    assert_eq!(
        m.histogram(DURATION, &fn_labels("boom", MODULE, &[]))
            .unwrap()
            .len(),
        1
    );
}

struct Warehouse {
    stock: u32,
}

impl Warehouse {
    #[red]
    fn take(&mut self, qty: u32) -> Result<u32, StockError> {
        if qty > self.stock {
            return Err(StockError::OutOfStock);
        }
        self.stock -= qty;
        Ok(self.stock)
    }

    #[red]
    fn name(&self) -> &str {
        "main"
    }
}

trait Picker {
    fn pick(&self, item: &str) -> Result<String, StockError>;
}

impl Picker for Warehouse {
    #[red]
    fn pick(&self, item: &str) -> Result<String, StockError> {
        Ok(format!("{item} x{}", self.stock))
    }
}

#[red]
fn largest<T: PartialOrd + Copy>(items: &[T]) -> Option<T> {
    items.iter().copied().fold(None, |best, x| match best {
        Some(b) if b >= x => Some(b),
        _ => Some(x),
    })
}

#[red]
fn parse_all<E: std::fmt::Debug, T: std::str::FromStr<Err = E>>(
    input: &[&str],
) -> Result<Vec<T>, E> {
    input.iter().map(|s| s.parse()).collect()
}

#[test]
fn methods_trait_impls_and_generics() {
    let (_, m) = capture(|| {
        let mut w = Warehouse { stock: 2 };
        assert_eq!(w.take(1).unwrap(), 1);
        assert!(w.take(5).is_err());
        assert_eq!(w.name(), "main");
        assert_eq!(w.pick("bolt").unwrap(), "bolt x1");
        assert_eq!(largest(&[1, 5, 3]), Some(5));
        assert_eq!(largest(&[1.5, 0.5]), Some(1.5));
        assert_eq!(parse_all::<_, u8>(&["1", "2"]).unwrap(), vec![1, 2]);
        assert!(parse_all::<_, u8>(&["x"]).is_err());
    });
    assert_eq!(
        m.counter(CALLS, &fn_labels("take", MODULE, &[("result", "ok")])),
        Some(1)
    );
    assert_eq!(
        m.counter(
            CALLS,
            &fn_labels(
                "take",
                MODULE,
                &[("result", "error"), ("error_type", "out_of_stock")]
            )
        ),
        Some(1)
    );
    assert_eq!(
        m.counter(CALLS, &fn_labels("name", MODULE, &[("result", "ok")])),
        Some(1)
    );
    assert_eq!(
        m.counter(CALLS, &fn_labels("pick", MODULE, &[("result", "ok")])),
        Some(1)
    );
    // One series for every instantiation of a generic function.
    assert_eq!(
        m.counter(CALLS, &fn_labels("largest", MODULE, &[("result", "ok")])),
        Some(2)
    );
    assert_eq!(
        m.counter(
            CALLS,
            &fn_labels(
                "parse_all",
                MODULE,
                &[("result", "error"), ("error_type", "error")]
            )
        ),
        Some(1)
    );
}

mod nested {
    #[orderscope::red]
    pub(crate) fn inner() {}
}

#[test]
fn module_label_is_the_module_path() {
    let (_, m) = capture(nested::inner);
    let module = format!("{MODULE}::nested");
    assert_eq!(
        m.counter(CALLS, &fn_labels("inner", &module, &[("result", "ok")])),
        Some(1)
    );
}

#[test]
fn each_recorder_sees_its_own_calls() {
    // Handles are cached only for the global recorder: two local recorders in a row both count.
    let (_, first) = capture(|| plain(1));
    let (_, second) = capture(|| plain(1));
    for m in [first, second] {
        assert_eq!(
            m.counter(CALLS, &fn_labels("plain", MODULE, &[("result", "ok")])),
            Some(1)
        );
    }
}
