//! Data keys kept in memory (migration 0014), and tenant reads outside any transaction.

use std::time::Duration;

use serde_json::{json, Value};
use tenantry_domain::personal::PersonalKind;
use tenantry_domain::TenantId;
use tenantry_eventstore::notified;
use tenantry_eventstore::read::{read_streams, StreamRef};
use tenantry_eventstore::scope::Connect;
use tenantry_eventstore::{EventStore, NewEvent, Vault};
use tokio::sync::watch;
use uuid::Uuid;

use crate::eventstore::load_and_append;
use crate::helpers::{eventually, fresh_store, superuser, test_vault};

/// A member invited with `email`, ready to be sealed.
fn invited(email: &str) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "MemberInvited".into(),
        schema_version: 1,
        payload: json!({ "member_id": Uuid::new_v4(), "email": email, "role": "admin" }),
    }
}

/// `email` sealed under `tenant`'s key, in a tenant transaction that commits.
async fn sealed(store: &EventStore, vault: &Vault, tenant: TenantId, email: &str) -> String {
    let mut events = [invited(email)];
    let mut tx = store.begin_tenant(tenant).await.unwrap();
    vault
        .seal(&mut tx, tenant, &mut None, &mut events)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    sealed_email(&events[0])
}

fn sealed_email(event: &NewEvent) -> String {
    let Value::String(email) = &event.payload["email"] else {
        panic!("no email in {}", event.payload)
    };
    assert!(email.starts_with("sealed:"), "not sealed: {email}");
    email.clone()
}

/// `value` opened by `vault` in `tenant`'s transaction.
async fn opened(store: &EventStore, vault: &Vault, tenant: TenantId, value: &str) -> String {
    let mut tx = store.begin_tenant(tenant).await.unwrap();
    let value = opened_on(&mut tx, vault, tenant, value).await;
    tx.commit().await.unwrap();
    value
}

/// `value` of `tenant` opened by `vault` on `conn`.
async fn opened_on(
    conn: &mut impl Connect,
    vault: &Vault,
    tenant: TenantId,
    value: &str,
) -> String {
    let mut value = value.to_owned();
    vault
        .open(conn, Some(tenant), vec![(&mut value, PersonalKind::Email)])
        .await
        .unwrap();
    value
}

/// A vault that keeps keys, listening until the returned sender is dropped.
async fn keeping_vault(store: &EventStore) -> (Vault, watch::Sender<bool>) {
    let vault = test_vault();
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(notified::listen(
        store.pool().clone(),
        vec![vault.subscriber()],
        stopped,
    ));
    assert!(
        eventually(Duration::from_secs(5), || async { vault.keeps_keys() }).await,
        "the vault never started listening"
    );
    (vault, stop)
}

#[tokio::test]
async fn a_key_made_in_a_transaction_that_rolls_back_is_never_kept() {
    let (store, _url) = fresh_store().await;
    let (vault, _stop) = keeping_vault(&store).await;
    let tenant = TenantId::new();

    // The first seal makes the tenant's key; the second finds it, written by this very
    // transaction, which then rolls back: the key never existed.
    let mut tx = store.begin_tenant(tenant).await.unwrap();
    for email in ["a@example.com", "b@example.com"] {
        let mut events = [invited(email)];
        vault
            .seal(&mut tx, tenant, &mut None, &mut events)
            .await
            .unwrap();
    }
    tx.rollback().await.unwrap();

    // Sealed now, the value must be under a key that exists: a vault that keeps nothing opens it.
    let value = sealed(&store, &vault, tenant, "c@example.com").await;
    assert_eq!(
        opened(&store, &test_vault(), tenant, &value).await,
        "c@example.com",
        "sealed under a key that was rolled back: unreadable for ever"
    );
}

#[tokio::test]
async fn kept_keys_seal_and_open_without_taking_a_connection() {
    let (store, _url) = fresh_store().await;
    let (vault, _stop) = keeping_vault(&store).await;
    let tenant = TenantId::new();
    // The first seal makes the tenant's key; the second finds it settled and keeps it.
    sealed(&store, &vault, tenant, "a@example.com").await;
    let value = sealed(&store, &vault, tenant, "b@example.com").await;

    let mut conn = store.on_demand();
    let mut events = [invited("c@example.com")];
    vault
        .seal(&mut conn, tenant, &mut None, &mut events)
        .await
        .unwrap();
    assert_eq!(
        opened_on(&mut conn, &vault, tenant, &value).await,
        "b@example.com"
    );
    assert!(!conn.is_taken(), "a connection was taken for kept keys");

    // A vault that keeps nothing takes one, outside any transaction, and opens the same.
    let sealed = sealed_email(&events[0]);
    assert_eq!(
        opened_on(&mut conn, &test_vault(), tenant, &sealed).await,
        "c@example.com"
    );
    assert!(conn.is_taken());
}

#[tokio::test]
async fn kept_keys_are_forgotten_when_any_erasure_is_heard() {
    let (store, url) = fresh_store().await;
    let (vault, _stop) = keeping_vault(&store).await;
    let (first, second) = (TenantId::new(), TenantId::new());
    let first_value = sealed(&store, &vault, first, "first@example.com").await;
    let second_value = sealed(&store, &vault, second, "second@example.com").await;
    // Opened once each: both keys are settled now, and kept.
    assert_eq!(
        opened(&store, &vault, first, &first_value).await,
        "first@example.com"
    );
    assert_eq!(
        opened(&store, &vault, second, &second_value).await,
        "second@example.com"
    );

    let mut su = superuser(&url).await;
    let erase = "UPDATE data_keys SET wrapped = NULL, lookup = NULL, erased_at = now() \
                 WHERE tenant_id = $1";
    // Erased without the announcement (triggers off): the kept key still opens, which shows
    // it is kept; a vault that keeps nothing reads the erasure.
    sqlx::query("SET session_replication_role = replica")
        .execute(&mut su)
        .await
        .unwrap();
    sqlx::query(erase)
        .bind(first.as_uuid())
        .execute(&mut su)
        .await
        .unwrap();
    assert_eq!(
        opened(&store, &vault, first, &first_value).await,
        "first@example.com",
        "the key was not kept"
    );
    assert_eq!(
        opened(&store, &test_vault(), first, &first_value).await,
        PersonalKind::Email.placeholder()
    );

    // An erasure announced, of the other tenant's key: every kept key is forgotten.
    sqlx::query("SET session_replication_role = origin")
        .execute(&mut su)
        .await
        .unwrap();
    sqlx::query(erase)
        .bind(second.as_uuid())
        .execute(&mut su)
        .await
        .unwrap();
    for (tenant, value) in [(second, &second_value), (first, &first_value)] {
        assert!(
            eventually(Duration::from_secs(5), || async {
                opened(&store, &vault, tenant, value).await == PersonalKind::Email.placeholder()
            })
            .await,
            "an erased key kept opening what it sealed"
        );
    }
}

#[tokio::test]
async fn streams_are_read_outside_any_transaction_confined_to_their_tenant() {
    let (store, _url) = fresh_store().await;
    let (mine, theirs) = (TenantId::new(), TenantId::new());
    let (my_stream, their_stream) = (Uuid::new_v4(), Uuid::new_v4());
    for (tenant, stream) in [(mine, my_stream), (theirs, their_stream)] {
        for n in [1, 2] {
            load_and_append(&store, tenant, stream, n).await.unwrap();
        }
    }
    let wanted = [
        StreamRef::Id("counter", my_stream),
        StreamRef::Id("counter", their_stream),
    ];

    let mut conn = store.pool().acquire().await.unwrap();
    let streams = read_streams(&mut conn, mine, &wanted).await.unwrap();
    assert_eq!(streams[0].len(), 2);
    assert!(streams[1].is_empty(), "another tenant's stream was read");
    let scope: Option<String> =
        sqlx::query_scalar("SELECT NULLIF(current_setting('tenantry.tenant_id', true), '')")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    assert_eq!(scope, None, "the read left its tenant on the connection");

    // Inside the tenant's own transaction, the read leaves its scope as it was; inside
    // another tenant's, it is refused.
    let mut tx = store.begin_tenant(mine).await.unwrap();
    let streams = read_streams(&mut tx, mine, &wanted).await.unwrap();
    assert_eq!((streams[0].len(), streams[1].len()), (2, 0));
    let scope: String = sqlx::query_scalar("SELECT current_setting('tenantry.tenant_id')")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(scope, mine.to_string());
    tx.commit().await.unwrap();
    let mut tx = store.begin_tenant(theirs).await.unwrap();
    let refused = read_streams(&mut tx, mine, &wanted).await;
    assert!(
        refused.is_err(),
        "a transaction of one tenant read another's streams"
    );
    tx.rollback().await.unwrap();
}
