//! Events as recorded, and the metadata every event carries.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgRow;
use sqlx::Row;
use uuid::Uuid;

use crate::{Cursor, StoreError};

/// Who and what caused an event: kept with it in `metadata`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// `admin`, `key:<key id>`, `system:<component>` …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// One event as the store holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
// The name the API's history gives it.
#[schemars(rename = "HistoryEvent")]
pub struct RecordedEvent {
    pub tenant_id: Uuid,
    pub stream_type: String,
    pub stream_id: Uuid,
    pub version: i64,
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: i32,
    pub payload: serde_json::Value,
    pub metadata: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
    pub cursor: Cursor,
    /// Hex SHA-256 of the previous event's hash and this event's canonical form.
    pub hash: String,
}

/// The columns every read selects, in the order [`RecordedEvent::from_row`] expects.
pub(crate) const EVENT_COLUMNS: &str = "tenant_id, stream_type, stream_id, version, event_id, \
     event_type, schema_version, payload, metadata, recorded_at, position, \
     transaction_id::text::bigint AS transaction_id, hash";

impl RecordedEvent {
    pub(crate) fn from_row(row: &PgRow) -> Result<Self, StoreError> {
        let hash: Vec<u8> = row.try_get("hash")?;
        Ok(Self {
            tenant_id: row.try_get("tenant_id")?,
            stream_type: row.try_get("stream_type")?,
            stream_id: row.try_get("stream_id")?,
            version: row.try_get("version")?,
            event_id: row.try_get("event_id")?,
            event_type: row.try_get("event_type")?,
            schema_version: row.try_get("schema_version")?,
            payload: row.try_get("payload")?,
            metadata: row.try_get("metadata")?,
            recorded_at: row.try_get("recorded_at")?,
            cursor: Cursor::new(row.try_get("transaction_id")?, row.try_get("position")?),
            hash: hex::encode(hash),
        })
    }

    /// A text field of the payload as stored: for a personal field, the sealed value. Read
    /// models keep personal data sealed, so erasing a key erases their copies too; whoever
    /// shows it opens it ([`crate::Vault::open`]).
    pub fn stored_text(&self, field: &str) -> Option<&str> {
        self.payload.get(field)?.as_str()
    }

    /// Rebuilds the aggregate event enum `E` (adjacently tagged `event_type`/`payload`),
    /// upcasting a payload stored under an older schema version first. Personal fields still
    /// sealed read as their placeholders (open them first with [`crate::Vault::reveal`]).
    ///
    /// # Errors
    /// [`StoreError::Decode`] when the payload does not fit `E`.
    pub fn decode<E: serde::de::DeserializeOwned>(&self) -> Result<E, StoreError> {
        // Most events decode straight from the stored payload; only one that holds sealed
        // personal data or an older schema is rewritten (on a copy) first.
        let rewritten = (crate::vault::holds_sealed(&self.event_type, &self.payload)
            || tenantry_domain::upcast::is_outdated(
                &self.stream_type,
                &self.event_type,
                self.schema_version,
            ))
        .then(|| {
            let mut payload = self.payload.clone();
            crate::vault::conceal(&self.event_type, &mut payload);
            tenantry_domain::upcast::upcast(
                &self.stream_type,
                &self.event_type,
                self.schema_version,
                payload,
            )
        });
        let payload = rewritten.as_ref().unwrap_or(&self.payload);
        let event_type = serde_json::Value::String(self.event_type.clone());
        let tagged = serde::de::value::MapDeserializer::new(
            [
                (tenantry_domain::EVENT_TYPE_TAG, &event_type),
                (tenantry_domain::EVENT_PAYLOAD_TAG, payload),
            ]
            .into_iter(),
        );
        E::deserialize(tagged).map_err(|e: serde_json::Error| {
            StoreError::Decode(format!("{} {}: {e}", self.event_type, self.event_id))
        })
    }
}
