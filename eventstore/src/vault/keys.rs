//! Data keys: found or made when a write needs one, kept in memory while the server hears of
//! changes, destroyed by erasure, and exported and imported still wrapped.

use std::sync::Arc;

use aes_gcm::Aes256Gcm;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, Row};
use tenantry_domain::TenantId;
use uuid::Uuid;

use crate::notified::Subscriber;
use crate::scope::Connect;
use crate::StoreError;

use super::{MasterKey, Vault};

/// The channel the trigger of migration 0014 notifies when data keys change.
pub const KEYS_CHANNEL: &str = "tenantry_data_keys";

/// How a kept key is found.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) enum KeyRef {
    Id(Uuid),
    /// A tenant's live key for a scope and lookup (see [`Want`]).
    Live(Uuid, &'static str, Vec<u8>),
}

/// A data key in memory.
pub(super) struct DataKey {
    pub(super) tenant: Uuid,
    pub(super) id: Uuid,
    pub(super) cipher: Aes256Gcm,
}

/// Which live key a write needs.
#[derive(Clone, Copy)]
pub(super) enum Want<'a> {
    Tenant,
    Customer(&'a str),
}

impl Want<'_> {
    pub(super) fn scope(self) -> &'static str {
        match self {
            Want::Tenant => "tenant",
            Want::Customer(_) => "customer",
        }
    }
}

/// A data key as `tenantry export` writes it: still wrapped, so an export is no more readable
/// than the database, and a key erased later in the source stays readable only where the
/// export went (erase there too).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredKey {
    pub tenant_id: Uuid,
    pub key_id: Uuid,
    pub scope: String,
    /// Hex; absent once erased.
    pub lookup: Option<String>,
    /// Hex; absent once erased.
    pub wrapped: Option<String>,
    pub created_at: DateTime<Utc>,
    pub erased_at: Option<DateTime<Utc>>,
}

impl Vault {
    /// The kept keys, for the server's listener ([`crate::notified::listen`]): keys are kept
    /// in memory only while it hears changes (see [`crate::vault`]).
    pub fn subscriber(&self) -> Box<dyn Subscriber> {
        Box::new(self.keys.clone())
    }

    /// True while keys are kept in memory (the server's listener hears changes).
    pub fn keeps_keys(&self) -> bool {
        self.keys.is_listening()
    }

    /// Forgets every key kept in memory (this server erased some).
    pub fn forget_keys(&self) {
        self.keys.forget_all();
    }

    /// Destroys every live key of `tenant`: its own and all its customers'. Returns how many.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn erase_tenant(
        &self,
        conn: &mut PgConnection,
        tenant: TenantId,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE data_keys SET wrapped = NULL, lookup = NULL, erased_at = now() \
             WHERE tenant_id = $1 AND erased_at IS NULL",
        )
        .bind(tenant.as_uuid())
        .execute(conn)
        .await?;
        Ok(done.rows_affected())
    }

    /// Destroys the live key of the customer `customer_ref` of `tenant`; `None` when the
    /// tenant holds no personal data of that customer.
    ///
    /// # Errors
    /// [`StoreError::Vault`] without a master key; or a database failure.
    pub async fn erase_customer(
        &self,
        conn: &mut PgConnection,
        tenant: TenantId,
        customer_ref: &str,
    ) -> Result<Option<Uuid>, StoreError> {
        let lookup = self.master()?.lookup(tenant, customer_ref);
        Ok(sqlx::query_scalar(
            "UPDATE data_keys SET wrapped = NULL, lookup = NULL, erased_at = now() \
             WHERE tenant_id = $1 AND scope = 'customer' AND lookup = $2 AND erased_at IS NULL \
             RETURNING key_id",
        )
        .bind(tenant.as_uuid())
        .bind(lookup)
        .fetch_optional(conn)
        .await?)
    }

    /// The tenant's live key (made now if it has none), or its customer's.
    pub(super) async fn live_key(
        &self,
        conn: &mut impl Connect,
        tenant: TenantId,
        want: Want<'_>,
    ) -> Result<Arc<DataKey>, StoreError> {
        let master = self.master()?;
        let lookup = match want {
            Want::Tenant => Vec::new(),
            Want::Customer(customer) => master.lookup(tenant, customer),
        };
        let wanted = KeyRef::Live(tenant.as_uuid(), want.scope(), lookup.clone());
        if let Some(key) = self.keys.get(&wanted) {
            return Ok(key);
        }
        let epoch = self.keys.epoch();
        // Found (the usual case: the fresh key is thrown away), or made now.
        let fresh = MasterKey::generate();
        let fresh_id = Uuid::new_v4();
        let found: Option<(Uuid, Vec<u8>, bool)> = sqlx::query_as(
            "SELECT key_id, wrapped, settled FROM tenantry_live_data_key($1, $2, $3, $4, $5)",
        )
        .bind(tenant.as_uuid())
        .bind(want.scope())
        .bind(&lookup)
        .bind(fresh_id)
        .bind(master.wrap(tenant.as_uuid(), fresh_id, &fresh)?)
        .fetch_optional(conn.connection().await?)
        .await?;
        let (id, wrapped, settled) =
            found.ok_or_else(|| StoreError::Vault("could not create or find a data key".into()))?;
        let key = Arc::new(master.unwrap(tenant.as_uuid(), id, &wrapped)?);
        if settled {
            self.keys.keep(KeyRef::Id(id), key.clone(), epoch);
            self.keys.keep(wanted, key.clone(), epoch);
        }
        Ok(key)
    }

    /// The live key `id` of `tenant`; `None` once erased.
    pub(super) async fn key_by_id(
        &self,
        conn: &mut impl Connect,
        tenant: TenantId,
        id: Uuid,
    ) -> Result<Option<Arc<DataKey>>, StoreError> {
        let mut opener = self.opener();
        opener.fetch(conn, Some(tenant), &[id]).await?;
        Ok(opener.keys.remove(&id).flatten())
    }

    /// Every data key of `tenant`, wrapped, for an export.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn export_keys(
        conn: &mut PgConnection,
        tenant: TenantId,
    ) -> Result<Vec<StoredKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT tenant_id, key_id, scope, lookup, wrapped, created_at, erased_at \
             FROM data_keys WHERE tenant_id = $1 ORDER BY created_at, key_id",
        )
        .bind(tenant.as_uuid())
        .fetch_all(conn)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(StoredKey {
                    tenant_id: row.try_get("tenant_id")?,
                    key_id: row.try_get("key_id")?,
                    scope: row.try_get("scope")?,
                    lookup: row
                        .try_get::<Option<Vec<u8>>, _>("lookup")?
                        .map(hex::encode),
                    wrapped: row
                        .try_get::<Option<Vec<u8>>, _>("wrapped")?
                        .map(hex::encode),
                    created_at: row.try_get("created_at")?,
                    erased_at: row.try_get("erased_at")?,
                })
            })
            .collect()
    }

    /// Checks that every live key of an export unwraps under this vault's master key, so an
    /// import never leaves a tenant whose personal data cannot be opened or written.
    ///
    /// # Errors
    /// [`StoreError::Vault`] without a master key (when there are live keys) or for a key
    /// that does not unwrap; [`StoreError::Decode`] on malformed hex.
    pub fn check_keys(&self, keys: &[StoredKey]) -> Result<(), StoreError> {
        for key in keys {
            let Some(wrapped) = &key.wrapped else {
                continue;
            };
            let wrapped = hex::decode(wrapped)
                .map_err(|e| StoreError::Decode(format!("data key {}: {e}", key.key_id)))?;
            self.master()?.unwrap(key.tenant_id, key.key_id, &wrapped)?;
        }
        Ok(())
    }

    /// Re-creates exported keys (an import); a key already present is left alone, any other
    /// clash (a second live key of the tenant, say) is an error.
    ///
    /// # Errors
    /// [`StoreError::Decode`] on malformed hex; or a database failure.
    pub async fn import_keys(
        conn: &mut PgConnection,
        keys: &[StoredKey],
    ) -> Result<(), StoreError> {
        let unhex = |text: &Option<String>| {
            text.as_deref()
                .map(hex::decode)
                .transpose()
                .map_err(|e| StoreError::Decode(format!("data key: {e}")))
        };
        for key in keys {
            sqlx::query(
                "INSERT INTO data_keys (tenant_id, key_id, scope, lookup, wrapped, created_at, erased_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tenant_id, key_id) DO NOTHING",
            )
            .bind(key.tenant_id)
            .bind(key.key_id)
            .bind(&key.scope)
            .bind(unhex(&key.lookup)?)
            .bind(unhex(&key.wrapped)?)
            .bind(key.created_at)
            .bind(key.erased_at)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
impl DataKey {
    /// A new random key of `tenant`, in memory only.
    pub(super) fn generate(tenant: Uuid) -> Self {
        use aes_gcm::aead::{KeyInit, OsRng};
        DataKey {
            tenant,
            id: Uuid::new_v4(),
            cipher: Aes256Gcm::new(&Aes256Gcm::generate_key(OsRng)),
        }
    }
}
