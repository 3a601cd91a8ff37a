#[derive(orderscope::ErrorType)]
enum MesError {
    NoCapacity,
    #[error_type(name = "plc")]
    Plc(u8),
}

#[orderscope::red]
fn plan() -> Result<(), MesError> {
    Err(MesError::Plc(1))
}

fn main() {
    let _ = plan();
    let _ = MesError::NoCapacity;
}
