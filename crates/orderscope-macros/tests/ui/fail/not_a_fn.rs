#[orderscope::red]
struct Reserve;

fn main() {}
