#[orderscope::red(track_concurrency = "yes")]
fn reserve() {}

fn main() {}
