#[derive(orderscope::ErrorType)]
enum MesError {
    #[error_type(rename = "x")]
    NoCapacity,
}

fn main() {}
