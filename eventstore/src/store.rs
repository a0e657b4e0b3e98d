//! The event store: the connection pools that tenant work and system work run on, the vault
//! that seals personal data, group commit, and the streams kept in memory between commands.
//! Its transactions are confined to one tenant or opened to the platform as [`crate::scope`]
//! explains.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool, Postgres, Transaction};
use tenantry_domain::TenantId;

use crate::append::Prepared;
use crate::group::GroupCommit;
use crate::kept::{KeepPolicy, KeptStreams};
use crate::scope::OnDemand;
use crate::{RecordedEvent, StoreError, Vault};

/// The event store: its connection pools and the scopes work runs in.
///
/// Tenant work and system work use pools of their own. A cached plan of a statement on a
/// table with row-level security belongs to the role it was planned for; a connection that
/// served `tenantry_app` and `tenantry_system` in turn planned its statements again at every
/// switch (an eighth of PostgreSQL's time under the HTTP benchmark).
#[derive(Clone, Debug)]
pub struct EventStore {
    /// Tenant transactions, group commit, and statements outside any scope.
    pool: PgPool,
    /// System transactions (relay, projections, platform admin).
    system: PgPool,
    vault: Vault,
    group: GroupCommit,
    /// Streams kept in memory between commands ([`crate::kept`]).
    kept: KeptStreams,
}

impl EventStore {
    /// Connects to `url`: at most `max_connections` for tenant work, and a quarter as many
    /// again (at least two) for system work. Every connection gets `idle_in_transaction_session_timeout`,
    /// so a forgotten transaction cannot hold the feed back for long, and plans its prepared
    /// statements once (`plan_cache_mode = force_generic_plan`): left to choose, PostgreSQL
    /// planned most of them again on every execution, because a generic plan over the 16
    /// partitions of `events` looks dearer than it is (partitions are pruned when it runs).
    ///
    /// # Errors
    /// When the URL is malformed or the database is unreachable.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url.parse()?;
        let options = options
            .options([
                ("idle_in_transaction_session_timeout", "60s"),
                ("plan_cache_mode", "force_generic_plan"),
            ])
            .application_name("tenantry");
        let system_connections = (max_connections / 4).max(2);
        let pool = |max: u32| {
            PgPoolOptions::new()
                .max_connections(max)
                .acquire_timeout(Duration::from_secs(10))
                .connect_lazy_with(options.clone())
        };
        let tenant = pool(max_connections);
        // Fail here, not at the first request, when the database cannot be reached.
        drop(tenant.acquire().await?);
        Ok(Self {
            group: GroupCommit::new(tenant.clone()),
            system: pool(system_connections),
            pool: tenant,
            vault: Vault::disabled(),
            kept: KeptStreams::default(),
        })
    }

    /// The store on one pool for all work.
    pub fn from_pool(pool: PgPool) -> Self {
        Self {
            group: GroupCommit::new(pool.clone()),
            system: pool.clone(),
            pool,
            vault: Vault::disabled(),
            kept: KeptStreams::default(),
        }
    }

    /// The store with `vault` sealing and opening personal data.
    pub fn with_vault(mut self, vault: Vault) -> Self {
        self.vault = vault;
        self
    }

    /// The store keeping in memory the streams `policy` names (see [`crate::kept`]); set it
    /// before the store is cloned, so the server's listener and its commands share one cache.
    pub fn keeping(mut self, policy: KeepPolicy) -> Self {
        self.kept = KeptStreams::new(policy);
        self
    }

    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// The streams this server keeps in memory (nothing until its listener runs,
    /// [`KeptStreams::subscriber`]).
    pub fn kept(&self) -> &KeptStreams {
        &self.kept
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Appends one stream's events by group commit: written and committed together with
    /// other writers' appends, outside any transaction of the caller's (see [`crate::group`]).
    ///
    /// # Errors
    /// As [`crate::append`].
    pub async fn append_grouped(&self, append: Prepared) -> Result<Vec<RecordedEvent>, StoreError> {
        let expected = append.expected.clone();
        let recorded = self.group.append(append).await?;
        self.kept.appended(&expected, &recorded);
        Ok(recorded)
    }

    /// A pooled connection outside any transaction and any scope, taken from the pool only
    /// when a statement first needs it ([`OnDemand`]): it sees tenant rows only through the
    /// functions that confine themselves to a tenant (migration 0014).
    pub fn on_demand(&self) -> OnDemand {
        OnDemand::new(self.pool.clone())
    }

    /// The tenant that owns stream `stream_type`/`id`, among `within`'s streams only when
    /// given (a caller of one organization sees only its own), among all otherwise.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn owner_of(
        &self,
        within: Option<TenantId>,
        stream_type: &str,
        id: uuid::Uuid,
    ) -> Result<Option<TenantId>, StoreError> {
        let mut tx = match within {
            Some(tenant) => self.begin_tenant(tenant).await?,
            None => self.begin_system().await?,
        };
        let owner = crate::read::stream_owner(&mut tx, within, stream_type, id).await?;
        tx.commit().await?;
        Ok(owner)
    }

    /// Whether `token` is a position this store could have issued: the cursor of an event it
    /// holds, or one before it. A query may wait for such a token; one beyond every event
    /// would keep it waiting for nothing.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn issued(&self, token: crate::Cursor) -> Result<bool, StoreError> {
        if token == crate::Cursor::START {
            return Ok(true);
        }
        let mut tx = self.begin_system().await?;
        let issued = crate::read::feed_reaches(&mut tx, token).await?;
        tx.commit().await?;
        Ok(issued)
    }

    /// When stream `stream_type`/`id` of `tenant` began (its first event was recorded).
    ///
    /// # Errors
    /// On a database failure.
    pub async fn started_at(
        &self,
        tenant: TenantId,
        stream_type: &str,
        id: uuid::Uuid,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError> {
        let mut tx = self.begin_tenant(tenant).await?;
        let at = crate::read::stream_started_at(&mut tx, tenant, stream_type, id).await?;
        tx.commit().await?;
        Ok(at)
    }

    /// Begins a transaction confined to `tenant`'s rows.
    ///
    /// # Errors
    /// When no connection can be had or the database refuses.
    pub async fn begin_tenant(
        &self,
        tenant: TenantId,
    ) -> Result<Transaction<'static, Postgres>, StoreError> {
        // One round trip: BEGIN and the scope travel as one simple query. The tenant is a
        // UUID, so writing it into the statement is safe.
        let statement = format!(
            "BEGIN; SELECT set_config('role', 'tenantry_app', true), \
                    set_config('tenantry.tenant_id', '{}', true)",
            tenant.as_uuid()
        );
        Ok(self.pool.begin_with(statement).await?)
    }

    /// Begins a transaction confined to `tenant`'s rows that may append events: it takes the
    /// `events` lock that marks it as a writer before anything else, so the feed horizon
    /// waits for it even if it writes elsewhere before it appends (migration 0007).
    ///
    /// # Errors
    /// When no connection can be had or the database refuses.
    pub async fn begin_writer(
        &self,
        tenant: TenantId,
    ) -> Result<Transaction<'static, Postgres>, StoreError> {
        let statement = format!(
            "BEGIN; SELECT set_config('role', 'tenantry_app', true), \
                    set_config('tenantry.tenant_id', '{}', true); \
             LOCK TABLE ONLY events IN ROW EXCLUSIVE MODE",
            tenant.as_uuid()
        );
        Ok(self.pool.begin_with(statement).await?)
    }

    /// A connection outside the pools, `tenantry_system` for its whole session: for a
    /// long-lived worker that owns it (the relay, a projection runner).
    ///
    /// # Errors
    /// When the database is unreachable or refuses.
    pub async fn connect_system(&self) -> Result<PgConnection, StoreError> {
        let mut conn = PgConnection::connect_with(&self.pool.connect_options()).await?;
        sqlx::query("SELECT set_config('role', 'tenantry_system', false)")
            .execute(&mut conn)
            .await?;
        Ok(conn)
    }

    /// Begins a platform-wide transaction (relay, projections, platform admin).
    ///
    /// # Errors
    /// When no connection can be had or the database refuses.
    pub async fn begin_system(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        Ok(self
            .system
            .begin_with(
                "BEGIN; SELECT set_config('role', 'tenantry_system', true), \
                        set_config('tenantry.tenant_id', '', true)",
            )
            .await?)
    }
}
