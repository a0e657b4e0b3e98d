//! Group commit: concurrent single-stream appends written together, one statement and one
//! commit for many writers.
//!
//! A writer hands its [`Prepared`] append to [`GroupCommit::append`] and waits. A few workers
//! take whatever is waiting, up to [`MAX_BATCH`] appends, and write it with
//! `tenantry_append_batch` (migration 0009) outside any transaction: each stream head moves by
//! its own compare-and-set, so one writer's conflict leaves the others' appends standing, and
//! each writer hears its own outcome. A batch never holds one stream twice, and no two
//! batches in flight share a stream, so batches never wait on each other's row locks. If the
//! batch statement fails as a whole (an event id used twice, say), each append is written
//! again on its own, so a failure reaches only the writer it belongs to.
//!
//! Commit is what costs: a commit waits for the write-ahead log to reach the disk. A batch of
//! n appends pays one commit and one round trip instead of n of each (and three round trips
//! each inside a transaction). The price is that an append in a batch cannot be atomic with
//! other writes; commands that write more than one stream, or anything besides events, append
//! inside their own transaction ([`crate::append`]).

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres, Row};
use tokio::sync::{oneshot, Notify};
use uuid::Uuid;

use crate::append::Prepared;
use crate::error::db_error_code;
use crate::{Cursor, Expected, RecordedEvent, StoreError};

/// The most appends one batch writes.
pub const MAX_BATCH: usize = 64;

/// How many batches may be in flight at once: while one waits for its commit, the next is
/// being written.
const WORKERS: usize = 4;

/// While a batch is in flight, another starts only for at least this many appends, and at
/// least as many as are in flight: small batches side by side cost more in statements and
/// commits than they save in waiting. Measured with the bench (2 cores; pgbench then ran the
/// simple protocol, ~0.72 of its `-M prepared` figure, see PERFORMANCE.md): a fixed
/// minimum of 1 → ~60 % of pgbench's one-row figure with 16 writers, 4 → ~75 %, 8 → ~95 %,
/// 12 → ~78 %; with 32 HTTP clients (decisions from memory), a fixed 8 made batches of 6.6
/// events and ~2,400 commands/s, 16 made 10.5 and ~2,900 but cost 16 writers 60 %; growing
/// with what is in flight gives 8.3, ~2,750 commands/s, and 73 % with 16 writers.
const MIN_BATCH: usize = 8;

/// How long a worker keeps its connection with nothing to write.
const KEEP_CONNECTION: Duration = Duration::from_secs(1);

/// How long a worker holds one connection at most, busy or not, so that the pool's own
/// rules (its lifetime, its checks) still reach it.
const HOLD_CONNECTION: Duration = Duration::from_secs(60);

/// A stream as the database keys it.
type StreamKey = (Uuid, String, Uuid);

struct Job {
    append: Prepared,
    reply: oneshot::Sender<Result<Vec<RecordedEvent>, StoreError>>,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Job>,
    /// The streams of the batches in flight.
    busy: HashSet<StreamKey>,
}

struct Shared {
    pool: PgPool,
    queue: Mutex<Queue>,
    wake: Arc<Notify>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The workers hold the queue weakly: wake them so they see it gone, and stop.
        self.wake.notify_waiters();
    }
}

/// The group committer of one pool (cheap to clone; workers start with the first append).
#[derive(Clone)]
pub struct GroupCommit {
    shared: Arc<Shared>,
    started: Arc<AtomicBool>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

fn key(append: &Prepared) -> StreamKey {
    let (tenant, stream_type, stream_id) = append.stream();
    (tenant.as_uuid(), stream_type.to_owned(), stream_id)
}

impl GroupCommit {
    pub fn new(pool: PgPool) -> Self {
        Self {
            shared: Arc::new(Shared {
                pool,
                queue: Mutex::new(Queue::default()),
                wake: Arc::new(Notify::new()),
            }),
            started: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Appends `append` with whatever other appends are waiting, committed when this returns.
    ///
    /// # Errors
    /// As [`crate::append`]: [`StoreError::Conflict`] when the stream moved since its writer
    /// loaded it (nothing of this append was written), [`StoreError::DuplicateEvent`], or a
    /// database error.
    pub async fn append(&self, append: Prepared) -> Result<Vec<RecordedEvent>, StoreError> {
        if append.is_empty() {
            return Ok(Vec::new());
        }
        if !self.started.swap(true, Ordering::AcqRel) {
            for _ in 0..WORKERS {
                tokio::spawn(work(Arc::downgrade(&self.shared), self.shared.wake.clone()));
            }
        }
        let (reply, outcome) = oneshot::channel();
        self.shared
            .queue
            .lock()
            .expect("the group-commit queue is never poisoned")
            .waiting
            .push_back(Job { append, reply });
        self.shared.wake.notify_one();
        outcome
            .await
            .map_err(|_| StoreError::Decode("the group committer stopped".into()))?
    }
}

impl Shared {
    /// The next batch: waiting appends whose streams are neither in flight nor already in it.
    fn take(&self) -> Vec<Job> {
        let mut queue = self.queue.lock().expect("never poisoned");
        let Queue { waiting, busy } = &mut *queue;
        if !busy.is_empty() && waiting.len() < MIN_BATCH.max(busy.len()) {
            // Another batch is being written: wait for more, or for it to finish.
            return Vec::new();
        }
        let mut batch = Vec::new();
        let mut kept = VecDeque::new();
        while let Some(job) = waiting.pop_front() {
            if batch.len() < MAX_BATCH && busy.insert(key(&job.append)) {
                batch.push(job);
            } else {
                kept.push_back(job);
            }
        }
        *waiting = kept;
        batch
    }

    fn release(&self, streams: &[StreamKey]) {
        let mut queue = self.queue.lock().expect("never poisoned");
        for stream in streams {
            queue.busy.remove(stream);
        }
        if !queue.waiting.is_empty() {
            self.wake.notify_one();
        }
    }
}

async fn work(shared: Weak<Shared>, wake: Arc<Notify>) {
    // Kept from batch to batch while they keep coming: taking a connection from the pool and
    // giving it back cost a round trip each (sqlx checks it both ways).
    let mut conn = None;
    loop {
        let notified = wake.notified();
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let batch = shared.take();
        if batch.is_empty() {
            drop(shared);
            if conn.is_none() {
                notified.await;
            } else if tokio::time::timeout(KEEP_CONNECTION, notified)
                .await
                .is_err()
            {
                conn = None;
            }
            continue;
        }
        let streams: Vec<StreamKey> = batch.iter().map(|job| key(&job.append)).collect();
        write(&shared.pool, &mut conn, batch).await;
        shared.release(&streams);
    }
}

/// Writes `batch` on the worker's connection `conn` and answers each writer.
async fn write(
    pool: &PgPool,
    conn: &mut Option<(PoolConnection<Postgres>, Instant)>,
    batch: Vec<Job>,
) {
    let appends: Vec<&Prepared> = batch.iter().map(|job| &job.append).collect();
    match write_on(pool, conn, &appends).await {
        Ok(cursors) => {
            drop(appends);
            for (job, cursors) in batch.into_iter().zip(cursors) {
                let _ = job.reply.send(job.append.recorded(cursors));
            }
        }
        Err(err) if batch.len() == 1 => {
            drop(appends);
            if let Some(job) = batch.into_iter().next() {
                let failure = job.append.failure(err);
                let _ = job.reply.send(Err(failure));
            }
        }
        Err(err) => {
            // Find whose append failed: each on its own.
            tracing::debug!(error = %err, appends = batch.len(), "batch failed; writing one by one");
            drop(appends);
            for job in batch {
                let outcome = match write_on(pool, conn, &[&job.append]).await {
                    Ok(mut cursors) => job.append.recorded(cursors.pop().unwrap_or_default()),
                    Err(err) => Err(job.append.failure(err)),
                };
                let _ = job.reply.send(outcome);
            }
        }
    }
}

/// [`write_batch`] on `conn`, taken from the pool if the worker holds none (or has held it
/// for [`HOLD_CONNECTION`]). The connection is kept only after a success or the database's
/// refusal of the statement itself (its data, a constraint, a serialization failure, the
/// function's own error); after anything else (a lost connection, an administrator's
/// termination, a restart) it is given back, and the pool checks it.
async fn write_on(
    pool: &PgPool,
    conn: &mut Option<(PoolConnection<Postgres>, Instant)>,
    appends: &[&Prepared],
) -> Result<Vec<Vec<(i64, Cursor)>>, sqlx::Error> {
    let (mut taken, since) = match conn.take() {
        Some(held) if held.1.elapsed() < HOLD_CONNECTION => held,
        _ => (pool.acquire().await?, Instant::now()),
    };
    let written = write_batch(&mut taken, appends).await;
    let refused = |err: &sqlx::Error| {
        db_error_code(err).is_some_and(|(code, _)| {
            ["22", "23", "40", "P0"]
                .iter()
                .any(|class| code.starts_with(class))
        })
    };
    if written.as_ref().err().is_none_or(refused) {
        *conn = Some((taken, since));
    }
    written
}

/// One statement for all of `appends`; the `(version, cursor)` of each one's events, empty
/// for an append whose stream moved.
async fn write_batch(
    conn: &mut PgConnection,
    appends: &[&Prepared],
) -> Result<Vec<Vec<(i64, Cursor)>>, sqlx::Error> {
    let n = appends.len();
    let events: usize = appends.iter().map(|a| a.len()).sum();
    let (mut tenants, mut types, mut ids) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut expected, mut expected_hashes, mut head_versions, mut head_hashes) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut streams, mut versions, mut event_ids, mut event_types, mut schemas) = (
        Vec::with_capacity(events),
        Vec::with_capacity(events),
        Vec::with_capacity(events),
        Vec::with_capacity(events),
        Vec::with_capacity(events),
    );
    let (mut payloads, mut metadatas, mut recorded_ats, mut hashes) = (
        Vec::with_capacity(events),
        Vec::with_capacity(events),
        Vec::with_capacity(events),
        Vec::with_capacity(events),
    );
    for (i, append) in appends.iter().enumerate() {
        let (tenant, stream_type, stream_id) = append.stream();
        tenants.push(tenant.as_uuid());
        types.push(stream_type);
        ids.push(stream_id);
        match &append.expected {
            Expected::NoStream => {
                expected.push(0);
                expected_hashes.push(Vec::new());
            }
            Expected::At { version, hash } => {
                expected.push(*version);
                expected_hashes.push(hash.to_vec());
            }
        }
        let (head_version, head_hash) = append.head();
        head_versions.push(head_version);
        head_hashes.push(head_hash.to_vec());
        for (j, (e, hash)) in append.events.iter().zip(&append.hashes).enumerate() {
            streams.push(i as i32 + 1);
            versions.push(append.first_version() + j as i64);
            event_ids.push(e.event_id);
            event_types.push(e.event_type.as_str());
            schemas.push(e.schema_version);
            payloads.push(e.payload.clone());
            metadatas.push(append.metadata.clone());
            recorded_ats.push(append.recorded_at);
            hashes.push(hash.to_vec());
        }
    }
    let rows = sqlx::query(
        "SELECT stream, version, event_position, event_transaction FROM tenantry_append_batch(\
         $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
    )
    .bind(tenants)
    .bind(types)
    .bind(ids)
    .bind(expected)
    .bind(expected_hashes)
    .bind(head_versions)
    .bind(head_hashes)
    .bind(streams)
    .bind(versions)
    .bind(event_ids)
    .bind(event_types)
    .bind(schemas)
    .bind(payloads)
    .bind(metadatas)
    .bind(recorded_ats)
    .bind(hashes)
    .fetch_all(conn)
    .await?;
    let mut cursors = vec![Vec::new(); n];
    for row in rows {
        let stream: i32 = row.try_get("stream")?;
        let slot = usize::try_from(stream - 1)
            .ok()
            .and_then(|i| cursors.get_mut(i))
            .ok_or_else(|| sqlx::Error::Protocol(format!("no append {stream} in the batch")))?;
        slot.push((
            row.try_get("version")?,
            Cursor::new(
                row.try_get("event_transaction")?,
                row.try_get("event_position")?,
            ),
        ));
    }
    Ok(cursors)
}
