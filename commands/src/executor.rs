//! Load → decide → append.

use std::sync::Arc;

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use sqlx::PgConnection;
use tenantry_domain::{Rejection, TenantId};
use tenantry_eventstore::read::read_stream;
use tenantry_eventstore::{
    append, Cursor, EventStore, Expected, Metadata, NewEvent, RecordedEvent, StoreError,
};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::CommandError;

/// How often a command is decided again after losing a race for its stream.
const MAX_ATTEMPTS: usize = 8;

/// The outcome of a command that took effect.
#[derive(Clone, Debug)]
pub struct Executed<A> {
    /// The aggregate after the new events.
    pub aggregate: A,
    /// The stream's version after the new events.
    pub version: i64,
    /// The events recorded (none when the command changed nothing).
    pub events: Vec<RecordedEvent>,
}

impl<A> Executed<A> {
    /// The consistency token: the cursor of the last event recorded.
    pub fn position(&self) -> Option<Cursor> {
        self.events.last().map(|e| e.cursor)
    }
}

/// Runs commands against the event store.
#[derive(Clone, Debug)]
pub struct CommandBus {
    store: EventStore,
    appended: Arc<Notify>,
}

impl CommandBus {
    /// `appended` is woken after every commit, so an in-process relay publishes at once.
    pub fn new(store: EventStore, appended: Arc<Notify>) -> Self {
        Self { store, appended }
    }

    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// Tells an in-process relay that the feed moved.
    pub fn notify_appended(&self) {
        self.appended.notify_one();
    }

    /// Executes `command` on the aggregate `A` with id `stream_id` in `tenant`.
    ///
    /// A version conflict retries from a fresh load (bounded); a refusal never retries.
    ///
    /// # Errors
    /// [`CommandError::Rejected`] when the aggregate refuses, [`CommandError::Contention`] when
    /// every attempt lost its race, [`CommandError::Store`] on a database failure.
    #[tracing::instrument(skip_all, err, fields(tenant_id = %tenant, stream_type = A::TYPE, stream_id = %stream_id))]
    pub async fn execute<A>(
        &self,
        tenant: TenantId,
        stream_id: Uuid,
        command: A::Command,
        metadata: &Metadata,
    ) -> Result<Executed<A>, CommandError>
    where
        A: Aggregate<Services = ()>,
        A::Command: Clone,
        A::Error: Rejection,
    {
        for _ in 0..MAX_ATTEMPTS {
            let mut tx = self.store.begin_tenant(tenant).await?;
            match decide_and_append::<A>(&mut tx, tenant, stream_id, command.clone(), metadata)
                .await
            {
                Ok(done) => {
                    tx.commit().await?;
                    self.notify_appended();
                    return Ok(done);
                }
                Err(CommandError::Store(StoreError::Conflict { .. })) => {
                    tracing::debug!("version conflict; deciding again");
                    continue;
                }
                Err(err) => return Err(err),
            }
        }
        Err(CommandError::Contention {
            stream_type: A::TYPE,
        })
    }
}

/// Loads `A` from its stream, decides `command` and appends the events, inside the caller's
/// tenant-scoped transaction (the caller commits).
///
/// # Errors
/// As [`CommandBus::execute`], with a version conflict as `CommandError::Store(Conflict)`.
pub async fn decide_and_append<A>(
    conn: &mut PgConnection,
    tenant: TenantId,
    stream_id: Uuid,
    command: A::Command,
    metadata: &Metadata,
) -> Result<Executed<A>, CommandError>
where
    A: Aggregate<Services = ()>,
    A::Error: Rejection,
{
    let history = read_stream(conn, tenant, A::TYPE, stream_id).await?;
    let expected = Expected::after(&history)?;
    let mut aggregate = A::default();
    for recorded in &history {
        aggregate.apply(recorded.decode::<A::Event>()?);
    }
    let version = history.len() as i64;

    let sink = EventSink::<A>::default();
    aggregate
        .handle(command, &(), &sink)
        .await
        .map_err(|e| CommandError::rejected(&e))?;
    let decided = sink.collect().await;
    let new_events = decided
        .iter()
        .map(|e| {
            let schema: i32 = e.event_version().parse().unwrap_or(1);
            NewEvent::from_domain(e, schema)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let events = append(
        conn,
        tenant,
        A::TYPE,
        stream_id,
        expected,
        new_events,
        metadata,
    )
    .await?;
    Ok(Executed {
        aggregate,
        version: version + events.len() as i64,
        events,
    })
}
