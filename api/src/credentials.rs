//! Credentials kept in memory between requests.
//!
//! Authentication looked every bearer key up in PostgreSQL: a round trip on every request.
//! The cache keeps what a lookup found (granted or revoked), and forgets it the moment
//! PostgreSQL announces a change: a trigger on `credentials` notifies `tenantry_credentials`
//! with the key's hash when a revoking transaction commits (migration 0012), and every server
//! listens.
//!
//! Safety rules, so that a revoked key never keeps working:
//! - Nothing is kept unless the listening connection is up. When it drops, everything is
//!   forgotten and lookups go to PostgreSQL until a new one listens.
//! - A lookup keeps its answer only if no change was heard while it ran (an epoch counts the
//!   changes), so an answer read just before a revocation is never kept after it.
//! - The server that revokes forgets at once ([`CredentialCache::forget_all`]), before it
//!   answers; the others within the notification's delivery (milliseconds).
//! - An entry lives at most [`TTL`], whatever happens.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::watch;
use uuid::Uuid;

/// The channel the trigger of migration 0012 notifies.
pub const CHANNEL: &str = "tenantry_credentials";
/// The longest an entry is believed.
pub const TTL: Duration = Duration::from_secs(60);
/// Entries kept at most; past it the cache starts again empty.
const CAPACITY: usize = 100_000;

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

/// The cache; cheap to clone (shared).
#[derive(Clone, Default)]
pub struct CredentialCache(Arc<Inner>);

#[derive(Default)]
struct Inner {
    entries: Mutex<HashMap<String, (Credential, Instant)>>,
    /// Counts the changes heard of (and every start and loss of listening).
    epoch: AtomicU64,
    listening: AtomicBool,
}

impl CredentialCache {
    /// The credential of `hash`, if it is kept and young enough.
    pub fn get(&self, hash: &str) -> Option<Credential> {
        if !self.0.listening.load(Ordering::Acquire) {
            return None;
        }
        let entries = self.0.entries.lock().ok()?;
        let (credential, kept_at) = entries.get(hash)?;
        (kept_at.elapsed() < TTL).then(|| credential.clone())
    }

    /// The epoch to pass to [`CredentialCache::keep`]: read it before the lookup.
    pub fn epoch(&self) -> u64 {
        self.0.epoch.load(Ordering::Acquire)
    }

    /// Keeps what a lookup that began at `epoch` found, unless a change was heard since (or
    /// nobody listens).
    pub fn keep(&self, hash: &str, credential: Credential, epoch: u64) {
        if !self.0.listening.load(Ordering::Acquire) {
            return;
        }
        let Ok(mut entries) = self.0.entries.lock() else {
            return;
        };
        // Checked under the lock: `forget` bumps the epoch under it too.
        if self.0.epoch.load(Ordering::Acquire) != epoch {
            return;
        }
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(hash.to_owned(), (credential, Instant::now()));
    }

    /// Forgets one credential.
    pub fn forget(&self, hash: &str) {
        if let Ok(mut entries) = self.0.entries.lock() {
            self.0.epoch.fetch_add(1, Ordering::AcqRel);
            entries.remove(hash);
        }
    }

    /// Forgets every credential (after this server revoked one, or lost its listener).
    pub fn forget_all(&self) {
        if let Ok(mut entries) = self.0.entries.lock() {
            self.0.epoch.fetch_add(1, Ordering::AcqRel);
            entries.clear();
        }
    }

    /// Listens for changes until `shutdown` turns true; the cache keeps entries only while
    /// this runs and its connection is up.
    pub async fn listen(self, pool: PgPool, mut shutdown: watch::Receiver<bool>) {
        while !*shutdown.borrow() {
            match self.listen_once(&pool, &mut shutdown).await {
                Ok(()) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "credential changes cannot be heard; keys are looked up on every request")
                }
            }
            self.stop_keeping();
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                changed = shutdown.changed() => if changed.is_err() {
                    break;
                },
            }
        }
        self.stop_keeping();
    }

    /// One listening connection, until it drops (or shutdown).
    async fn listen_once(
        &self,
        pool: &PgPool,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), sqlx::Error> {
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(CHANNEL).await?;
        // From here every change is heard; what was kept before may be stale.
        self.0.listening.store(true, Ordering::Release);
        self.forget_all();
        loop {
            tokio::select! {
                heard = listener.try_recv() => match heard? {
                    // `*`: the table was truncated (migration 0012).
                    Some(notification) if notification.payload() == "*" => self.forget_all(),
                    Some(notification) => self.forget(notification.payload()),
                    // The connection dropped: what changed meanwhile was not heard.
                    None => return Ok(()),
                },
                _ = shutdown.changed() => return Ok(()),
            }
        }
    }

    fn stop_keeping(&self) {
        self.0.listening.store(false, Ordering::Release);
        self.forget_all();
    }
}
