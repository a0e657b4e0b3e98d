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
//!
//! A server listens for all its caches on one connection ([`listen`]).
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
    /// The entry a notification's payload names; `None` (`*`: the table was truncated, say)
    /// for every entry.
    key_of: fn(&str) -> Option<K>,
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
    /// An empty cache of the rows whose changes are announced on `channel`, each naming the
    /// entry to forget (`key_of`; `None` forgets every entry). It keeps nothing until it is
    /// listened for ([`listen`]).
    pub fn new(channel: &'static str, key_of: fn(&str) -> Option<K>) -> Self {
        Self::with_capacity(channel, key_of, CAPACITY)
    }

    /// As [`NotifiedCache::new`], keeping at most `capacity` entries.
    pub fn with_capacity(
        channel: &'static str,
        key_of: fn(&str) -> Option<K>,
        capacity: usize,
    ) -> Self {
        Self(Arc::new(Inner {
            channel,
            key_of,
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
        young(entries.get(key)).cloned()
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
        match next(young(entries.get(&key))) {
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
}

/// The value of a kept entry, if it is young enough to be believed.
fn young<V>(entry: Option<&(V, Instant)>) -> Option<&V> {
    entry
        .filter(|(_, kept_at)| kept_at.elapsed() < TTL)
        .map(|(value, _)| value)
}

/// A cache that forgets what announcements name ([`listen`]).
pub trait Subscriber: Send + Sync {
    /// The channel its table's trigger notifies.
    fn channel(&self) -> &'static str;
    /// A notification's payload was heard on its channel.
    fn heard(&self, payload: &str);
    /// Changes are heard from now on (`true`), or no longer (`false`): either way, what was
    /// kept may be stale, and is forgotten.
    fn listening(&self, on: bool);
}

impl<K, V> Subscriber for NotifiedCache<K, V>
where
    K: Eq + Hash + Send + Sync,
    V: Clone + Send + Sync,
{
    fn channel(&self) -> &'static str {
        self.0.channel
    }

    fn heard(&self, payload: &str) {
        match (self.0.key_of)(payload) {
            Some(key) => self.forget(&key),
            None => self.forget_all(),
        }
    }

    fn listening(&self, on: bool) {
        self.0.listening.store(on, Ordering::Release);
        self.forget_all();
    }
}

/// Listens on one connection for the changes every one of `caches` is announced on, until
/// `shutdown` turns true; each keeps entries only while this runs and its connection is up.
pub async fn listen(
    pool: PgPool,
    caches: Vec<Box<dyn Subscriber>>,
    mut shutdown: watch::Receiver<bool>,
) {
    while !*shutdown.borrow() {
        if let Err(err) = listen_once(&pool, &caches, &mut shutdown).await {
            let channels: Vec<&str> = caches.iter().map(|cache| cache.channel()).collect();
            tracing::warn!(?channels, error = %err,
                "changes cannot be heard; nothing is kept in memory until they can");
        }
        caches.iter().for_each(|cache| cache.listening(false));
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            changed = shutdown.changed() => if changed.is_err() {
                break;
            },
        }
    }
    caches.iter().for_each(|cache| cache.listening(false));
}

/// One listening connection, until it drops (or shutdown).
async fn listen_once(
    pool: &PgPool,
    caches: &[Box<dyn Subscriber>],
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener
        .listen_all(caches.iter().map(|cache| cache.channel()))
        .await?;
    // From here every change is heard; what was kept before may be stale.
    caches.iter().for_each(|cache| cache.listening(true));
    loop {
        tokio::select! {
            heard = listener.try_recv() => match heard? {
                Some(notification) => caches
                    .iter()
                    .filter(|cache| cache.channel() == notification.channel())
                    .for_each(|cache| cache.heard(notification.payload())),
                // The connection dropped: what changed meanwhile was not heard.
                None => return Ok(()),
            },
            _ = shutdown.changed() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_cache_forgets_its_older_half() {
        let cache = NotifiedCache::<u32, u32>::with_capacity("test", |_| None, 4);
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
