//! Appending events with optimistic concurrency.

use std::borrow::Borrow;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};
use tenantry_domain::TenantId;
use uuid::Uuid;

use crate::chain::{Canonical, GENESIS};
use crate::error::{db_error_code, UNIQUE_VIOLATION};
use crate::{Cursor, Metadata, RecordedEvent, StoreError};

/// An event about to be appended.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: i32,
    pub payload: serde_json::Value,
}

impl NewEvent {
    /// Splits an aggregate event (adjacently tagged `event_type`/`payload`) into its name and
    /// payload, with a fresh event id.
    ///
    /// # Errors
    /// [`StoreError::Decode`] when `event` does not serialize to that shape.
    pub fn from_domain<E: serde::Serialize>(
        event: &E,
        schema_version: i32,
    ) -> Result<Self, StoreError> {
        let value = serde_json::to_value(event).map_err(|e| StoreError::Decode(e.to_string()))?;
        let serde_json::Value::Object(mut map) = value else {
            return Err(StoreError::Decode(
                "an event must serialize to an object".into(),
            ));
        };
        let event_type = match map.remove(tenantry_domain::EVENT_TYPE_TAG) {
            Some(serde_json::Value::String(name)) => name,
            _ => {
                return Err(StoreError::Decode(
                    "an event needs a string event_type".into(),
                ))
            }
        };
        let payload = map
            .remove(tenantry_domain::EVENT_PAYLOAD_TAG)
            .unwrap_or(serde_json::Value::Object(Default::default()));
        Ok(Self {
            event_id: Uuid::now_v7(),
            event_type,
            schema_version,
            payload,
        })
    }
}

/// The version a writer expects the stream to be at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expected {
    /// The stream must not exist yet.
    NoStream,
    /// The stream must be at `version`, whose last event hashed to `hash` (as loaded).
    At { version: i64, hash: [u8; 32] },
}

impl Expected {
    /// What a writer that loaded `events` (the whole stream, in order) expects.
    ///
    /// # Errors
    /// [`StoreError::Decode`] when the last event's stored hash is not 32 bytes of hex.
    pub fn after(events: &[impl Borrow<RecordedEvent>]) -> Result<Self, StoreError> {
        let Some(last) = events.last().map(Borrow::borrow) else {
            return Ok(Expected::NoStream);
        };
        let mut hash = [0u8; 32];
        hex::decode_to_slice(&last.hash, &mut hash)
            .map_err(|e| StoreError::Decode(format!("stored hash: {e}")))?;
        Ok(Expected::At {
            version: last.version,
            hash,
        })
    }

    fn version(&self) -> i64 {
        match self {
            Expected::NoStream => 0,
            Expected::At { version, .. } => *version,
        }
    }
}

macro_rules! insert_events {
    () => {
        "INSERT INTO events (tenant_id, stream_type, stream_id, version, event_id, event_type, \
                             schema_version, payload, metadata, recorded_at, hash) \
         SELECT $1, $2, $3, e.version, e.event_id, e.event_type, e.schema_version, e.payload, \
                $11, $12, e.hash \
         FROM unnest($6::bigint[], $7::uuid[], $8::text[], $9::integer[], $10::jsonb[], \
                     $13::bytea[]) AS e(version, event_id, event_type, schema_version, payload, hash) \
         WHERE EXISTS (SELECT 1 FROM head) \
         RETURNING version, position, transaction_id::text::bigint AS transaction_id"
    };
}

/// Creates the stream head, or does nothing when the stream exists (then nothing is appended).
const APPEND_NEW_STREAM: &str = concat!(
    "WITH head AS (\
        INSERT INTO streams (tenant_id, stream_type, stream_id, version, hash) \
        VALUES ($1, $2, $3, $4, $5) \
        ON CONFLICT DO NOTHING RETURNING 1) ",
    insert_events!()
);

/// Moves the stream head only if it is still where the writer saw it (compare-and-set).
const APPEND_EXISTING_STREAM: &str = concat!(
    "WITH head AS (\
        UPDATE streams SET version = $4, hash = $5 \
        WHERE tenant_id = $1 AND stream_type = $2 AND stream_id = $3 \
          AND version = $14 AND hash = $15 \
        RETURNING 1) ",
    insert_events!()
);

/// Appends `events` to a stream in one statement, inside the caller's transaction.
///
/// The stream head moves by compare-and-set: if another writer appended since `expected`,
/// nothing is written and [`StoreError::Conflict`] is returned; a concurrent writer that has
/// not committed yet is waited for, then decides the outcome. Each event's hash chains to its
/// predecessor. Returns the recorded events, whose cursors are final once the transaction
/// commits.
///
/// # Errors
/// [`StoreError::Conflict`] on a stale `expected`, [`StoreError::DuplicateEvent`] when an event
/// id was used before, [`StoreError::Database`] otherwise.
pub async fn append(
    conn: &mut PgConnection,
    tenant: TenantId,
    stream_type: &str,
    stream_id: Uuid,
    expected: Expected,
    events: Vec<NewEvent>,
    metadata: &Metadata,
) -> Result<Vec<RecordedEvent>, StoreError> {
    append_at(
        conn,
        tenant,
        stream_type,
        stream_id,
        expected,
        events,
        metadata,
        Utc::now(),
    )
    .await
}

/// [`append`] with an explicit `recorded_at`: for importing history recorded elsewhere (and
/// for tests that need a past month). The feed order is still the order of commits.
///
/// # Errors
/// As [`append`].
#[allow(clippy::too_many_arguments)]
pub async fn append_at(
    conn: &mut PgConnection,
    tenant: TenantId,
    stream_type: &str,
    stream_id: Uuid,
    expected: Expected,
    events: Vec<NewEvent>,
    metadata: &Metadata,
    recorded_at: DateTime<Utc>,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let prepared = Prepared::new(
        tenant,
        stream_type,
        stream_id,
        expected,
        events,
        metadata,
        recorded_at,
    )?;
    append_prepared(conn, prepared).await
}

/// Appends a [`Prepared`] append inside the caller's transaction (see [`append`]).
///
/// # Errors
/// As [`append`].
#[tracing::instrument(skip_all, err(level = "debug"), fields(tenant_id = %prepared.tenant, stream_type = %prepared.stream_type, stream_id = %prepared.stream_id, events = prepared.events.len()))]
pub async fn append_prepared(
    conn: &mut PgConnection,
    prepared: Prepared,
) -> Result<Vec<RecordedEvent>, StoreError> {
    if prepared.events.is_empty() {
        return Ok(Vec::new());
    }
    let (head_version, head_hash) = prepared.head();
    let sql = match prepared.expected {
        Expected::NoStream => APPEND_NEW_STREAM,
        Expected::At { .. } => APPEND_EXISTING_STREAM,
    };
    let e = &prepared.events;
    let mut query = sqlx::query(sql)
        .bind(prepared.tenant.as_uuid())
        .bind(&prepared.stream_type)
        .bind(prepared.stream_id)
        .bind(head_version)
        .bind(head_hash.to_vec())
        .bind((prepared.first_version()..=head_version).collect::<Vec<_>>())
        .bind(e.iter().map(|e| e.event_id).collect::<Vec<_>>())
        .bind(e.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>())
        .bind(e.iter().map(|e| e.schema_version).collect::<Vec<_>>())
        .bind(e.iter().map(|e| e.payload.clone()).collect::<Vec<_>>())
        .bind(&prepared.metadata)
        .bind(prepared.recorded_at)
        .bind(
            prepared
                .hashes
                .iter()
                .map(|h| h.to_vec())
                .collect::<Vec<_>>(),
        );
    if let Expected::At { version, hash } = &prepared.expected {
        query = query.bind(*version).bind(hash.to_vec());
    }
    let rows = match query.fetch_all(&mut *conn).await {
        Ok(rows) => rows,
        Err(err) => return Err(prepared.failure(err)),
    };
    let mut cursors = Vec::with_capacity(rows.len());
    for row in &rows {
        cursors.push((
            row.try_get("version")?,
            Cursor::new(row.try_get("transaction_id")?, row.try_get("position")?),
        ));
    }
    prepared.recorded(cursors)
}

/// An append ready for the database: the events of one stream after the version its writer
/// expects, with their recording time fixed and their hash chain computed. Both the append
/// inside a transaction ([`append_prepared`]) and group commit
/// ([`crate::EventStore::append_grouped`]) write it.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub(crate) tenant: TenantId,
    pub(crate) stream_type: String,
    pub(crate) stream_id: Uuid,
    pub(crate) expected: Expected,
    pub(crate) events: Vec<NewEvent>,
    pub(crate) metadata: serde_json::Value,
    pub(crate) recorded_at: DateTime<Utc>,
    /// The hash of each event, chained from the expected head.
    pub(crate) hashes: Vec<[u8; 32]>,
}

impl Prepared {
    /// Fixes `recorded_at` and chains the events' hashes from `expected`.
    ///
    /// # Errors
    /// [`StoreError::Decode`] when the metadata does not serialize.
    pub fn new(
        tenant: TenantId,
        stream_type: &str,
        stream_id: Uuid,
        expected: Expected,
        events: Vec<NewEvent>,
        metadata: &Metadata,
        recorded_at: DateTime<Utc>,
    ) -> Result<Self, StoreError> {
        let metadata =
            serde_json::to_value(metadata).map_err(|e| StoreError::Decode(e.to_string()))?;
        // The database keeps microseconds; hash exactly what it will keep.
        let recorded_at: DateTime<Utc> =
            DateTime::from_timestamp_micros(recorded_at.timestamp_micros()).unwrap_or(recorded_at);
        let mut prev = match &expected {
            Expected::NoStream => GENESIS,
            Expected::At { hash, .. } => *hash,
        };
        let first_version = expected.version() + 1;
        let mut hashes = Vec::with_capacity(events.len());
        for (i, e) in events.iter().enumerate() {
            prev = Canonical {
                tenant_id: tenant.as_uuid(),
                stream_type,
                stream_id,
                version: first_version + i as i64,
                event_id: e.event_id,
                event_type: &e.event_type,
                schema_version: e.schema_version,
                payload: &e.payload,
                metadata: &metadata,
                recorded_at,
            }
            .hash(&prev);
            hashes.push(prev);
        }
        Ok(Self {
            tenant,
            stream_type: stream_type.to_owned(),
            stream_id,
            expected,
            events,
            metadata,
            recorded_at,
            hashes,
        })
    }

    /// How many events this append holds.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The stream, as the database keys it.
    pub(crate) fn stream(&self) -> (TenantId, &str, Uuid) {
        (self.tenant, &self.stream_type, self.stream_id)
    }

    pub(crate) fn first_version(&self) -> i64 {
        self.expected.version() + 1
    }

    /// The version and hash the stream head moves to.
    pub(crate) fn head(&self) -> (i64, [u8; 32]) {
        let version = self.expected.version() + self.events.len() as i64;
        let hash = match (&self.expected, self.hashes.last()) {
            (_, Some(hash)) => *hash,
            (Expected::At { hash, .. }, None) => *hash,
            (Expected::NoStream, None) => GENESIS,
        };
        (version, hash)
    }

    /// The error a writer sees when its stream moved.
    pub(crate) fn conflict(&self) -> StoreError {
        StoreError::Conflict {
            stream_type: self.stream_type.clone(),
            stream_id: self.stream_id,
            expected: self.expected.version(),
        }
    }

    /// What a failed write of this append means to its writer.
    pub(crate) fn failure(&self, err: sqlx::Error) -> StoreError {
        match db_error_code(&err) {
            Some((code, Some(constraint)))
                if code == UNIQUE_VIOLATION && constraint.contains("event_id") =>
            {
                let id = self.events.first().map(|e| e.event_id).unwrap_or_default();
                StoreError::DuplicateEvent(id)
            }
            Some((code, _)) if code == UNIQUE_VIOLATION => self.conflict(),
            _ => StoreError::Database(err),
        }
    }

    /// The recorded events, given the `(version, cursor)` the database gave each (in any
    /// order); none means the stream head did not move: a conflict.
    pub(crate) fn recorded(
        self,
        mut cursors: Vec<(i64, Cursor)>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if cursors.is_empty() {
            return Err(self.conflict());
        }
        if cursors.len() != self.events.len() {
            return Err(StoreError::Decode(format!(
                "{} events appended, {} recorded",
                self.events.len(),
                cursors.len()
            )));
        }
        cursors.sort_unstable();
        let Prepared {
            tenant,
            stream_type,
            stream_id,
            events,
            metadata,
            recorded_at,
            hashes,
            ..
        } = self;
        Ok(events
            .into_iter()
            .zip(cursors)
            .zip(hashes)
            .map(|((e, (version, cursor)), hash)| RecordedEvent {
                tenant_id: tenant.as_uuid(),
                stream_type: stream_type.clone(),
                stream_id,
                version,
                event_id: e.event_id,
                event_type: e.event_type,
                schema_version: e.schema_version,
                payload: e.payload,
                metadata: metadata.clone(),
                recorded_at,
                cursor,
                hash: hex::encode(hash),
            })
            .collect())
    }
}
