//! Tokio runtime signals, read through tokio-metrics' [`RuntimeMonitor`].

use orderscope_metrics::catalogue::{
    TOKIO_ALIVE_TASKS, TOKIO_BUSY_RATIO, TOKIO_GLOBAL_QUEUE_DEPTH, TOKIO_PARKS, TOKIO_WORKERS,
};
use tokio::runtime::Handle;
use tokio_metrics::{RuntimeIntervals, RuntimeMonitor};

use crate::Sample;

/// Samples a Tokio runtime: workers, alive tasks, global queue depth, the busy ratio over the
/// last interval (busy ÷ elapsed ÷ workers, 0–1) and parks.
///
/// Each tick takes the next interval of a tokio-metrics [`RuntimeMonitor`], which reads Tokio's
/// stable runtime metrics, so no `--cfg tokio_unstable` is needed; under `tokio_unstable`
/// tokio-metrics reads more, and this sampler still records only the stable set below.
///
/// - `tokio_workers`, `tokio_alive_tasks`, `tokio_global_queue_depth`: gauges, as of the tick.
/// - `tokio_busy_ratio`: the workers' busy time over the interval since the previous tick,
///   divided by the interval and by the number of workers. The first tick only starts the
///   interval and records no ratio.
/// - `tokio_parks_total`: counter, the workers' parks since the sampler was created.
#[derive(Debug)]
pub struct RuntimeSampler {
    intervals: RuntimeIntervals,
    parks: u64,
    started: bool,
}

impl RuntimeSampler {
    /// A sampler for the runtime of `handle` (`tokio::runtime::Handle::current()` inside it).
    pub fn new(handle: Handle) -> Self {
        RuntimeSampler {
            intervals: RuntimeMonitor::new(&handle).intervals(),
            parks: 0,
            started: false,
        }
    }
}

impl Sample for RuntimeSampler {
    fn sample(&mut self) {
        let Some(m) = self.intervals.next() else {
            return;
        };
        metrics::gauge!(TOKIO_WORKERS).set(m.workers_count as f64);
        metrics::gauge!(TOKIO_ALIVE_TASKS).set(m.live_tasks_count as f64);
        metrics::gauge!(TOKIO_GLOBAL_QUEUE_DEPTH).set(m.global_queue_depth as f64);
        self.parks = self.parks.saturating_add(m.total_park_count);
        metrics::counter!(TOKIO_PARKS).absolute(self.parks);
        if self.started {
            let elapsed = m.elapsed.as_secs_f64() * m.workers_count.max(1) as f64;
            if elapsed > 0.0 {
                let ratio = m.total_busy_duration.as_secs_f64() / elapsed;
                metrics::gauge!(TOKIO_BUSY_RATIO).set(ratio.clamp(0.0, 1.0));
            }
        }
        self.started = true;
    }
}
