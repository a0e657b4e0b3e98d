//! Projections: the read models built from the feed, and the runner that feeds them from
//! NATS JetStream.
//!
//! - [`runner`]: one durable pull consumer (`projections`) feeds every read model; each
//!   projection applies a batch in a PostgreSQL transaction of its own together with its
//!   checkpoint, and the batch is acknowledged once every projection has had it. Events at or
//!   below a projection's checkpoint are skipped, so redelivery and re-publication never
//!   count twice; a hole in what NATS delivered, or a batch a projection failed, is filled
//!   from the event store, so nothing is lost either.
//! - [`organizations`]: the organizations read model.
//! - [`directory`]: members, API keys, stores, agent instances, widget keys, conversations and
//!   messages.
//! - [`billing`]: usage counters, daily volume, the terms timeline and billable conversations
//!   invoices are computed from, usage alerts and finalized invoices.
//! - [`queries`]: what the API asks of the read models, each query beside the tables it
//!   reads, all through one [`queries::read`] (consistency token, scope, sealed fields).
//! - [`rebuild`]: replaying the feed from PostgreSQL into fresh tables, then switching.
//! - [`reconcile`]: a month's usage and invoices recomputed from the event log and compared
//!   with the read models.
//! - [`consistency`]: read-your-writes — waiting until a projection has passed a cursor.

pub mod billing;
pub mod consistency;
pub mod directory;
pub mod organizations;
pub mod queries;
pub mod rebuild;
pub mod reconcile;
pub mod runner;

use async_trait::async_trait;
use sqlx::PgConnection;
use tenantry_eventstore::{RecordedEvent, StoreError};

pub use runner::{Outcome, Runner};

/// A read model built from the feed.
#[async_trait]
pub trait Projection: Send + Sync + 'static {
    /// The projection's name: its checkpoint row.
    fn name(&self) -> &'static str;

    /// The read-model tables it owns (rebuilt together).
    fn tables(&self) -> &'static [&'static str];

    /// Applies one event, inside the runner's system-scoped transaction. Events the
    /// projection does not use are ignored.
    ///
    /// # Errors
    /// On a database failure, or an event it uses that does not decode (the batch is then
    /// rolled back and redelivered).
    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError>;

    /// Applies `events`, in feed order, inside one transaction. The same as applying them one
    /// by one; projections override it to write a batch in a few statements.
    ///
    /// # Errors
    /// As [`Projection::apply`].
    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        for event in events {
            self.apply(conn, event).await?;
        }
        Ok(())
    }
}

/// Why a projection batch failed.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("NATS: {0}")]
    Nats(String),
}

impl From<sqlx::Error> for ProjectionError {
    fn from(err: sqlx::Error) -> Self {
        ProjectionError::Store(StoreError::Database(err))
    }
}

/// The projection named `name`.
pub fn by_name(name: &str) -> Option<std::sync::Arc<dyn Projection>> {
    all().into_iter().find(|p| p.name() == name)
}

/// The durable JetStream consumer that feeds all of [`all`] ([`Runner::feeding`]).
pub const CONSUMER: &str = "projections";

/// Every projection of the platform.
pub fn all() -> Vec<std::sync::Arc<dyn Projection>> {
    vec![
        std::sync::Arc::new(organizations::Organizations),
        std::sync::Arc::new(directory::Directory),
        std::sync::Arc::new(billing::Billing),
    ]
}
