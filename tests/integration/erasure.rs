//! Crypto-shredding: personal data is sealed at rest everywhere, readable through the API,
//! and unreadable everywhere once its key is destroyed, while counts, usage, billing and the
//! hash chains hold.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::Row;
use tenantry_domain::billing::Month;

use crate::helpers::{spawn_app, superuser, TestApp, MASTER_KEY};
use crate::walkthrough::{organization, Client};

/// Personal values the scenario writes; none may appear at rest.
const SECRETS: &[&str] = &[
    "ada@shredded.example.com",
    "billing@shredded.example.com",
    "cust-ada",
    "1 Main Street",
    "cust-bob",
    "bob's secret",
    "cust-cy",
    "cy's note",
    "anonymous hello",
];

/// Everything PostgreSQL holds of the tenant (events and every read-model table), as text.
async fn at_rest(app: &TestApp, org: &str) -> String {
    let mut su = superuser(&app.database_url).await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_attribute a ON a.attrelid = c.oid \
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition \
         AND a.attname = 'tenant_id'",
    )
    .fetch_all(&mut su)
    .await
    .unwrap();
    let mut text = String::new();
    for table in tables {
        let sql = format!("SELECT t::text FROM {table} t WHERE tenant_id::text = $1");
        for row in sqlx::query(&sql)
            .bind(org)
            .fetch_all(&mut su)
            .await
            .unwrap()
        {
            text.push_str(&row.get::<String, _>(0));
            text.push('\n');
        }
    }
    text
}

async fn replay(owner: &mut Client<'_>, org: &str) -> Vec<Value> {
    let response = owner
        .app
        .client
        .get(owner.app.url(&format!("/v1/organizations/{org}/events")))
        .bearer_auth(&owner.key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The replay once it holds `count` events of type `event_type` (the feed horizon is
/// cluster-wide, so the newest events may show a moment later).
async fn replay_with(owner: &mut Client<'_>, org: &str, event_type: &str, count: usize) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let events = replay(owner, org).await;
        if events
            .iter()
            .filter(|e| e["event_type"] == event_type)
            .count()
            >= count
        {
            return serde_json::to_string(&events).unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the history never showed {count} {event_type}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn start(owner: &mut Client<'_>, agent: &str, customer: Option<&str>) -> String {
    let mut body = json!({ "agent_instance_id": agent });
    if let Some(customer) = customer {
        body["customer_ref"] = json!(customer);
    }
    let c = owner
        .ok(Method::POST, "/v1/conversations", Some(body))
        .await;
    c["id"].as_str().unwrap().to_owned()
}

async fn say(owner: &mut Client<'_>, conversation: &str, content: &str) -> (StatusCode, Value) {
    owner
        .send(
            Method::POST,
            &format!("/v1/conversations/{conversation}/messages"),
            Some(json!({ "role": "customer", "content": content, "tokens_in": 7 })),
        )
        .await
}

async fn contents(owner: &mut Client<'_>, conversation: &str) -> (Value, Vec<String>) {
    let c = owner
        .ok(
            Method::GET,
            &format!("/v1/conversations/{conversation}"),
            None,
        )
        .await;
    let messages = c["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect();
    (c["customer_ref"].clone(), messages)
}

async fn emails(owner: &mut Client<'_>, org: &str) -> Vec<String> {
    let members = owner
        .ok(
            Method::GET,
            &format!("/v1/organizations/{org}/members"),
            None,
        )
        .await;
    let mut emails: Vec<String> = members["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["email"].as_str().unwrap().to_owned())
        .collect();
    emails.sort();
    emails
}

#[tokio::test]
async fn erasure_shreds_personal_data_and_keeps_the_books() {
    let app = spawn_app().await;
    let (org, mut owner) = organization(&app, "shredded", "pro").await;
    let invite = json!({ "email": "ada@shredded.example.com", "role": "developer" });
    owner
        .ok(
            Method::POST,
            &format!("/v1/organizations/{org}/members"),
            Some(invite.clone()),
        )
        .await;
    // Deciding on sealed data still works: the same email twice is refused.
    let (status, _) = owner
        .send(
            Method::POST,
            &format!("/v1/organizations/{org}/members"),
            Some(invite.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (_, agent) = owner.store_with_agent(&org, "customer_service").await;
    let ada = start(&mut owner, &agent, Some("cust-ada")).await;
    assert!(say(&mut owner, &ada, "I live at 1 Main Street")
        .await
        .0
        .is_success());
    assert!(say(&mut owner, &ada, "please hurry").await.0.is_success());
    let bob = start(&mut owner, &agent, Some("cust-bob")).await;
    let (status, answer) = say(&mut owner, &bob, "bob's secret").await;
    assert!(status.is_success());
    assert_eq!(
        answer["customer_ref"], "cust-bob",
        "the answer opens the reference"
    );
    // Cy is never erased alone: only the tenant's erasure reaches them.
    let cy = start(&mut owner, &agent, Some("cust-cy")).await;
    assert!(say(&mut owner, &cy, "cy's note").await.0.is_success());
    let anonymous = start(&mut owner, &agent, None).await;
    assert!(say(&mut owner, &anonymous, "anonymous hello")
        .await
        .0
        .is_success());

    // Readable through the API…
    assert_eq!(
        emails(&mut owner, &org).await,
        vec!["ada@shredded.example.com", "billing@shredded.example.com"]
    );
    let (customer, messages) = contents(&mut owner, &ada).await;
    assert_eq!(customer, "cust-ada");
    assert_eq!(messages, vec!["I live at 1 Main Street", "please hurry"]);
    let me = owner
        .ok(Method::GET, &format!("/v1/organizations/{org}"), None)
        .await;
    assert_eq!(me["billing_email"], "billing@shredded.example.com");
    let history = replay_with(&mut owner, &org, "MessageAppended", 5).await;
    for secret in SECRETS {
        assert!(history.contains(secret), "the replay shows {secret}");
    }
    // … and sealed at rest: in the events and in every read model.
    let rest = at_rest(&app, &org).await;
    assert!(rest.contains("sealed:v1:"));
    for secret in SECRETS {
        assert!(!rest.contains(secret), "{secret} is stored in plain text");
    }

    let month = Month::of(chrono::Utc::now());
    let usage_before = owner
        .ok(Method::GET, &format!("/v1/organizations/{org}/usage"), None)
        .await;
    assert_eq!(usage_before["conversations"], 4);
    assert_eq!(usage_before["messages"], 5);

    // Erasing one end customer (a developer may not; another tenant cannot even see it).
    let (_, mut stranger) = organization(&app, "elsewhere", "pro").await;
    let erase_ada = json!({ "customer_ref": "cust-ada" });
    for (path, body) in [("erase-customer", Some(erase_ada.clone())), ("erase", None)] {
        let (status, _) = stranger
            .send(
                Method::POST,
                &format!("/v1/organizations/{org}/{path}"),
                body,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let erased = owner
        .ok(
            Method::POST,
            &format!("/v1/organizations/{org}/erase-customer"),
            Some(erase_ada.clone()),
        )
        .await;
    assert_eq!(erased["scope"], "customer");
    assert_eq!(erased["keys_destroyed"], 1);
    let (status, problem) = owner
        .send(
            Method::POST,
            &format!("/v1/organizations/{org}/erase-customer"),
            Some(erase_ada),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    let (customer, messages) = contents(&mut owner, &ada).await;
    assert_eq!(customer, "[erased]");
    assert_eq!(messages, vec!["[erased]", "[erased]"]);
    let (status, problem) = say(&mut owner, &ada, "are you there?").await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["type"], "urn:tenantry:problem:customer-erased");
    let (customer, messages) = contents(&mut owner, &bob).await;
    assert_eq!(customer, "cust-bob");
    assert_eq!(messages, vec!["bob's secret"]);
    let history = replay_with(&mut owner, &org, "PersonalDataErased", 1).await;
    assert!(!history.contains("cust-ada") && !history.contains("1 Main Street"));
    assert!(history.contains("bob's secret"));

    // The command line erases the same way (bob), then the whole tenant over HTTP.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(["erase", "--tenant", &org, "--customer", "cust-bob"])
        .env("DATABASE_URL", &app.database_url)
        .env("TENANTRY_MASTER_KEY", MASTER_KEY)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let developer = owner.issue_key(&org, "dev", "developer").await;
    let mut developer = Client::new(&app, developer["secret"].as_str().unwrap());
    let (status, _) = developer
        .send(
            Method::POST,
            &format!("/v1/organizations/{org}/erase"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let erased = owner
        .ok(
            Method::POST,
            &format!("/v1/organizations/{org}/erase"),
            None,
        )
        .await;
    assert_eq!(erased["scope"], "tenant");
    assert_eq!(erased["keys_destroyed"], 2, "the tenant's key and cy's");

    // Nothing personal reads back anywhere…
    assert_eq!(
        emails(&mut owner, &org).await,
        vec!["erased@erased.invalid", "erased@erased.invalid"]
    );
    let me = owner
        .ok(Method::GET, &format!("/v1/organizations/{org}"), None)
        .await;
    assert_eq!(me["billing_email"], "erased@erased.invalid");
    let (_, messages) = contents(&mut owner, &anonymous).await;
    assert_eq!(messages, vec!["[erased]"]);
    let (customer, messages) = contents(&mut owner, &cy).await;
    assert_eq!(
        (customer, messages),
        (json!("[erased]"), vec!["[erased]".to_owned()])
    );
    let history = replay_with(&mut owner, &org, "PersonalDataErased", 3).await;
    for secret in SECRETS {
        assert!(!history.contains(secret), "the replay still shows {secret}");
    }
    let then = owner
        .ok(
            Method::GET,
            &format!("/v1/organizations/{org}/history/organization/{org}"),
            None,
        )
        .await;
    assert!(then["state"]["members"]
        .as_object()
        .unwrap()
        .values()
        .all(|m| m["email"] == "erased@erased.invalid"));

    // … while the counts, the usage, the billing log and the chains hold.
    let usage_after = owner
        .ok(Method::GET, &format!("/v1/organizations/{org}/usage"), None)
        .await;
    for figure in [
        "conversations",
        "messages",
        "tokens_in",
        "by_agent_instance",
    ] {
        assert_eq!(usage_after[figure], usage_before[figure], "{figure}");
    }
    let verified = owner
        .ok(
            Method::GET,
            &format!("/v1/organizations/{org}/audit/verify"),
            None,
        )
        .await;
    assert_eq!(verified["ok"], true, "{verified}");
    let report: Value = app
        .admin(Method::POST, "/v1/admin/reconciliations")
        .json(&json!({ "month": month }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(report["differences"], json!([]), "{report}");
    let erasures: Vec<Value> = replay(&mut owner, &org)
        .await
        .into_iter()
        .filter(|e| e["event_type"] == "PersonalDataErased")
        .collect();
    assert_eq!(erasures.len(), 3);
    assert!(erasures[1]["metadata"]["actor"]
        .as_str()
        .unwrap()
        .starts_with("cli:"));

    // The organization goes on: new personal data is sealed under new keys and reads back,
    // and an address erased before may be invited again.
    owner
        .ok(
            Method::POST,
            &format!("/v1/organizations/{org}/members"),
            Some(invite),
        )
        .await;
    assert!(emails(&mut owner, &org)
        .await
        .contains(&"ada@shredded.example.com".to_owned()));
    assert!(say(&mut owner, &anonymous, "hello again")
        .await
        .0
        .is_success());
    let (_, messages) = contents(&mut owner, &anonymous).await;
    assert_eq!(messages, vec!["[erased]", "hello again"]);
    let renamed = owner
        .ok(
            Method::PATCH,
            &format!("/v1/organizations/{org}"),
            Some(json!({ "name": "Shredded Inc" })),
        )
        .await;
    assert_eq!(renamed["billing_email"], "erased@erased.invalid");
    let rest = at_rest(&app, &org).await;
    for secret in SECRETS.iter().chain(&["hello again"]) {
        assert!(!rest.contains(secret), "{secret} is stored in plain text");
    }
}

#[tokio::test]
async fn a_process_without_the_master_key_records_no_personal_data_but_still_works() {
    use tenantry_commands::{CommandBus, Request};
    use tenantry_domain::organization::OrganizationCommand;
    use tenantry_domain::{Email, MemberId, OrganizationId, Role};
    use tenantry_eventstore::{EventStore, Metadata};

    let app = spawn_app().await;
    let (org, _) = organization(&app, "keyless", "pro").await;
    let org = OrganizationId::from_uuid(org.parse().unwrap());
    // A projections process: no master key.
    let store = EventStore::connect(&app.database_url, 2).await.unwrap();
    let commands = CommandBus::new(store, std::sync::Arc::new(tokio::sync::Notify::new()));
    let request = Request::new(Metadata::default());
    let alert = OrganizationCommand::RecordUsageAlert {
        month: Month::of(chrono::Utc::now()),
        threshold: 80,
    };
    commands
        .execute(org, alert, &request)
        .await
        .expect("a usage alert carries no personal data");
    let invite = OrganizationCommand::InviteMember {
        member_id: MemberId::new(),
        email: Email::parse("nobody@keyless.example.com").unwrap(),
        role: Role::Member,
    };
    let refused = commands.execute(org, invite, &request).await;
    assert!(
        refused.unwrap_err().to_string().contains("master key"),
        "personal data is never written unsealed"
    );
}
