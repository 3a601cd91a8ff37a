#[orderscope::order_handler(name = "schedule")]
fn schedule() {}

fn main() {}
