//! The relay: follows the gap-free feed from its checkpoint and publishes each event to
//! JetStream.
//!
//! - Publishing is pipelined: a whole batch is sent before the first acknowledgement is
//!   awaited; the acknowledgements are then taken in feed order.
//! - The checkpoint advances only over events NATS acknowledged, so a crash or an outage at
//!   any point re-publishes, never loses. Re-publication is deduplicated by NATS
//!   (`Nats-Msg-Id` = event id) and, past its window, by the projections' checkpoints.
//! - Each message carries its cursor and its predecessor's (`Tenantry-Prev-Cursor`), so a
//!   consumer can tell a contiguous delivery from one with a hole.
//! - One relay publishes at a time: it holds a session advisory lock on its own connection,
//!   and reads and checkpoints through that connection, so a relay that lost its lock (its
//!   connection died) cannot move the checkpoint.
//! - A step is one round trip to PostgreSQL: the checkpoint of what the previous steps
//!   published is saved by the statement that reads the next batch (so the stored checkpoint
//!   trails NATS by at most one step, and [`Relay::flush`] saves it at once). The
//!   connection runs as `tenantry_system` for its whole session; it is the relay's alone.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use sqlx::PgConnection;
use tenantry_eventstore::bus::{Bus, HEADER_CURSOR, HEADER_PREV_CURSOR, HEADER_TENANT};
use tenantry_eventstore::read::read_feed_saving;
use tenantry_eventstore::{Cursor, EventStore, RecordedEvent, StoreError};
use tokio::sync::{watch, Notify};

/// Advisory lock key of the publishing relay ("tenantry" in ASCII).
const RELAY_LOCK: i64 = 0x7465_6e61_6e74_7279;
/// The least time between the starts of two steps, while the feed keeps up.
const LINGER: Duration = Duration::from_millis(5);
/// The relay's row in `relay_checkpoints`.
pub const RELAY_NAME: &str = "feed";

/// Why a relay step failed. The step can be retried: nothing past the acknowledged events
/// was checkpointed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("publishing to NATS failed: {0}")]
    Publish(String),
}

impl From<sqlx::Error> for RelayError {
    fn from(err: sqlx::Error) -> Self {
        RelayError::Store(StoreError::Database(err))
    }
}

/// Publishes the feed to JetStream.
pub struct Relay {
    store: EventStore,
    bus: Bus,
    appended: Arc<Notify>,
    batch_size: i64,
    idle_poll: Duration,
    /// The relay's own connection (not pooled): it holds the advisory lock.
    conn: Option<PgConnection>,
    /// Whether `conn` holds the lock.
    holding: bool,
    /// Everything up to here is acknowledged by NATS (read when the lock was taken).
    acknowledged: Cursor,
    /// The checkpoint as stored.
    saved: Cursor,
}

impl Relay {
    /// `appended` is the notifier the command bus wakes after each commit.
    pub fn new(store: EventStore, bus: Bus, appended: Arc<Notify>) -> Self {
        Self {
            store,
            bus,
            appended,
            batch_size: 1000,
            idle_poll: Duration::from_millis(50),
            conn: None,
            holding: false,
            acknowledged: Cursor::START,
            saved: Cursor::START,
        }
    }

    /// Publishes at most `size` events per step.
    pub fn with_batch_size(mut self, size: i64) -> Self {
        self.batch_size = size.max(1);
        self
    }

    /// Tries to become the publishing relay. Returns whether this relay holds the lock.
    ///
    /// # Errors
    /// When the database is unreachable.
    pub async fn try_acquire(&mut self) -> Result<bool, RelayError> {
        if self.holding {
            return Ok(true);
        }
        let conn = match self.conn.as_mut() {
            Some(conn) => conn,
            None => self.conn.insert(self.store.connect_system().await?),
        };
        match take_lock(conn).await {
            Ok(Some(checkpoint)) => {
                self.holding = true;
                (self.acknowledged, self.saved) = (checkpoint, checkpoint);
            }
            Ok(None) => {}
            Err(err) => {
                self.conn = None;
                return Err(err);
            }
        }
        Ok(self.holding)
    }

    /// Saves the checkpoint now if a step moved it since it was last stored.
    ///
    /// # Errors
    /// When the database is unreachable; the next step saves it then.
    pub async fn flush(&mut self) -> Result<(), RelayError> {
        let Some(conn) = self.conn.as_mut().filter(|_| self.holding) else {
            return Ok(());
        };
        if self.acknowledged > self.saved {
            // A read of nothing, saving the checkpoint on the way.
            read_feed_saving(
                conn,
                RELAY_NAME,
                Some(self.acknowledged),
                self.acknowledged,
                0,
            )
            .await?;
            self.saved = self.acknowledged;
        }
        Ok(())
    }

    /// Publishes the next batch of the feed and moves the checkpoint over what NATS
    /// acknowledged. Returns how many events were published (0: the feed is drained).
    /// Call [`Relay::try_acquire`] first; without the lock this publishes nothing.
    ///
    /// # Errors
    /// On a database failure or a refused publish; the events not acknowledged stay
    /// unpublished and the next step starts from them again.
    #[tracing::instrument(skip_all, err, fields(published))]
    pub async fn step(&mut self) -> Result<usize, RelayError> {
        let Some(conn) = self.conn.as_mut().filter(|_| self.holding) else {
            return Ok(0);
        };
        let save = (self.acknowledged > self.saved).then_some(self.acknowledged);
        let events = match read_feed_saving(
            conn,
            RELAY_NAME,
            save,
            self.acknowledged,
            self.batch_size,
        )
        .await
        {
            Ok(events) => events,
            Err(err) => {
                // The lock connection may be gone; acquire again before the next step.
                self.conn = None;
                self.holding = false;
                return Err(err.into());
            }
        };
        self.saved = self.acknowledged;
        let (acknowledged, result) = publish(&self.bus, self.acknowledged, &events).await;
        let published = events
            .iter()
            .take_while(|e| e.cursor <= acknowledged)
            .count();
        self.acknowledged = acknowledged;
        result?;
        tracing::Span::current().record("published", published);
        metrics::counter!("tenantry_relay_published_total").increment(published as u64);
        Ok(published)
    }

    /// A step, begun no sooner than [`LINGER`] after the previous one unless that one found
    /// a full batch: under a steady load a step then carries the commits of a few
    /// milliseconds rather than one or two (a step costs the same for one event as for
    /// hundreds: the feed horizon, a read, a round of acknowledgements).
    async fn step_lingering(
        &mut self,
        last_step: &mut tokio::time::Instant,
    ) -> Result<usize, RelayError> {
        tokio::time::sleep_until(*last_step + LINGER).await;
        *last_step = tokio::time::Instant::now();
        let published = self.step().await?;
        if published as i64 >= self.batch_size {
            // A backlog: the next step goes at once.
            *last_step -= LINGER;
        }
        Ok(published)
    }

    /// Runs until `shutdown` turns true: acquire the lock, then publish whenever the feed
    /// moves (woken by in-process commits, and polled for commits made elsewhere).
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        if let Err(err) = self.bus.ensure_stream().await {
            tracing::error!(error = %err, "cannot create the JetStream stream yet");
        }
        let mut backoff = Duration::from_millis(100);
        let mut last_step = tokio::time::Instant::now();
        while !*shutdown.borrow() {
            let wait = match self.try_acquire().await {
                Ok(false) => Duration::from_secs(1),
                Ok(true) => match self.step_lingering(&mut last_step).await {
                    Ok(n) if n > 0 => {
                        backoff = Duration::from_millis(100);
                        continue;
                    }
                    Ok(_) => {
                        backoff = Duration::from_millis(100);
                        self.idle_poll
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, retry_in = ?backoff, "relay step failed");
                        if matches!(err, RelayError::Publish(_)) {
                            let _ = self.bus.ensure_stream().await;
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        backoff
                    }
                },
                Err(err) => {
                    tracing::warn!(error = %err, "relay cannot reach the database");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = self.appended.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                changed = shutdown.changed() => if changed.is_err() {
                    // The application is gone without saying so.
                    break;
                },
            }
        }
        if let Err(err) = self.flush().await {
            tracing::warn!(error = %err, "relay checkpoint not saved at shutdown");
        }
    }
}

/// Takes the relay lock on `conn`; when taken, returns the stored checkpoint.
async fn take_lock(conn: &mut PgConnection) -> Result<Option<Cursor>, RelayError> {
    let (held,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1)")
        .bind(RELAY_LOCK)
        .fetch_one(&mut *conn)
        .await?;
    if !held {
        return Ok(None);
    }
    let row: Option<(i64, i64)> =
        sqlx::query_as("SELECT transaction_id, position FROM relay_checkpoints WHERE name = $1")
            .bind(RELAY_NAME)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(Some(
        row.map_or(Cursor::START, |(tx, pos)| Cursor::new(tx, pos)),
    ))
}

/// Publishes `events` (the feed right after `checkpoint`), pipelined, and returns the cursor
/// of the last one NATS acknowledged in order, with the first failure if there was one.
async fn publish(
    bus: &Bus,
    checkpoint: Cursor,
    events: &[RecordedEvent],
) -> (Cursor, Result<(), RelayError>) {
    let mut pending = Vec::with_capacity(events.len());
    let mut prev = checkpoint;
    let mut send_error = None;
    for event in events {
        match bus
            .jetstream
            .send_publish(bus.subject_for(event), message(event, prev))
            .await
        {
            Ok(ack) => pending.push((event.cursor, ack)),
            Err(err) => {
                send_error = Some(err.to_string());
                break;
            }
        }
        prev = event.cursor;
    }

    let mut acknowledged = checkpoint;
    let mut ack_error = None;
    for (cursor, ack) in pending {
        match ack.await {
            Ok(_) => acknowledged = cursor,
            Err(err) => {
                ack_error = Some(err.to_string());
                break;
            }
        }
    }
    match ack_error.or(send_error) {
        Some(err) => (acknowledged, Err(RelayError::Publish(err))),
        None => (acknowledged, Ok(())),
    }
}

fn message(event: &RecordedEvent, prev: Cursor) -> PublishMessage {
    let payload = serde_json::to_vec(event).expect("a recorded event always serializes");
    PublishMessage::build()
        .payload(Bytes::from(payload))
        .message_id(event.event_id.to_string())
        .header(HEADER_CURSOR, event.cursor.to_string().as_str())
        .header(HEADER_PREV_CURSOR, prev.to_string().as_str())
        .header(HEADER_TENANT, event.tenant_id.to_string().as_str())
}
