#[orderscope::red(name = "")]
fn reserve() {}

fn main() {}
