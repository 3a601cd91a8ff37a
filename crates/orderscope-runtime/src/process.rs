//! Process signals from `/proc/self` (Linux).

use orderscope_metrics::catalogue::{
    PROCESS_CPU_SECONDS, PROCESS_MAX_FDS, PROCESS_OPEN_FDS, PROCESS_RESIDENT_MEMORY,
    PROCESS_START_TIME, PROCESS_THREADS,
};

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Sample;

/// The last `process_cpu_seconds_total` sampled, as `f64` bits; `u64::MAX` until the first sample.
static CPU_SECONDS: AtomicU64 = AtomicU64::new(u64::MAX);

/// The last `process_cpu_seconds_total` a [`ProcessSampler`] read, if any.
pub fn process_cpu_seconds() -> Option<f64> {
    match CPU_SECONDS.load(Ordering::Relaxed) {
        u64::MAX => None,
        bits => Some(f64::from_bits(bits)),
    }
}

/// Appends `process_cpu_seconds_total` in the Prometheus text format to `out` (nothing before
/// the first sample).
///
/// It is a counter of fractional seconds, which the `metrics` facade's integer counters cannot
/// hold; so the sampler keeps it aside and the `/metrics` renderer appends it (the `orderscope`
/// facade's `metrics_router` and `render` do).
pub fn append_process_counters(out: &mut String) {
    if let Some(cpu) = process_cpu_seconds() {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        let _ = write!(
            out,
            "# HELP {PROCESS_CPU_SECONDS} Total user and system CPU time spent in seconds.\n\
             # TYPE {PROCESS_CPU_SECONDS} counter\n\
             {PROCESS_CPU_SECONDS} {cpu}\n"
        );
    }
}

/// Clock ticks per second of the times in `/proc/<pid>/stat` (Linux's `USER_HZ`, 100 on every
/// architecture it reports to user space).
#[cfg(target_os = "linux")]
const TICKS_PER_SECOND: f64 = 100.0;

/// Samples the process: CPU time, resident memory, file descriptors, threads and start time,
/// under the names the Prometheus client libraries use.
///
/// `process_cpu_seconds_total` is a counter of fractional seconds, which the `metrics` facade's
/// integer counters cannot hold: it is kept aside and rendered by [`append_process_counters`].
///
/// A file that cannot be read or parsed leaves its metrics unchanged for that tick.
#[derive(Debug, Clone)]
pub struct ProcessSampler {
    start_time: f64,
}

impl ProcessSampler {
    /// A sampler for this process, or `None` where `/proc/self` is not available (any system
    /// other than Linux, or a Linux without procfs).
    pub fn new() -> Option<Self> {
        #[cfg(target_os = "linux")]
        {
            let stat = read_stat()?;
            let boot_time = std::fs::read_to_string("/proc/stat")
                .ok()?
                .lines()
                .find_map(|l| l.strip_prefix("btime "))?
                .trim()
                .parse::<f64>()
                .ok()?;
            Some(ProcessSampler {
                start_time: boot_time + stat.start_ticks / TICKS_PER_SECOND,
            })
        }
        #[cfg(not(target_os = "linux"))]
        {
            None
        }
    }

    /// When the process started, seconds since the Unix epoch.
    pub fn start_time(&self) -> f64 {
        self.start_time
    }
}

impl Sample for ProcessSampler {
    fn sample(&mut self) {
        metrics::gauge!(PROCESS_START_TIME).set(self.start_time);
        #[cfg(target_os = "linux")]
        {
            if let Some(stat) = read_stat() {
                let cpu = stat.cpu_ticks / TICKS_PER_SECOND;
                CPU_SECONDS.store(cpu.to_bits(), Ordering::Relaxed);
                metrics::gauge!(PROCESS_THREADS).set(stat.threads);
            }
            if let Some(rss) = resident_bytes() {
                metrics::gauge!(PROCESS_RESIDENT_MEMORY).set(rss);
            }
            if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
                // The directory handle itself is one of the entries: not counted.
                let open = fds.count().saturating_sub(1);
                metrics::gauge!(PROCESS_OPEN_FDS).set(open as f64);
            }
            if let Some(max) = max_fds() {
                metrics::gauge!(PROCESS_MAX_FDS).set(max);
            }
        }
    }
}

#[cfg(target_os = "linux")]
struct Stat {
    cpu_ticks: f64,
    threads: f64,
    start_ticks: f64,
}

/// `/proc/self/stat`: utime + stime, num_threads, starttime (fields 14, 15, 20, 22).
#[cfg(target_os = "linux")]
fn read_stat() -> Option<Stat> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or parentheses itself.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `fields[0]` is field 3 (state).
    let field = |n: usize| fields.get(n - 3)?.parse::<f64>().ok();
    Some(Stat {
        cpu_ticks: field(14)? + field(15)?,
        threads: field(20)?,
        start_ticks: field(22)?,
    })
}

/// `VmRSS` of `/proc/self/status`, in bytes.
#[cfg(target_os = "linux")]
fn resident_bytes() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<f64>()
        .ok()?;
    Some(kb * 1024.0)
}

/// The soft limit of `Max open files` in `/proc/self/limits`.
#[cfg(target_os = "linux")]
fn max_fds() -> Option<f64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    if soft == "unlimited" {
        return None;
    }
    soft.parse::<f64>().ok()
}
