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

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, Row};
use tenantry_domain::personal::{self, PersonalKind};
use tenantry_domain::TenantId;
use uuid::Uuid;

use crate::append::NewEvent;
use crate::notified::{NotifiedCache, Subscriber};
use crate::scope::Connect;
use crate::{EventStore, RecordedEvent, StoreError};

/// The channel the trigger of migration 0014 notifies when data keys change.
pub const KEYS_CHANNEL: &str = "tenantry_data_keys";

const SEALED_PREFIX: &str = "sealed:v1:";
const NONCE_LEN: usize = 12;

/// The master key: 32 bytes, written as 64 hex digits.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl MasterKey {
    /// Parses 64 hex digits.
    ///
    /// # Errors
    /// When `hex` is not 32 bytes of hex.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bytes = hex::decode(text.trim())
            .map_err(|_| "the master key must be 64 hex digits".to_owned())?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "the master key must be 64 hex digits (32 bytes)".to_owned())?;
        Ok(Self(bytes))
    }

    /// A new random key.
    pub fn generate() -> Self {
        Self(Aes256Gcm::generate_key(OsRng).into())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(…)")
    }
}

struct Master {
    cipher: Aes256Gcm,
    /// Keys the customer-reference HMAC (derived, so the master key itself wraps only).
    lookup: [u8; 32],
}

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

/// How a kept key is found.
#[derive(Clone, PartialEq, Eq, Hash)]
enum KeyRef {
    Id(Uuid),
    /// A tenant's live key for a scope and lookup (see [`Want`]).
    Live(Uuid, &'static str, Vec<u8>),
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("configured", &self.master.is_some())
            .finish()
    }
}

/// A data key in memory.
struct DataKey {
    tenant: Uuid,
    id: Uuid,
    cipher: Aes256Gcm,
}

/// Which live key a write needs.
#[derive(Clone, Copy)]
enum Want<'a> {
    Tenant,
    Customer(&'a str),
}

impl Want<'_> {
    fn scope(self) -> &'static str {
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
    pub fn new(master: &MasterKey) -> Self {
        let lookup: [u8; 32] = Sha256::new()
            .chain_update(b"tenantry customer lookup")
            .chain_update(master.0)
            .finalize()
            .into();
        Self {
            master: Some(Arc::new(Master {
                cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&master.0)),
                lookup,
            })),
            ..Self::default()
        }
    }

    /// The kept keys, for the server's listener ([`crate::notified::listen`]): keys are kept
    /// in memory only while it hears changes (see the module's documentation).
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
    async fn live_key(
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
    async fn key_by_id(
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

/// Opens sealed values, remembering every key it fetched (erased ones as erased).
pub struct Opener {
    vault: Vault,
    /// Key id → its key; `None` when erased or unknown.
    keys: HashMap<Uuid, Option<Arc<DataKey>>>,
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
    async fn fetch(
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

impl Master {
    fn wrap(&self, tenant: Uuid, id: Uuid, key: &MasterKey) -> Result<Vec<u8>, StoreError> {
        seal_bytes(&self.cipher, &wrap_aad(tenant, id), &key.0)
    }

    fn unwrap(&self, tenant: Uuid, id: Uuid, wrapped: &[u8]) -> Result<DataKey, StoreError> {
        let bytes = open_bytes(&self.cipher, &wrap_aad(tenant, id), wrapped).ok_or_else(|| {
            StoreError::Vault(format!(
                "data key {id} does not unwrap: is TENANTRY_MASTER_KEY the one it was made with?"
            ))
        })?;
        let key = Key::<Aes256Gcm>::from_exact_iter(bytes)
            .ok_or_else(|| StoreError::Vault(format!("data key {id} is not 32 bytes")))?;
        Ok(DataKey {
            tenant,
            id,
            cipher: Aes256Gcm::new(&key),
        })
    }

    fn lookup(&self, tenant: TenantId, customer_ref: &str) -> Vec<u8> {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.lookup).expect("HMAC takes any key");
        mac.update(tenant.as_uuid().as_bytes());
        mac.update(customer_ref.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }
}

impl DataKey {
    fn seal(&self, plain: &str) -> Result<String, StoreError> {
        let bytes = seal_bytes(
            &self.cipher,
            &value_aad(self.tenant, self.id),
            plain.as_bytes(),
        )?;
        Ok(format!(
            "{SEALED_PREFIX}{}:{}",
            self.id.simple(),
            STANDARD_NO_PAD.encode(bytes)
        ))
    }

    fn open(&self, sealed: &Sealed<'_>) -> Result<String, StoreError> {
        let tenant = self.tenant;
        let broken =
            || StoreError::Vault(format!("a value sealed under {} does not open", self.id));
        let bytes = STANDARD_NO_PAD.decode(sealed.data).map_err(|_| broken())?;
        let plain =
            open_bytes(&self.cipher, &value_aad(tenant, self.id), &bytes).ok_or_else(broken)?;
        String::from_utf8(plain).map_err(|_| broken())
    }
}

fn wrap_aad(tenant: Uuid, id: Uuid) -> Vec<u8> {
    [
        b"tenantry data key".as_slice(),
        tenant.as_bytes(),
        id.as_bytes(),
    ]
    .concat()
}

fn value_aad(tenant: Uuid, id: Uuid) -> Vec<u8> {
    [
        b"tenantry value".as_slice(),
        tenant.as_bytes(),
        id.as_bytes(),
    ]
    .concat()
}

/// nonce || ciphertext-and-tag.
fn seal_bytes(cipher: &Aes256Gcm, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, StoreError> {
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let sealed = cipher
        .encrypt(&nonce, Payload { msg: plain, aad })
        .map_err(|_| StoreError::Vault("encryption failed".into()))?;
    Ok([nonce.as_slice(), &sealed].concat())
}

fn open_bytes(cipher: &Aes256Gcm, aad: &[u8], bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.len() < NONCE_LEN {
        return None;
    }
    let (nonce, sealed) = bytes.split_at(NONCE_LEN);
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad })
        .ok()
}

/// A sealed value, parsed.
struct Sealed<'a> {
    key_id: Uuid,
    data: &'a str,
}

impl<'a> Sealed<'a> {
    fn parse(value: &'a str) -> Option<Self> {
        let rest = value.strip_prefix(SEALED_PREFIX)?;
        let (id, data) = rest.split_once(':')?;
        Some(Self {
            key_id: Uuid::try_parse(id).ok()?,
            data,
        })
    }
}

/// True when `value` is a sealed personal value.
pub fn is_sealed(value: &str) -> bool {
    Sealed::parse(value).is_some()
}

/// The personal string fields of a payload of `event_type`, with their kinds.
fn personal_values<'a>(
    event_type: &str,
    payload: &'a mut Value,
) -> Vec<(&'a mut String, PersonalKind)> {
    let Value::Object(map) = payload else {
        return Vec::new();
    };
    map.iter_mut()
        .filter_map(|(name, value)| {
            let (_, kind) = personal::fields(event_type).find(|(f, _)| f == name)?;
            match value {
                Value::String(text) => Some((text, kind)),
                _ => None,
            }
        })
        .collect()
}

/// True when a payload of `event_type` holds a sealed personal value.
pub fn holds_sealed(event_type: &str, payload: &Value) -> bool {
    personal::fields(event_type).any(|(name, _)| {
        payload
            .get(name)
            .and_then(Value::as_str)
            .is_some_and(is_sealed)
    })
}

/// The personal string fields of `events`, with their kinds.
fn personal_values_of(events: &mut [RecordedEvent]) -> Vec<(&mut String, PersonalKind)> {
    events
        .iter_mut()
        .flat_map(|e| personal_values(&e.event_type, &mut e.payload))
        .collect()
}

/// Replaces every sealed personal field of a payload with its placeholder: what aggregates
/// and projections see of personal data they do not open.
pub fn conceal(event_type: &str, payload: &mut Value) {
    if !personal::has_personal_fields(event_type) {
        return;
    }
    for (value, kind) in personal_values(event_type, payload) {
        if is_sealed(value) {
            *value = kind.placeholder().to_owned();
        }
    }
}

/// The key of the customer a stream belongs to: the key its customer reference was sealed
/// under, if it names one.
pub fn subject_of<'a>(events: impl IntoIterator<Item = &'a RecordedEvent>) -> Option<Uuid> {
    events.into_iter().find_map(|event| {
        personal::fields(&event.event_type)
            .filter(|(_, kind)| *kind == PersonalKind::CustomerRef)
            .find_map(|(name, _)| Sealed::parse(event.payload.get(name)?.as_str()?))
            .map(|sealed| sealed.key_id)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(tenant: Uuid) -> DataKey {
        DataKey {
            tenant,
            id: Uuid::new_v4(),
            cipher: Aes256Gcm::new(&Aes256Gcm::generate_key(OsRng)),
        }
    }

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_tenant() {
        let tenant = Uuid::new_v4();
        let key = key(tenant);
        let sealed = key.seal("ada@example.com").unwrap();
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains("ada"));
        let parsed = Sealed::parse(&sealed).unwrap();
        assert_eq!(parsed.key_id, key.id);
        assert_eq!(key.open(&parsed).unwrap(), "ada@example.com");
        let other_tenant = DataKey {
            tenant: Uuid::new_v4(),
            ..key
        };
        assert!(other_tenant.open(&parsed).is_err());
        assert!(self::key(tenant).open(&parsed).is_err());
    }

    #[test]
    fn a_wrapped_key_unwraps_only_under_its_master_tenant_and_id() {
        let vault = Vault::new(&MasterKey::generate());
        let master = vault.master().unwrap();
        let (tenant, id, key) = (Uuid::new_v4(), Uuid::new_v4(), MasterKey::generate());
        let wrapped = master.wrap(tenant, id, &key).unwrap();
        assert!(master.unwrap(tenant, id, &wrapped).is_ok());
        assert!(master.unwrap(Uuid::new_v4(), id, &wrapped).is_err());
        assert!(master.unwrap(tenant, Uuid::new_v4(), &wrapped).is_err());
        let other = Vault::new(&MasterKey::generate());
        assert!(other
            .master()
            .unwrap()
            .unwrap(tenant, id, &wrapped)
            .is_err());
    }

    #[test]
    fn conceal_puts_placeholders_for_sealed_fields_only() {
        let tenant = TenantId::from_uuid(Uuid::new_v4());
        let mut payload = serde_json::json!({
            "member_id": "x",
            "email": key(tenant.as_uuid()).seal("ada@example.com").unwrap(),
            "role": "admin",
        });
        conceal("MemberInvited", &mut payload);
        assert_eq!(payload["email"], "erased@erased.invalid");
        assert_eq!(payload["role"], "admin");
        let mut plain = serde_json::json!({ "email": "legacy@example.com" });
        conceal("MemberInvited", &mut plain);
        assert_eq!(plain["email"], "legacy@example.com");
    }

    #[test]
    fn master_keys_parse_from_hex() {
        let key = MasterKey::generate();
        assert_eq!(MasterKey::parse(&key.to_hex()).unwrap().0, key.0);
        assert!(MasterKey::parse("abcd").is_err());
        assert!(MasterKey::parse(&"zz".repeat(32)).is_err());
    }
}
