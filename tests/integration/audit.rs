//! Audit and compliance: replay, verification, time travel and the access trail.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tenantry_domain::TenantId;
use tenantry_eventstore::{append, Expected, Metadata};
use uuid::Uuid;

use crate::eventstore::event;
use crate::helpers::spawn_app;
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
        kinds.iter().filter(|k| **k == "replay").count() >= 4,
        "{kinds:?}"
    );
    assert!(kinds.contains(&"verify"), "{kinds:?}");
    assert!(trail.iter().all(|e| e["metadata"]["actor"]
        .as_str()
        .unwrap()
        .starts_with("api-key:")));

    // A NUL byte is refused, not sent to PostgreSQL (which rejects it: a 500, or a replay cut
    // short after its 200).
    for (path, status) in [
        (
            format!("/v1/organizations/{org}/events?stream_type=%00"),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/v1/organizations/{org}/events?types=Store%00"),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/v1/organizations/{org}/history/%00/{store_id}"),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let response = owner_get(&app, &owner.key, &path).await;
        assert_eq!(response.status(), status, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
    }

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

/// Every row of the read models that belongs to `tenant`, as text, in a stable order.
async fn tenant_snapshot(store: &tenantry_eventstore::EventStore, tenant: Uuid) -> Vec<String> {
    let mut rows = Vec::new();
    let mut tx = store.begin_system().await.unwrap();
    for projection in tenantry_projections::all() {
        for table in projection.tables() {
            let sql =
                format!("SELECT t::text FROM {table} t WHERE tenant_id = $1 ORDER BY t::text");
            let table_rows: Vec<String> = sqlx::query_scalar(&sql)
                .bind(tenant)
                .fetch_all(&mut *tx)
                .await
                .unwrap();
            rows.extend(table_rows.into_iter().map(|r| format!("{table} {r}")));
        }
    }
    rows
}

/// Whether the feed holds at least `events` and every projection has applied it.
async fn caught_up(store: &tenantry_eventstore::EventStore, events: usize) -> bool {
    let feed = crate::helpers::feed_after(store, tenantry_eventstore::Cursor::START, 100_000).await;
    if feed.len() < events {
        return false;
    }
    let Some(end) = feed.last().map(|e| e.cursor) else {
        return true;
    };
    for projection in tenantry_projections::all() {
        if tenantry_projections::consistency::checkpoint(store.pool(), projection.name())
            .await
            .unwrap()
            < end
        {
            return false;
        }
    }
    true
}

#[tokio::test]
async fn a_tenant_moves_between_deployments_and_rebuilds_identically() {
    let source = spawn_app().await;
    let (org, mut owner) = organization(&source, "movers", "pro").await;
    let (_, agent) = owner.store_with_agent(&org, "sales").await;
    let mut conversations = Vec::new();
    for i in 0..3 {
        let c = owner
            .ok(
                Method::POST,
                "/v1/conversations",
                Some(json!({ "agent_instance_id": agent, "customer_ref": format!("c{i}") })),
            )
            .await;
        let id = c["id"].as_str().unwrap().to_owned();
        owner
            .ok(
                Method::POST,
                &format!("/v1/conversations/{id}/messages"),
                Some(json!({ "role": "customer", "content": "hello", "tokens_in": 4 })),
            )
            .await;
        conversations.push(id);
    }
    let tenant: Uuid = org.parse().unwrap();
    let cli = |url: &str, args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tenantry"))
            .args(args)
            .env("DATABASE_URL", url)
            .env("TENANTRY_MASTER_KEY", crate::helpers::MASTER_KEY)
            .output()
            .unwrap()
    };
    let dir = std::env::temp_dir().join(format!("tenantry-export-{}", Uuid::new_v4().simple()));
    let out = cli(
        &source.database_url,
        &["export", "--tenant", &org, "--out", dir.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let exported = manifest["events"].as_u64().unwrap();
    assert!(exported >= 14, "{manifest}");

    // A tampered export is refused.
    let tampered =
        std::env::temp_dir().join(format!("tenantry-tampered-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&tampered).unwrap();
    std::fs::copy(dir.join("manifest.json"), tampered.join("manifest.json")).unwrap();
    let events = std::fs::read_to_string(dir.join("events.ndjson"))
        .unwrap()
        .replacen("\"tokens_in\":4", "\"tokens_in\":5", 1);
    std::fs::write(tampered.join("events.ndjson"), events).unwrap();
    let target = spawn_app().await;
    let out = cli(
        &target.database_url,
        &["import", tampered.to_str().unwrap()],
    );
    assert!(!out.status.success(), "a tampered export must not import");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not verify"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Data keys that do not unwrap under the target's master key are refused up front.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(["import", dir.to_str().unwrap()])
        .env("DATABASE_URL", &target.database_url)
        .env("TENANTRY_MASTER_KEY", "00".repeat(32))
        .output()
        .unwrap();
    assert!(!out.status.success(), "keys under another master key");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not unwrap"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = cli(&target.database_url, &["import", dir.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Both deployments' read models of the tenant agree once each has caught up. (The source
    // recorded the export itself after the exported events, so compare what was exported.)
    assert!(
        crate::helpers::eventually(std::time::Duration::from_secs(30), || caught_up(
            &target.store,
            exported as usize
        ))
        .await
    );
    let target_rows = tenant_snapshot(&target.store, tenant).await;
    // The target verifies (which it records), and the data keys travelled with the events:
    // it opens the sealed fields.
    let out = cli(
        &target.database_url,
        &["replay", "--tenant", &org, "--verify"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let mut admin = crate::walkthrough::Client::new(&target, crate::helpers::ADMIN_KEY);
    let moved = admin
        .ok(
            Method::GET,
            &format!("/v1/conversations/{}", conversations[0]),
            None,
        )
        .await;
    assert_eq!(moved["customer_ref"], "c0");
    assert_eq!(moved["messages"][0]["content"], "hello");
    // Rebuild the source from exactly the exported history: import it into a third deployment
    // and compare, so the export's own audit event does not count.
    let third = spawn_app().await;
    let out = cli(&third.database_url, &["import", dir.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(
        crate::helpers::eventually(std::time::Duration::from_secs(30), || caught_up(
            &third.store,
            exported as usize
        ))
        .await
    );
    tenantry_projections::rebuild::rebuild(
        &third.store,
        tenantry_projections::by_name("directory").unwrap(),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(tenant_snapshot(&third.store, tenant).await, target_rows);
    assert!(
        target_rows.iter().any(|r| r.starts_with("messages ")),
        "{target_rows:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&tampered);
}

#[tokio::test]
async fn credential_events_show_tenants_a_keys_id_and_prefix_never_its_hash() {
    let app = spawn_app().await;
    let (org, mut owner) = organization(&app, "keyholders", "pro").await;
    let admin_key = owner.issue_key(&org, "ops", "admin").await;
    let (_, agent) = owner.store_with_agent(&org, "sales").await;
    let widget = owner
        .ok(
            Method::POST,
            &format!("/v1/agent-instances/{agent}/widget-keys"),
            None,
        )
        .await;
    let admin = admin_key["secret"].as_str().unwrap().to_owned();
    let path = format!("/v1/organizations/{org}/events");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let events = loop {
        let events = ndjson(owner_get(&app, &admin, &path).await).await;
        if events.iter().any(|e| e["event_type"] == "WidgetKeyIssued") {
            break events;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the widget key's event reaches the history"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let credentials: Vec<&Value> = events
        .iter()
        .filter(|e| e["event_type"] == "ApiKeyIssued" || e["event_type"] == "WidgetKeyIssued")
        .collect();
    assert_eq!(
        credentials.len(),
        3,
        "the owner's, the admin's and the widget's"
    );
    for event in &credentials {
        assert!(event["payload"]["key_id"].is_string(), "{event}");
        assert!(event["payload"]["prefix"].is_string(), "{event}");
        assert!(event["payload"].get("hash").is_none(), "{event}");
    }
    assert!(credentials
        .iter()
        .any(|e| e["payload"]["prefix"] == admin_key["prefix"]));
    assert!(credentials
        .iter()
        .any(|e| e["payload"]["prefix"] == widget["prefix"]));

    // Time travel shows the keys without their hashes too.
    for path in [
        format!("/v1/organizations/{org}/history/organization/{org}"),
        format!("/v1/organizations/{org}/history/agent_instance/{agent}"),
    ] {
        let response = owner_get(&app, &admin, &path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let state: Value = response.json().await.unwrap();
        let keys = state["state"]["api_keys"]
            .as_object()
            .or_else(|| state["state"]["widget_keys"].as_object())
            .unwrap_or_else(|| panic!("{path}: {state}"));
        assert!(!keys.is_empty(), "{path}");
        for key in keys.values() {
            assert!(key["prefix"].is_string(), "{path}: {key}");
            assert!(key.get("hash").is_none(), "{path}: {key}");
        }
    }

    // What is stored is untouched: the chains still verify.
    let report: Value = owner_get(
        &app,
        &admin,
        &format!("/v1/organizations/{org}/audit/verify"),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(report["ok"], true, "{report}");
}
