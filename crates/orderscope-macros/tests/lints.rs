//! Expansions produce no lint in the user's code, under rustc and clippy (`cargo clippy
//! --all-targets` checks this file), for one-line bodies in particular (`unused_braces`).

#![deny(warnings, unused_braces, clippy::all, clippy::pedantic)]

mod common;

use common::{block_on, capture, fn_labels};

// Kept on one line: `rustfmt` would spread the bodies over several lines, where rustc does not
// lint braces.
#[rustfmt::skip]
mod one_line {
    use orderscope::{ErrorType, order_handler, red};

    #[derive(Debug, ErrorType)]
    pub(super) enum E {
        A,
    }

    #[red]
    pub(super) fn ok() -> Result<(), E> { Ok(()) }

    #[red]
    pub(super) fn err() -> Result<(), E> { Err(E::A) }

    #[red]
    pub(super) fn value() -> u8 { 1 }

    #[red]
    pub(super) fn unit() {}

    #[red(track_concurrency)]
    pub(super) async fn async_ok() -> Result<(), E> { Ok(()) }

    #[red]
    pub(super) async fn async_value() -> u8 { 1 }

    pub(super) struct S(pub(super) u8);

    impl S {
        #[red]
        pub(super) fn get(&self) -> u8 { self.0 }

        #[red]
        pub(super) async fn get_async(&self) -> Result<u8, E> { Ok(self.0) }
    }

    #[order_handler(order = id)]
    pub(super) fn handle(id: &str) -> Result<(), E> { Ok(()) }

    #[order_handler(order = id, track_concurrency)]
    pub(super) async fn handle_async(id: String) -> Result<u8, E> { Ok(1) }

    #[order_handler(order = id)]
    pub(super) fn handle_unit(id: &str) {}
}

use one_line::{S, async_ok, async_value, err, handle, handle_async, handle_unit, ok, unit, value};

#[test]
fn one_line_bodies_record_as_usual() {
    let module = concat!(module_path!(), "::one_line");
    let ((), m) = capture(|| {
        ok().unwrap();
        assert!(err().is_err());
        assert_eq!(value(), 1);
        unit();
        block_on(async_ok()).unwrap();
        assert_eq!(block_on(async_value()), 1);
        let s = S(2);
        assert_eq!(s.get(), 2);
        assert_eq!(block_on(s.get_async()).unwrap(), 2);
        handle("ORD-1").unwrap();
        assert_eq!(block_on(handle_async("ORD-1".to_owned())).unwrap(), 1);
        handle_unit("ORD-1");
    });
    for function in [
        "ok",
        "value",
        "unit",
        "async_ok",
        "async_value",
        "get",
        "get_async",
        "handle",
        "handle_async",
        "handle_unit",
    ] {
        assert_eq!(
            m.counter(
                "function_calls_total",
                &fn_labels(function, module, &[("result", "ok")])
            ),
            Some(1),
            "{function}"
        );
    }
    assert_eq!(
        m.counter(
            "function_calls_total",
            &fn_labels("err", module, &[("result", "error"), ("error_type", "a")])
        ),
        Some(1)
    );
    assert_eq!(m.series("function_calls_concurrent").len(), 2);
}
