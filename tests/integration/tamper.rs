//! Tamper evidence: chain verification catches changes made behind the store's back.

use sqlx::Executor;
use tenantry_domain::TenantId;
use tenantry_eventstore::read::verify_tenant;
use uuid::Uuid;

use crate::eventstore::load_and_append;
use crate::helpers::{fresh_store, superuser};

async fn tenant_with_stream() -> (tenantry_eventstore::EventStore, String, TenantId, Uuid) {
    let (store, url) = fresh_store().await;
    let tenant = TenantId::new();
    let stream = Uuid::now_v7();
    for n in 1..=5 {
        load_and_append(&store, tenant, stream, n).await.unwrap();
    }
    // A second, untouched stream.
    load_and_append(&store, tenant, Uuid::now_v7(), 9)
        .await
        .unwrap();
    (store, url, tenant, stream)
}

async fn broken_versions(
    store: &tenantry_eventstore::EventStore,
    tenant: TenantId,
) -> Vec<(Uuid, i64, String)> {
    let mut tx = store.begin_tenant(tenant).await.unwrap();
    let reports = verify_tenant(&mut tx, tenant).await.unwrap();
    assert_eq!(reports.len(), 2);
    reports
        .into_iter()
        .filter_map(|r| r.broken.map(|b| (r.stream_id, b.version, b.reason)))
        .collect()
}

/// Runs `sql` as superuser with triggers off (as an attacker with database access would).
async fn tamper(url: &str, sql: &str) {
    let mut conn = superuser(url).await;
    conn.execute("SET session_replication_role = replica")
        .await
        .unwrap();
    let result = conn.execute(sql).await.unwrap();
    assert!(
        result.rows_affected() >= 1,
        "tampering changed nothing: {sql}"
    );
}

#[tokio::test]
async fn an_untouched_history_verifies() {
    let (store, _, tenant, _) = tenant_with_stream().await;
    assert!(broken_versions(&store, tenant).await.is_empty());
}

#[tokio::test]
async fn an_edited_payload_is_reported() {
    let (store, url, tenant, stream) = tenant_with_stream().await;
    tamper(&url, &format!("UPDATE events SET payload = jsonb_set(payload, '{{n}}', '99') WHERE stream_id = '{stream}' AND version = 3")).await;
    let broken = broken_versions(&store, tenant).await;
    assert_eq!(broken.len(), 1, "{broken:?}");
    assert_eq!((broken[0].0, broken[0].1), (stream, 3));
}

#[tokio::test]
async fn an_edited_metadata_is_reported() {
    let (store, url, tenant, stream) = tenant_with_stream().await;
    tamper(&url, &format!("UPDATE events SET metadata = '{{\"actor\": \"someone-else\"}}' WHERE stream_id = '{stream}' AND version = 1")).await;
    let broken = broken_versions(&store, tenant).await;
    assert_eq!((broken[0].0, broken[0].1), (stream, 1));
}

#[tokio::test]
async fn a_removed_event_is_reported() {
    let (store, url, tenant, stream) = tenant_with_stream().await;
    tamper(
        &url,
        &format!("DELETE FROM events WHERE stream_id = '{stream}' AND version = 2"),
    )
    .await;
    let broken = broken_versions(&store, tenant).await;
    assert_eq!((broken[0].0, broken[0].1), (stream, 2));
}

#[tokio::test]
async fn a_removed_last_event_is_reported() {
    let (store, url, tenant, stream) = tenant_with_stream().await;
    tamper(
        &url,
        &format!("DELETE FROM events WHERE stream_id = '{stream}' AND version = 5"),
    )
    .await;
    let broken = broken_versions(&store, tenant).await;
    assert_eq!(broken.len(), 1);
    assert_eq!(broken[0].0, stream);
}

#[tokio::test]
async fn reordered_events_are_reported() {
    let (store, url, tenant, stream) = tenant_with_stream().await;
    tamper(
        &url,
        &format!(
            "UPDATE events SET version = 1000 WHERE stream_id = '{stream}' AND version = 2; \
             UPDATE events SET version = 2 WHERE stream_id = '{stream}' AND version = 4; \
             UPDATE events SET version = 4 WHERE stream_id = '{stream}' AND version = 1000;"
        ),
    )
    .await;
    let broken = broken_versions(&store, tenant).await;
    assert_eq!((broken[0].0, broken[0].1), (stream, 2));
}
