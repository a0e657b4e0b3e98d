//! The command engine: one loop that runs an attempt (load → decide → append), writes what it
//! decided, and decides again from a fresh load when another writer got there first.
//!
//! How an attempt's appends are written is passed in (`Write`):
//! - `OwnTransaction`: the attempt runs in a tenant transaction of its own, may write several
//!   streams and other rows (slots, credentials, erasure), and commits them together, with
//!   the idempotency key's record when there is one.
//! - `Grouped`: the attempt reads outside any transaction ([`Session::Autocommit`]) and
//!   stages one stream's append, which is then group-committed with other commands' appends
//!   ([`tenantry_eventstore::group`]).
//!
//! A version conflict anywhere rolls the attempt back and runs it again (bounded, jittered);
//! a refusal by the domain never retries.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use cqrs_es::Aggregate;
use rand::Rng;
use sqlx::PgConnection;
use tenantry_domain::TenantId;
use tenantry_eventstore::{EventStore, StoreError};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::aggregate::{load_revealed, Staged};
use crate::folds::Folds;
use crate::idempotency;
use crate::session::{Attempt, Session};
use crate::{CommandError, Executed, Request};

/// How often a command is decided again after losing a race for one of its streams.
const MAX_ATTEMPTS: u32 = 12;

/// A command the bus runs: each is handled in the module named for its aggregate
/// (`OrganizationCommand` in `organizations.rs`, `StoreAction` in `stores.rs`, …), which says
/// what it loads and checks and what it appends, in one function.
pub trait Execute: Sized + Send {
    /// What the command is addressed to (its organization, and the aggregate's id).
    type Target: Send;
    /// What it answers.
    type Output: Send;

    /// Runs the command on `target` through `bus`.
    ///
    /// # Errors
    /// As [`CommandBus::transact`].
    fn execute(
        self,
        bus: &CommandBus,
        target: Self::Target,
        request: &Request,
    ) -> impl Future<Output = Result<Self::Output, CommandError>> + Send;
}

/// Runs commands against the event store.
#[derive(Clone, Debug)]
pub struct CommandBus {
    store: EventStore,
    appended: Arc<Notify>,
    /// Aggregates folded from the streams the event store keeps in memory.
    pub(crate) folds: Folds,
}

impl CommandBus {
    /// `appended` is woken after every commit, so an in-process relay publishes at once.
    pub fn new(store: EventStore, appended: Arc<Notify>) -> Self {
        Self {
            store,
            appended,
            folds: Folds::default(),
        }
    }

    /// Runs `command` on `target` (see [`Execute`] for where each command is handled).
    ///
    /// # Errors
    /// As the command's [`Execute::execute`].
    pub async fn execute<C: Execute>(
        &self,
        target: C::Target,
        command: C,
        request: &Request,
    ) -> Result<C::Output, CommandError> {
        command.execute(self, target, request).await
    }

    pub fn event_store(&self) -> &EventStore {
        &self.store
    }

    /// Tells an in-process relay that the feed moved.
    pub fn notify_appended(&self) {
        self.appended.notify_one();
    }

    /// Runs `attempt` in a tenant transaction until it commits, a refusal stops it, or
    /// `MAX_ATTEMPTS` (12) conflicts have passed. With an idempotency key, a key already used with
    /// the same fingerprint returns the first result and records nothing.
    ///
    /// # Errors
    /// [`CommandError::Rejected`], [`CommandError::IdempotencyConflict`],
    /// [`CommandError::Contention`] or a store error.
    pub async fn transact<A, T>(
        &self,
        tenant: TenantId,
        request: &Request,
        attempt: Attempt<'_, T>,
    ) -> Result<Executed<A>, CommandError>
    where
        A: Aggregate,
        T: Save<A> + Send,
    {
        self.run(tenant, request, OwnTransaction(attempt)).await
    }

    /// Runs a single-stream command whose attempt only reads and stages its append: the
    /// attempt reads outside any transaction ([`Session::Autocommit`]: no `BEGIN`, no
    /// `COMMIT`), and the append is then written by group commit, together with other
    /// commands' appends. With an idempotency key, the key's record must commit with the
    /// append, so the command runs as [`CommandBus::transact`] does, in its own transaction.
    ///
    /// # Errors
    /// As [`CommandBus::transact`].
    pub async fn transact_grouped<A>(
        &self,
        tenant: TenantId,
        request: &Request,
        attempt: Attempt<'_, Staged<A>>,
    ) -> Result<Executed<A>, CommandError>
    where
        A: Aggregate<Services = ()>,
    {
        if request.idempotency.is_some() {
            self.run(tenant, request, OwnTransaction(attempt)).await
        } else {
            self.run(tenant, request, Grouped(attempt)).await
        }
    }

    /// The one retry loop: `write` runs an attempt and writes it, until it is written, a
    /// refusal or an error stops it, or [`MAX_ATTEMPTS`] rounds lost a race.
    async fn run<A: Aggregate>(
        &self,
        tenant: TenantId,
        request: &Request,
        mut write: impl Write<A>,
    ) -> Result<Executed<A>, CommandError> {
        for round in 0..MAX_ATTEMPTS {
            if round > 0 {
                backoff(round).await;
            }
            match write.once(self, tenant, request).await {
                Ok(Some(done)) => {
                    count(A::TYPE, if done.replayed { "replayed" } else { "ok" });
                    return Ok(done);
                }
                // Another request with the idempotency key committed first: replay it.
                Ok(None) => {}
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

/// What an attempt in its own transaction hands back, and how that is written there: an
/// [`Executed`] was saved by the attempt itself, a [`Staged`] append is written now.
pub trait Save<A>: Sized {
    /// Writes what is left to write in `tx`.
    fn save(
        self,
        tx: &mut PgConnection,
    ) -> impl Future<Output = Result<Executed<A>, CommandError>> + Send;
}

impl<A: Send> Save<A> for Executed<A> {
    async fn save(self, _: &mut PgConnection) -> Result<Executed<A>, CommandError> {
        Ok(self)
    }
}

impl<A: Aggregate<Services = ()>> Save<A> for Staged<A> {
    async fn save(self, tx: &mut PgConnection) -> Result<Executed<A>, CommandError> {
        Staged::save(self, tx).await
    }
}

/// How one attempt is run and written: the choice [`CommandBus::run`]'s loop is given.
trait Write<A> {
    /// Runs the attempt once and writes it: `Ok(None)` when it must run again although
    /// nothing conflicted (an idempotency key taken meanwhile).
    fn once(
        &mut self,
        bus: &CommandBus,
        tenant: TenantId,
        request: &Request,
    ) -> impl Future<Output = Result<Option<Executed<A>>, CommandError>> + Send;
}

/// The attempt runs in a tenant transaction of its own, which commits everything it wrote.
struct OwnTransaction<'a, T>(Attempt<'a, T>);

impl<A, T> Write<A> for OwnTransaction<'_, T>
where
    A: Aggregate,
    T: Save<A> + Send,
{
    async fn once(
        &mut self,
        bus: &CommandBus,
        tenant: TenantId,
        request: &Request,
    ) -> Result<Option<Executed<A>>, CommandError> {
        let mut tx = bus.store.begin_writer(tenant).await?;
        if let Some(key) = &request.idempotency {
            let vault = bus.store.vault();
            if let Some(replay) = idempotency::replay::<A>(&mut tx, vault, tenant, key).await? {
                return Ok(Some(replay));
            }
        }
        let (session, outcome) = (self.0)(Session::Transaction(tx)).await;
        let Session::Transaction(mut tx) = session else {
            unreachable!("an attempt hands back the session it was given")
        };
        let done = outcome?.save(&mut tx).await?;
        if let Some(key) = &request.idempotency {
            if !idempotency::remember(&mut tx, tenant, key, &done).await? {
                return Ok(None);
            }
        }
        tx.commit().await?;
        if done.position.is_some() {
            let kept = bus.store.kept();
            if kept.announced(A::TYPE) {
                // Announced to the other servers on commit; this one forgets before it
                // answers (it cannot tell which of the tenant's streams moved).
                kept.forget_tenant(tenant);
            } else {
                // Kept at the version before: it would only fail its next append.
                kept.forget(tenant, A::TYPE, done.id);
            }
            bus.notify_appended();
        }
        Ok(Some(done))
    }
}

/// The attempt reads outside any transaction and stages one append, written by group commit.
struct Grouped<'a, A>(Attempt<'a, Staged<A>>);

impl<A> Write<A> for Grouped<'_, A>
where
    A: Aggregate<Services = ()>,
{
    async fn once(
        &mut self,
        bus: &CommandBus,
        _: TenantId,
        _: &Request,
    ) -> Result<Option<Executed<A>>, CommandError> {
        let (session, staged) = (self.0)(Session::Autocommit(bus.store.on_demand())).await;
        // Back to the pool (if it was taken) before the append waits for its group.
        drop(session);
        let done = staged?.save_grouped(&bus.store).await?;
        if done.position.is_some() {
            bus.notify_appended();
        }
        Ok(Some(done))
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
