#[orderscope::red(order = id)]
fn reserve(id: &str) {}

fn main() {}
