//! The process sampler against `/proc`. One test alone in its process, so that no other test's
//! threads, files or memory move the values it compares.

use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use orderscope_runtime::{ProcessSampler, append_process_counters, process_cpu_seconds};

mod common;
use common::{get, sample};

#[cfg(target_os = "linux")]
#[test]
fn process_values_agree_with_proc() {
    let mut sampler = ProcessSampler::new().expect("procfs on Linux");
    let before = sample(&mut sampler);

    // Start time: this process started in the last ten minutes, and not in the future.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let start = get(&before, "process_start_time_seconds");
    assert!(
        start <= now + 1.0 && start > now - 600.0,
        "start {start}, now {now}"
    );

    // Threads: as many as /proc/self/task lists, and 3 more with 3 more threads.
    let (release, wait) = mpsc::channel::<()>();
    let wait = std::sync::Arc::new(std::sync::Mutex::new(wait));
    let (ready_tx, ready) = mpsc::channel::<()>();
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let wait = wait.clone();
            let ready_tx = ready_tx.clone();
            std::thread::spawn(move || {
                ready_tx.send(()).unwrap();
                let _ = wait.lock().unwrap().recv();
            })
        })
        .collect();
    for _ in 0..3 {
        ready.recv_timeout(Duration::from_secs(10)).unwrap();
    }
    // 10 more open files.
    let files: Vec<_> = (0..10)
        .map(|_| std::fs::File::open("/proc/self/stat").unwrap())
        .collect();
    // 64 MiB more resident memory.
    let mut block = vec![0u8; 64 << 20];
    for i in (0..block.len()).step_by(4096) {
        block[i] = 1;
    }
    // Some CPU time: spin until this thread has used 200 ms of it (by /proc's own account).
    let cpu_before = process_cpu_seconds().expect("sampled");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut x = 0u64;
    loop {
        for i in 0..1_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        sample(&mut sampler);
        let now = process_cpu_seconds().unwrap();
        if now - cpu_before >= 0.2 || Instant::now() > deadline {
            break;
        }
    }
    std::hint::black_box(x);

    let after = sample(&mut sampler);
    let tasks = std::fs::read_dir("/proc/self/task").unwrap().count() as f64;
    assert_eq!(get(&after, "process_threads"), tasks);
    assert!(get(&after, "process_threads") >= get(&before, "process_threads") + 3.0);
    assert!(get(&after, "process_open_fds") >= get(&before, "process_open_fds") + 10.0);
    let rss_growth = get(&after, "process_resident_memory_bytes")
        - get(&before, "process_resident_memory_bytes");
    assert!(
        rss_growth >= 60.0 * 1024.0 * 1024.0,
        "rss grew {rss_growth}"
    );
    let cpu = process_cpu_seconds().unwrap() - cpu_before;
    assert!((0.2..30.0 * 2.0).contains(&cpu), "cpu {cpu}");
    // Rendered as a counter of fractional seconds.
    let mut text = String::from("up 1");
    append_process_counters(&mut text);
    let line = text.lines().last().unwrap();
    let value: f64 = line
        .strip_prefix("process_cpu_seconds_total ")
        .unwrap()
        .parse()
        .unwrap();
    assert!(value >= cpu_before + 0.2, "{text}");
    assert!(
        text.contains("\n# TYPE process_cpu_seconds_total counter\n"),
        "{text}"
    );
    assert!(get(&after, "process_max_fds") >= get(&after, "process_open_fds"));

    drop(release);
    for t in threads {
        t.join().unwrap();
    }
    drop(files);
    drop(block);
}
