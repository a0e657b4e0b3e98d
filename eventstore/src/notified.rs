//! Rows kept in memory between requests, forgotten when PostgreSQL announces a change.
//!
//! A trigger on the table notifies a channel when a changing transaction commits (with the
//! changed row's key, or `*` for all of them), and every server listens. The API's credentials
//! (migration 0012) and the vault's data keys (migration 0014) are kept this way.
//!
//! Safety rules, so that nothing revoked or erased is believed for long:
//! - Nothing is kept unless the listening connection is up. When it drops, everything is
//!   forgotten and lookups go to PostgreSQL until a new one listens.
//! - A lookup keeps its answer only if no change was heard while it ran (an epoch counts the
//!   changes), so an answer read just before a change is never kept after it.
//! - The server that makes a change forgets at once ([`NotifiedCache::forget_all`]), before it
//!   answers; the others within the notification's delivery (milliseconds).
//! - An entry lives at most [`TTL`], whatever happens.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::watch;

/// The longest an entry is believed.
pub const TTL: Duration = Duration::from_secs(60);
/// Entries kept at most, unless the cache is made smaller; past it the older half is
/// forgotten.
const CAPACITY: usize = 100_000;

/// The cache; cheap to clone (shared).
pub struct NotifiedCache<K, V>(Arc<Inner<K, V>>);

struct Inner<K, V> {
    /// The channel the table's trigger notifies.
    channel: &'static str,
    capacity: usize,
    entries: Mutex<HashMap<K, (V, Instant)>>,
    /// Counts the changes heard of (and every start and loss of listening).
    epoch: AtomicU64,
    listening: AtomicBool,
}

impl<K, V> Clone for NotifiedCache<K, V> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<K: Eq + Hash, V: Clone> NotifiedCache<K, V> {
    /// An empty cache of the rows whose changes are announced on `channel`. It keeps nothing
    /// until [`NotifiedCache::listen`] runs.
    pub fn new(channel: &'static str) -> Self {
        Self::with_capacity(channel, CAPACITY)
    }

    /// As [`NotifiedCache::new`], keeping at most `capacity` entries.
    pub fn with_capacity(channel: &'static str, capacity: usize) -> Self {
        Self(Arc::new(Inner {
            channel,
            capacity,
            entries: Mutex::new(HashMap::new()),
            epoch: AtomicU64::new(0),
            listening: AtomicBool::new(false),
        }))
    }

    /// The entry of `key`, if it is kept and young enough.
    pub fn get(&self, key: &K) -> Option<V> {
        if !self.0.listening.load(Ordering::Acquire) {
            return None;
        }
        let entries = self.0.entries.lock().ok()?;
        let (value, kept_at) = entries.get(key)?;
        (kept_at.elapsed() < TTL).then(|| value.clone())
    }

    /// True while changes are heard, so that entries are kept.
    pub fn is_listening(&self) -> bool {
        self.0.listening.load(Ordering::Acquire)
    }

    /// The epoch to pass to [`NotifiedCache::keep`]: read it before the lookup.
    pub fn epoch(&self) -> u64 {
        self.0.epoch.load(Ordering::Acquire)
    }

    /// Keeps what a lookup that began at `epoch` found, unless a change was heard since (or
    /// nobody listens).
    pub fn keep(&self, key: K, value: V, epoch: u64) {
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
        self.insert(&mut entries, key, value);
    }

    /// Replaces the entry of `key` with what `next` makes of it (given the entry, if kept and
    /// young enough); `None` forgets it. For a change this server made and knows all of, which
    /// no announcement covers (an append to a stream that is never announced, say): no epoch
    /// is checked.
    pub(crate) fn update(&self, key: K, next: impl FnOnce(Option<&V>) -> Option<V>) {
        if !self.0.listening.load(Ordering::Acquire) {
            return;
        }
        let Ok(mut entries) = self.0.entries.lock() else {
            return;
        };
        let current = entries
            .get(&key)
            .filter(|(_, kept_at)| kept_at.elapsed() < TTL)
            .map(|(value, _)| value);
        match next(current) {
            Some(value) => self.insert(&mut entries, key, value),
            None => {
                entries.remove(&key);
            }
        }
    }

    fn insert(&self, entries: &mut HashMap<K, (V, Instant)>, key: K, value: V) {
        if entries.len() >= self.0.capacity && !entries.contains_key(&key) {
            // Room for the next half of the capacity: the older half goes (by when each
            // entry was kept), the expired ones first.
            let mut kept_at: Vec<Instant> = entries.values().map(|(_, at)| *at).collect();
            let middle = kept_at.len() / 2;
            let (_, cutoff, _) = kept_at.select_nth_unstable(middle);
            let cutoff = *cutoff;
            entries.retain(|_, (_, at)| *at >= cutoff);
        }
        entries.insert(key, (value, Instant::now()));
    }

    /// Forgets one entry.
    pub fn forget(&self, key: &K) {
        if let Ok(mut entries) = self.0.entries.lock() {
            self.0.epoch.fetch_add(1, Ordering::AcqRel);
            entries.remove(key);
        }
    }

    /// Forgets every entry whose key `matches`.
    pub fn forget_if(&self, matches: impl Fn(&K) -> bool) {
        if let Ok(mut entries) = self.0.entries.lock() {
            self.0.epoch.fetch_add(1, Ordering::AcqRel);
            entries.retain(|key, _| !matches(key));
        }
    }

    /// Forgets every entry (after this server changed one, or lost its listener).
    pub fn forget_all(&self) {
        if let Ok(mut entries) = self.0.entries.lock() {
            self.0.epoch.fetch_add(1, Ordering::AcqRel);
            entries.clear();
        }
    }

    /// Listens for changes until `shutdown` turns true; the cache keeps entries only while
    /// this runs and its connection is up. A notification's payload names the entry to
    /// forget (`key_of`), or, when `key_of` gives `None` (`*`: the table was truncated, say),
    /// every entry is forgotten.
    pub async fn listen(
        self,
        pool: PgPool,
        key_of: fn(&str) -> Option<K>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        while !*shutdown.borrow() {
            if let Err(err) = self.listen_once(&pool, key_of, &mut shutdown).await {
                tracing::warn!(channel = self.0.channel, error = %err,
                    "changes cannot be heard; nothing is kept in memory until they can");
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
        key_of: fn(&str) -> Option<K>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), sqlx::Error> {
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(self.0.channel).await?;
        // From here every change is heard; what was kept before may be stale.
        self.0.listening.store(true, Ordering::Release);
        self.forget_all();
        loop {
            tokio::select! {
                heard = listener.try_recv() => match heard? {
                    Some(notification) => match key_of(notification.payload()) {
                        Some(key) => self.forget(&key),
                        None => self.forget_all(),
                    },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_cache_forgets_its_older_half() {
        let cache = NotifiedCache::<u32, u32>::with_capacity("test", 4);
        // As if a listener were up.
        cache.0.listening.store(true, Ordering::Release);
        for key in 0..5 {
            cache.keep(key, key * 10, cache.epoch());
            std::thread::sleep(Duration::from_millis(1));
        }
        let found: Vec<Option<u32>> = (0..5).map(|key| cache.get(&key)).collect();
        assert_eq!(found, [None, None, Some(20), Some(30), Some(40)]);
    }
}
