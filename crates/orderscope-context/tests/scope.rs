//! Putting an order in scope: guards, closures and futures, including spawned ones.

use opentelemetry::Context;
use opentelemetry::KeyValue;
use opentelemetry::baggage::BaggageExt;
use orderscope_context::{OrderContext, WithOrder};

fn order(id: &str) -> OrderContext {
    OrderContext::new(id).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_order_travels_into_spawned_tasks() {
    let a = order("ORD-A");
    let seen = tokio::spawn(
        async {
            let first = OrderContext::current();
            tokio::task::yield_now().await;
            let nested = tokio::spawn(async { OrderContext::current() })
                .await
                .unwrap();
            tokio::task::yield_now().await;
            (first, nested, OrderContext::current())
        }
        .with_order(a.clone()),
    )
    .await
    .unwrap();
    assert_eq!(seen.0.as_ref(), Some(&a));
    assert_eq!(
        seen.1, None,
        "a task spawned inside does not inherit it unless asked"
    );
    assert_eq!(seen.2.as_ref(), Some(&a));
    assert_eq!(
        OrderContext::current(),
        None,
        "the spawning task is untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_does_not_leak_between_tasks_on_a_worker() {
    let handles: Vec<_> = (0..32)
        .map(|i| {
            let o = order(&format!("ORD-{i}"));
            tokio::spawn(
                async move {
                    for _ in 0..10 {
                        tokio::task::yield_now().await;
                        assert_eq!(OrderContext::current().as_ref(), Some(&o));
                    }
                }
                .with_order(order(&format!("ORD-{i}"))),
            )
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
}

#[test]
fn with_order_keeps_the_rest_of_the_current_context() {
    let _outer = Context::new()
        .with_baggage([KeyValue::new("tenant", "acme")])
        .attach();
    let fut = async {
        (
            OrderContext::current().map(|o| o.id().to_owned()),
            Context::current()
                .baggage()
                .get("tenant")
                .map(|v| v.to_string()),
        )
    }
    .with_order(order("ORD-1"));
    drop(_outer);
    let (id, tenant) = futures_block_on(fut);
    assert_eq!(id.as_deref(), Some("ORD-1"));
    assert_eq!(tenant.as_deref(), Some("acme"));
}

#[test]
fn guards_nest_and_restore() {
    let a = order("A");
    let b = order("B");
    assert_eq!(OrderContext::current(), None);
    let ga = a.attach();
    assert_eq!(OrderContext::current().as_ref(), Some(&a));
    let r = b.in_scope(OrderContext::current);
    assert_eq!(r.as_ref(), Some(&b));
    assert_eq!(OrderContext::current().as_ref(), Some(&a));
    drop(ga);
    assert_eq!(OrderContext::current(), None);
}

/// Polls a future to completion on this thread.
fn futures_block_on<F: std::future::Future>(fut: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(fut)
}
