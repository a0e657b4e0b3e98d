//! Projection lag: the age of the oldest event each read model has not applied yet, read from
//! the store beside the projections' checkpoints.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tenantry_eventstore::EventStore;

/// For each projection, the age of the oldest event it has not applied yet, in milliseconds.
pub(crate) async fn projection_lags(store: &EventStore) -> anyhow::Result<Vec<(String, f64)>> {
    let mut tx = store.begin_system().await?;
    let lags: Vec<(String, Option<f64>)> = sqlx::query_as(
        "SELECT c.projection, \
                (SELECT EXTRACT(EPOCH FROM clock_timestamp() - e.recorded_at)::float8 * 1000 FROM events e \
                 WHERE (e.transaction_id, e.position) > (c.transaction_id::text::xid8, c.position) \
                 ORDER BY e.transaction_id, e.position LIMIT 1) \
         FROM projection_checkpoints c ORDER BY c.projection",
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(lags
        .into_iter()
        .map(|(name, lag)| (name, lag.unwrap_or(0.0)))
        .collect())
}

/// Waits (at most `limit`) until every projection has a checkpoint and has applied every
/// event; returns how long that took.
pub(crate) async fn caught_up(store: &EventStore, limit: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let projections = tenantry_projections::all().len();
    while started.elapsed() < limit {
        let lags = projection_lags(store).await?;
        if lags.len() >= projections && lags.iter().all(|(_, lag)| *lag <= 0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(started.elapsed())
}

/// Projection lag samples: every projection's, and the worst of them at each sample.
#[derive(Debug, Default)]
pub(crate) struct Lags {
    /// The machine's CPU busy meanwhile (0–1).
    pub(crate) cpu_busy: f64,
    pub(crate) worst: Vec<f64>,
    pub(crate) by_projection: BTreeMap<String, Vec<f64>>,
}

impl Lags {
    pub(crate) fn sort(&mut self) {
        self.worst.sort_by(f64::total_cmp);
        for samples in self.by_projection.values_mut() {
            samples.sort_by(f64::total_cmp);
        }
    }
}
