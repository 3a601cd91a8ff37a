//! Every accepted syntax form of `#[red]`, `#[order_handler]` and `#[derive(ErrorType)]`, in
//! one place. Compiling is most of the test.

#![allow(dead_code, missing_docs, clippy::unused_async)]

use orderscope::{ErrorType, OrderContext, order_handler, red};

#[derive(Debug, ErrorType)]
#[error_type(crate = "::orderscope")]
enum E {
    A,
    #[error_type(name = "bee")]
    B {
        x: u8,
    },
    #[error_type(transparent)]
    C(Inner),
    #[error_type(transparent)]
    D {
        inner: Inner,
    },
}

#[derive(Debug, ErrorType)]
#[error_type(name = "inner")]
struct Inner;

// `#[red]`: bare, empty parentheses, each option, all options, trailing comma, any order.
#[red]
fn bare() {}
#[red()]
fn empty_parens() {}
#[red(name = "n")]
fn with_name() {}
#[red(track_concurrency)]
fn flag() {}
#[red(track_concurrency = true)]
fn flag_true() {}
#[red(track_concurrency = false)]
fn flag_false() {}
#[red(result = true)]
fn result_true() -> Result<(), E> {
    Ok(())
}
#[red(result = false)]
fn result_false() -> Result<(), E> {
    Ok(())
}
#[red(crate = "::orderscope")]
fn with_crate() {}
#[red(crate = "orderscope")]
fn with_relative_crate() {}
#[red(name = "all", track_concurrency, result = true, crate = "::orderscope")]
fn all_options() -> Result<u8, E> {
    Ok(1)
}
#[red(
    crate = "::orderscope",
    result = false,
    track_concurrency = true,
    name = "reordered"
)]
fn reordered() {}

// Signatures.
#[red]
pub fn public() {}
#[red]
pub(crate) fn restricted() {}
#[red]
async fn asynchronous() -> Result<(), E> {
    Ok(())
}
#[red]
unsafe fn unsafe_fn() {}
#[red]
extern "C" fn extern_c() {}
#[red]
fn generic<T: Clone>(t: &T) -> T {
    t.clone()
}
#[red]
fn where_clause<T>(t: T) -> T
where
    T: Copy,
{
    t
}
#[red]
fn lifetimes<'a>(s: &'a str) -> &'a str {
    s
}
#[red]
fn elided(s: &str) -> &str {
    s
}
#[red]
fn impl_trait_arg(it: impl IntoIterator<Item = u8>) -> usize {
    it.into_iter().count()
}
#[red]
fn impl_trait_return() -> impl Iterator<Item = u8> {
    [1u8].into_iter()
}
#[red]
fn result_of_impl() -> Result<impl std::fmt::Debug, E> {
    Ok(1)
}
#[red]
fn patterns((a, b): (u8, u8), mut c: u8) -> u8 {
    c += a + b;
    c
}
#[red]
fn question_mark(s: &str) -> Result<u8, Box<dyn std::error::Error>> {
    Ok(s.parse::<u8>()?)
}
#[red]
fn early_return(x: u8) -> Result<u8, E> {
    if x == 0 {
        return Err(E::A);
    }
    Ok(x)
}
#[red]
fn io_result() -> std::io::Result<()> {
    Ok(())
}
#[red]
fn never_returns_normally() -> ! {
    panic!()
}
#[red]
#[inline]
#[must_use]
/// Doc comments and other attributes are kept.
fn other_attributes() -> u8 {
    1
}

struct S(u8);

impl S {
    #[red]
    fn by_ref(&self) -> u8 {
        self.0
    }
    #[red]
    fn by_mut(&mut self) {
        self.0 += 1;
    }
    #[red]
    fn by_value(self) -> u8 {
        self.0
    }
    #[red]
    fn boxed(self: Box<Self>) -> u8 {
        self.0
    }
    #[red]
    fn associated() -> Self {
        S(0)
    }
    #[red]
    async fn async_method(&self) -> u8 {
        self.0
    }
}

trait T {
    fn required(&self) -> u8;
    async fn required_async(&self) -> Result<u8, E>;
}

impl T for S {
    #[red]
    fn required(&self) -> u8 {
        self.0
    }
    #[red(track_concurrency)]
    async fn required_async(&self) -> Result<u8, E> {
        Ok(self.0)
    }
}

// `#[order_handler]`: the order as a `String` field, a `&str`, an `OrderContext`, an `Option`,
// a `Result`, a method call, a literal; with every other option.
struct Cmd {
    order_id: String,
    order: Option<OrderContext>,
}

#[order_handler(order = cmd.order_id)]
fn from_field(cmd: Cmd) -> Option<String> {
    OrderContext::current().map(|o| o.id().to_owned())
}
#[order_handler(order = id)]
fn from_str(id: &str) {}
#[order_handler(order = order)]
fn from_context(order: OrderContext) {}
#[order_handler(order = cmd.order)]
async fn from_option(cmd: Cmd) {}
#[order_handler(order = OrderContext::new(id))]
fn from_result(id: &str) {}
#[order_handler(order = cmd.order_id.trim())]
fn from_method(cmd: &Cmd) {}
#[order_handler(order = "ORD-1")]
fn from_literal() {}
#[order_handler(order = id, name = "handler", track_concurrency, result = true, crate = "::orderscope")]
async fn with_all(id: String) -> Result<(), E> {
    Ok(())
}
#[order_handler(crate = "::orderscope", order = id,)]
fn order_not_first(id: &str) {}

impl S {
    #[order_handler(order = "ORD-2")]
    fn handler_method(&self) -> u8 {
        self.0
    }
}

#[test]
fn forms_run() {
    bare();
    all_options().unwrap();
    assert_eq!(elided("x"), "x");
    assert_eq!(impl_trait_return().count(), 1);
    assert_eq!(patterns((1, 2), 3), 6);
    assert!(question_mark("x").is_err());
    assert_eq!(question_mark("7").unwrap(), 7);
    assert!(early_return(0).is_err());
    assert_eq!(S(1).by_value(), 1);
    assert_eq!(Box::new(S(2)).boxed(), 2);
    assert_eq!(E::B { x: 1 }.error_type(), "bee");
    assert_eq!(E::C(Inner).error_type(), "inner");
    assert_eq!(E::D { inner: Inner }.error_type(), "inner");
    assert_eq!(
        from_field(Cmd {
            order_id: "ORD-9".into(),
            order: None
        })
        .as_deref(),
        Some("ORD-9")
    );
    assert_eq!(S(4).handler_method(), 4);
}
