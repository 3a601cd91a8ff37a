#[orderscope::red]
fn reserve(qty: u32) -> Result<u32, std::io::Error> {
    Ok(qty)
}

#[orderscope::red(name = "schedule", track_concurrency)]
async fn schedule() -> u8 {
    1
}

fn main() {
    let _ = reserve(1);
    let _ = schedule();
}
