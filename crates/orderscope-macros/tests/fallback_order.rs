//! `fallback_order = …`: the order already in scope wins; the expression is used (and evaluated)
//! only when there is none.

mod common;

use std::cell::Cell;

use common::{YieldOnce, block_on};

use orderscope::{Channel, OrderContext, order_handler};

struct Message {
    order_id: String,
}

thread_local! {
    static EVALUATED: Cell<u32> = const { Cell::new(0) };
}

fn payload_id(message: &Message) -> &str {
    EVALUATED.with(|n| n.set(n.get() + 1));
    &message.order_id
}

#[order_handler(fallback_order = payload_id(&message))]
fn handle(message: Message) -> Option<(String, Option<Channel>)> {
    OrderContext::current().map(|o| (o.id().to_owned(), o.channel()))
}

#[order_handler(fallback_order = message.order_id, name = "handle_async")]
async fn handle_async(message: Message) -> Option<String> {
    YieldOnce::default().await;
    OrderContext::current().map(|o| o.id().to_owned())
}

fn message(id: &str) -> Message {
    Message {
        order_id: id.to_owned(),
    }
}

#[test]
fn the_payload_order_when_none_is_in_scope() {
    EVALUATED.with(|n| n.set(0));
    assert_eq!(
        handle(message("ORD-PAYLOAD")),
        Some(("ORD-PAYLOAD".to_owned(), None))
    );
    assert_eq!(EVALUATED.with(Cell::get), 1);
    // An invalid id: the body runs without an order.
    assert_eq!(handle(message("")), None);
}

#[test]
fn the_order_in_scope_wins() {
    EVALUATED.with(|n| n.set(0));
    let incoming = OrderContext::builder("ORD-BAGGAGE")
        .channel(Channel::Web)
        .build()
        .expect("order");
    let seen = incoming.in_scope(|| handle(message("ORD-PAYLOAD")));
    assert_eq!(seen, Some(("ORD-BAGGAGE".to_owned(), Some(Channel::Web))));
    assert_eq!(
        EVALUATED.with(Cell::get),
        0,
        "the fallback is not evaluated"
    );
}

#[test]
fn async_handlers_too() {
    use orderscope::WithOrder;
    assert_eq!(
        block_on(handle_async(message("ORD-PAYLOAD"))).as_deref(),
        Some("ORD-PAYLOAD")
    );
    let incoming = OrderContext::new("ORD-BAGGAGE").expect("order");
    assert_eq!(
        block_on(handle_async(message("ORD-PAYLOAD")).with_order(incoming)).as_deref(),
        Some("ORD-BAGGAGE")
    );
}
