struct Cmd {
    order_id: String,
}

#[orderscope::order_handler(order = cmd.order_id)]
async fn schedule(cmd: Cmd) -> Result<(), std::io::Error> {
    let _ = cmd;
    Ok(())
}

fn assert_send<T: Send>(_: T) {}

fn main() {
    // The future of an order handler stays `Send`.
    assert_send(schedule(Cmd { order_id: "ORD-1".into() }));
}
