#[orderscope::red]
const fn reserve() -> u8 {
    1
}

fn main() {}
