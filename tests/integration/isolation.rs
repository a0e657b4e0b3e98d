//! Tenant isolation enforced by the database itself (row-level security).

use sqlx::Row;
use tenantry_domain::TenantId;
use tenantry_eventstore::read::read_feed;
use tenantry_eventstore::Cursor;

use crate::eventstore::load_and_append;
use crate::helpers::{eventually, spawn_app};

#[tokio::test]
async fn a_tenant_context_sees_no_row_of_another_tenant() {
    let app = spawn_app().await;
    let a: serde_json::Value = app
        .create_organization("tenant-a")
        .await
        .json()
        .await
        .unwrap();
    let b: serde_json::Value = app
        .create_organization("tenant-b")
        .await
        .json()
        .await
        .unwrap();
    let a = TenantId::from_uuid(a["id"].as_str().unwrap().parse().unwrap());
    let b = TenantId::from_uuid(b["id"].as_str().unwrap().parse().unwrap());
    for tenant in [a, b] {
        load_and_append(&app.store, tenant, uuid::Uuid::now_v7(), 1)
            .await
            .unwrap();
    }
    // Both organizations reach the read model.
    assert!(
        eventually(std::time::Duration::from_secs(10), || async {
            let mut tx = app.store.begin_system().await.unwrap();
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM organizations")
                .fetch_one(&mut *tx)
                .await
                .unwrap();
            n == 2
        })
        .await
    );

    let mut tx = app.store.begin_tenant(a).await.unwrap();
    for table in ["events", "streams", "organizations", "organization_slugs"] {
        let sql = format!("SELECT count(*) FROM {table} WHERE tenant_id = $1");
        let of_b: i64 = sqlx::query_scalar(&sql)
            .bind(b.as_uuid())
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(of_b, 0, "tenant A sees rows of B in {table}");
        let sql = format!("SELECT count(*) FROM {table} WHERE tenant_id <> $1");
        let others: i64 = sqlx::query_scalar(&sql)
            .bind(a.as_uuid())
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(others, 0, "tenant A sees other tenants' rows in {table}");
        let sql = format!("SELECT count(*) FROM {table}");
        let own: i64 = sqlx::query_scalar(&sql).fetch_one(&mut *tx).await.unwrap();
        assert!(own >= 1, "tenant A should see its own rows in {table}");
    }
    // The feed is system work: in a tenant context it still shows only the tenant's events.
    let events = read_feed(&mut tx, Cursor::START, 100).await.unwrap();
    assert!(!events.is_empty());
    assert!(events.iter().all(|e| e.tenant_id == a.as_uuid()));
    tx.rollback().await.unwrap();

    // Writing another tenant's row from A's context is refused.
    let mut tx = app.store.begin_tenant(a).await.unwrap();
    let err = sqlx::query("INSERT INTO organization_slugs (slug, tenant_id) VALUES ('sneaky', $1)")
        .bind(b.as_uuid())
        .execute(&mut *tx)
        .await
        .unwrap_err();
    assert_eq!(
        err.as_database_error().unwrap().code().as_deref(),
        Some("42501")
    );
}

#[tokio::test]
async fn without_a_tenant_the_application_role_sees_nothing() {
    let app = spawn_app().await;
    app.create_organization("lonely").await;
    let mut tx = app.store.pool().begin().await.unwrap();
    sqlx::query("SET LOCAL ROLE tenantry_app")
        .execute(&mut *tx)
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn events_cannot_be_updated_or_deleted_by_any_application_role() {
    let app = spawn_app().await;
    let created: serde_json::Value = app
        .create_organization("immutable")
        .await
        .json()
        .await
        .unwrap();
    let tenant = TenantId::from_uuid(created["id"].as_str().unwrap().parse().unwrap());

    for statement in [
        "UPDATE events SET payload = '{}'::jsonb",
        "DELETE FROM events",
        "TRUNCATE events",
    ] {
        // As the tenant's application role.
        let mut tx = app.store.begin_tenant(tenant).await.unwrap();
        let err = sqlx::query(statement).execute(&mut *tx).await.unwrap_err();
        assert_eq!(
            err.as_database_error().unwrap().code().as_deref(),
            Some("42501"),
            "{statement} as tenantry_app"
        );
        tx.rollback().await.unwrap();
        // As the system role.
        let mut tx = app.store.begin_system().await.unwrap();
        let err = sqlx::query(statement).execute(&mut *tx).await.unwrap_err();
        assert_eq!(
            err.as_database_error().unwrap().code().as_deref(),
            Some("42501"),
            "{statement} as tenantry_system"
        );
        tx.rollback().await.unwrap();
    }
    // Even a superuser, who bypasses row-level security and every grant, is stopped by the
    // append-only trigger (unless it switches triggers off, as the tamper tests do).
    let mut su = crate::helpers::superuser(&app.database_url).await;
    for statement in [
        "UPDATE events SET payload = '{}'::jsonb",
        "DELETE FROM events",
    ] {
        let err = sqlx::query(statement).execute(&mut su).await.unwrap_err();
        assert_eq!(
            err.as_database_error().unwrap().code().as_deref(),
            Some("42501"),
            "{statement} as superuser"
        );
    }

    let mut tx = app.store.begin_system().await.unwrap();
    let row = sqlx::query("SELECT payload FROM events")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    let payload: serde_json::Value = row.get("payload");
    assert_eq!(payload["slug"], "immutable");
}

#[tokio::test]
async fn every_tenant_table_forces_row_level_security_and_partitions_are_closed() {
    let app = spawn_app().await;
    let mut tx = app.store.pool().begin().await.unwrap();
    // Every ordinary or partitioned table with a tenant_id, except the event partitions
    // (reachable only through `events`).
    let unprotected: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped \
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition \
           AND NOT (c.relrowsecurity AND c.relforcerowsecurity) ORDER BY 1",
    )
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    assert!(
        unprotected.is_empty(),
        "tables without forced row-level security: {unprotected:?}"
    );
    let tenant_tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' \
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert!(tenant_tables >= 20, "{tenant_tables} tenant tables");
    tx.rollback().await.unwrap();

    // A partition cannot be read around the parent's policies.
    let mut tx = app.store.begin_tenant(TenantId::new()).await.unwrap();
    let err = sqlx::query("SELECT count(*) FROM events_p00")
        .execute(&mut *tx)
        .await
        .unwrap_err();
    assert_eq!(
        err.as_database_error().unwrap().code().as_deref(),
        Some("42501")
    );
}
