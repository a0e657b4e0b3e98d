//! Load → decide → append, with retries, idempotency keys and multi-stream transactions.
//!
//! Every command runs in one tenant-scoped transaction ([`CommandBus::transact`]): it loads
//! the aggregates it needs ([`load`]), decides ([`Loaded::decide`]) and appends
//! ([`Loaded::save`]) to one or more streams. If any append finds its stream moved, the whole
//! transaction is rolled back and the command is decided again from a fresh load (bounded,
//! with jitter). A refusal by the domain never retries.
//!
//! A command that appends to one stream and writes nothing else can instead read and stage
//! its append ([`Loaded::stage`]) outside any transaction, through the reads that confine
//! themselves to a tenant ([`Session::Autocommit`]), and have it group-committed with other
//! commands' appends ([`CommandBus::transact_grouped`]); conflicts retry the same way.

use std::borrow::Borrow;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use futures::future::BoxFuture;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, Postgres, Transaction};
use tenantry_domain::{personal, Rejection, TenantId};
use tenantry_eventstore::append::append_prepared;
use tenantry_eventstore::kept::KeptStreams;
use tenantry_eventstore::read::read_stream;
use tenantry_eventstore::scope::{enter_tenant, Connect, OnDemand};
use tenantry_eventstore::vault::{self, Vault};
use tenantry_eventstore::{
    Cursor, EventStore, Expected, Metadata, NewEvent, Prepared, RecordedEvent, StoreError,
};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::CommandError;

/// How often a command is decided again after losing a race for one of its streams.
const MAX_ATTEMPTS: u32 = 12;

/// An idempotency key and the fingerprint of the request it came with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Idempotency {
    /// The client's `Idempotency-Key`, scoped by organization.
    pub key: String,
    /// What identifies the request (e.g. a hash of method, path and body): the same key with
    /// another fingerprint is a conflict.
    pub fingerprint: String,
    /// Whose keys these are: the command's organization when `None`. Creating an organization
    /// scopes keys by the platform, since the organization does not exist yet.
    pub scope: Option<TenantId>,
}

/// Who asks, and how to recognise a retry.
#[derive(Clone, Debug, Default)]
pub struct Request {
    pub metadata: Metadata,
    pub idempotency: Option<Idempotency>,
    /// `If-Match`: the version the caller last saw of the command's aggregate.
    pub expected_version: Option<i64>,
}

impl Request {
    pub fn new(metadata: Metadata) -> Self {
        Self {
            metadata,
            idempotency: None,
            expected_version: None,
        }
    }

    /// Refuses the command unless its aggregate is still at `version`.
    pub fn with_expected_version(mut self, version: Option<i64>) -> Self {
        self.expected_version = version;
        self
    }

    pub fn with_idempotency(
        mut self,
        key: impl Into<String>,
        fingerprint: impl Into<String>,
    ) -> Self {
        let key = key.into();
        self.metadata.idempotency_key = Some(key.clone());
        self.idempotency = Some(Idempotency {
            key,
            fingerprint: fingerprint.into(),
            scope: None,
        });
        self
    }

    /// Scopes the idempotency key by `scope` instead of the command's organization.
    pub fn with_idempotency_scope(mut self, scope: TenantId) -> Self {
        if let Some(idempotency) = &mut self.idempotency {
            idempotency.scope = Some(scope);
        }
        self
    }
}

/// The outcome of a command that took effect, for its primary aggregate.
#[derive(Clone, Debug)]
pub struct Executed<A> {
    /// The primary aggregate's id.
    pub id: Uuid,
    /// The primary aggregate after the command.
    pub aggregate: A,
    /// The primary stream's version after the command.
    pub version: i64,
    /// The consistency token: the cursor of the last event recorded (across all streams).
    pub position: Option<Cursor>,
    /// True when an idempotency key matched: this is the first execution's result, and
    /// nothing was recorded now.
    pub replayed: bool,
}

impl<A> Executed<A> {
    pub fn position(&self) -> Option<Cursor> {
        self.position
    }
}

/// What an idempotency key remembers.
#[derive(Serialize, Deserialize)]
struct Remembered {
    tenant_id: Uuid,
    stream_id: Uuid,
    version: i64,
    position: Option<Cursor>,
}

/// An aggregate loaded inside a command's transaction.
#[derive(Clone, Debug)]
pub struct Loaded<A> {
    pub id: Uuid,
    pub state: A,
    expected: Expected,
    version: i64,
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
async fn load_at<A: Aggregate>(
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
    async fn save(self, conn: &mut PgConnection) -> Result<Executed<A>, CommandError> {
        let Staged { mut loaded, append } = self;
        if let Some(append) = append {
            let recorded = append_prepared(conn, append).await?;
            loaded.recorded(&recorded)?;
        }
        Ok(loaded.executed(&[]))
    }

    /// Appends by group commit.
    async fn save_grouped(self, store: &EventStore) -> Result<Executed<A>, CommandError> {
        let Staged { mut loaded, append } = self;
        if let Some(append) = append {
            let recorded = store.append_grouped(append).await?;
            loaded.recorded(&recorded)?;
        }
        Ok(loaded.executed(&[]))
    }
}

/// An open tenant transaction.
pub type Tx = Transaction<'static, Postgres>;

/// Where an attempt runs.
pub enum Session {
    /// An open tenant transaction.
    Transaction(Tx),
    /// A pooled connection outside any transaction, each statement its own, taken only if a
    /// statement is needed (the read of a grouped command, [`CommandBus::transact_grouped`],
    /// which may decide from what it keeps in memory). Only what confines itself to the
    /// tenant sees its rows here: [`read_streams`](tenantry_eventstore::read::read_streams)
    /// and the vault's keys (migration 0014); a plain query sees nothing.
    Autocommit(OnDemand),
}

impl Connect for Session {
    async fn connection(&mut self) -> Result<&mut PgConnection, StoreError> {
        match self {
            Session::Transaction(tx) => Ok(tx),
            Session::Autocommit(conn) => conn.connection().await,
        }
    }
}

/// One attempt of a command: given its session (an open tenant transaction, unless the
/// command is grouped), load, decide and save (or stage); hand the session back with the
/// outcome `T`.
pub type Attempt<'a, T> =
    Box<dyn FnMut(Session) -> BoxFuture<'a, (Session, Result<T, CommandError>)> + Send + 'a>;

/// Builds an [`Attempt`] from a closure over `&mut PgConnection`:
/// `attempt!(|tx| { …; Ok(executed) })`; or, with `session` before it, over the
/// `&mut Session` itself, for an attempt that may need no connection at all.
#[macro_export]
macro_rules! attempt {
    (|$tx:ident| $body:block) => {
        $crate::attempt!(
            session | session | {
                let $tx: &mut sqlx::PgConnection =
                    tenantry_eventstore::scope::Connect::connection(session).await?;
                $body
            }
        )
    };
    (session |$session:ident| $body:block) => {
        Box::new(move |mut session: $crate::executor::Session| {
            Box::pin(async move {
                let result = async {
                    let $session: &mut $crate::executor::Session = &mut session;
                    $body
                }
                .await;
                (session, result)
            })
        })
    };
}

/// Runs commands against the event store.
#[derive(Clone, Debug)]
pub struct CommandBus {
    store: EventStore,
    appended: Arc<Notify>,
    /// Conversations' parents folded from kept streams.
    pub(crate) parents: crate::conversations::Parents,
}

impl CommandBus {
    /// `appended` is woken after every commit, so an in-process relay publishes at once.
    pub fn new(store: EventStore, appended: Arc<Notify>) -> Self {
        Self {
            store,
            appended,
            parents: Default::default(),
        }
    }

    pub fn event_store(&self) -> &EventStore {
        &self.store
    }

    /// Tells an in-process relay that the feed moved.
    pub fn notify_appended(&self) {
        self.appended.notify_one();
    }

    /// Runs `attempt` in a tenant transaction until it commits, a refusal stops it, or
    /// [`MAX_ATTEMPTS`] conflicts have passed. With an idempotency key, a key already used with
    /// the same fingerprint returns the first result and records nothing.
    ///
    /// # Errors
    /// [`CommandError::Rejected`], [`CommandError::IdempotencyConflict`],
    /// [`CommandError::Contention`] or a store error.
    pub async fn transact<A>(
        &self,
        tenant: TenantId,
        request: &Request,
        mut attempt: Attempt<'_, Executed<A>>,
    ) -> Result<Executed<A>, CommandError>
    where
        A: Aggregate,
    {
        for round in 0..MAX_ATTEMPTS {
            if round > 0 {
                backoff(round).await;
            }
            let mut tx = self.store.begin_writer(tenant).await?;
            if let Some(idempotency) = &request.idempotency {
                if let Some(replay) =
                    replay::<A>(&mut tx, self.store.vault(), tenant, idempotency).await?
                {
                    return Ok(replay);
                }
            }
            let (returned, result) = attempt(Session::Transaction(tx)).await;
            let Session::Transaction(returned) = returned else {
                unreachable!("an attempt hands back the session it was given")
            };
            tx = returned;
            let done = match result {
                Ok(done) => done,
                Err(CommandError::Store(StoreError::Conflict { .. })) => {
                    tracing::debug!(round, "version conflict; deciding again");
                    count(A::TYPE, "conflict");
                    continue;
                }
                Err(err) => {
                    count_failure(A::TYPE, &err);
                    return Err(err);
                }
            };
            if let Some(idempotency) = &request.idempotency {
                if !remember(&mut tx, tenant, idempotency, &done).await? {
                    // Another request with this key committed first: roll back and replay it.
                    continue;
                }
            }
            tx.commit().await?;
            if done.position.is_some() {
                let kept = self.store.kept();
                if KeptStreams::announced(A::TYPE) {
                    // Announced to the other servers on commit; this one forgets before it
                    // answers (it cannot tell which of the tenant's streams moved).
                    kept.forget_tenant(tenant);
                } else {
                    // Kept at the version before: it would only fail its next append.
                    kept.forget(tenant, A::TYPE, done.id);
                }
                self.notify_appended();
            }
            count(A::TYPE, if done.replayed { "replayed" } else { "ok" });
            return Ok(done);
        }
        Err(CommandError::Contention {
            stream_type: A::TYPE,
        })
    }

    /// Runs a single-stream command whose attempt only reads and stages its append: the
    /// attempt reads outside any transaction ([`Session::Autocommit`]: no `BEGIN`, no
    /// `COMMIT`), and the append is then written by group commit
    /// ([`tenantry_eventstore::group`]), together with other commands' appends. Retries,
    /// refusals and errors are as with [`CommandBus::transact`]. With an idempotency key, the
    /// key's record must commit with the append, so the command runs as
    /// [`CommandBus::transact`] does, appending in its own transaction.
    ///
    /// # Errors
    /// As [`CommandBus::transact`].
    pub async fn transact_grouped<A>(
        &self,
        tenant: TenantId,
        request: &Request,
        mut attempt: Attempt<'_, Staged<A>>,
    ) -> Result<Executed<A>, CommandError>
    where
        A: Aggregate<Services = ()>,
    {
        if request.idempotency.is_some() {
            return self
                .transact(
                    tenant,
                    request,
                    Box::new(move |tx| {
                        let staged = attempt(tx);
                        Box::pin(async move {
                            let (mut session, staged) = staged.await;
                            // The transaction `transact` began.
                            let result = match (staged, session.connection().await) {
                                (Ok(staged), Ok(tx)) => staged.save(tx).await,
                                (Err(err), _) => Err(err),
                                (_, Err(err)) => Err(err.into()),
                            };
                            (session, result)
                        })
                    }),
                )
                .await;
        }
        for round in 0..MAX_ATTEMPTS {
            if round > 0 {
                backoff(round).await;
            }
            let (session, staged) = attempt(Session::Autocommit(self.store.on_demand())).await;
            // Back to the pool (if it was taken) before the append waits for its group.
            drop(session);
            let staged = match staged {
                Ok(staged) => staged,
                Err(err) => {
                    count_failure(A::TYPE, &err);
                    return Err(err);
                }
            };
            match staged.save_grouped(&self.store).await {
                Ok(done) => {
                    if done.position.is_some() {
                        self.notify_appended();
                    }
                    count(A::TYPE, "ok");
                    return Ok(done);
                }
                Err(CommandError::Store(StoreError::Conflict { .. })) => {
                    tracing::debug!(round, "version conflict; deciding again");
                    count(A::TYPE, "conflict");
                }
                Err(err) => {
                    count_failure(A::TYPE, &err);
                    return Err(err);
                }
            }
        }
        Err(CommandError::Contention {
            stream_type: A::TYPE,
        })
    }

    /// Loads aggregate `A` as it stands now, personal fields opened.
    ///
    /// # Errors
    /// On a database failure or an event that does not decode.
    pub async fn load<A: Aggregate>(
        &self,
        tenant: TenantId,
        id: Uuid,
    ) -> Result<(A, i64), CommandError> {
        let mut tx = self.store.begin_tenant(tenant).await?;
        let loaded = load_revealed::<A>(&mut tx, self.store.vault(), tenant, id).await?;
        tx.commit().await?;
        Ok((loaded.state, loaded.version))
    }
}

/// `tenantry_commands_total{aggregate, outcome}`.
fn count(aggregate: &'static str, outcome: &'static str) {
    metrics::counter!("tenantry_commands_total", "aggregate" => aggregate, "outcome" => outcome)
        .increment(1);
}

/// Counts a command that stopped on `err`.
fn count_failure(aggregate: &'static str, err: &CommandError) {
    let outcome = if matches!(err, CommandError::Rejected { .. }) {
        "rejected"
    } else {
        "failed"
    };
    count(aggregate, outcome);
}

/// Waits before deciding a command again after it lost a race (jittered, growing).
async fn backoff(round: u32) {
    let jitter = rand::rng().random_range(0..=2u64 << round.min(5));
    tokio::time::sleep(Duration::from_millis(jitter)).await;
}

async fn replay<A: Aggregate>(
    conn: &mut PgConnection,
    vault: &Vault,
    tenant: TenantId,
    idempotency: &Idempotency,
) -> Result<Option<Executed<A>>, CommandError> {
    let scope = idempotency.scope.unwrap_or(tenant);
    if scope != tenant {
        enter_tenant(conn, scope).await?;
    }
    // Requests with one key run one at a time: a second waits here until the first has
    // committed (and then replays it) or rolled back (and then runs itself).
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("idempotency:{scope}:{}", idempotency.key))
        .execute(&mut *conn)
        .await?;
    let row: Option<(String, serde_json::Value)> = sqlx::query_as(
        "SELECT fingerprint, outcome FROM idempotency_keys WHERE tenant_id = $1 AND key = $2",
    )
    .bind(scope.as_uuid())
    .bind(&idempotency.key)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((fingerprint, outcome)) = row else {
        if scope != tenant {
            enter_tenant(conn, tenant).await?;
        }
        return Ok(None);
    };
    if fingerprint != idempotency.fingerprint {
        return Err(CommandError::IdempotencyConflict(idempotency.key.clone()));
    }
    let remembered: Remembered = serde_json::from_value(outcome)
        .map_err(|e| StoreError::Decode(format!("idempotency outcome: {e}")))?;
    let owner = TenantId::from_uuid(remembered.tenant_id);
    if owner != scope {
        enter_tenant(conn, owner).await?;
    }
    let aggregate =
        load_at::<A>(conn, vault, owner, remembered.stream_id, remembered.version).await?;
    Ok(Some(Executed {
        id: remembered.stream_id,
        aggregate,
        version: remembered.version,
        position: remembered.position,
        replayed: true,
    }))
}

/// Records the key's outcome; false when another request already holds the key.
async fn remember<A>(
    conn: &mut PgConnection,
    tenant: TenantId,
    idempotency: &Idempotency,
    done: &Executed<A>,
) -> Result<bool, CommandError> {
    let scope = idempotency.scope.unwrap_or(tenant);
    if scope != tenant {
        enter_tenant(conn, scope).await?;
    }
    let outcome = serde_json::to_value(Remembered {
        tenant_id: tenant.as_uuid(),
        stream_id: done.id,
        version: done.version,
        position: done.position,
    })
    .map_err(|e| StoreError::Decode(e.to_string()))?;
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (tenant_id, key, fingerprint, outcome) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (tenant_id, key) DO NOTHING",
    )
    .bind(scope.as_uuid())
    .bind(&idempotency.key)
    .bind(&idempotency.fingerprint)
    .bind(outcome)
    .execute(conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Deletes idempotency keys older than `age` (they are promised for at least 24 hours).
///
/// # Errors
/// On a database failure.
pub async fn purge_idempotency_keys(
    store: &EventStore,
    age: Duration,
) -> Result<u64, CommandError> {
    let mut tx = store.begin_system().await?;
    let deleted = sqlx::query(
        "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)",
    )
    .bind(age.as_secs_f64())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(deleted.rows_affected())
}
