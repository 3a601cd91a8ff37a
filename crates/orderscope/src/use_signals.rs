//! USE signals and the in-flight order tracker, sampled on one tick thread: the builder hooks
//! ([`TelemetryBuilder::with_process_metrics`], [`with_runtime_metrics`],
//! [`with_order_tracker`]) and what `build` starts from them.
//!
//! [`with_runtime_metrics`]: TelemetryBuilder::with_runtime_metrics
//! [`with_order_tracker`]: TelemetryBuilder::with_order_tracker

use std::time::Duration;

use orderscope_logs::TrackerBuilder;
use orderscope_runtime::{ProcessSampler, RuntimeSampler, Ticker};

use crate::TelemetryBuilder;

/// What the builder was asked to sample.
#[derive(Debug, Default)]
pub(crate) struct UseSignals {
    process: bool,
    runtime: bool,
    tracker: Option<TrackerBuilder>,
    interval: Option<Duration>,
}

impl TelemetryBuilder {
    /// Samples the process every tick: `process_cpu_seconds_total`,
    /// `process_resident_memory_bytes`, `process_open_fds`, `process_max_fds`, `process_threads`,
    /// `process_start_time_seconds`, from `/proc/self`. On systems without procfs nothing is
    /// recorded (and a WARN line says so). Defaults to off.
    pub fn with_process_metrics(mut self) -> Self {
        self.use_signals_mut().process = true;
        self
    }

    /// Samples the Tokio runtime [`build`](Self::build) is called in, every tick: `tokio_workers`,
    /// `tokio_alive_tasks`, `tokio_global_queue_depth`, `tokio_busy_ratio`, `tokio_parks_total`.
    /// Outside a runtime nothing is recorded (and a WARN line says so). Defaults to off.
    pub fn with_runtime_metrics(mut self) -> Self {
        self.use_signals_mut().runtime = true;
        self
    }

    /// Installs the in-flight order tracker that `stage!` feeds, and samples it every tick:
    /// `order_in_flight`, `order_overdue_in_flight`, `order_oldest_age_seconds`, and stall
    /// reports (`order_stalled_total` and a WARN line). Pass `orderscope::logs::Tracker::builder()`,
    /// configured. When a tracker is already installed in the process, that one is sampled.
    /// Defaults to off.
    pub fn with_order_tracker(mut self, tracker: TrackerBuilder) -> Self {
        self.use_signals_mut().tracker = Some(tracker);
        self
    }

    /// Time between two samples of the USE signals and the order tracker. Defaults to 5 s.
    pub fn with_sample_interval(mut self, interval: Duration) -> Self {
        self.use_signals_mut().interval = Some(interval);
        self
    }
}

impl UseSignals {
    /// Starts the tick thread, when anything is to be sampled. Returns WARN messages for what
    /// could not be sampled here.
    pub(crate) fn start(self) -> (Option<Ticker>, Vec<String>) {
        let mut warnings = Vec::new();
        let mut ticker = Ticker::builder();
        if let Some(interval) = self.interval {
            ticker = ticker.interval(interval);
        }
        if self.process {
            match ProcessSampler::new() {
                Some(process) => ticker = ticker.sampler(process),
                None => warnings.push("process metrics need /proc/self: not recorded".to_owned()),
            }
        }
        if self.runtime {
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => ticker = ticker.sampler(RuntimeSampler::new(handle)),
                Err(_) => warnings.push(
                    "runtime metrics: `build` was not called inside a Tokio runtime; not recorded"
                        .to_owned(),
                ),
            }
        }
        if let Some(tracker) = self.tracker {
            let tracker = match tracker.build().install() {
                Ok(tracker) => tracker,
                Err(_) => orderscope_logs::tracker().expect("a tracker is installed"),
            };
            ticker = ticker.sampler(move || tracker.sample());
        }
        if ticker.is_empty() {
            return (None, warnings);
        }
        match ticker.spawn() {
            Ok(ticker) => (Some(ticker), warnings),
            Err(e) => {
                warnings.push(format!(
                    "USE signals: cannot start the sampling thread: {e}"
                ));
                (None, warnings)
            }
        }
    }
}

/// The recorder's metrics, then those kept outside it: the process counters the `metrics`
/// facade cannot hold (`process_cpu_seconds_total`, fractional seconds) and the depth of watched
/// RabbitMQ queues (whose series go away with their queue).
pub(crate) fn render(prometheus: &metrics_exporter_prometheus::PrometheusHandle) -> String {
    let mut text = prometheus.render();
    orderscope_runtime::append_process_counters(&mut text);
    #[cfg(feature = "amqp")]
    orderscope_amqp::append_queue_metrics(&mut text);
    text
}
