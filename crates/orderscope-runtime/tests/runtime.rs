//! The runtime sampler against a real multi-thread Tokio runtime; the ticker's thread.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use orderscope_runtime::{RuntimeSampler, Ticker};

mod common;
use common::{get, sample};

#[test]
fn runtime_values_follow_a_real_runtime() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let mut sampler = RuntimeSampler::new(runtime.handle().clone());
    let first = sample(&mut sampler);
    assert_eq!(get(&first, "tokio_workers"), 2.0);
    // The first sample has no interval yet: no busy ratio.
    assert!(first.iter().all(|(n, _)| n != "tokio_busy_ratio"));

    // Both workers blocked: tasks spawned from outside wait in the global queue.
    let (release, released) = std::sync::mpsc::channel::<()>();
    let released = std::sync::Arc::new(std::sync::Mutex::new(released));
    let (started_tx, started) = std::sync::mpsc::channel::<()>();
    for _ in 0..2 {
        let released = released.clone();
        let started_tx = started_tx.clone();
        runtime.spawn(async move {
            started_tx.send(()).unwrap();
            // Block the worker until released.
            while let Err(std::sync::mpsc::TryRecvError::Empty) =
                released.lock().unwrap().try_recv()
            {
                std::hint::spin_loop();
            }
        });
    }
    for _ in 0..2 {
        started.recv_timeout(Duration::from_secs(10)).unwrap();
    }
    let (done_tx, done) = std::sync::mpsc::channel::<()>();
    for _ in 0..10 {
        let done_tx = done_tx.clone();
        runtime.spawn(async move { done_tx.send(()).unwrap() });
    }
    let queued = sample(&mut sampler);
    assert_eq!(get(&queued, "tokio_global_queue_depth"), 10.0);
    assert!(get(&queued, "tokio_alive_tasks") >= 12.0);
    drop(release);
    for _ in 0..10 {
        done.recv_timeout(Duration::from_secs(10)).unwrap();
    }

    // Busy: two tasks keep both workers polling for 300 ms (Tokio adds a worker's busy time
    // when it ends a batch of polls, so they yield every millisecond).
    let _ = sample(&mut sampler);
    let (finished_tx, finished) = std::sync::mpsc::channel::<()>();
    for _ in 0..2 {
        let finished_tx = finished_tx.clone();
        runtime.spawn(async move {
            let until = Instant::now() + Duration::from_millis(300);
            while Instant::now() < until {
                let slice = Instant::now() + Duration::from_millis(1);
                while Instant::now() < slice {
                    std::hint::spin_loop();
                }
                tokio::task::yield_now().await;
            }
            finished_tx.send(()).unwrap();
        });
    }
    for _ in 0..2 {
        finished.recv_timeout(Duration::from_secs(10)).unwrap();
    }
    let busy = sample(&mut sampler);
    let ratio = get(&busy, "tokio_busy_ratio");
    assert!(ratio > 0.5 && ratio <= 1.0, "busy ratio {ratio}");

    // Idle: the workers park, the ratio drops.
    // Parked since the blocked phase: at least once each when the work ran out.
    let parks_before = get(&queued, "tokio_parks_total");
    let idle_until = Instant::now() + Duration::from_millis(300);
    while Instant::now() < idle_until {
        std::thread::yield_now();
    }
    let idle = sample(&mut sampler);
    assert_eq!(get(&idle, "tokio_global_queue_depth"), 0.0);
    assert!(get(&idle, "tokio_parks_total") >= parks_before + 2.0);
    let ratio = get(&idle, "tokio_busy_ratio");
    assert!(ratio < 0.5, "busy ratio {ratio} while idle");
}

#[test]
fn the_ticker_samples_until_dropped() {
    let (tx, rx) = mpsc::channel::<()>();
    let ticker = Ticker::builder()
        .interval(Duration::from_millis(5))
        .sampler(move || {
            let _ = tx.send(());
        })
        .spawn()
        .unwrap();
    for _ in 0..3 {
        rx.recv_timeout(Duration::from_secs(10)).expect("a tick");
    }
    drop(ticker);
    // The thread has ended: the sampler (and its sender) is gone.
    while rx.try_recv().is_ok() {}
    assert_eq!(rx.try_recv(), Err(mpsc::TryRecvError::Disconnected));
}
