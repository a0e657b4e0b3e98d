//! The NATS JetStream face of the event store: the stream the relay publishes the feed to,
//! its subjects and headers. Kept here, beside the feed it carries, so the relay (publisher)
//! and the projections (consumers) agree on one topology.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::RecordedEvent;

/// Header with the event's feed cursor (`<transaction_id>-<position>`).
pub const HEADER_CURSOR: &str = "Tenantry-Cursor";
/// Header with the cursor of the event just before this one in the feed. A consumer whose
/// checkpoint equals it knows nothing is missing in between.
pub const HEADER_PREV_CURSOR: &str = "Tenantry-Prev-Cursor";
/// Header with the event's tenant.
pub const HEADER_TENANT: &str = "Tenantry-Tenant";

/// Where the feed travels: a JetStream stream and the subject prefix of its messages.
#[derive(Clone, Debug)]
pub struct Bus {
    pub jetstream: jetstream::Context,
    /// The stream name, `TENANTRY_EVENTS` in production.
    pub stream: String,
    /// The subject prefix, `tenantry` in production (`<prefix>.events.…`).
    pub prefix: String,
}

impl Bus {
    pub fn new(
        client: async_nats::Client,
        stream: impl Into<String>,
        prefix: impl Into<String>,
    ) -> Self {
        Self {
            jetstream: jetstream::new(client),
            stream: stream.into(),
            prefix: prefix.into(),
        }
    }

    /// `<prefix>.events.<tenant_id>.<stream_type>.<event_type>`.
    pub fn subject_for(&self, event: &RecordedEvent) -> String {
        format!(
            "{}.events.{}.{}.{}",
            self.prefix, event.tenant_id, event.stream_type, event.event_type
        )
    }

    /// Every event subject.
    pub fn all_events(&self) -> String {
        format!("{}.events.>", self.prefix)
    }

    /// Creates the stream if it does not exist, and returns it.
    ///
    /// # Errors
    /// When NATS is unreachable or refuses the configuration.
    pub async fn ensure_stream(&self) -> Result<stream::Stream, async_nats::Error> {
        let config = stream::Config {
            name: self.stream.clone(),
            subjects: vec![self.all_events()],
            storage: stream::StorageType::File,
            // Re-publication after a relay restart inside this window is dropped by NATS;
            // later ones are dropped by the projections' checkpoints.
            duplicate_window: Duration::from_secs(300),
            ..Default::default()
        };
        Ok(self.jetstream.get_or_create_stream(config).await?)
    }
}
