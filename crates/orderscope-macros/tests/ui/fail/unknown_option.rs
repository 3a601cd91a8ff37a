#[orderscope::red(nmae = "reserve")]
fn reserve() {}

fn main() {}
