//! Crypto-shredding: personal fields sealed under data keys that erasure destroys.
//!
//! Every personal field of an event (`tenantry_domain::personal`) is sealed before it is
//! appended: AES-256-GCM under a data key, written as `sealed:v1:<key id>:<base64>`. Data keys
//! live in `data_keys`, wrapped by the master key, which only the processes hold
//! (`TENANTRY_MASTER_KEY`). The tenant has one live key; each end customer has one of their
//! own, found by an HMAC of the customer reference. Erasing destroys keys: what they sealed
//! reads as the field's placeholder from then on, wherever a copy of it went (the feed, NATS,
//! read models, exports), while the events, their hash chain and every count stay as they were.
//!
//! Sealed values are opened only where plaintext is shown or decided on: the API's reads,
//! replay and time travel, and the organization's own commands. Everything else (projections,
//! billing, the relay) handles them sealed; [`crate::RecordedEvent::decode`] gives aggregates
//! the placeholder for any value still sealed.
//!
//! A write that races an erasure may seal under the key being destroyed; it then reads as
//! erased, exactly as if it had been recorded a moment before the erasure. A write that starts
//! after the erasure committed finds no live key and makes a new one.
//!
//! Keys are kept in memory once unwrapped ([`NotifiedCache`]): any change to `data_keys`
//! other than a new key announces itself when it commits (migration 0014), and every listening
//! server forgets every key; the erasing server forgets before it answers. A write on another
//! server in the notification's delivery (milliseconds) is the race above; a read there may
//! still open what was just erased, as it would had it begun a moment earlier. Only a key
//! certainly committed by another transaction is kept (`settled`, migration 0014), never one
//! the reader's own transaction made and might yet roll back: a value sealed under a key that
//! was never committed could never be opened.
//!
//! Keys are read through functions confined to the tenant (migration 0014), so sealing and
//! opening also work on a connection outside any transaction.

mod keys;
mod open;
mod payload;
mod seal;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;
use tenantry_domain::personal::{self, PersonalKind};
use tenantry_domain::TenantId;
use uuid::Uuid;

use crate::append::NewEvent;
use crate::notified::NotifiedCache;
use crate::scope::Connect;
use crate::{RecordedEvent, StoreError};

use keys::{DataKey, KeyRef, Want};
use seal::Master;

pub use keys::{StoredKey, KEYS_CHANNEL};
pub use open::Opener;
pub use payload::{conceal, holds_sealed, subject_of};
pub use seal::{is_sealed, MasterKey};

/// Seals and opens personal fields, and destroys the keys that make them readable.
#[derive(Clone)]
pub struct Vault {
    master: Option<Arc<Master>>,
    /// Unwrapped keys, by id and by what finds a live one.
    keys: NotifiedCache<KeyRef, Arc<DataKey>>,
}

impl Default for Vault {
    fn default() -> Self {
        Self {
            master: None,
            // Every announcement (migration 0014) forgets every key.
            keys: NotifiedCache::new(KEYS_CHANNEL, |_| None),
        }
    }
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("configured", &self.master.is_some())
            .finish()
    }
}

impl Vault {
    pub fn new(master: &MasterKey) -> Self {
        Self {
            master: Some(Arc::new(Master::new(master))),
            ..Self::default()
        }
    }

    /// A vault without a master key: it refuses to seal or open anything (values that were
    /// never sealed pass through).
    pub fn disabled() -> Self {
        Self::default()
    }

    pub fn is_configured(&self) -> bool {
        self.master.is_some()
    }

    fn master(&self) -> Result<&Master, StoreError> {
        self.master.as_deref().ok_or_else(|| {
            StoreError::Vault(
                "no master key is configured (set TENANTRY_MASTER_KEY to 64 hex digits)".into(),
            )
        })
    }

    /// Seals the personal fields of `events`, about to be appended to a stream of `tenant`.
    /// `subject` is the stream's customer key (see [`subject_of`]); a customer reference sealed
    /// now becomes it.
    ///
    /// # Errors
    /// [`StoreError::SubjectErased`] when the stream's customer was erased;
    /// [`StoreError::Vault`] without a master key; or a database failure.
    pub async fn seal(
        &self,
        conn: &mut impl Connect,
        tenant: TenantId,
        subject: &mut Option<Uuid>,
        events: &mut [NewEvent],
    ) -> Result<(), StoreError> {
        let mut keys: Vec<Arc<DataKey>> = Vec::new();
        let mut tenant_key: Option<Uuid> = None;
        for event in events.iter_mut() {
            for (name, kind) in personal::fields(&event.event_type) {
                let Some(Value::String(plain)) = event.payload.get(name) else {
                    continue;
                };
                let key_id = match kind {
                    PersonalKind::Email => None,
                    PersonalKind::CustomerRef => {
                        let key = self
                            .live_key(conn, tenant, Want::Customer(plain.as_str()))
                            .await?;
                        *subject = Some(key.id);
                        let id = key.id;
                        keys.push(key);
                        Some(id)
                    }
                    PersonalKind::Text => *subject,
                };
                let key_id = match key_id {
                    Some(id) => id,
                    None => match tenant_key {
                        Some(id) => id,
                        None => {
                            let key = self.live_key(conn, tenant, Want::Tenant).await?;
                            tenant_key = Some(key.id);
                            let id = key.id;
                            keys.push(key);
                            id
                        }
                    },
                };
                if !keys.iter().any(|k| k.id == key_id) {
                    keys.push(
                        self.key_by_id(conn, tenant, key_id)
                            .await?
                            .ok_or(StoreError::SubjectErased)?,
                    );
                }
                let key = keys.iter().find(|k| k.id == key_id).expect("just loaded");
                let sealed = key.seal(plain)?;
                event.payload[name] = Value::String(sealed);
            }
        }
        Ok(())
    }

    /// Opens the sealed personal fields of `events` in place: plaintext, or the field's
    /// placeholder where the key was erased. (The events' hashes no longer match their
    /// payloads afterwards: open copies that are shown, never ones that are verified.)
    ///
    /// # Errors
    /// [`StoreError::Vault`] without a master key or when a key does not unwrap under it.
    pub async fn reveal(
        &self,
        conn: &mut impl Connect,
        events: &mut [RecordedEvent],
    ) -> Result<(), StoreError> {
        self.opener().reveal(conn, events).await
    }

    /// Opens sealed values of `tenant` in place (a read model's copies, say), each with its
    /// kind; values that were never sealed are left as they are. With `tenant` unknown (a
    /// list across tenants, in a system transaction), the keys are those the transaction on
    /// `conn` may read, and none is taken from memory.
    ///
    /// # Errors
    /// As [`Vault::reveal`].
    pub async fn open(
        &self,
        conn: &mut impl Connect,
        tenant: Option<TenantId>,
        values: Vec<(&mut String, PersonalKind)>,
    ) -> Result<(), StoreError> {
        self.opener().open(conn, tenant, values).await
    }

    /// An opener that keeps the keys it fetched, for many batches of one read (a replay).
    pub fn opener(&self) -> Opener {
        Opener {
            vault: self.clone(),
            keys: HashMap::new(),
        }
    }
}
