#[orderscope::red(name = "a", name = "b")]
fn reserve() {}

fn main() {}
