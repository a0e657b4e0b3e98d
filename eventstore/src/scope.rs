//! Tenant-scoped and system transactions.
//!
//! Pooled connections serve every tenant in turn, so the tenant and the role are set per
//! transaction (`set_config(…, true)`), never per session: when the transaction ends, both are
//! gone. Tenant work runs as `tenantry_app` (row-level security applies, no BYPASSRLS);
//! relay, projections and platform-admin work run as `tenantry_system`.
//!
//! [`crate::EventStore`] begins such transactions (`begin_tenant`, `begin_writer`,
//! `begin_system`); here are what switches an open one (`enter_tenant`, `enter_system`) and
//! where a statement gets its connection ([`Connect`], [`OnDemand`]).

use std::future::{ready, Future};

use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use tenantry_domain::TenantId;

use crate::StoreError;

/// Confines the open transaction on `conn` to `tenant`, as `tenantry_app`.
///
/// # Errors
/// When the database refuses (for example, outside a transaction nothing would stick).
pub async fn enter_tenant(conn: &mut PgConnection, tenant: TenantId) -> Result<(), StoreError> {
    sqlx::query(
        "SELECT set_config('role', 'tenantry_app', true), \
                set_config('tenantry.tenant_id', $1, true)",
    )
    .bind(tenant.to_string())
    .execute(conn)
    .await?;
    Ok(())
}

/// Switches the open transaction on `conn` to `tenantry_system`.
///
/// # Errors
/// When the database refuses.
pub async fn enter_system(conn: &mut PgConnection) -> Result<(), StoreError> {
    sqlx::query(
        "SELECT set_config('role', 'tenantry_system', true), \
                set_config('tenantry.tenant_id', '', true)",
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Where a statement gets its connection: one at hand (a transaction's), or one taken when
/// first asked for ([`OnDemand`]). Work that may need the database, and usually does not (a
/// data key kept in memory, say), takes a `Connect`, so that it costs no round trip when it
/// does not.
pub trait Connect: Send {
    /// The connection, taken now if need be.
    fn connection(&mut self) -> impl Future<Output = Result<&mut PgConnection, StoreError>> + Send;
}

impl Connect for PgConnection {
    fn connection(&mut self) -> impl Future<Output = Result<&mut PgConnection, StoreError>> + Send {
        ready(Ok(self))
    }
}

impl Connect for Transaction<'_, Postgres> {
    fn connection(&mut self) -> impl Future<Output = Result<&mut PgConnection, StoreError>> + Send {
        ready(Ok(&mut **self))
    }
}

/// A pooled connection taken on first use ([`crate::EventStore::on_demand`]) and given back when
/// dropped. Taking one from the pool and giving it back cost a round trip each (sqlx checks a
/// connection both ways), which a command that finds everything it needs in memory saves.
#[derive(Debug)]
pub struct OnDemand {
    pool: PgPool,
    conn: Option<PoolConnection<Postgres>>,
}

impl OnDemand {
    /// Nothing taken yet: a connection of `pool` is taken when first asked for.
    pub(crate) fn new(pool: PgPool) -> Self {
        Self { pool, conn: None }
    }

    /// Whether a connection was taken.
    pub fn is_taken(&self) -> bool {
        self.conn.is_some()
    }
}

impl Connect for OnDemand {
    async fn connection(&mut self) -> Result<&mut PgConnection, StoreError> {
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => self.pool.acquire().await?,
        };
        Ok(self.conn.insert(conn))
    }
}
