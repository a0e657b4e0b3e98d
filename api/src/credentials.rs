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

/// Recently presented keys that no credential has: a flood of one unknown key costs one
/// lookup a minute instead of one a request. A key's secret is random and shown only once
/// it is issued, so a key unknown now is not issued a minute later; the entry only saves
/// the round trip.
///
/// Bounded: at most [`UnknownKeys::CAPACITY`] hashes; when full, the expired ones go, and if
/// none has expired, all do (distinct unknown keys are limited per address anyway).
#[derive(Debug, Default)]
pub struct UnknownKeys(std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>);

impl UnknownKeys {
    pub const CAPACITY: usize = 10_000;
    /// How long an unknown key is remembered.
    pub const TTL: std::time::Duration = std::time::Duration::from_secs(60);

    /// Whether `hash` was looked up and not found within the last [`Self::TTL`].
    pub fn contains(&self, hash: &str) -> bool {
        self.0
            .lock()
            .ok()
            .and_then(|keys| keys.get(hash).copied())
            .is_some_and(|at| at.elapsed() < Self::TTL)
    }

    /// Remembers that no credential has `hash`.
    pub fn remember(&self, hash: &str) {
        let Ok(mut keys) = self.0.lock() else {
            return;
        };
        if keys.len() >= Self::CAPACITY && !keys.contains_key(hash) {
            keys.retain(|_, at| at.elapsed() < Self::TTL);
            if keys.len() >= Self::CAPACITY {
                keys.clear();
            }
        }
        keys.insert(hash.to_owned(), std::time::Instant::now());
    }

    pub fn len(&self) -> usize {
        self.0.lock().map(|keys| keys.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::UnknownKeys;

    #[test]
    fn unknown_keys_are_remembered_and_bounded() {
        let unknown = UnknownKeys::default();
        assert!(!unknown.contains("a"));
        unknown.remember("a");
        assert!(unknown.contains("a"));
        for i in 0..UnknownKeys::CAPACITY + 10 {
            unknown.remember(&i.to_string());
        }
        assert!(unknown.len() <= UnknownKeys::CAPACITY);
    }
}
