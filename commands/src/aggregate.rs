//! An aggregate inside a command: loaded (or folded from streams read already), decided,
//! and saved in the command's transaction or staged for group commit.

use std::borrow::Borrow;

use chrono::Utc;
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use sqlx::PgConnection;
use tenantry_domain::{personal, Rejection, TenantId};
use tenantry_eventstore::append::append_prepared;
use tenantry_eventstore::read::read_stream;
use tenantry_eventstore::scope::Connect;
use tenantry_eventstore::vault::{self, Vault};
use tenantry_eventstore::{
    Cursor, EventStore, Expected, Metadata, NewEvent, Prepared, RecordedEvent, StoreError,
};
use uuid::Uuid;

use crate::{CommandError, Executed, Request};

/// An aggregate loaded inside a command's transaction.
#[derive(Clone, Debug)]
pub struct Loaded<A> {
    pub id: Uuid,
    pub state: A,
    expected: Expected,
    pub(crate) version: i64,
    /// The cursor of the last event this transaction appended.
    position: Option<Cursor>,
    /// Seals the personal fields of what is saved (`None`: this aggregate writes none).
    vault: Option<Vault>,
    /// The stream's end customer's key, whose personal data it holds (see `vault`).
    subject: Option<Uuid>,
}

/// Loads aggregate `A` with id `id` (the default state when the stream does not exist).
/// Personal fields read as placeholders: enough for every decision but the organization's
/// own (see [`load_revealed`]).
///
/// # Errors
/// On a database failure or an event that does not decode.
pub async fn load<A: Aggregate>(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
) -> Result<Loaded<A>, CommandError> {
    let history = read_stream(conn, tenant, A::TYPE, id).await?;
    let subject = vault::subject_of(&history);
    fold(id, &history, subject)
}

/// Loads aggregate `A` with its personal fields opened, ready to save new ones sealed. A
/// process without a master key (a relay or projections process recording usage alerts)
/// loads it concealed, and can save only events without personal data.
///
/// # Errors
/// As [`load`], and when personal data cannot be opened ([`StoreError::Vault`]).
pub async fn load_revealed<A: Aggregate>(
    conn: &mut PgConnection,
    vault: &Vault,
    tenant: TenantId,
    id: Uuid,
) -> Result<Loaded<A>, CommandError> {
    let mut history = read_stream(conn, tenant, A::TYPE, id).await?;
    let subject = vault::subject_of(&history);
    if vault.is_configured() {
        vault.reveal(conn, &mut history).await?;
    }
    Ok(fold::<A>(id, &history, subject)?.sealing(vault))
}

/// Aggregate `A` with id `id` from its `history` (read already, e.g. with others in one
/// round trip); sealed personal fields read as placeholders, as with [`load`]. `subject` is
/// the stream's customer key ([`vault::subject_of`], taken before any opening).
///
/// # Errors
/// When an event does not decode.
pub fn fold<A: Aggregate>(
    id: Uuid,
    history: &[impl Borrow<RecordedEvent>],
    subject: Option<Uuid>,
) -> Result<Loaded<A>, CommandError> {
    fold_opened(id, history, None, subject)
}

/// As [`fold`], with `first` (a copy of the first event, its personal fields opened) in place
/// of the first event of `history`.
///
/// # Errors
/// When an event does not decode.
pub fn fold_opened<A: Aggregate>(
    id: Uuid,
    history: &[impl Borrow<RecordedEvent>],
    first: Option<&RecordedEvent>,
    subject: Option<Uuid>,
) -> Result<Loaded<A>, CommandError> {
    let mut state = A::default();
    for (i, recorded) in history.iter().enumerate() {
        let recorded = match first {
            Some(first) if i == 0 => first,
            _ => recorded.borrow(),
        };
        state.apply(recorded.decode::<A::Event>()?);
    }
    Ok(Loaded {
        id,
        state,
        expected: Expected::after(history)?,
        version: history.len() as i64,
        position: None,
        vault: None,
        subject,
    })
}

/// Loads `A` as it was at `version`, personal fields opened.
pub(crate) async fn load_at<A: Aggregate>(
    conn: &mut PgConnection,
    vault: &Vault,
    tenant: TenantId,
    id: Uuid,
    version: i64,
) -> Result<A, CommandError> {
    let mut history = read_stream(conn, tenant, A::TYPE, id).await?;
    history.retain(|e| e.version <= version);
    if vault.is_configured() {
        vault.reveal(conn, &mut history).await?;
    }
    Ok(fold::<A>(id, &history, None)?.state)
}

impl<A> Loaded<A>
where
    A: Aggregate<Services = ()>,
    A::Error: Rejection,
{
    /// Decides `command`; the state moves on, the events are returned for [`Loaded::save`].
    ///
    /// # Errors
    /// [`CommandError::Rejected`] when the aggregate refuses.
    pub async fn decide(&mut self, command: A::Command) -> Result<Vec<A::Event>, CommandError> {
        let sink = EventSink::<A>::default();
        self.state
            .handle(command, &(), &sink)
            .await
            .map_err(|e| CommandError::rejected(&e))?;
        Ok(sink.collect().await)
    }

    /// Appends `events` to this aggregate's stream after the version it was loaded at.
    ///
    /// # Errors
    /// `CommandError::Store(Conflict)` when the stream moved since it was loaded.
    pub async fn save(
        &mut self,
        conn: &mut PgConnection,
        tenant: TenantId,
        events: Vec<A::Event>,
        metadata: &Metadata,
    ) -> Result<(), CommandError> {
        if let Some(prepared) = self.prepare(conn, tenant, events, metadata).await? {
            let recorded = append_prepared(conn, prepared).await?;
            self.recorded(&recorded)?;
        }
        Ok(())
    }

    /// Decides `command` and prepares its events for group commit, without writing them:
    /// it only reads (and may create a data key, which then commits on its own outside a
    /// transaction).
    ///
    /// # Errors
    /// As [`Loaded::decide`]; a vault error when personal data cannot be sealed.
    pub async fn stage(
        mut self,
        conn: &mut impl Connect,
        tenant: TenantId,
        command: A::Command,
        metadata: &Metadata,
    ) -> Result<Staged<A>, CommandError> {
        let events = self.decide(command).await?;
        let append = self.prepare(conn, tenant, events, metadata).await?;
        Ok(Staged {
            loaded: self,
            append,
        })
    }

    /// `events` as this stream's next append, personal fields sealed (`None` when empty).
    async fn prepare(
        &mut self,
        conn: &mut impl Connect,
        tenant: TenantId,
        events: Vec<A::Event>,
        metadata: &Metadata,
    ) -> Result<Option<Prepared>, CommandError> {
        if events.is_empty() {
            return Ok(None);
        }
        let mut new_events = events
            .iter()
            .map(|e| NewEvent::from_domain(e, e.event_version().parse().unwrap_or(1)))
            .collect::<Result<Vec<_>, _>>()?;
        if new_events
            .iter()
            .any(|e| personal::has_personal_fields(&e.event_type))
        {
            let vault = self.vault.as_ref().ok_or_else(|| {
                StoreError::Vault(format!(
                    "{} events carry personal data: load the stream with a vault",
                    A::TYPE
                ))
            })?;
            vault
                .seal(conn, tenant, &mut self.subject, &mut new_events)
                .await?;
        }
        Ok(Some(Prepared::new(
            tenant,
            A::TYPE,
            self.id,
            self.expected.clone(),
            new_events,
            metadata,
            Utc::now(),
        )?))
    }

    /// Decides and saves in one go.
    ///
    /// # Errors
    /// As [`Loaded::decide`] and [`Loaded::save`].
    pub async fn execute(
        &mut self,
        conn: &mut PgConnection,
        tenant: TenantId,
        command: A::Command,
        metadata: &Metadata,
    ) -> Result<(), CommandError> {
        let events = self.decide(command).await?;
        self.save(conn, tenant, events, metadata).await
    }
}

impl<A> Loaded<A> {
    /// Moves past `recorded`, this stream's events just appended.
    fn recorded(&mut self, recorded: &[RecordedEvent]) -> Result<(), CommandError> {
        self.expected = Expected::after(recorded)?;
        self.version += recorded.len() as i64;
        self.position = recorded.last().map(|e| e.cursor);
        Ok(())
    }

    /// The result of a command whose primary aggregate is this one; `others` are the other
    /// streams it appended to, for the consistency token.
    pub fn executed(self, others: &[Option<Cursor>]) -> Executed<A> {
        let position = others
            .iter()
            .copied()
            .chain([self.position])
            .flatten()
            .max();
        Executed {
            id: self.id,
            aggregate: self.state,
            version: self.version,
            position,
            replayed: false,
        }
    }

    /// Seals the personal fields of what this aggregate saves with `vault`.
    pub fn sealing(mut self, vault: &Vault) -> Self {
        self.vault = Some(vault.clone());
        self
    }

    /// Refuses when the request's `If-Match` version is not the loaded one.
    ///
    /// # Errors
    /// [`CommandError::PreconditionFailed`].
    pub fn check_expected(&self, request: &Request) -> Result<(), CommandError> {
        match request.expected_version {
            Some(expected) if expected != self.version => Err(CommandError::PreconditionFailed {
                expected,
                actual: self.version,
            }),
            _ => Ok(()),
        }
    }

    /// The cursor of the last event this transaction appended to this stream.
    pub fn position(&self) -> Option<Cursor> {
        self.position
    }
}

/// A command decided and sealed, its append not yet written (see [`Loaded::stage`]).
#[derive(Debug)]
pub struct Staged<A> {
    loaded: Loaded<A>,
    append: Option<Prepared>,
}

impl<A> Staged<A>
where
    A: Aggregate<Services = ()>,
{
    /// Appends inside the command's own transaction.
    pub(crate) async fn save(self, conn: &mut PgConnection) -> Result<Executed<A>, CommandError> {
        let Staged { mut loaded, append } = self;
        if let Some(append) = append {
            let recorded = append_prepared(conn, append).await?;
            loaded.recorded(&recorded)?;
        }
        Ok(loaded.executed(&[]))
    }

    /// Appends by group commit.
    pub(crate) async fn save_grouped(
        self,
        store: &EventStore,
    ) -> Result<Executed<A>, CommandError> {
        let Staged { mut loaded, append } = self;
        if let Some(append) = append {
            let recorded = store.append_grouped(append).await?;
            loaded.recorded(&recorded)?;
        }
        Ok(loaded.executed(&[]))
    }
}
