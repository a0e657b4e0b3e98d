//! The report: every figure of a run, printed as it is measured and, with `--json`, as one
//! JSON object at the end; each ratio is to pgbench measured in the same run.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// Every figure of a run (the `--json` summary).
#[derive(Debug, Default, Serialize)]
pub(crate) struct Figures {
    pub(crate) pgbench_one_row_tps: f64,
    pub(crate) pgbench_ten_rows_events_per_s: f64,
    /// One event per append to fresh streams, by group commit (the target's figure).
    pub(crate) append: AppendFigures,
    /// Load + append to existing streams, by group commit.
    pub(crate) append_existing: AppendFigures,
    /// One event per append to fresh streams, each in the writer's own transaction.
    pub(crate) append_in_transaction: AppendFigures,
    pub(crate) http_commands_per_s: f64,
    pub(crate) http_p50_ms: f64,
    pub(crate) http_p99_ms: f64,
    pub(crate) http_p999_ms: f64,
    pub(crate) http_ratio_to_pgbench: f64,
    pub(crate) projection_lag_p50_ms: f64,
    pub(crate) projection_lag_p99_ms: f64,
    pub(crate) projection_lag_max_ms: f64,
    pub(crate) projection_lag_peak_p99_ms: f64,
    /// The machine's CPU busy during the HTTP load at the peak and at half of it (0–1).
    pub(crate) cpu_busy_at_peak: f64,
    pub(crate) cpu_busy_at_half_peak: f64,
    /// Each projection's lag at half the peak: p50, p99, max (ms).
    pub(crate) projection_lag_by_projection: BTreeMap<String, [f64; 3]>,
    pub(crate) volume_events_per_s: f64,
    pub(crate) volume_caught_up_s: f64,
    pub(crate) rebuild_events: u64,
    pub(crate) rebuild_events_per_s: f64,
    pub(crate) replay_events: u64,
    pub(crate) replay_events_per_s: f64,
    pub(crate) replay_rss_before_mib: f64,
    pub(crate) replay_rss_peak_mib: f64,
    pub(crate) reconcile_events: u64,
    pub(crate) reconcile_seconds: f64,
    pub(crate) reconcile_rss_before_mib: f64,
    pub(crate) reconcile_rss_peak_mib: f64,
    pub(crate) reconcile_differences: usize,
    pub(crate) rss_at_rest_mib: f64,
    pub(crate) rss_after_http_mib: f64,
}

/// An append scenario's figures.
#[derive(Debug, Default, Serialize)]
pub(crate) struct AppendFigures {
    pub(crate) events_per_s: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) ratio_to_pgbench: f64,
}

impl AppendFigures {
    /// Prints and returns the figures of a scenario that ran at `rate` with `latencies`.
    pub(crate) fn report(name: &str, rate: f64, latencies: &[Duration], pgbench: f64) -> Self {
        let figures = Self {
            events_per_s: rate,
            p50_ms: percentile(latencies, 0.5),
            p99_ms: percentile(latencies, 0.99),
            ratio_to_pgbench: rate / pgbench,
        };
        println!(
            "{name:<44} {:>8.0} events/s  p50 {:.2} ms  p99 {:.2} ms  ({:.0} % of pgbench)",
            figures.events_per_s,
            figures.p50_ms,
            figures.p99_ms,
            figures.ratio_to_pgbench * 100.0
        );
        figures
    }
}

/// The `p` quantile of sorted latencies, in milliseconds.
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted
        .get(((sorted.len().max(1) - 1) as f64 * p).round() as usize)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// The `p` quantile of sorted samples.
pub(crate) fn quantile(sorted: &[f64], p: f64) -> f64 {
    sorted
        .get(((sorted.len().max(1) - 1) as f64 * p).round() as usize)
        .copied()
        .unwrap_or(0.0)
}
