//! What the machine and this process spend: resident memory, sampled or read once, and the
//! share of the CPU busy over a scenario.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// This process's resident memory, in MiB, from `/proc/self/status` (Linux; zero elsewhere).
pub(crate) fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(str::to_owned)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The machine's CPU time so far, busy and in all, from `/proc/stat` (Linux; zeros elsewhere).
pub(crate) fn cpu_times() -> (u64, u64) {
    let line = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = line
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().sum();
    // idle and iowait
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// The share of the machine's CPU busy since `from` (a [`cpu_times`] reading).
pub(crate) fn cpu_busy_since(from: (u64, u64)) -> f64 {
    let now = cpu_times();
    let total = now.1.saturating_sub(from.1);
    if total == 0 {
        return 0.0;
    }
    now.0.saturating_sub(from.0) as f64 / total as f64
}

/// Samples this process's resident memory every 20 ms until dropped; `peak` reads the
/// highest so far.
pub(crate) struct MemoryWatch {
    peak: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl MemoryWatch {
    pub(crate) fn start() -> Self {
        let peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let sampler = peak.clone();
        let task = tokio::spawn(async move {
            loop {
                let kib = (rss_mib() * 1024.0) as u64;
                sampler.fetch_max(kib, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Self { peak, task }
    }

    pub(crate) fn peak_mib(&self) -> f64 {
        self.peak.load(Ordering::Relaxed) as f64 / 1024.0
    }
}

impl Drop for MemoryWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}
