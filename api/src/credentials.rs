//! Credentials kept in memory between requests.
//!
//! Authentication looked every bearer key up in PostgreSQL: a round trip on every request.
//! The cache keeps what a lookup found (granted or revoked), and forgets it the moment
//! PostgreSQL announces a change: a trigger on `credentials` notifies `tenantry_credentials`
//! with the key's hash when a revoking transaction commits (migration 0012), and every server
//! listens. The rules that keep a revoked key from working are those of
//! [`NotifiedCache`]; the server that revokes forgets every credential before it answers.

use chrono::{DateTime, Utc};
use tenantry_eventstore::notified::NotifiedCache;
use uuid::Uuid;

/// The channel the trigger of migration 0012 notifies.
pub const CHANNEL: &str = "tenantry_credentials";

/// A row of `credentials`, as authentication reads it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Credential {
    pub tenant_id: Uuid,
    pub key_id: Uuid,
    pub kind: String,
    pub role: Option<String>,
    pub agent_instance_id: Option<Uuid>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Credentials by key hash.
pub type CredentialCache = NotifiedCache<String, Credential>;

/// An empty credential cache: an announced hash forgets that key, `*` (a truncation,
/// migration 0012) every key.
pub fn cache() -> CredentialCache {
    NotifiedCache::new(CHANNEL, |payload| {
        (payload != "*").then(|| payload.to_owned())
    })
}
