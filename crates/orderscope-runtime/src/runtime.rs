//! Tokio runtime signals from its stable metrics.

use std::time::{Duration, Instant};

use orderscope_metrics::catalogue::{
    TOKIO_ALIVE_TASKS, TOKIO_BUSY_RATIO, TOKIO_GLOBAL_QUEUE_DEPTH, TOKIO_PARKS, TOKIO_WORKERS,
};
use tokio::runtime::Handle;

use crate::Sample;

/// Samples a Tokio runtime: workers, alive tasks, global queue depth, the busy ratio over the
/// last interval (busy ÷ elapsed ÷ workers, 0–1) and parks.
///
/// Only Tokio's stable metrics are read, so no `--cfg tokio_unstable` is needed. The busy ratio
/// and parks need 64-bit atomics; on targets without them only the first three are recorded.
#[derive(Debug)]
pub struct RuntimeSampler {
    handle: Handle,
    last: Option<(Instant, Duration)>,
}

impl RuntimeSampler {
    /// A sampler for the runtime of `handle` (`tokio::runtime::Handle::current()` inside it).
    pub fn new(handle: Handle) -> Self {
        RuntimeSampler { handle, last: None }
    }
}

impl Sample for RuntimeSampler {
    fn sample(&mut self) {
        let m = self.handle.metrics();
        let workers = m.num_workers();
        metrics::gauge!(TOKIO_WORKERS).set(workers as f64);
        metrics::gauge!(TOKIO_ALIVE_TASKS).set(m.num_alive_tasks() as f64);
        metrics::gauge!(TOKIO_GLOBAL_QUEUE_DEPTH).set(m.global_queue_depth() as f64);
        #[cfg(target_has_atomic = "64")]
        {
            let now = Instant::now();
            let busy: Duration = (0..workers).map(|w| m.worker_total_busy_duration(w)).sum();
            let parks: u64 = (0..workers).map(|w| m.worker_park_count(w)).sum();
            metrics::counter!(TOKIO_PARKS).absolute(parks);
            if let Some((then, busy_then)) = self.last {
                let elapsed = now.duration_since(then).as_secs_f64() * workers.max(1) as f64;
                if elapsed > 0.0 {
                    let ratio = busy.saturating_sub(busy_then).as_secs_f64() / elapsed;
                    metrics::gauge!(TOKIO_BUSY_RATIO).set(ratio.clamp(0.0, 1.0));
                }
            }
            self.last = Some((now, busy));
        }
    }
}
