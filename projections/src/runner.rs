//! The projection runner.
//!
//! Each projection a runner feeds has a PostgreSQL connection of its own, `tenantry_system`
//! for its whole session, and applies a batch in `2 + k` round trips, where `k` is the number of statements
//! the projection writes it with: the first begins the transaction and locks and reads the
//! checkpoint, the last moves the checkpoint and commits. A batch that fails is rolled back
//! on the same connection (or the connection is dropped), so no transaction outlives it.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, Consumer, DeliverPolicy};
use async_nats::jetstream::message::Message;
use futures::{FutureExt, StreamExt};
use sqlx::{Executor, PgConnection, Row};
use tenantry_eventstore::bus::{Bus, HEADER_CURSOR, HEADER_PREV_CURSOR};
use tenantry_eventstore::read::{read_feed, read_feed_between};
use tenantry_eventstore::{Cursor, EventStore, RecordedEvent};
use tokio::sync::watch;

use crate::{Projection, ProjectionError};

/// How long a batch waits for more events after its first one.
const LINGER: Duration = Duration::from_millis(5);

/// The most events a projection catches up on from the store in one transaction.
const CATCH_UP: i64 = 500;

/// How long to wait after `failures` failures in a row: 0.1 s, doubling to 5 s.
fn backoff(failures: u32) -> Duration {
    (Duration::from_millis(100) * 2u32.pow(failures.min(6))).min(Duration::from_secs(5))
}

/// What one step of the runner did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A batch was processed: `applied` events went into the read model (including any
    /// filled in from the store), `skipped` were at or below the checkpoint.
    Processed { applied: usize, skipped: usize },
    /// Nothing arrived within the wait.
    Idle,
}

/// Feeds projections from one durable JetStream consumer: each event is delivered and
/// decoded once, and each projection applies the batch in a transaction of its own, with its
/// own checkpoint.
pub struct Runner {
    store: EventStore,
    bus: Bus,
    /// The durable consumer's name.
    consumer: String,
    projections: Vec<Applier>,
    messages: Option<pull::Stream>,
    batch_size: usize,
    /// The highest cursor delivered so far: a projection whose checkpoint is below it when
    /// nothing arrives catches up from the store.
    seen: Cursor,
}

/// One projection of a runner.
struct Applier {
    projection: Arc<dyn Projection>,
    /// Its own connection, opened on first use.
    conn: Option<PgConnection>,
    /// Set while a batch's transaction is open on `conn`: still set at the next batch, the
    /// last one was dropped half-way (cancelled), and the connection is discarded with it.
    in_transaction: bool,
    /// Its checkpoint as its last commit left it (`None` before the first).
    checkpoint: Option<Cursor>,
    /// Set while the store holds more than its last read from it took (a full read).
    catching_up: bool,
    /// After a failure: how many in a row, and when to try again (batches delivered before
    /// then pass it by, and it takes what it missed from the store).
    failures: u32,
    retry_at: Option<tokio::time::Instant>,
}

impl Runner {
    /// Feeds `projection` alone, from the consumer named after it.
    pub fn new(store: EventStore, bus: Bus, projection: Arc<dyn Projection>) -> Self {
        let consumer = projection.name().to_owned();
        Self::feeding(store, bus, &consumer, vec![projection])
    }

    /// Feeds `projections` from the one consumer `consumer`. They share its deliveries; each
    /// applies them in transactions of its own, and one that fails catches up from the store
    /// on its own (see [`Runner::process_next_batch`]).
    pub fn feeding(
        store: EventStore,
        bus: Bus,
        consumer: &str,
        projections: Vec<Arc<dyn Projection>>,
    ) -> Self {
        Self {
            store,
            bus,
            consumer: consumer.to_owned(),
            projections: projections
                .into_iter()
                .map(|projection| Applier {
                    projection,
                    conn: None,
                    in_transaction: false,
                    checkpoint: None,
                    catching_up: false,
                    failures: 0,
                    retry_at: None,
                })
                .collect(),
            messages: None,
            batch_size: 500,
            seen: Cursor::START,
        }
    }

    /// The consumer's name.
    pub fn name(&self) -> &str {
        &self.consumer
    }

    async fn messages(&mut self) -> Result<&mut pull::Stream, ProjectionError> {
        if self.messages.is_none() {
            let consumer = self.consumer().await?;
            let messages = consumer
                .stream()
                .max_messages_per_batch(self.batch_size)
                .heartbeat(Duration::from_secs(5))
                .expires(Duration::from_secs(30))
                .messages()
                .await
                .map_err(|e| ProjectionError::Nats(e.to_string()))?;
            self.messages = Some(messages);
        }
        Ok(self.messages.as_mut().expect("just set"))
    }

    /// The runner's durable consumer. It acknowledges a batch by its last message
    /// (`AckPolicy::All`): one acknowledgement per batch instead of one per event, which cost
    /// NATS and the runner more than delivering the event did.
    async fn consumer(&self) -> Result<Consumer<pull::Config>, ProjectionError> {
        let nats = |e: &dyn std::fmt::Display| ProjectionError::Nats(e.to_string());
        let name = self.consumer.as_str();
        let stream = self.bus.ensure_stream().await.map_err(|e| nats(&e))?;
        let config = pull::Config {
            durable_name: Some(name.to_owned()),
            filter_subject: self.bus.all_events(),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::All,
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 10_000,
            ..Default::default()
        };
        stream
            .get_or_create_consumer(name, config)
            .await
            .map_err(|e| nats(&e))
    }

    /// Waits up to `wait` for messages, then applies what arrived (up to a batch): each
    /// projection in one transaction with its checkpoint. The batch is then acknowledged
    /// (up to its highest message), whatever happened: a projection that failed, or that
    /// waits to try again after a failure, takes what it missed from the store, as it does
    /// for any hole, with the next batch it applies, or as soon as nothing arrives. So one
    /// failing projection never holds back the others, and nothing acknowledged is lost.
    ///
    /// # Errors
    /// On a NATS failure; or the first projection's failure, once the batch is acknowledged.
    #[tracing::instrument(skip_all, fields(consumer = %self.consumer, applied, skipped))]
    pub async fn process_next_batch(&mut self, wait: Duration) -> Result<Outcome, ProjectionError> {
        // A projection still catching up from the store does not wait for messages.
        let wait = if self.projections.iter().any(|a| a.catching_up) {
            Duration::ZERO
        } else {
            wait
        };
        let batch = self.next_batch(wait).await?;
        let delivered = batch
            .as_deref()
            .map(|batch| Delivered::parse_all(&self.consumer, batch));
        if let Some(highest) = delivered.as_ref().and_then(|d| d.highest) {
            self.seen = self.seen.max(highest);
        }
        let (store, seen, now) = (&self.store, self.seen, tokio::time::Instant::now());
        // Side by side: each on its own connection.
        let outcomes = futures::future::join_all(self.projections.iter_mut().map(|applier| {
            let due = applier.retry_at.is_none_or(|at| at <= now);
            let behind = applier.catching_up || applier.checkpoint.is_none_or(|c| c < seen);
            let source = match &delivered {
                Some(delivered) if due => Some(Source::Delivered(delivered)),
                // Nothing arrived: catch up with what was seen, from the store.
                None if due && behind => Some(Source::Store),
                _ => None,
            };
            async move {
                match source {
                    Some(source) => Some(applier.apply(store, source).await),
                    None => None,
                }
            }
        }))
        .await;
        let (mut applied, mut skipped) = (0, 0);
        let mut failure = None;
        for (applier, outcome) in self.projections.iter().zip(outcomes) {
            let projection = applier.projection.name();
            match outcome {
                Some(Ok((a, s))) => {
                    metrics::counter!("tenantry_projection_applied_total", "projection" => projection)
                        .increment(a as u64);
                    metrics::counter!("tenantry_projection_skipped_total", "projection" => projection)
                        .increment(s as u64);
                    applied += a;
                    skipped += s;
                }
                Some(Err(err)) => {
                    tracing::warn!(projection, error = %err, failures_in_a_row = applier.failures,
                        "projection batch failed; it will catch up from the store");
                    failure.get_or_insert(err);
                }
                None => {}
            }
        }
        if let Some(batch) = &batch {
            // Acknowledges every message up to the batch's highest.
            let highest = batch
                .iter()
                .max_by_key(|m| m.info().map_or(0, |info| info.stream_sequence));
            if let Some(highest) = highest {
                highest
                    .ack()
                    .await
                    .map_err(|e| ProjectionError::Nats(e.to_string()))?;
            }
        }
        if let Some(err) = failure {
            return Err(err);
        }
        if batch.is_none() && applied == 0 {
            return Ok(Outcome::Idle);
        }
        tracing::Span::current().record("applied", applied);
        tracing::Span::current().record("skipped", skipped);
        Ok(Outcome::Processed { applied, skipped })
    }

    /// The next batch: what arrives within `wait` and a few milliseconds after it; `None`
    /// when nothing does.
    async fn next_batch(
        &mut self,
        wait: Duration,
    ) -> Result<Option<Vec<Message>>, ProjectionError> {
        let batch_size = self.batch_size;
        let messages = self.messages().await?;
        let first = match tokio::time::timeout(wait, messages.next()).await {
            Err(_) => return Ok(None),
            Ok(None) => {
                self.messages = None;
                return Ok(None);
            }
            Ok(Some(Err(err))) => {
                self.messages = None;
                return Err(ProjectionError::Nats(err.to_string()));
            }
            Ok(Some(Ok(message))) => message,
        };
        // Whatever else arrives within a few milliseconds joins the batch: under load, fewer
        // and larger transactions (each costs the checkpoint's round trips) for a little lag.
        let mut batch = vec![first];
        let linger = tokio::time::Instant::now() + LINGER;
        while batch.len() < batch_size {
            match messages.next().now_or_never() {
                Some(Some(Ok(message))) => batch.push(message),
                Some(_) => break,
                None => match tokio::time::timeout_at(linger, messages.next()).await {
                    Ok(Some(Ok(message))) => batch.push(message),
                    _ => break,
                },
            }
        }

        Ok(Some(batch))
    }

    /// Processes batches until `shutdown` turns true.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut failures = 0;
        while !*shutdown.borrow() {
            tokio::select! {
                result = self.process_next_batch(Duration::from_millis(500)) => match result {
                    // A projection's failure is already logged; it waits on its own.
                    Ok(_) | Err(ProjectionError::Store(_)) => failures = 0,
                    Err(err) => {
                        tracing::warn!(consumer = %self.consumer, error = %err, "projection batch failed");
                        tokio::time::sleep(backoff(failures)).await;
                        failures += 1;
                    }
                },
                changed = shutdown.changed() => if changed.is_err() {
                    // The application is gone without saying so.
                    return;
                },
            }
        }
    }
}

/// What a projection applies.
#[derive(Clone, Copy)]
enum Source<'a> {
    /// A batch as NATS delivered it (holes filled from the store).
    Delivered(&'a Delivered),
    /// The feed past its checkpoint, from the store (up to a batch).
    Store,
}

impl Applier {
    /// Applies `source` in a transaction of the projection's own; `(applied, skipped)`. After
    /// a failure the projection waits (0.1 s, doubling to 5 s) before it tries again.
    async fn apply(
        &mut self,
        store: &EventStore,
        source: Source<'_>,
    ) -> Result<(usize, usize), ProjectionError> {
        let result = self.apply_once(store, source).await;
        match &result {
            Ok(_) => {
                self.failures = 0;
                self.retry_at = None;
            }
            Err(_) => {
                self.retry_at = Some(tokio::time::Instant::now() + backoff(self.failures));
                self.failures += 1;
            }
        }
        result
    }

    async fn apply_once(
        &mut self,
        store: &EventStore,
        source: Source<'_>,
    ) -> Result<(usize, usize), ProjectionError> {
        if self.in_transaction {
            self.conn = None;
            self.in_transaction = false;
        }
        if self.conn.is_none() {
            self.conn = Some(store.connect_system().await?);
        }
        let conn = self.conn.as_mut().expect("just opened");
        self.in_transaction = true;
        let result = apply_in_transaction(conn, self.projection.as_ref(), source).await;
        self.in_transaction = false;
        match result {
            Ok(Applied {
                applied,
                skipped,
                checkpoint,
                more,
            }) => {
                self.checkpoint = Some(checkpoint);
                self.catching_up = more;
                Ok((applied, skipped))
            }
            Err(err) => {
                if conn.execute("ROLLBACK").await.is_err() {
                    // The connection is broken; a new one is opened for the next batch.
                    self.conn = None;
                }
                Err(err)
            }
        }
    }
}

/// A batch's events as NATS delivered them, each with its predecessor's cursor
/// (`prevs[i]` is that of `events[i]`).
struct Delivered {
    events: Vec<RecordedEvent>,
    prevs: Vec<Cursor>,
    /// The highest cursor the batch names, unreadable messages' included.
    highest: Option<Cursor>,
}

impl Delivered {
    /// The readable messages of `batch`; an unreadable one is left out (the next shows the
    /// hole, and the event is filled in from the store).
    fn parse_all(consumer: &str, batch: &[Message]) -> Self {
        let mut delivered = Delivered {
            events: Vec::with_capacity(batch.len()),
            prevs: Vec::with_capacity(batch.len()),
            highest: None,
        };
        for message in batch {
            let cursor = message
                .headers
                .as_ref()
                .and_then(|h| h.get(HEADER_CURSOR)?.as_str().parse::<Cursor>().ok());
            delivered.highest = delivered.highest.max(cursor);
            match cursor.and_then(|cursor| Self::parse(message, cursor)) {
                Some((event, prev)) => {
                    delivered.events.push(event);
                    delivered.prevs.push(prev);
                }
                None => {
                    tracing::error!(consumer, subject = %message.subject, "malformed event message");
                }
            }
        }
        delivered
    }

    /// The event of `message`, whose cursor header named `cursor`, and its predecessor's.
    fn parse(message: &Message, cursor: Cursor) -> Option<(RecordedEvent, Cursor)> {
        let headers = message.headers.as_ref()?;
        let prev: Cursor = headers.get(HEADER_PREV_CURSOR)?.as_str().parse().ok()?;
        let event: RecordedEvent = serde_json::from_slice(&message.payload).ok()?;
        (event.cursor == cursor && prev < cursor).then_some((event, prev))
    }

    /// Where the events past `checkpoint` start, when they follow on from it and from each
    /// other (the usual case): they are then applied as delivered, without a copy.
    fn follows_on(&self, checkpoint: Cursor) -> Option<usize> {
        let start = self
            .events
            .iter()
            .position(|e| e.cursor > checkpoint)
            .unwrap_or(self.events.len());
        let chained = (start..self.events.len()).all(|i| {
            let before = if i == start {
                checkpoint
            } else {
                self.events[i - 1].cursor
            };
            self.prevs[i] == before
        });
        chained.then_some(start)
    }
}

/// What a projection's transaction did.
struct Applied {
    applied: usize,
    skipped: usize,
    /// The checkpoint it committed.
    checkpoint: Cursor,
    /// Whether the store held more than it read (a read as long as its limit).
    more: bool,
}

/// Applies `source` in one transaction on `conn`, with the projection's checkpoint: locked and
/// read in the round trip that begins the transaction, moved in the one that commits it.
async fn apply_in_transaction(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    source: Source<'_>,
) -> Result<Applied, ProjectionError> {
    let name = projection.name();
    // A projection's name is a constant of its code; quoted all the same.
    let literal = name.replace('\'', "''");
    // The no-op update creates the row on first use and locks it as `FOR UPDATE` would.
    let begin = format!(
        "BEGIN; \
         INSERT INTO projection_checkpoints AS c (projection, transaction_id, position) \
         VALUES ('{literal}', 0, 0) \
         ON CONFLICT (projection) DO UPDATE SET projection = c.projection \
         RETURNING c.transaction_id, c.position"
    );
    // Through `Executor` (whose futures are `Send`), not `RawSql`'s own methods.
    let begun = conn.fetch_one(sqlx::raw_sql(&begin)).await?;
    let mut checkpoint = Cursor::new(begun.try_get(0)?, begun.try_get(1)?);
    let mut more = false;
    let (events, skipped): (Cow<'_, [RecordedEvent]>, usize) = match source {
        Source::Store => {
            // The feed past the checkpoint, below the horizon.
            let events = read_feed(&mut *conn, checkpoint, CATCH_UP).await?;
            more = events.len() as i64 == CATCH_UP;
            (events.into(), 0)
        }
        Source::Delivered(delivered) => match delivered.follows_on(checkpoint) {
            Some(start) => (delivered.events[start..].into(), start),
            None => {
                let mut skipped = 0;
                let mut events = Vec::with_capacity(delivered.events.len());
                for (event, prev) in delivered.events.iter().zip(&delivered.prevs) {
                    if event.cursor <= checkpoint {
                        skipped += 1;
                        continue;
                    }
                    if *prev != checkpoint {
                        // Something between the checkpoint and this event was not delivered (yet):
                        // take it from the store, which holds the feed in the same order, a
                        // batch at most; the rest of a longer hole (and of this batch) later.
                        let hole =
                            read_feed_between(&mut *conn, checkpoint, event.cursor, CATCH_UP)
                                .await?;
                        if let Some(last) = hole.last() {
                            checkpoint = last.cursor;
                        }
                        events.extend(hole);
                        if *prev != checkpoint {
                            more = true;
                            break;
                        }
                    }
                    checkpoint = event.cursor;
                    events.push(event.clone());
                }
                (events.into(), skipped)
            }
        },
    };
    projection.apply_batch(&mut *conn, &events).await?;
    if let Some(last) = events.last() {
        checkpoint = last.cursor;
    }
    let commit = format!(
        "UPDATE projection_checkpoints \
         SET transaction_id = {}, position = {}, updated_at = now() \
         WHERE projection = '{literal}'; \
         COMMIT",
        checkpoint.transaction_id, checkpoint.position
    );
    conn.execute(sqlx::raw_sql(&commit)).await?;
    Ok(Applied {
        applied: events.len(),
        skipped,
        checkpoint,
        more,
    })
}
