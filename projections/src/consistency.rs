//! Read-your-writes: a query carrying a consistency token waits, bounded, until the
//! projections it reads have passed it.

use std::time::Duration;

use sqlx::PgPool;
use tenantry_eventstore::Cursor;
use tokio::time::Instant;

/// Where `projection` stands in the feed (the start when it has applied nothing yet).
///
/// # Errors
/// On a database failure.
pub async fn checkpoint(pool: &PgPool, projection: &str) -> Result<Cursor, sqlx::Error> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "SELECT transaction_id, position FROM projection_checkpoints WHERE projection = $1",
    )
    .bind(projection)
    .fetch_optional(pool)
    .await?;
    Ok(row.map_or(Cursor::START, |(tx, pos)| Cursor::new(tx, pos)))
}

/// How far behind the relay (`relay`, its checkpoint's name) and each of `projections` are:
/// `(component, name, seconds)`, the age of the oldest event each has not handled yet (0
/// when none), for `/metrics`.
///
/// # Errors
/// On a database failure.
pub async fn feed_lags(
    store: &tenantry_eventstore::EventStore,
    relay: &str,
    projections: &[&str],
) -> Result<Vec<(String, String, f64)>, tenantry_eventstore::StoreError> {
    let mut tx = store.begin_system().await?;
    let lags = sqlx::query_as(
        "WITH checkpoints AS ( \
             SELECT 'relay' AS component, $2 AS name, \
                    COALESCE(r.transaction_id, 0) AS transaction_id, COALESCE(r.position, 0) AS position \
             FROM (SELECT 1) one LEFT JOIN relay_checkpoints r ON r.name = $2 \
             UNION ALL \
             SELECT 'projection', p.name, COALESCE(c.transaction_id, 0), COALESCE(c.position, 0) \
             FROM unnest($1::text[]) AS p(name) \
             LEFT JOIN projection_checkpoints c ON c.projection = p.name) \
         SELECT c.component, c.name, COALESCE(( \
             SELECT EXTRACT(EPOCH FROM now() - e.recorded_at)::float8 FROM events e \
             WHERE (e.transaction_id, e.position) > (c.transaction_id::text::xid8, c.position) \
             ORDER BY e.transaction_id, e.position LIMIT 1), 0) \
         FROM checkpoints c ORDER BY 1, 2",
    )
    .bind(projections)
    .bind(relay)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(lags)
}

/// Waits until every one of `projections` is at or past `token`, for at most `timeout`.
/// Returns whether they got there.
///
/// # Errors
/// On a database failure.
pub async fn wait_until_passed(
    pool: &PgPool,
    projections: &[&str],
    token: Cursor,
    timeout: Duration,
) -> Result<bool, sqlx::Error> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(2);
    for projection in projections {
        loop {
            if checkpoint(pool, projection).await? >= token {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
    Ok(true)
}
