//! Opening sealed values, with every key a read fetched kept until the read ends.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use sqlx::Row;
use tenantry_domain::personal::{self, PersonalKind};
use tenantry_domain::TenantId;
use uuid::Uuid;

use crate::scope::Connect;
use crate::{EventStore, RecordedEvent, StoreError};

use super::keys::{DataKey, KeyRef};
use super::payload::personal_values_of;
use super::seal::Sealed;
use super::Vault;

/// Opens sealed values, remembering every key it fetched (erased ones as erased).
pub struct Opener {
    pub(super) vault: Vault,
    /// Key id → its key; `None` when erased or unknown.
    pub(super) keys: HashMap<Uuid, Option<Arc<DataKey>>>,
}

impl Opener {
    /// True when opening `events` needs keys this opener has not fetched yet.
    pub fn needs_keys(&self, events: &[RecordedEvent]) -> bool {
        events.iter().any(|e| {
            personal::fields(&e.event_type).any(|(name, _)| {
                e.payload
                    .get(name)
                    .and_then(Value::as_str)
                    .and_then(Sealed::parse)
                    .is_some_and(|s| !self.keys.contains_key(&s.key_id))
            })
        })
    }

    /// As [`Vault::reveal`]; `conn` is asked for only for keys not fetched before.
    ///
    /// # Errors
    /// As [`Vault::reveal`].
    pub async fn reveal(
        &mut self,
        conn: &mut impl Connect,
        events: &mut [RecordedEvent],
    ) -> Result<(), StoreError> {
        // One tenant's events (the usual case) are opened with that tenant's keys, on any
        // connection; others in the scope of `conn`'s transaction.
        let tenant = match events.split_first() {
            Some((first, rest)) if rest.iter().all(|e| e.tenant_id == first.tenant_id) => {
                Some(TenantId::from_uuid(first.tenant_id))
            }
            _ => None,
        };
        let values = personal_values_of(events);
        self.open(conn, tenant, values).await
    }

    /// As [`Opener::reveal`], fetching missing keys in a short transaction of `tenant` of its
    /// own (for a reader whose connection is busy streaming).
    ///
    /// # Errors
    /// As [`Vault::reveal`].
    pub async fn reveal_from(
        &mut self,
        store: &EventStore,
        tenant: TenantId,
        events: &mut [RecordedEvent],
    ) -> Result<(), StoreError> {
        if self.needs_keys(events) {
            let mut tx = store.begin_tenant(tenant).await?;
            self.reveal(&mut tx, events).await?;
            tx.commit().await?;
            return Ok(());
        }
        for (value, kind) in personal_values_of(events) {
            self.open_one(value, kind)?;
        }
        Ok(())
    }

    /// As [`Vault::open`].
    ///
    /// # Errors
    /// As [`Vault::reveal`].
    pub async fn open(
        &mut self,
        conn: &mut impl Connect,
        tenant: Option<TenantId>,
        values: Vec<(&mut String, PersonalKind)>,
    ) -> Result<(), StoreError> {
        let mut missing: Vec<Uuid> = values
            .iter()
            .filter_map(|(v, _)| Sealed::parse(v).map(|s| s.key_id))
            .filter(|id| !self.keys.contains_key(id))
            .collect();
        if !missing.is_empty() {
            missing.sort_unstable();
            missing.dedup();
            self.fetch(conn, tenant, &missing).await?;
        }
        for (value, kind) in values {
            self.open_one(value, kind)?;
        }
        Ok(())
    }

    /// Opens `value` with a key fetched before (unknown keys read as erased).
    fn open_one(&self, value: &mut String, kind: PersonalKind) -> Result<(), StoreError> {
        let Some(sealed) = Sealed::parse(value) else {
            return Ok(());
        };
        let plain = match self.keys.get(&sealed.key_id) {
            Some(Some(key)) => key.open(&sealed)?,
            _ => kind.placeholder().to_owned(),
        };
        *value = plain;
        Ok(())
    }

    /// Fetches keys `ids`: kept in memory, or read (and kept, when settled). Unknown and
    /// erased ones are remembered as `None`.
    pub(super) async fn fetch(
        &mut self,
        conn: &mut impl Connect,
        tenant: Option<TenantId>,
        ids: &[Uuid],
    ) -> Result<(), StoreError> {
        let master = self.vault.master()?;
        let cache = &self.vault.keys;
        let mut missing = Vec::with_capacity(ids.len());
        for id in ids {
            match cache.get(&KeyRef::Id(*id)) {
                // Only for a known tenant: without one, the transaction's scope decides
                // which keys may be read, and the kept keys are every tenant's.
                Some(key) if tenant.is_some_and(|t| t.as_uuid() == key.tenant) => {
                    self.keys.insert(*id, Some(key));
                }
                _ => missing.push(*id),
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let epoch = cache.epoch();
        let conn = conn.connection().await?;
        let rows =
            match tenant {
                Some(tenant) => sqlx::query(
                    "SELECT tenant_id, key_id, wrapped, settled FROM tenantry_data_keys($1, $2)",
                )
                .bind(tenant.as_uuid())
                .bind(&missing)
                .fetch_all(conn)
                .await?,
                None => sqlx::query(
                    "SELECT tenant_id, key_id, wrapped, age(xmin) > 0 AS settled FROM data_keys \
                     WHERE key_id = ANY($1) AND erased_at IS NULL",
                )
                .bind(&missing)
                .fetch_all(conn)
                .await?,
            };
        for id in &missing {
            self.keys.insert(*id, None);
        }
        for row in rows {
            let tenant: Uuid = row.try_get("tenant_id")?;
            let id: Uuid = row.try_get("key_id")?;
            let wrapped: Vec<u8> = row.try_get("wrapped")?;
            let key = Arc::new(master.unwrap(tenant, id, &wrapped)?);
            if row.try_get("settled")? {
                cache.keep(KeyRef::Id(id), key.clone(), epoch);
            }
            self.keys.insert(id, Some(key));
        }
        Ok(())
    }
}
