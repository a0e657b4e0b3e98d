//! Reads: one stream, one tenant's history, and the platform feed.
//!
//! Feed and history are read in `(transaction_id, position)` order and only below the feed
//! horizon ([`feed_horizon`]): the oldest transaction still running that may append events.
//! An event whose transaction might still commit behind a later one is not handed out until
//! it has, so a reader that follows a cursor never skips or repeats an event. Transactions
//! that write no events (projections, checkpoints, other databases) do not hold it back.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use tenantry_domain::TenantId;
use uuid::Uuid;

use crate::chain::{verify_stream, StreamReport};
use crate::event::EVENT_COLUMNS;
use crate::{Cursor, RecordedEvent, StoreError};

fn decode_all(rows: Vec<sqlx::postgres::PgRow>) -> Result<Vec<RecordedEvent>, StoreError> {
    rows.iter().map(RecordedEvent::from_row).collect()
}

/// Every event of one stream, in version order.
///
/// # Errors
/// On a database or decoding failure.
pub async fn read_stream(
    conn: &mut PgConnection,
    tenant: TenantId,
    stream_type: &str,
    stream_id: Uuid,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events \
         WHERE tenant_id = $1 AND stream_type = $2 AND stream_id = $3 ORDER BY version"
    );
    let rows = sqlx::query(&sql)
        .bind(tenant.as_uuid())
        .bind(stream_type)
        .bind(stream_id)
        .fetch_all(conn)
        .await?;
    decode_all(rows)
}

/// A stream to read with [`read_streams`]: known by id, or named by a field of the first event
/// of another stream (a parent that never changes, such as a conversation's agent instance).
#[derive(Clone, Copy, Debug)]
pub enum StreamRef<'a> {
    Id(&'a str, Uuid),
    /// `(stream_type, via stream_type, via stream_id, field of the via stream's version 1)`.
    NamedBy(&'a str, &'a str, Uuid, &'a str),
}

/// Several streams of `tenant` in one round trip, each in version order, in the order asked
/// (a stream that does not exist, or a name that leads nowhere, gives an empty list).
///
/// Read by `tenantry_read_streams` (migration 0014), which confines itself to `tenant`: on a
/// connection in a tenant transaction, or outside any (one round trip, one snapshot).
///
/// # Errors
/// On a database or decoding failure.
pub async fn read_streams(
    conn: &mut PgConnection,
    tenant: TenantId,
    wanted: &[StreamRef<'_>],
) -> Result<Vec<Vec<RecordedEvent>>, StoreError> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let mut types = Vec::with_capacity(wanted.len());
    let mut ids = Vec::with_capacity(wanted.len());
    let mut via_types = Vec::with_capacity(wanted.len());
    let mut via_fields = Vec::with_capacity(wanted.len());
    for stream in wanted {
        let (stream_type, id, via) = match *stream {
            StreamRef::Id(stream_type, id) => (stream_type, id, None),
            StreamRef::NamedBy(stream_type, via_type, via_id, field) => {
                (stream_type, via_id, Some((via_type, field)))
            }
        };
        types.push(stream_type);
        ids.push(id);
        via_types.push(via.map(|(t, _)| t));
        via_fields.push(via.map(|(_, f)| f));
    }
    let rows = sqlx::query("SELECT * FROM tenantry_read_streams($1, $2, $3, $4, $5)")
        .bind(tenant.as_uuid())
        .bind(&types)
        .bind(&ids)
        .bind(&via_types)
        .bind(&via_fields)
        .fetch_all(conn)
        .await?;
    let mut streams: Vec<Vec<RecordedEvent>> = vec![Vec::new(); wanted.len()];
    for row in &rows {
        use sqlx::Row;
        let k: i32 = row.try_get("k")?;
        streams[k as usize].push(RecordedEvent::from_row(row)?);
    }
    Ok(streams)
}

/// The feed horizon: no event with a transaction id at or above it may be handed out yet.
/// Computed in a statement of its own: every writer below it has finished by then, so a
/// later statement's snapshot sees all they committed (migration 0007 tells how).
///
/// # Errors
/// On a database failure.
pub async fn feed_horizon(conn: &mut PgConnection) -> Result<String, StoreError> {
    Ok(sqlx::query_scalar("SELECT tenantry_feed_horizon()::text")
        .fetch_one(conn)
        .await?)
}

/// The tenant that owns stream `stream_type`/`id`: looked for among `within`'s streams only
/// when given (in that tenant's transaction), among every tenant's otherwise (in the
/// system's).
///
/// # Errors
/// On a database failure.
pub async fn stream_owner(
    conn: &mut PgConnection,
    within: Option<TenantId>,
    stream_type: &str,
    id: Uuid,
) -> Result<Option<TenantId>, StoreError> {
    let tenant: Option<Uuid> = match within {
        Some(tenant) => sqlx::query_scalar(
            "SELECT tenant_id FROM streams WHERE tenant_id = $1 AND stream_type = $2 AND stream_id = $3",
        )
        .bind(tenant.as_uuid()),
        None => sqlx::query_scalar(
            "SELECT tenant_id FROM streams WHERE stream_type = $1 AND stream_id = $2",
        ),
    }
    .bind(stream_type)
    .bind(id)
    .fetch_optional(conn)
    .await?;
    Ok(tenant.map(TenantId::from_uuid))
}

/// When stream `stream_type`/`id` of `tenant` began: its first event's `recorded_at`.
///
/// # Errors
/// On a database failure.
pub async fn stream_started_at(
    conn: &mut PgConnection,
    tenant: TenantId,
    stream_type: &str,
    id: Uuid,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT recorded_at FROM events WHERE tenant_id = $1 AND stream_type = $2 \
         AND stream_id = $3 ORDER BY version LIMIT 1",
    )
    .bind(tenant.as_uuid())
    .bind(stream_type)
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

/// The cursor of the last event below the feed horizon (system scope): what a consumer that
/// has passed it has seen all of. `None` when there is none.
///
/// # Errors
/// On a database failure.
pub async fn feed_head(conn: &mut PgConnection) -> Result<Option<Cursor>, StoreError> {
    let horizon = feed_horizon(&mut *conn).await?;
    let head: Option<(i64, i64)> = sqlx::query_as(
        "SELECT transaction_id::text::bigint, position FROM events \
         WHERE transaction_id < $1::text::xid8 \
         ORDER BY events.transaction_id DESC, events.position DESC LIMIT 1",
    )
    .bind(horizon)
    .fetch_optional(conn)
    .await?;
    Ok(head.map(|(transaction_id, position)| Cursor::new(transaction_id, position)))
}

/// Whether the feed holds an event at or after `cursor` (system scope). A consistency token
/// is the cursor of a committed event, so a token beyond the last one was never issued.
///
/// # Errors
/// On a database failure.
pub async fn feed_reaches(conn: &mut PgConnection, cursor: Cursor) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM events \
         WHERE (transaction_id, position) >= ($1::text::xid8, $2))",
    )
    .bind(cursor.transaction_id.to_string())
    .bind(cursor.position)
    .fetch_one(conn)
    .await?)
}

/// Up to `limit` events of the whole platform after `after`, in feed order (system scope).
///
/// One round trip: `tenantry_feed` (migration 0011) computes the horizon and then reads below
/// it, each in a snapshot of its own.
///
/// # Errors
/// On a database or decoding failure.
pub async fn read_feed(
    conn: &mut PgConnection,
    after: Cursor,
    limit: i64,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let sql = format!("SELECT {EVENT_COLUMNS} FROM tenantry_feed($1, $2, $3) AS events");
    let rows = sqlx::query(&sql)
        .bind(after.transaction_id)
        .bind(after.position)
        .bind(limit)
        .fetch_all(conn)
        .await?;
    decode_all(rows)
}

/// [`read_feed`] for the relay named `relay`, saving its checkpoint at `save` (when given) in
/// the same statement: one round trip per relay step. The checkpoint row is the relay's own
/// (`relay_checkpoints`); the caller holds the relay lock on `conn`.
///
/// # Errors
/// On a database or decoding failure; then neither the checkpoint moved nor was anything read.
pub async fn read_feed_saving(
    conn: &mut PgConnection,
    relay: &str,
    save: Option<Cursor>,
    after: Cursor,
    limit: i64,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let Some(save) = save else {
        return read_feed(conn, after, limit).await;
    };
    let sql = format!(
        "WITH saved AS ( \
             INSERT INTO relay_checkpoints (name, transaction_id, position, updated_at) \
             VALUES ($4, $5, $6, now()) \
             ON CONFLICT (name) DO UPDATE \
             SET transaction_id = EXCLUDED.transaction_id, position = EXCLUDED.position, \
                 updated_at = now()) \
         SELECT {EVENT_COLUMNS} FROM tenantry_feed($1, $2, $3) AS events"
    );
    let rows = sqlx::query(&sql)
        .bind(after.transaction_id)
        .bind(after.position)
        .bind(limit)
        .bind(relay)
        .bind(save.transaction_id)
        .bind(save.position)
        .fetch_all(conn)
        .await?;
    decode_all(rows)
}

/// The events strictly between two cursors, in feed order (system scope).
///
/// Every event below a cursor that the feed has handed out is committed, so this range is
/// complete without the snapshot bound; projections use it to fill a hole in what NATS
/// delivered. At most `limit` of them, the first.
///
/// # Errors
/// On a database or decoding failure.
pub async fn read_feed_between(
    conn: &mut PgConnection,
    after: Cursor,
    before: Cursor,
    limit: i64,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events \
         WHERE (transaction_id, position) > ($1::text::xid8, $2) \
           AND (transaction_id, position) < ($3::text::xid8, $4) \
         ORDER BY events.transaction_id, events.position LIMIT $5"
    );
    let rows = sqlx::query(&sql)
        .bind(after.transaction_id.to_string())
        .bind(after.position)
        .bind(before.transaction_id.to_string())
        .bind(before.position)
        .bind(limit)
        .fetch_all(conn)
        .await?;
    decode_all(rows)
}

/// Up to `limit` events of one tenant after `after`, in feed order.
///
/// # Errors
/// On a database or decoding failure.
pub async fn read_tenant_history(
    conn: &mut PgConnection,
    tenant: TenantId,
    after: Cursor,
    limit: i64,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events \
         WHERE tenant_id = $1 \
           AND (transaction_id, position) > ($2::text::xid8, $3) \
           AND transaction_id < $5::text::xid8 \
         ORDER BY events.transaction_id, events.position LIMIT $4"
    );
    let horizon = feed_horizon(&mut *conn).await?;
    let rows = sqlx::query(&sql)
        .bind(tenant.as_uuid())
        .bind(after.transaction_id.to_string())
        .bind(after.position)
        .bind(limit)
        .bind(horizon)
        .fetch_all(conn)
        .await?;
    decode_all(rows)
}

/// Verifies the hash chain, versions and head of every stream of `tenant`.
///
/// Streams are listed from both the heads and the events, so a stream whose head or whose
/// events were removed is reported too.
///
/// # Errors
/// On a database or decoding failure.
pub async fn verify_tenant(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> Result<Vec<StreamReport>, StoreError> {
    #[derive(sqlx::FromRow)]
    struct Listed {
        stream_type: String,
        stream_id: Uuid,
        version: Option<i64>,
        hash: Option<Vec<u8>>,
    }
    let streams: Vec<Listed> = sqlx::query_as(
        "SELECT k.stream_type, k.stream_id, s.version, s.hash FROM ( \
             SELECT stream_type, stream_id FROM streams WHERE tenant_id = $1 \
             UNION SELECT DISTINCT stream_type, stream_id FROM events WHERE tenant_id = $1 \
         ) k LEFT JOIN streams s \
           ON s.tenant_id = $1 AND s.stream_type = k.stream_type AND s.stream_id = k.stream_id \
         ORDER BY k.stream_type, k.stream_id",
    )
    .bind(tenant.as_uuid())
    .fetch_all(&mut *conn)
    .await?;
    let mut reports = Vec::with_capacity(streams.len());
    for Listed {
        stream_type,
        stream_id,
        version,
        hash,
    } in streams
    {
        let events = read_stream(conn, tenant, &stream_type, stream_id).await?;
        let head = version.zip(hash);
        let broken = verify_stream(&events, head.as_ref().map(|(v, h)| (*v, h.as_slice())));
        reports.push(StreamReport {
            stream_type,
            stream_id,
            events: events.len() as i64,
            broken,
        });
    }
    Ok(reports)
}

/// Streams the events of `stream_type` (of one tenant, or all) recorded in `[from, to)`, in
/// feed order, without holding them in memory (system scope, inside a transaction).
pub fn stream_recorded<'c>(
    conn: &'c mut PgConnection,
    stream_type: &'c str,
    tenant: Option<Uuid>,
    from: Option<chrono::DateTime<chrono::Utc>>,
    to: chrono::DateTime<chrono::Utc>,
) -> futures_core::stream::BoxStream<'c, Result<RecordedEvent, StoreError>> {
    use futures_util::StreamExt;
    const SQL: &str = "SELECT tenant_id, stream_type, stream_id, version, event_id, event_type, schema_version, \
         payload, metadata, recorded_at, position, transaction_id::text::bigint AS transaction_id, hash \
         FROM events WHERE stream_type = $1 AND ($2::uuid IS NULL OR tenant_id = $2) \
           AND ($3::timestamptz IS NULL OR recorded_at >= $3) AND recorded_at < $4 \
         ORDER BY events.transaction_id, events.position";
    sqlx::query(SQL)
        .bind(stream_type)
        .bind(tenant)
        .bind(from)
        .bind(to)
        .fetch(conn)
        .map(|row| {
            row.map_err(StoreError::from)
                .and_then(|row| RecordedEvent::from_row(&row))
        })
        .boxed()
}

/// [`stream_tenant_history`] in chunks of up to 256 events with their personal fields opened
/// (erased ones read as erased): what replays show. Keys are fetched through `store` in short
/// transactions of their own, since `conn` is busy streaming.
pub fn stream_revealed_history<'c>(
    conn: &'c mut PgConnection,
    store: &crate::EventStore,
    tenant: TenantId,
    filter: &'c HistoryFilter,
) -> futures_core::stream::BoxStream<'c, Result<Vec<RecordedEvent>, StoreError>> {
    use futures_util::StreamExt;
    let chunks = stream_tenant_history(conn, tenant, filter).ready_chunks(256);
    let state = (chunks, store.vault().opener(), store.clone());
    futures_util::stream::unfold(state, move |(mut chunks, mut opener, store)| async move {
        let chunk = chunks.next().await?;
        let revealed = async {
            let mut events = chunk.into_iter().collect::<Result<Vec<_>, _>>()?;
            opener.reveal_from(&store, tenant, &mut events).await?;
            Ok(events)
        }
        .await;
        Some((revealed, (chunks, opener, store)))
    })
    .boxed()
}

/// What part of a tenant's history to read.
#[derive(Clone, Debug, Default)]
pub struct HistoryFilter {
    pub after: Option<Cursor>,
    pub stream_type: Option<String>,
    pub stream_id: Option<Uuid>,
    pub event_types: Option<Vec<String>>,
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    pub to: Option<chrono::DateTime<chrono::Utc>>,
    /// Everything committed when the statement starts, even above the feed horizon. Right for
    /// a one-off snapshot (an export); wrong for reading in pieces by cursor, where an older
    /// transaction could still commit below the cursor.
    pub whole_snapshot: bool,
}

/// Streams one tenant's history in feed order from a server-side cursor: memory stays flat
/// however long the history is.
pub fn stream_tenant_history<'c>(
    conn: &'c mut PgConnection,
    tenant: TenantId,
    filter: &'c HistoryFilter,
) -> futures_core::stream::BoxStream<'c, Result<RecordedEvent, StoreError>> {
    use futures_util::StreamExt;
    const SQL: &str = "SELECT tenant_id, stream_type, stream_id, version, event_id, event_type, schema_version, \
         payload, metadata, recorded_at, position, transaction_id::text::bigint AS transaction_id, hash \
         FROM events WHERE tenant_id = $1 \
           AND (transaction_id, position) > ($2::text::xid8, $3) \
           AND ($9::text IS NULL OR transaction_id < $9::text::xid8) \
           AND ($4::text IS NULL OR stream_type = $4) AND ($5::uuid IS NULL OR stream_id = $5) \
           AND ($6::text[] IS NULL OR event_type = ANY($6)) \
           AND ($7::timestamptz IS NULL OR recorded_at >= $7) AND ($8::timestamptz IS NULL OR recorded_at < $8) \
         ORDER BY events.transaction_id, events.position";
    use futures_util::TryStreamExt;
    let after = filter.after.unwrap_or(Cursor::START);
    let rows = async move {
        let horizon = if filter.whole_snapshot {
            None
        } else {
            Some(feed_horizon(&mut *conn).await?)
        };
        Ok::<_, StoreError>(
            sqlx::query(SQL)
                .bind(tenant.as_uuid())
                .bind(after.transaction_id.to_string())
                .bind(after.position)
                .bind(filter.stream_type.as_deref())
                .bind(filter.stream_id)
                .bind(filter.event_types.as_deref())
                .bind(filter.from)
                .bind(filter.to)
                .bind(horizon)
                .fetch(conn)
                .map(|row| {
                    row.map_err(StoreError::from)
                        .and_then(|row| RecordedEvent::from_row(&row))
                }),
        )
    };
    futures_util::stream::once(rows).try_flatten().boxed()
}
