//! The per-stream hash chain: `hash = SHA-256(prev_hash ‖ canonical event)`.
//!
//! The canonical event is the compact JSON array of the fields that make the event, objects
//! with sorted keys (serde_json's map), so the same event always hashes the same whether it is
//! hashed before insertion or after being read back. Event payloads hold strings, booleans
//! and integers only (money is a decimal string), which jsonb returns unchanged.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::RecordedEvent;

/// The `prev_hash` of a stream's first event.
pub const GENESIS: [u8; 32] = [0; 32];

/// The parts of an event that its hash covers.
pub struct Canonical<'a> {
    pub tenant_id: Uuid,
    pub stream_type: &'a str,
    pub stream_id: Uuid,
    pub version: i64,
    pub event_id: Uuid,
    pub event_type: &'a str,
    pub schema_version: i32,
    pub payload: &'a serde_json::Value,
    pub metadata: &'a serde_json::Value,
    pub recorded_at: DateTime<Utc>,
}

impl Canonical<'_> {
    /// The chained hash of this event after `prev`.
    pub fn hash(&self, prev: &[u8; 32]) -> [u8; 32] {
        #[derive(Serialize)]
        struct Form<'a>(
            &'a Uuid,
            &'a str,
            &'a Uuid,
            i64,
            &'a Uuid,
            &'a str,
            i32,
            &'a serde_json::Value,
            &'a serde_json::Value,
            String,
        );
        let form = Form(
            &self.tenant_id,
            self.stream_type,
            &self.stream_id,
            self.version,
            &self.event_id,
            self.event_type,
            self.schema_version,
            self.payload,
            self.metadata,
            self.recorded_at
                .to_rfc3339_opts(SecondsFormat::Micros, true),
        );
        let bytes = serde_json::to_vec(&form).expect("a canonical event always serializes");
        let mut hasher = Sha256::new();
        hasher.update(prev);
        hasher.update(&bytes);
        hasher.finalize().into()
    }
}

impl<'a> From<&'a RecordedEvent> for Canonical<'a> {
    fn from(e: &'a RecordedEvent) -> Self {
        Canonical {
            tenant_id: e.tenant_id,
            stream_type: &e.stream_type,
            stream_id: e.stream_id,
            version: e.version,
            event_id: e.event_id,
            event_type: &e.event_type,
            schema_version: e.schema_version,
            payload: &e.payload,
            metadata: &e.metadata,
            recorded_at: e.recorded_at,
        }
    }
}

/// What verification found in one stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct StreamReport {
    pub stream_type: String,
    pub stream_id: Uuid,
    pub events: i64,
    /// `None` when the stream verified; otherwise the first problem found.
    pub broken: Option<Broken>,
}

/// The first event at which a stream's chain breaks, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Broken {
    /// The version at which the problem shows (the expected one for a missing event).
    pub version: i64,
    pub event_id: Option<Uuid>,
    pub reason: String,
}

/// Checks one stream's events (in version order) against its recorded head.
///
/// Catches an edited event (its hash or a later one no longer matches), a removed event (a
/// version gap, or a head that is ahead of the last event), and reordered events (versions
/// out of sequence or hashes that no longer chain).
pub fn verify_stream(events: &[RecordedEvent], head: Option<(i64, &[u8])>) -> Option<Broken> {
    let mut prev = GENESIS;
    for (i, event) in events.iter().enumerate() {
        let expected_version = i as i64 + 1;
        let broken = |reason: String| {
            Some(Broken {
                version: expected_version,
                event_id: Some(event.event_id),
                reason,
            })
        };
        if event.version != expected_version {
            return broken(format!(
                "expected version {expected_version}, found {} (an event is missing or out of order)",
                event.version
            ));
        }
        let computed = Canonical::from(event).hash(&prev);
        if hex::encode(computed) != event.hash {
            return broken("hash does not match the event's content and its predecessor".into());
        }
        prev = computed;
    }
    let last = events.len() as i64;
    match head {
        Some((version, hash)) if version != last || hash != prev => Some(Broken {
            version: version.max(last),
            event_id: None,
            reason: format!(
                "the stream head (version {version}) does not match the end of the chain (version {last})"
            ),
        }),
        None if last > 0 => Some(Broken {
            version: last,
            event_id: None,
            reason: "events exist for a stream with no recorded head".into(),
        }),
        _ => None,
    }
}
