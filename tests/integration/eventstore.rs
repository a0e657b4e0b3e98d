//! Optimistic concurrency on a real database.

use std::collections::HashSet;

use serde_json::json;
use tenantry_domain::TenantId;
use tenantry_eventstore::read::read_stream;
use tenantry_eventstore::{append, EventStore, Expected, Metadata, NewEvent, StoreError};
use uuid::Uuid;

use crate::helpers::fresh_store;

pub fn event(n: u64) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "Counted".into(),
        schema_version: 1,
        payload: json!({ "n": n, "note": "a test event" }),
    }
}

/// Loads the stream and appends one event after what it saw.
pub async fn load_and_append(
    store: &EventStore,
    tenant: TenantId,
    stream: Uuid,
    n: u64,
) -> Result<i64, StoreError> {
    let mut tx = store.begin_tenant(tenant).await?;
    let history = read_stream(&mut tx, tenant, "counter", stream).await?;
    let recorded = append(
        &mut tx,
        tenant,
        "counter",
        stream,
        Expected::after(&history)?,
        vec![event(n)],
        &Metadata::default(),
    )
    .await?;
    tx.commit().await?;
    Ok(recorded[0].version)
}

#[tokio::test]
async fn thirty_two_writers_at_one_version_exactly_one_wins() {
    let (store, _) = fresh_store().await;
    let tenant = TenantId::new();
    let stream = Uuid::now_v7();
    load_and_append(&store, tenant, stream, 0).await.unwrap();

    let everyone_loaded = std::sync::Arc::new(tokio::sync::Barrier::new(32));
    let mut tasks = Vec::new();
    for n in 0..32 {
        let store = store.clone();
        let everyone_loaded = everyone_loaded.clone();
        tasks.push(tokio::spawn(async move {
            // Everyone loads version 1 before anyone appends.
            let mut tx = store.begin_tenant(tenant).await?;
            let history = read_stream(&mut tx, tenant, "counter", stream).await?;
            assert_eq!(history.len(), 1);
            everyone_loaded.wait().await;
            let result = append(
                &mut tx,
                tenant,
                "counter",
                stream,
                Expected::after(&history)?,
                vec![event(n)],
                &Metadata::default(),
            )
            .await;
            if result.is_ok() {
                tx.commit().await?;
            }
            result.map(|r| r[0].version)
        }));
    }
    let mut won = 0;
    let mut conflicts = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(version) => {
                assert_eq!(version, 2);
                won += 1;
            }
            Err(StoreError::Conflict { expected, .. }) => {
                assert_eq!(expected, 1);
                conflicts += 1;
            }
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!((won, conflicts), (1, 31));
}

#[tokio::test]
async fn racing_writers_leave_no_gap_and_no_duplicate_version() {
    let (store, _) = fresh_store().await;
    let tenant = TenantId::new();
    let stream = Uuid::now_v7();
    let per_writer = 5;

    let mut tasks = Vec::new();
    for writer in 0..32u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut versions = Vec::new();
            let mut conflicts = 0;
            while versions.len() < per_writer {
                match load_and_append(&store, tenant, stream, writer).await {
                    Ok(v) => versions.push(v),
                    Err(StoreError::Conflict { .. }) => conflicts += 1,
                    Err(other) => panic!("unexpected error: {other}"),
                }
            }
            (versions, conflicts)
        }));
    }
    let mut won = HashSet::new();
    let mut conflicts = 0;
    for task in tasks {
        let (versions, lost) = task.await.unwrap();
        conflicts += lost;
        for v in versions {
            assert!(won.insert(v), "version {v} was won twice");
        }
    }
    let total = 32 * per_writer as i64;
    assert_eq!(won, (1..=total).collect::<HashSet<_>>());
    assert!(
        conflicts > 0,
        "32 racing writers should have collided at least once"
    );

    let mut tx = store.begin_tenant(tenant).await.unwrap();
    let history = read_stream(&mut tx, tenant, "counter", stream)
        .await
        .unwrap();
    let versions: Vec<i64> = history.iter().map(|e| e.version).collect();
    assert_eq!(versions, (1..=total).collect::<Vec<_>>());
    let reports = tenantry_eventstore::read::verify_tenant(&mut tx, tenant)
        .await
        .unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].broken, None);
}

#[tokio::test]
async fn appending_to_a_new_stream_twice_conflicts() {
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
    tx.commit().await.unwrap();

    let mut tx = store.begin_tenant(tenant).await.unwrap();
    let err = append(
        &mut tx,
        tenant,
        "counter",
        stream,
        Expected::NoStream,
        vec![event(2)],
        &Metadata::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { expected: 0, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_batch_of_events_gets_consecutive_versions_and_one_transaction() {
    let (store, _) = fresh_store().await;
    let tenant = TenantId::new();
    let stream = Uuid::now_v7();
    let mut tx = store.begin_tenant(tenant).await.unwrap();
    let recorded = append(
        &mut tx,
        tenant,
        "counter",
        stream,
        Expected::NoStream,
        (0..5).map(event).collect(),
        &Metadata::default(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        recorded.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    let tx_ids: HashSet<i64> = recorded.iter().map(|e| e.cursor.transaction_id).collect();
    assert_eq!(tx_ids.len(), 1);
    assert!(recorded.windows(2).all(|w| w[0].cursor < w[1].cursor));
}
