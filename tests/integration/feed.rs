//! The gap-free feed: every committed event exactly once, in a causal order.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tenantry_domain::TenantId;
use tenantry_eventstore::read::{read_stream, read_tenant_history};
use tenantry_eventstore::{append, Cursor, Expected, Metadata};
use uuid::Uuid;

use crate::eventstore::{event, load_and_append, load_and_append_grouped};
use crate::helpers::{feed_after, feed_eventually, fresh_store};

#[tokio::test]
async fn a_reader_following_sixteen_writers_sees_every_event_once_in_stream_order() {
    sixteen_writers(false).await;
}

/// As above, with half the writers appending by group commit (outside any transaction of
/// theirs), half in their own transactions.
#[tokio::test]
async fn a_reader_following_grouped_and_transactional_writers_sees_every_event_once() {
    sixteen_writers(true).await;
}

async fn sixteen_writers(grouped: bool) {
    let (store, _) = fresh_store().await;
    let tenants: Vec<TenantId> = (0..8).map(|_| TenantId::new()).collect();
    let writers = 16;
    let per_writer = 500;

    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        let tenant = tenants[w % tenants.len()];
        tasks.push(tokio::spawn(async move {
            // Each writer spreads its events over a few streams of its tenant.
            let streams: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
            for i in 0..per_writer {
                let stream = streams[i % streams.len()];
                if grouped && w % 2 == 1 {
                    load_and_append_grouped(&store, tenant, stream, i as u64).await
                } else {
                    load_and_append(&store, tenant, stream, i as u64).await
                }
                .unwrap();
            }
        }));
    }

    let total = writers * per_writer;
    let mut seen: HashSet<Uuid> = HashSet::new();
    let mut last_version: HashMap<(Uuid, Uuid), i64> = HashMap::new();
    let mut cursor = Cursor::START;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while seen.len() < total {
        assert!(
            tokio::time::Instant::now() < deadline,
            "feed stalled at {} of {total}",
            seen.len()
        );
        let batch = feed_after(&store, cursor, 37).await;
        if batch.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        for e in batch {
            assert!(e.cursor > cursor, "the feed went backwards");
            cursor = e.cursor;
            assert!(
                seen.insert(e.event_id),
                "event {} delivered twice",
                e.event_id
            );
            let last = last_version.entry((e.tenant_id, e.stream_id)).or_insert(0);
            assert_eq!(
                e.version,
                *last + 1,
                "stream {} out of version order",
                e.stream_id
            );
            *last = e.version;
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert!(
        feed_after(&store, cursor, 100).await.is_empty(),
        "events beyond the expected total"
    );
    assert_eq!(seen.len(), total);
}

#[tokio::test]
async fn the_feed_waits_for_a_transaction_held_open_then_delivers_both() {
    let (store, _) = fresh_store().await;
    let tenant = TenantId::new();

    // The first writer takes its transaction id and holds it open.
    let mut held = store.begin_writer(tenant).await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *held)
        .await
        .unwrap();

    // A later transaction commits first, taking the earlier position.
    let late_stream = Uuid::now_v7();
    load_and_append(&store, tenant, late_stream, 2)
        .await
        .unwrap();

    // Only now does the first writer insert: the later position, the earlier transaction.
    let early_stream = Uuid::now_v7();
    let early = append(
        &mut held,
        tenant,
        "counter",
        early_stream,
        Expected::NoStream,
        vec![event(1)],
        &Metadata::default(),
    )
    .await
    .unwrap();

    assert!(
        feed_after(&store, Cursor::START, 100).await.is_empty(),
        "the feed must not hand out the later event while an earlier transaction may still commit"
    );

    held.commit().await.unwrap();
    let events = feed_eventually(&store, Cursor::START, 2).await;
    // Feed order is (transaction, position): the earlier transaction first, although its
    // position is the later one. A feed by position alone would get this wrong.
    let streams: Vec<Uuid> = events.iter().map(|e| e.stream_id).collect();
    assert_eq!(streams, vec![early_stream, late_stream]);
    assert!(events[0].cursor.position > events[1].cursor.position);
    assert_eq!(events[0].cursor, early[0].cursor);

    // The tenant history uses the same order.
    let mut tx = store.begin_tenant(tenant).await.unwrap();
    let history = read_tenant_history(&mut tx, tenant, Cursor::START, 100)
        .await
        .unwrap();
    assert_eq!(
        history.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        events.iter().map(|e| e.event_id).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn transactions_that_append_nothing_do_not_hold_the_feed_back() {
    let (store, _) = fresh_store().await;
    let tenant = TenantId::new();
    // A long read-model batch: it holds a transaction id, and appends no events.
    let mut batch = store.begin_system().await.unwrap();
    sqlx::query(
        "INSERT INTO projection_checkpoints (projection, transaction_id, position) \
         VALUES ('slow', 0, 0)",
    )
    .execute(&mut *batch)
    .await
    .unwrap();
    // A command still deciding: it may append, but holds no transaction id yet, so whatever
    // it appends will come after everything committed now.
    let mut deciding = store.begin_writer(tenant).await.unwrap();
    sqlx::query("SELECT 1")
        .execute(&mut *deciding)
        .await
        .unwrap();

    let stream = Uuid::now_v7();
    load_and_append(&store, tenant, stream, 1).await.unwrap();
    load_and_append(&store, tenant, stream, 2).await.unwrap();
    let events = feed_eventually(&store, Cursor::START, 2).await;
    assert_eq!(
        events.iter().map(|e| e.stream_id).collect::<Vec<_>>(),
        vec![stream, stream],
        "the feed waits only for transactions that may append"
    );
    batch.rollback().await.unwrap();
    deciding.rollback().await.unwrap();
}

#[tokio::test]
async fn a_rolled_back_append_leaves_no_trace() {
    let (store, _) = fresh_store().await;
    let tenant = TenantId::new();
    let stream = Uuid::now_v7();

    let mut tx = store.begin_tenant(tenant).await.unwrap();
    append(
        &mut tx,
        tenant,
        "counter",
        stream,
        Expected::NoStream,
        vec![event(1)],
        &Metadata::default(),
    )
    .await
    .unwrap();
    tx.rollback().await.unwrap();

    assert!(feed_after(&store, Cursor::START, 100).await.is_empty());
    let mut tx = store.begin_tenant(tenant).await.unwrap();
    assert!(read_stream(&mut tx, tenant, "counter", stream)
        .await
        .unwrap()
        .is_empty());
    tx.commit().await.unwrap();

    // The version is free again.
    assert_eq!(load_and_append(&store, tenant, stream, 2).await.unwrap(), 1);
    let events = feed_eventually(&store, Cursor::START, 1).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].payload["n"], 2);
}

/// The feed's horizon needs a fresh snapshot for its read; under REPEATABLE READ the read
/// would keep an older one and could skip a writer's events, so it is refused.
#[tokio::test]
async fn the_feed_is_not_read_in_a_repeatable_read_snapshot() {
    let (store, _) = fresh_store().await;
    let mut tx = store
        .pool()
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .await
        .unwrap();
    tenantry_eventstore::scope::enter_system(&mut tx)
        .await
        .unwrap();
    let refused = tenantry_eventstore::read::read_feed(&mut tx, Cursor::START, 10).await;
    assert!(refused.is_err(), "read under REPEATABLE READ: {refused:?}");
    drop(tx);
    let mut tx = store.begin_system().await.unwrap();
    tenantry_eventstore::read::read_feed(&mut tx, Cursor::START, 10)
        .await
        .expect("read under READ COMMITTED");
}
