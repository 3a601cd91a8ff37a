//! Capture of formatted log output (a `MakeWriter` over an in-memory buffer).

use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tracing_subscriber::fmt::MakeWriter;

/// An in-memory log sink: hand it to a `tracing` formatting layer as its writer, then read
/// the lines back. Clones share the buffer.
///
/// ```
/// use orderscope_testing::LogCapture;
/// use tracing_subscriber::layer::SubscriberExt as _;
///
/// let logs = LogCapture::new();
/// let subscriber = tracing_subscriber::registry()
///     .with(tracing_subscriber::fmt::layer().with_writer(logs.clone()).with_ansi(false));
/// tracing::subscriber::with_default(subscriber, || tracing::info!(order.id = "ORD-1", "accepted"));
/// assert!(logs.lines()[0].contains("accepted"));
/// ```
#[derive(Clone, Default)]
pub struct LogCapture {
    buffer: Arc<Mutex<Vec<u8>>>,
}

impl fmt::Debug for LogCapture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogCapture")
            .field("bytes", &self.lock().len())
            .finish()
    }
}

impl LogCapture {
    /// An empty capture.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Everything written so far (invalid UTF-8 replaced).
    pub fn contents(&self) -> String {
        String::from_utf8_lossy(&self.lock()).into_owned()
    }

    /// The non-empty lines written so far.
    pub fn lines(&self) -> Vec<String> {
        self.contents()
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Each non-empty line parsed as one JSON value.
    ///
    /// # Errors
    ///
    /// The first line that is not valid JSON.
    pub fn json_lines(&self) -> Result<Vec<serde_json::Value>, serde_json::Error> {
        self.lines()
            .iter()
            .map(|l| serde_json::from_str(l))
            .collect()
    }

    /// Forgets everything written so far.
    pub fn clear(&self) {
        self.lock().clear();
    }
}

/// The writer [`LogCapture`] hands out; appends to the shared buffer.
#[derive(Debug)]
pub struct LogCaptureWriter {
    capture: LogCapture,
}

impl io::Write for LogCaptureWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.capture.lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogCapture {
    type Writer = LogCaptureWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LogCaptureWriter {
            capture: self.clone(),
        }
    }
}
