#[orderscope::red(name = reserve)]
fn reserve() {}

fn main() {}
