trait Stock {
    #[orderscope::red]
    fn reserve(&self) -> u8;
}

fn main() {}
