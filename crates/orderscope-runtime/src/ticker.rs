//! The tick thread.

use std::fmt;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

/// The default sampling interval: 5 s.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// Something the [`Ticker`] calls on every tick. Closures `FnMut() + Send` are samplers.
pub trait Sample: Send {
    /// Reads the source and sets the metrics.
    fn sample(&mut self);
}

impl<F: FnMut() + Send> Sample for F {
    fn sample(&mut self) {
        self()
    }
}

/// Configures a [`Ticker`].
pub struct TickerBuilder {
    interval: Duration,
    samplers: Vec<Box<dyn Sample>>,
}

impl fmt::Debug for TickerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TickerBuilder")
            .field("interval", &self.interval)
            .field("samplers", &self.samplers.len())
            .finish()
    }
}

impl TickerBuilder {
    /// Time between two ticks. Defaults to [`DEFAULT_INTERVAL`] (5 s); at least 1 ms.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Adds a sampler; samplers run in the order they were added.
    pub fn sampler(mut self, sampler: impl Sample + 'static) -> Self {
        self.samplers.push(Box::new(sampler));
        self
    }

    /// Whether no sampler was added.
    pub fn is_empty(&self) -> bool {
        self.samplers.is_empty()
    }

    /// Starts the thread `orderscope-tick`: every sampler runs once right away, then on every
    /// tick, until the [`Ticker`] is dropped.
    ///
    /// # Errors
    ///
    /// The thread could not be spawned.
    pub fn spawn(self) -> std::io::Result<Ticker> {
        let (stop, stopped) = mpsc::channel::<()>();
        let TickerBuilder {
            interval,
            mut samplers,
        } = self;
        let thread = std::thread::Builder::new()
            .name("orderscope-tick".into())
            .spawn(move || {
                loop {
                    for sampler in &mut samplers {
                        sampler.sample();
                    }
                    match stopped.recv_timeout(interval) {
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
            })?;
        Ok(Ticker {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

/// Runs samplers on a thread of its own; dropping it stops the thread (after the sampler
/// running at that moment, if any, returns).
#[derive(Debug)]
pub struct Ticker {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    /// Starts a ticker configuration: 5 s interval, no samplers.
    pub fn builder() -> TickerBuilder {
        TickerBuilder {
            interval: DEFAULT_INTERVAL,
            samplers: Vec::new(),
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
