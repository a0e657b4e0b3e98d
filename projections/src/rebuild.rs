//! Rebuilding a projection: replay the whole feed from PostgreSQL into fresh copies of its
//! tables (in a schema of their own), then, in one transaction that holds the projection's
//! checkpoint (so the live runner waits), catch up to the feed's end, replace the live
//! tables' contents with the rebuilt ones and move the checkpoint. Readers see the old
//! tables until that transaction commits, then the new ones.

use std::sync::Arc;

use sqlx::{Executor, PgConnection};
use tenantry_eventstore::read::read_feed;
use tenantry_eventstore::scope::enter_system;
use tenantry_eventstore::{Cursor, EventStore};

use crate::{Projection, ProjectionError};

const BATCH: i64 = 5_000;

/// What a rebuild did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rebuilt {
    pub events: u64,
    pub checkpoint: Cursor,
}

fn schema_of(projection: &dyn Projection) -> String {
    format!("rebuild_{}", projection.name())
}

/// Applies the next batch of the feed after `from` to each projection's fresh tables (the
/// feed read once for all of them); returns the batch's last cursor and size, or `None` at
/// the feed's end.
async fn apply_next(
    conn: &mut PgConnection,
    projections: &[Arc<dyn Projection>],
    from: Cursor,
) -> Result<Option<(Cursor, u64)>, ProjectionError> {
    enter_system(conn).await?;
    let batch = read_feed(conn, from, BATCH).await?;
    let Some(last) = batch.last() else {
        return Ok(None);
    };
    for projection in projections {
        use_schema(conn, &schema_of(projection.as_ref())).await?;
        projection.apply_batch(conn, &batch).await?;
    }
    Ok(Some((last.cursor, batch.len() as u64)))
}

async fn use_schema(conn: &mut PgConnection, schema: &str) -> Result<(), ProjectionError> {
    enter_system(conn).await?;
    sqlx::query("SELECT set_config('search_path', $1, true)")
        .bind(format!("{schema}, public"))
        .execute(conn)
        .await?;
    Ok(())
}

/// Rebuilds `projection`; `progress` is told the events replayed so far.
///
/// # Errors
/// On a database failure; the live tables are then untouched.
pub async fn rebuild(
    store: &EventStore,
    projection: Arc<dyn Projection>,
    progress: impl FnMut(u64),
) -> Result<Rebuilt, ProjectionError> {
    rebuild_all(store, &[projection], progress).await
}

/// Rebuilds `projections` together, reading the feed once; `progress` is told the events
/// replayed so far. All of them switch in one transaction.
///
/// # Errors
/// On a database failure; the live tables are then untouched.
pub async fn rebuild_all(
    store: &EventStore,
    projections: &[Arc<dyn Projection>],
    mut progress: impl FnMut(u64),
) -> Result<Rebuilt, ProjectionError> {
    let pool = store.pool();
    // Fresh tables shaped like the live ones.
    let mut setup = pool.begin().await?;
    for projection in projections {
        let schema = schema_of(projection.as_ref());
        setup
            .execute(format!("DROP SCHEMA IF EXISTS {schema} CASCADE").as_str())
            .await?;
        setup
            .execute(format!("CREATE SCHEMA {schema}").as_str())
            .await?;
        for table in projection.tables() {
            setup
                .execute(format!("CREATE TABLE {schema}.{table} (LIKE public.{table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)").as_str())
                .await?;
        }
        setup
            .execute(format!("GRANT USAGE ON SCHEMA {schema} TO tenantry_system").as_str())
            .await?;
        setup
            .execute(format!("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO tenantry_system").as_str())
            .await?;
    }
    setup.commit().await?;

    // Replay in batches, each in its own transaction.
    let mut cursor = Cursor::START;
    let mut total = 0;
    loop {
        let mut tx = pool.begin().await?;
        let Some((last, count)) = apply_next(&mut tx, projections, cursor).await? else {
            tx.rollback().await?;
            break;
        };
        tx.commit().await?;
        cursor = last;
        total += count;
        progress(total);
    }

    // Switch: hold the checkpoints, catch up, replace the contents, move the checkpoints.
    let mut tx = pool.begin().await?;
    enter_system(&mut tx).await?;
    for projection in projections {
        sqlx::query(
            "INSERT INTO public.projection_checkpoints (projection, transaction_id, position) VALUES ($1, 0, 0) \
             ON CONFLICT (projection) DO NOTHING",
        )
        .bind(projection.name())
        .execute(&mut *tx)
        .await?;
        sqlx::query("SELECT 1 FROM public.projection_checkpoints WHERE projection = $1 FOR UPDATE")
            .bind(projection.name())
            .execute(&mut *tx)
            .await?;
    }
    while let Some((last, count)) = apply_next(&mut tx, projections, cursor).await? {
        cursor = last;
        total += count;
        progress(total);
    }
    let end = cursor;
    enter_system(&mut tx).await?;
    for projection in projections {
        let schema = schema_of(projection.as_ref());
        for table in projection.tables() {
            tx.execute(format!("DELETE FROM public.{table}").as_str())
                .await?;
            tx.execute(
                format!("INSERT INTO public.{table} SELECT * FROM {schema}.{table}").as_str(),
            )
            .await?;
        }
        sqlx::query(
            "UPDATE public.projection_checkpoints SET transaction_id = $2, position = $3, updated_at = now() WHERE projection = $1",
        )
        .bind(projection.name())
        .bind(end.transaction_id)
        .bind(end.position)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;

    for projection in projections {
        let schema = schema_of(projection.as_ref());
        pool.execute(format!("DROP SCHEMA IF EXISTS {schema} CASCADE").as_str())
            .await?;
    }
    Ok(Rebuilt {
        events: total,
        checkpoint: end,
    })
}
