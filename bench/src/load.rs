//! The load driver every timed scenario runs on: a number of clients looping over a step,
//! a warm-up second, then the measured seconds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs `clients` loops of `step` for a warm-up second and then `seconds`; returns the
/// operations per second and the sorted latencies of the measured part. A step returns the
/// latency of each operation it made.
pub(crate) async fn load<F, Fut>(
    clients: usize,
    seconds: u64,
    step: F,
) -> anyhow::Result<(f64, Vec<Duration>)>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<Vec<Duration>>> + Send,
{
    let step = Arc::new(step);
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for client in 0..clients {
        let (step, measuring, stop) = (step.clone(), measuring.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut operations = 0u64;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let done = step(client, n).await?;
                n += 1;
                if measuring.load(Ordering::Relaxed) {
                    operations += done.len() as u64;
                    latencies.extend(done);
                }
            }
            anyhow::Ok((operations, latencies))
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut operations = 0;
    let mut all = Vec::new();
    for task in tasks {
        let (ops, latencies) = task.await??;
        operations += ops;
        all.extend(latencies);
    }
    all.sort();
    Ok((operations as f64 / elapsed.as_secs_f64(), all))
}
