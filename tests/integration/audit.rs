//! Audit and compliance: replay, verification, time travel and the access trail.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tenantry_domain::TenantId;
use tenantry_eventstore::{append, Expected, Metadata};
use uuid::Uuid;

use crate::eventstore::event;
use crate::helpers::{spawn_app, ADMIN_KEY};
use crate::walkthrough::organization;

async fn ndjson(response: reqwest::Response) -> Vec<Value> {
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let text = response.text().await.unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn history_replays_verifies_and_travels_in_time() {
    let app = spawn_app().await;
    let (org, mut owner) = organization(&app, "audited", "pro").await;
    let store = owner
        .ok(
            Method::POST,
            &format!("/v1/organizations/{org}/stores"),
            Some(json!({ "name": "v1", "domain": "a.example.com" })),
        )
        .await;
    let store_id = store["id"].as_str().unwrap().to_owned();
    for name in ["v2", "v3"] {
        owner
            .ok(
                Method::PATCH,
                &format!("/v1/stores/{store_id}"),
                Some(json!({ "name": name })),
            )
            .await;
    }

    // Time travel: the store as it was at each version.
    for (version, name) in [(1, "v1"), (2, "v2"), (3, "v3")] {
        let state = owner
            .ok(
                Method::GET,
                &format!("/v1/organizations/{org}/history/store/{store_id}?version={version}"),
                None,
            )
            .await;
        assert_eq!(state["state"]["name"], name, "version {version}");
    }
    let first = owner
        .ok(
            Method::GET,
            &format!("/v1/organizations/{org}/history/store/{store_id}?version=1"),
            None,
        )
        .await;
    let as_of = first["as_of"].as_str().unwrap().to_owned();
    let then = owner
        .ok(
            Method::GET,
            &format!(
                "/v1/organizations/{org}/history/store/{store_id}?as_of={}",
                as_of.replace('+', "%2B")
            ),
            None,
        )
        .await;
    assert_eq!(then["state"]["name"], "v1");

    // Replay: every event in feed order, filters, and resuming after a cursor. The feed
    // horizon is cluster-wide, so wait until the history holds the store's three events.
    let mut all = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while all
        .iter()
        .filter(|e: &&Value| e["stream_type"] == "store")
        .count()
        < 3
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the history never showed the store"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        all = ndjson(
            owner_get(
                &app,
                &owner.key,
                &format!("/v1/organizations/{org}/events?stream_type=store"),
            )
            .await,
        )
        .await;
    }
    let all =
        ndjson(owner_get(&app, &owner.key, &format!("/v1/organizations/{org}/events")).await).await;
    let store_events: Vec<&Value> = all.iter().filter(|e| e["stream_type"] == "store").collect();
    assert_eq!(
        store_events
            .iter()
            .map(|e| e["version"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(all.iter().all(|e| e["metadata"]["actor"].is_string()));
    let updates = ndjson(
        owner_get(
            &app,
            &owner.key,
            &format!("/v1/organizations/{org}/events?types=StoreUpdated"),
        )
        .await,
    )
    .await;
    assert_eq!(updates.len(), 2);
    let cursor = &all[1]["cursor"];
    let after = format!("{}-{}", cursor["transaction_id"], cursor["position"]);
    let rest = ndjson(
        owner_get(
            &app,
            &owner.key,
            &format!("/v1/organizations/{org}/events?after={after}"),
        )
        .await,
    )
    .await;
    assert_eq!(rest.first().unwrap()["event_id"], all[2]["event_id"]);

    // Verification, and the access trail it leaves.
    let verified = owner
        .ok(
            Method::GET,
            &format!("/v1/organizations/{org}/audit/verify"),
            None,
        )
        .await;
    assert_eq!(verified["ok"], true);
    let mut trail = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while !trail
        .iter()
        .any(|e: &Value| e["payload"]["kind"] == "verify")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the verification left no trail"
        );
        trail = ndjson(
            owner_get(
                &app,
                &owner.key,
                &format!("/v1/organizations/{org}/events?types=HistoryAccessed"),
            )
            .await,
        )
        .await;
    }
    let kinds: Vec<&str> = trail
        .iter()
        .map(|e| e["payload"]["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.iter().filter(|k| **k == "replay").count() >= 5,
        "{kinds:?}"
    );
    assert!(kinds.contains(&"verify"), "{kinds:?}");
    assert!(trail.iter().all(|e| e["metadata"]["actor"]
        .as_str()
        .unwrap()
        .starts_with("api-key:")));

    // Another tenant's owner sees none of it.
    let (_, other) = organization(&app, "outsider", "pro").await;
    for path in [
        format!("/v1/organizations/{org}/events"),
        format!("/v1/organizations/{org}/audit/verify"),
        format!("/v1/organizations/{org}/history/store/{store_id}?version=1"),
    ] {
        let response = owner_get(&app, &other.key, &path).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let _ = ADMIN_KEY;
}

async fn owner_get(app: &crate::helpers::TestApp, key: &str, path: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_long_history_streams_whole_and_in_order() {
    let app = spawn_app().await;
    let (org, owner) = organization(&app, "long-history", "pro").await;
    let tenant = TenantId::from_uuid(org.parse().unwrap());
    let streams: Vec<Uuid> = (0..50).map(|_| Uuid::now_v7()).collect();
    let mut tx = app.store.begin_tenant(tenant).await.unwrap();
    for (i, stream) in streams.iter().enumerate() {
        let batch = (0..100).map(|n| event(n as u64 + i as u64)).collect();
        append(
            &mut tx,
            tenant,
            "counter",
            *stream,
            Expected::NoStream,
            batch,
            &Metadata::default(),
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    let mut all = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while all.len() < 5_000 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of 5000 events",
            all.len()
        );
        all = ndjson(
            owner_get(
                &app,
                &owner.key,
                &format!("/v1/organizations/{org}/events?stream_type=counter"),
            )
            .await,
        )
        .await;
    }
    assert_eq!(all.len(), 5_000);
    for stream in &streams {
        let versions: Vec<i64> = all
            .iter()
            .filter(|e| e["stream_id"] == stream.to_string())
            .map(|e| e["version"].as_i64().unwrap())
            .collect();
        assert_eq!(versions, (1..=100).collect::<Vec<_>>());
    }
}
