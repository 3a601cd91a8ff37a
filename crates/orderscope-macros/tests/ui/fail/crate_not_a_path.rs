#[orderscope::red(crate = "not a path")]
fn reserve() {}

fn main() {}
