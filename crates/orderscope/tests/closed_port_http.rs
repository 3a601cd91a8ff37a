//! With the collector's port closed (http/protobuf), the service keeps serving, nothing blocks,
//! `shutdown()` returns within its bound, and the failed exports are counted.

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_collector_port_blocks_nothing_and_is_counted() {
    common::closed_collector_port_scenario("http/protobuf").await;
}
