//! Optimistic concurrency on a real database.

use std::collections::HashSet;

use serde_json::json;
use tenantry_domain::TenantId;
use tenantry_eventstore::read::{read_stream, read_tenant_history, verify_tenant};
use tenantry_eventstore::{
    append, Cursor, EventStore, Expected, Metadata, NewEvent, Prepared, StoreError,
};
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

/// Loads the stream in a read transaction and appends one event after what it saw, by group
/// commit.
pub async fn load_and_append_grouped(
    store: &EventStore,
    tenant: TenantId,
    stream: Uuid,
    n: u64,
) -> Result<i64, StoreError> {
    let mut tx = store.begin_tenant(tenant).await?;
    let history = read_stream(&mut tx, tenant, "counter", stream).await?;
    tx.commit().await?;
    let recorded = store
        .append_grouped(prepared(
            tenant,
            stream,
            Expected::after(&history)?,
            vec![event(n)],
        ))
        .await?;
    Ok(recorded[0].version)
}

fn prepared(tenant: TenantId, stream: Uuid, expected: Expected, events: Vec<NewEvent>) -> Prepared {
    Prepared::new(
        tenant,
        "counter",
        stream,
        expected,
        events,
        &Metadata::default(),
        chrono::Utc::now(),
    )
    .unwrap()
}

/// Many writers' appends go to the database together: each writer hears its own outcome,
/// whatever else was in its batch.
#[tokio::test]
async fn grouped_appends_of_many_tenants_each_hear_their_own_outcome() {
    let (store, _) = fresh_store().await;
    let tenants: Vec<TenantId> = (0..4).map(|_| TenantId::new()).collect();
    let contested = Uuid::now_v7();
    let taken = Uuid::now_v7();
    load_and_append(&store, tenants[0], contested, 0)
        .await
        .unwrap();
    load_and_append(&store, tenants[1], taken, 0).await.unwrap();
    let mut tx = store.begin_tenant(tenants[0]).await.unwrap();
    let history = read_stream(&mut tx, tenants[0], "counter", contested)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let used_id = history[0].event_id;
    let at_one = Expected::after(&history).unwrap();

    // A wave of fresh appends on their own: different tenants' appends are committed
    // together (in one transaction). (The wave below holds a bad append, so its batch is
    // written again one by one.)
    let wave = futures::future::join_all((0..8).map(|i| {
        store.append_grouped(prepared(
            tenants[i % 4],
            Uuid::now_v7(),
            Expected::NoStream,
            vec![event(0)],
        ))
    }))
    .await;
    let mut batched: std::collections::HashMap<i64, HashSet<Uuid>> = Default::default();
    for recorded in wave {
        let recorded = recorded.unwrap();
        batched
            .entry(recorded[0].cursor.transaction_id)
            .or_default()
            .insert(recorded[0].tenant_id);
    }
    assert!(
        batched.values().any(|tenants| tenants.len() > 1),
        "no two tenants' appends were committed together: {batched:?}"
    );

    enum Kind {
        Fresh,
        Contested,
        Taken,
        UsedId,
    }
    let mut jobs = Vec::new();
    for i in 0..24 {
        jobs.push((tenants[i % 4], Uuid::now_v7(), Kind::Fresh));
    }
    for _ in 0..8 {
        jobs.push((tenants[0], contested, Kind::Contested));
    }
    for _ in 0..4 {
        jobs.push((tenants[1], taken, Kind::Taken));
    }
    jobs.push((tenants[0], Uuid::now_v7(), Kind::UsedId));

    let start = std::sync::Arc::new(tokio::sync::Barrier::new(jobs.len()));
    let mut tasks = Vec::new();
    for (tenant, stream, kind) in jobs {
        let (store, start, at_one) = (store.clone(), start.clone(), at_one.clone());
        tasks.push(tokio::spawn(async move {
            let (expected, mut events) = match kind {
                Kind::Fresh | Kind::Taken => (Expected::NoStream, vec![event(1), event(2)]),
                Kind::Contested => (at_one, vec![event(2)]),
                Kind::UsedId => (Expected::NoStream, vec![event(1)]),
            };
            if let Kind::UsedId = kind {
                events[0].event_id = used_id;
            }
            start.wait().await;
            let outcome = store
                .append_grouped(prepared(tenant, stream, expected, events))
                .await;
            (kind, tenant, stream, outcome)
        }));
    }
    let (mut fresh, mut contested_won, mut conflicts, mut duplicates) = (0, 0, 0, 0);
    for task in tasks {
        let (kind, tenant, stream, outcome) = task.await.unwrap();
        match (kind, outcome) {
            (Kind::Fresh, Ok(recorded)) => {
                assert_eq!(
                    recorded.iter().map(|e| e.version).collect::<Vec<_>>(),
                    [1, 2]
                );
                assert!(recorded[0].cursor < recorded[1].cursor);
                assert_eq!(
                    recorded[0].cursor.transaction_id,
                    recorded[1].cursor.transaction_id
                );
                assert!(recorded
                    .iter()
                    .all(|e| e.tenant_id == tenant.as_uuid() && e.stream_id == stream));
                fresh += 1;
            }
            (Kind::Contested, Ok(recorded)) => {
                assert_eq!(recorded[0].version, 2);
                contested_won += 1;
            }
            (Kind::Contested | Kind::Taken, Err(StoreError::Conflict { .. })) => conflicts += 1,
            (Kind::UsedId, Err(StoreError::DuplicateEvent(id))) => {
                assert_eq!(id, used_id);
                duplicates += 1;
            }
            (_, outcome) => panic!("unexpected outcome: {outcome:?}"),
        }
    }
    assert_eq!(
        (fresh, contested_won, conflicts, duplicates),
        (24, 1, 11, 1)
    );

    // Each tenant holds exactly its own appends, every chain verifies, and the refused
    // appends left nothing behind.
    for (i, tenant) in tenants.iter().enumerate() {
        let mut tx = store.begin_tenant(*tenant).await.unwrap();
        let history = read_tenant_history(&mut tx, *tenant, Cursor::START, 1_000)
            .await
            .unwrap();
        let reports = verify_tenant(&mut tx, *tenant).await.unwrap();
        tx.commit().await.unwrap();
        assert!(history.iter().all(|e| e.tenant_id == tenant.as_uuid()));
        // Two of the first wave, six fresh streams of two events, and:
        let expected_events = 2
            + 6 * 2
            + match i {
                0 => 2, // the contested stream: its first event and the winner's
                1 => 1, // the taken stream's first event
                _ => 0,
            };
        assert_eq!(history.len(), expected_events, "tenant {i}");
        assert!(
            reports.iter().all(|r| r.broken.is_none()),
            "tenant {i}: {reports:?}"
        );
    }
}
