//! The panic hook: panics become ERROR log lines with their trace ids.

/// Installs a panic hook that logs the panic as an ERROR event (target `panic`, with the file,
/// line and column, and the trace ids of the span it happened in), then calls the previous hook.
///
/// [`init`](crate::init) installs it unless told otherwise
/// ([`with_panic_hook(false)`](crate::TelemetryBuilder::with_panic_hook)); a service that
/// assembles the pieces itself ([`build_parts`](crate::TelemetryBuilder::build_parts)) calls it
/// after installing its subscriber.
pub fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
            .unwrap_or("Box<dyn Any>");
        match info.location() {
            Some(location) => tracing::error!(
                target: "panic",
                file = location.file(),
                line = location.line(),
                column = location.column(),
                "panicked: {payload}"
            ),
            None => tracing::error!(target: "panic", "panicked: {payload}"),
        }
        previous(info);
    }));
}
