//! The memory a tracked order costs: the growth of the resident set while 100,000 orders are
//! tracked, each with a 16-character id, a channel, a deadline and a creation time. Each order's
//! context is dropped by the caller right after its stage, so what remains is what the tracker
//! keeps (the context it holds on to included). The capacity is twice the orders, so that no
//! shard fills up and evicts.

#![cfg(target_os = "linux")]

use std::time::{Duration, SystemTime};

use orderscope_context::{Channel, OrderContext};
use orderscope_logs::{Tracker, register_stages, stage};

const ORDERS: usize = 100_000;

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn a_tracked_order_costs_less_than_500_bytes() {
    register_stages(&["mem.wait"]);
    let tracker = Tracker::builder()
        .capacity(2 * ORDERS)
        .build()
        .install()
        .unwrap();
    let now = SystemTime::now();
    let before = resident_bytes();
    for i in 0..ORDERS {
        let order = OrderContext::builder(format!("ORD-2026-{i:07}"))
            .channel(Channel::Web)
            .deadline(now + Duration::from_secs(3600))
            .created_at(now)
            .build()
            .unwrap();
        order.in_scope(|| stage!("mem.wait"));
    }
    let after = resident_bytes();
    assert_eq!(tracker.len(), ORDERS);
    let per_order = (after.saturating_sub(before)) as f64 / ORDERS as f64;
    println!("resident set grew {per_order:.0} bytes per tracked order");
    assert!(
        (50.0..500.0).contains(&per_order),
        "{per_order:.0} bytes per tracked order"
    );
}
