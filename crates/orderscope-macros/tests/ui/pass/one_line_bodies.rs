//! One-line bodies, the shape `rustfmt` keeps on one line, compile without any warning: the
//! expansion must not make rustc lint the user's own tokens (`unused_braces` in particular).
#![deny(warnings)]

use orderscope::{ErrorType, order_handler, red};

#[derive(Debug, ErrorType)]
enum E {
    A,
}

#[red]
fn ok() -> Result<(), E> { Ok(()) }

#[red]
fn err() -> Result<(), E> { Err(E::A) }

#[red]
fn value() -> u8 { 1 }

#[red]
fn unit() {}

#[red]
fn impl_return() -> impl Iterator<Item = u8> { [1u8].into_iter() }

#[red(track_concurrency)]
async fn async_ok() -> Result<(), E> { Ok(()) }

#[red]
async fn async_value() -> u8 { 1 }

#[red]
fn inner_attribute() -> u8 {
    #![allow(unused_variables)]
    let unused = 1;
    2
}

struct S(u8);

impl S {
    #[red]
    fn get(&self) -> u8 { self.0 }

    #[red]
    async fn get_async(&self) -> Result<u8, E> { Ok(self.0) }
}

trait Store {
    fn load(&self) -> Result<u8, E>;
}

impl Store for S {
    #[red(name = "store_load")]
    fn load(&self) -> Result<u8, E> { Ok(self.0) }
}

#[order_handler(order = id)]
fn handle(id: &str) -> Result<(), E> { Ok(()) }

#[order_handler(order = id, track_concurrency)]
async fn handle_async(id: String) -> Result<u8, E> { Ok(1) }

#[order_handler(order = id)]
fn handle_unit(id: &str) {}

fn main() {
    let _ = ok();
    let _ = err();
    let _ = value();
    unit();
    let _ = impl_return();
    let _ = async_ok();
    let _ = async_value();
    let _ = inner_attribute();
    let s = S(1);
    let _ = s.get();
    let _ = s.get_async();
    let _ = s.load();
    let _ = handle("ORD-1");
    let _ = handle_async("ORD-1".to_owned());
    handle_unit("ORD-1");
}
