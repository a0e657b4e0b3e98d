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
