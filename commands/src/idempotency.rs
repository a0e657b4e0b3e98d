//! Idempotency keys: the first request with a key records its outcome in the command's
//! transaction; a repeat with the same fingerprint replays it, appending nothing.

use std::time::Duration;

use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use tenantry_domain::TenantId;
use tenantry_eventstore::scope::enter_tenant;
use tenantry_eventstore::vault::Vault;
use tenantry_eventstore::{Cursor, EventStore, StoreError};
use uuid::Uuid;

use crate::aggregate::load_at;
use crate::request::Idempotency;
use crate::{CommandError, Executed};

/// What an idempotency key remembers.
#[derive(Serialize, Deserialize)]
pub(crate) struct Remembered {
    tenant_id: Uuid,
    stream_id: Uuid,
    version: i64,
    position: Option<Cursor>,
}

pub(crate) async fn replay<A: Aggregate>(
    conn: &mut PgConnection,
    vault: &Vault,
    tenant: TenantId,
    idempotency: &Idempotency,
) -> Result<Option<Executed<A>>, CommandError> {
    let scope = idempotency.scope.unwrap_or(tenant);
    if scope != tenant {
        enter_tenant(conn, scope).await?;
    }
    // Requests with one key run one at a time: a second waits here until the first has
    // committed (and then replays it) or rolled back (and then runs itself).
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("idempotency:{scope}:{}", idempotency.key))
        .execute(&mut *conn)
        .await?;
    let row: Option<(String, serde_json::Value)> = sqlx::query_as(
        "SELECT fingerprint, outcome FROM idempotency_keys WHERE tenant_id = $1 AND key = $2",
    )
    .bind(scope.as_uuid())
    .bind(&idempotency.key)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((fingerprint, outcome)) = row else {
        if scope != tenant {
            enter_tenant(conn, tenant).await?;
        }
        return Ok(None);
    };
    if fingerprint != idempotency.fingerprint {
        return Err(CommandError::IdempotencyConflict(idempotency.key.clone()));
    }
    let remembered: Remembered = serde_json::from_value(outcome)
        .map_err(|e| StoreError::Decode(format!("idempotency outcome: {e}")))?;
    let owner = TenantId::from_uuid(remembered.tenant_id);
    if owner != scope {
        enter_tenant(conn, owner).await?;
    }
    let aggregate =
        load_at::<A>(conn, vault, owner, remembered.stream_id, remembered.version).await?;
    Ok(Some(Executed {
        id: remembered.stream_id,
        aggregate,
        version: remembered.version,
        position: remembered.position,
        replayed: true,
    }))
}

/// Records the key's outcome; false when another request already holds the key.
pub(crate) async fn remember<A>(
    conn: &mut PgConnection,
    tenant: TenantId,
    idempotency: &Idempotency,
    done: &Executed<A>,
) -> Result<bool, CommandError> {
    let scope = idempotency.scope.unwrap_or(tenant);
    if scope != tenant {
        enter_tenant(conn, scope).await?;
    }
    let outcome = serde_json::to_value(Remembered {
        tenant_id: tenant.as_uuid(),
        stream_id: done.id,
        version: done.version,
        position: done.position,
    })
    .map_err(|e| StoreError::Decode(e.to_string()))?;
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (tenant_id, key, fingerprint, outcome) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (tenant_id, key) DO NOTHING",
    )
    .bind(scope.as_uuid())
    .bind(&idempotency.key)
    .bind(&idempotency.fingerprint)
    .bind(outcome)
    .execute(conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Deletes idempotency keys older than `age` (they are promised for at least 24 hours).
///
/// # Errors
/// On a database failure.
pub async fn purge_idempotency_keys(
    store: &EventStore,
    age: Duration,
) -> Result<u64, CommandError> {
    let mut tx = store.begin_system().await?;
    let deleted = sqlx::query(
        "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)",
    )
    .bind(age.as_secs_f64())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(deleted.rows_affected())
}
