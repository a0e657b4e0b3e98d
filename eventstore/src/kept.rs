//! Streams kept in memory between commands, so that a conversation command usually decides
//! without reading anything (migration 0015 tells the rules).
//!
//! Which stream types are kept is the application's [`KeepPolicy`]:
//! - A *guarded* stream (a conversation) is kept when it is read, extended when this server
//!   appends to it ([`KeptStreams::appended`]), and forgotten when it ends. Nothing announces
//!   its changes: a command decided from a stale copy fails its compare-and-set append (or is
//!   refused), and the command decides again from what is stored.
//! - An *announced* stream (an organization, store or agent instance: a conversation's
//!   parents, which its commands only read) is kept when read and forgotten when PostgreSQL
//!   announces that its head moved, as [`NotifiedCache`] does for credentials; the server that
//!   moves one forgets every stream of that tenant before it answers.
//! - A stream of any other type, or longer than 32 KiB, is never kept.
//!
//! Events are kept as stored, personal fields sealed: whoever needs one opens a copy, so an
//! erased customer's data is as unreadable here as in the table.

use std::borrow::Borrow;
use std::sync::Arc;

use tenantry_domain::TenantId;
use uuid::Uuid;

use crate::notified::{NotifiedCache, Subscriber};
use crate::read::StreamRef;
use crate::{Expected, RecordedEvent};

/// A kept stream: its events in version order, each shared (a copy extended by an append
/// shares the events it had).
pub type Kept = Arc<[Arc<RecordedEvent>]>;

/// `(tenant, stream type, stream id)`.
type StreamKey = (Uuid, String, Uuid);

/// Streams kept at most.
const CAPACITY: usize = 2048;

/// The largest stream kept, in (estimated) bytes of memory: with [`CAPACITY`], at most
/// 64 MiB. A longer stream (a conversation of many long messages, say) is read each time.
const MAX_STREAM_BYTES: usize = 32 * 1024;

/// Which stream types are kept: the application's to say, since only it knows which of its
/// types nothing but their own compare-and-set appends move, and which of them the trigger of
/// migration 0015 announces. The default keeps nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeepPolicy {
    /// Kept without announcements: only their own appends move them (see the module's rules).
    pub guarded: &'static [&'static str],
    /// Kept until PostgreSQL announces a move (the types migration 0015's trigger names).
    pub announced: &'static [&'static str],
}

/// The kept streams; cheap to clone (shared).
#[derive(Clone)]
pub struct KeptStreams(NotifiedCache<StreamKey, Kept>, KeepPolicy);

impl std::fmt::Debug for KeptStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeptStreams")
            .field("listening", &self.0.is_listening())
            .finish()
    }
}

impl Default for KeptStreams {
    /// Keeps nothing.
    fn default() -> Self {
        Self::new(KeepPolicy::default())
    }
}

impl KeptStreams {
    /// Keeps the streams `policy` names.
    pub fn new(policy: KeepPolicy) -> Self {
        Self(
            NotifiedCache::with_capacity("tenantry_streams", parse_key, CAPACITY),
            policy,
        )
    }

    /// True when a move of `stream_type`'s streams is announced (migration 0015), so that a
    /// server that moves one must forget what it keeps before it answers.
    pub fn announced(&self, stream_type: &str) -> bool {
        self.1.announced.contains(&stream_type)
    }

    /// True when `stream_type` is guarded by its own appends.
    fn guarded(&self, stream_type: &str) -> bool {
        self.1.guarded.contains(&stream_type)
    }

    /// True when streams of this type may be kept: announced, or guarded by their appends.
    fn keepable(&self, events: &[impl Borrow<RecordedEvent>]) -> bool {
        events.first().is_some_and(|first| {
            let stream_type = &first.borrow().stream_type;
            self.guarded(stream_type) || self.announced(stream_type)
        }) && events
            .iter()
            .map(|e| estimated_size(e.borrow()))
            .sum::<usize>()
            <= MAX_STREAM_BYTES
    }

    /// True while streams are kept (the server's listener hears announced moves).
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

    /// Keeps the streams a read that began at `epoch` found (those that exist and may be
    /// kept), and hands them all back.
    pub fn keep(&self, streams: Vec<Vec<RecordedEvent>>, epoch: u64) -> Vec<Kept> {
        streams
            .into_iter()
            .map(|events| {
                let kept: Kept = events.into_iter().map(Arc::new).collect();
                if self.keepable(&kept) {
                    self.0.keep(key_of(&kept[0]), kept.clone(), epoch);
                }
                kept
            })
            .collect()
    }

    /// `recorded` was just appended to its stream after `expected` (its head before): a kept
    /// guarded stream at that head moves on with it, and a new one is kept.
    pub fn appended(&self, expected: &Expected, recorded: &[RecordedEvent]) {
        let Some(first) = recorded.first() else {
            return;
        };
        if !self.guarded(&first.stream_type) {
            return;
        }
        let key = key_of(first);
        // Built outside the cache's lock, then swapped in only if the copy it extends is
        // still the one kept.
        let before = self.0.get(&key);
        let at_head = match (&before, expected) {
            (None, Expected::NoStream) => true,
            (Some(kept), Expected::At { .. }) => {
                Expected::after(kept).ok().as_ref() == Some(expected)
            }
            _ => false,
        };
        let next: Option<Kept> = at_head
            .then(|| {
                let events: Vec<Arc<RecordedEvent>> = before
                    .iter()
                    .flat_map(|kept| kept.iter().cloned())
                    .chain(recorded.iter().cloned().map(Arc::new))
                    .collect();
                self.keepable(&events).then(|| events.into())
            })
            .flatten();
        self.0.update(key, |now| {
            let unchanged = match (now, &before) {
                (None, None) => true,
                (Some(now), Some(before)) => Arc::ptr_eq(now, before),
                _ => false,
            };
            // Not kept at the head the append moved from (or too long now): whatever is kept
            // is stale.
            if unchanged {
                next
            } else {
                None
            }
        });
    }

    /// Forgets one stream.
    pub fn forget(&self, tenant: TenantId, stream_type: &str, id: Uuid) {
        self.0
            .forget(&(tenant.as_uuid(), stream_type.to_owned(), id));
    }

    /// Forgets every stream of `tenant` (this server moved an announced one of its).
    pub fn forget_tenant(&self, tenant: TenantId) {
        let tenant = tenant.as_uuid();
        self.0.forget_if(|(of, _, _)| *of == tenant);
    }

    /// The kept streams, for the server's listener ([`crate::notified::listen`]): streams are
    /// kept only while it hears announced moves.
    pub fn subscriber(&self) -> Box<dyn Subscriber> {
        Box::new(self.0.clone())
    }
}

/// Roughly what `event` takes in memory.
fn estimated_size(event: &RecordedEvent) -> usize {
    fn value(v: &serde_json::Value) -> usize {
        32 + match v {
            serde_json::Value::String(s) => s.len(),
            serde_json::Value::Array(items) => items.iter().map(value).sum(),
            serde_json::Value::Object(fields) => {
                fields.iter().map(|(k, v)| 32 + k.len() + value(v)).sum()
            }
            _ => 0,
        }
    }
    std::mem::size_of::<RecordedEvent>()
        + event.stream_type.len()
        + event.event_type.len()
        + event.hash.len()
        + value(&event.payload)
        + value(&event.metadata)
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

    fn event(stream_type: &str, text: &str) -> RecordedEvent {
        RecordedEvent {
            tenant_id: Uuid::now_v7(),
            stream_type: stream_type.into(),
            stream_id: Uuid::now_v7(),
            version: 1,
            event_id: Uuid::now_v7(),
            event_type: "MessageAppended".into(),
            schema_version: 1,
            payload: serde_json::json!({ "content": text }),
            metadata: serde_json::json!({}),
            recorded_at: chrono::Utc::now(),
            cursor: crate::Cursor::new(1, 1),
            hash: "00".repeat(32),
        }
    }

    #[test]
    fn only_short_streams_of_kept_types_are_kept() {
        let kept = KeptStreams::new(KeepPolicy {
            guarded: &["conversation"],
            announced: &["agent_instance"],
        });
        assert!(kept.keepable(&[event("conversation", "hello")]));
        assert!(kept.keepable(&[event("agent_instance", "hello")]));
        // Nothing would announce its moves, and no append of a command guards it.
        assert!(!kept.keepable(&[event("bench", "hello")]));
        let long = "x".repeat(MAX_STREAM_BYTES);
        assert!(!kept.keepable(&[event("conversation", &long)]));
        assert!(!kept.keepable(&[] as &[RecordedEvent]));
        // The default keeps nothing.
        assert!(!KeptStreams::default().keepable(&[event("conversation", "hello")]));
    }
}
