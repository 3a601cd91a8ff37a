//! A second `init` returns an error instead of panicking, and the first keeps working.

use orderscope::InitError;

#[test]
fn a_second_init_is_an_error() {
    let first = orderscope::builder("mes")
        .with_env(Vec::<(String, String)>::new())
        .with_log_writer(std::io::sink)
        .build()
        .expect("first init");
    let second = orderscope::builder("mes")
        .with_env(Vec::<(String, String)>::new())
        .build();
    assert!(
        matches!(second, Err(InitError::AlreadyInitialized)),
        "{second:?}"
    );
    assert!(matches!(
        orderscope::init("other"),
        Err(InitError::AlreadyInitialized)
    ));
    assert!(first.render().contains(orderscope::SPANS_DROPPED_METRIC));
    first.shutdown().expect("shutdown");
    // Still an error after shutdown: the globals stay installed for the life of the process.
    assert!(matches!(
        orderscope::init("mes"),
        Err(InitError::AlreadyInitialized)
    ));
}
