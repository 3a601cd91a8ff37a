#[orderscope::order_handler(order = id)]
fn schedule(id: u64) {}

fn main() {}
