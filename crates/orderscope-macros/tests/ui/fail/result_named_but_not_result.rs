struct SearchResult(Vec<u32>);

#[orderscope::red]
fn search() -> SearchResult {
    SearchResult(Vec::new())
}

fn main() {}
