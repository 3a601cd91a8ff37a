//! The log line layer: one JSON object per line ([`JsonLayer`], the default) or human-readable
//! lines (`ORDERSCOPE_LOG_FORMAT=pretty`).

use orderscope_logs::{JsonLayer, LogFormat};
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::registry::LookupSpan;

/// How and where log lines are written.
pub(crate) struct LogLines {
    pub(crate) format: LogFormat,
    pub(crate) service_name: String,
    pub(crate) writer: BoxMakeWriter,
    /// Colours (pretty lines only).
    pub(crate) ansi: bool,
}

impl LogLines {
    /// The layer that writes the lines. Concrete types (the absent format is `None`): no
    /// dynamic dispatch per callback.
    pub(crate) fn layer<S>(self) -> impl Layer<S> + Send + Sync + 'static
    where
        S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync + 'static,
    {
        let (json, pretty) = match self.format {
            LogFormat::Json => (
                Some(JsonLayer::new(&self.service_name).with_writer(self.writer)),
                None,
            ),
            LogFormat::Pretty => (
                None,
                Some(
                    tracing_subscriber::fmt::layer()
                        .pretty()
                        .with_ansi(self.ansi)
                        .with_writer(self.writer),
                ),
            ),
        };
        Layer::<S>::and_then(json, pretty)
    }
}
