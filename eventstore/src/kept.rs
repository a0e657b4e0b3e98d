//! Streams kept in memory between commands, so that a conversation command usually decides
//! without reading anything (migration 0015 tells the rules).
//!
//! - A conversation stream is kept when it is read, extended when this server appends to it
//!   ([`KeptStreams::appended`]), and forgotten when it ends. Nothing announces its changes: a
//!   command decided from a stale copy fails its compare-and-set append (or is refused), and
//!   the command decides again from what is stored.
//! - Any other stream (organization, store, agent instance: a conversation's parents, which
//!   its commands only read) is kept when read and forgotten when PostgreSQL announces that
//!   its head moved, as [`NotifiedCache`] does for credentials; the server that moves one
//!   forgets every stream before it answers.
//!
//! Events are kept as stored, personal fields sealed: whoever needs one opens a copy, so an
//! erased customer's data is as unreadable here as in the table.

use std::sync::Arc;

use sqlx::PgPool;
use tenantry_domain::TenantId;
use tokio::sync::watch;
use uuid::Uuid;

use crate::notified::NotifiedCache;
use crate::read::StreamRef;
use crate::RecordedEvent;

/// A kept stream: its events in version order.
pub type Kept = Arc<[RecordedEvent]>;

/// `(tenant, stream type, stream id)`.
type StreamKey = (Uuid, String, Uuid);

/// Streams kept at most (an active conversation is a few kilobytes).
const CAPACITY: usize = 4096;

/// The stream type whose changes are never announced (see the module's rules).
const UNANNOUNCED: &str = "conversation";

/// The kept streams; cheap to clone (shared).
#[derive(Clone)]
pub struct KeptStreams(NotifiedCache<StreamKey, Kept>);

impl std::fmt::Debug for KeptStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeptStreams")
            .field("listening", &self.0.is_listening())
            .finish()
    }
}

impl Default for KeptStreams {
    fn default() -> Self {
        Self(NotifiedCache::with_capacity("tenantry_streams", CAPACITY))
    }
}

impl KeptStreams {
    /// True when a move of `stream_type`'s streams is announced (migration 0015), so that a
    /// server that moves one must forget what it keeps before it answers.
    pub fn announced(stream_type: &str) -> bool {
        stream_type != UNANNOUNCED
    }

    /// True while streams are kept ([`KeptStreams::listen`] hears changes).
    pub fn is_listening(&self) -> bool {
        self.0.is_listening()
    }

    /// Each of `wanted` as kept, `None` where it is not. A stream named by another's first
    /// event is found when that other stream is kept.
    pub fn get(&self, tenant: TenantId, wanted: &[StreamRef<'_>]) -> Vec<Option<Kept>> {
        let tenant = tenant.as_uuid();
        wanted
            .iter()
            .map(|stream| {
                let (stream_type, id) = match *stream {
                    StreamRef::Id(stream_type, id) => (stream_type, id),
                    StreamRef::NamedBy(stream_type, via_type, via_id, field) => {
                        let via = self.0.get(&(tenant, via_type.to_owned(), via_id))?;
                        let id = via.first()?.stored_text(field)?.parse().ok()?;
                        (stream_type, id)
                    }
                };
                self.0.get(&(tenant, stream_type.to_owned(), id))
            })
            .collect()
    }

    /// The epoch to pass to [`KeptStreams::keep`]: read it before the read.
    pub fn epoch(&self) -> u64 {
        self.0.epoch()
    }

    /// Keeps the streams a read that began at `epoch` found (those that exist), and hands
    /// them all back.
    pub fn keep(&self, streams: Vec<Vec<RecordedEvent>>, epoch: u64) -> Vec<Kept> {
        streams
            .into_iter()
            .map(|events| {
                let kept: Kept = events.into();
                if let Some(first) = kept.first() {
                    self.0.keep(key_of(first), kept.clone(), epoch);
                }
                kept
            })
            .collect()
    }

    /// `recorded` was just appended to its stream at `expected_version` (0: a new stream):
    /// a kept unannounced stream at that version moves on with it, and a new one is kept.
    pub fn appended(&self, expected_version: i64, recorded: &[RecordedEvent]) {
        let Some(first) = recorded.first() else {
            return;
        };
        if Self::announced(&first.stream_type) {
            return;
        }
        self.0.update(key_of(first), |kept| {
            let before: &[RecordedEvent] = match kept {
                Some(kept) if kept.len() as i64 == expected_version => kept,
                None if expected_version == 0 => &[],
                // Not kept at the version the append moved from: whatever is kept is stale.
                _ => return None,
            };
            Some(before.iter().chain(recorded).cloned().collect())
        });
    }

    /// Forgets one stream.
    pub fn forget(&self, tenant: TenantId, stream_type: &str, id: Uuid) {
        self.0
            .forget(&(tenant.as_uuid(), stream_type.to_owned(), id));
    }

    /// Forgets every stream (this server moved an announced one).
    pub fn forget_all(&self) {
        self.0.forget_all();
    }

    /// Listens for announced moves until `shutdown` turns true; streams are kept only while
    /// this runs.
    pub async fn listen(self, pool: PgPool, shutdown: watch::Receiver<bool>) {
        self.0.listen(pool, parse_key, shutdown).await;
    }
}

fn key_of(event: &RecordedEvent) -> StreamKey {
    (event.tenant_id, event.stream_type.clone(), event.stream_id)
}

/// `<tenant>:<type>:<id>` (migration 0015); `*` or anything else forgets everything.
fn parse_key(payload: &str) -> Option<StreamKey> {
    let (tenant, rest) = payload.split_once(':')?;
    let (stream_type, id) = rest.rsplit_once(':')?;
    Some((
        tenant.parse().ok()?,
        stream_type.to_owned(),
        id.parse().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_name_one_stream_or_all() {
        let tenant = Uuid::now_v7();
        let id = Uuid::now_v7();
        assert_eq!(
            parse_key(&format!("{tenant}:agent_instance:{id}")),
            Some((tenant, "agent_instance".to_owned(), id))
        );
        assert_eq!(parse_key("*"), None);
        assert_eq!(parse_key(&format!("{tenant}:store:nonsense")), None);
    }
}
