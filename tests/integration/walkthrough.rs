//! What a new user does first, over HTTP: create an organization, a store, deploy an agent,
//! issue a widget key, run conversations through it, upgrade the tier, read everything back.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};

/// A client holding one key, sending every query with the last consistency token it saw.
pub struct Client<'a> {
    pub app: &'a TestApp,
    pub key: String,
    pub position: Option<String>,
}

impl<'a> Client<'a> {
    pub fn new(app: &'a TestApp, key: impl Into<String>) -> Self {
        Self {
            app,
            key: key.into(),
            position: None,
        }
    }

    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .app
            .client
            .request(method, self.app.url(path))
            .bearer_auth(&self.key);
        if let Some(position) = &self.position {
            request = request.header("X-Tenantry-Min-Position", position);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        if let Some(position) = response.headers().get("x-tenantry-position") {
            self.position = Some(position.to_str().unwrap().to_owned());
        }
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn ok(&mut self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, value) = self.send(method.clone(), path, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {value}");
        value
    }
}

impl Client<'_> {
    /// Issues an API key of `org` named `name` with `role`; returns the issued key (its
    /// `secret` shown this once).
    pub async fn issue_key(&mut self, org: &str, name: &str, role: &str) -> Value {
        self.ok(
            Method::POST,
            &format!("/v1/organizations/{org}/api-keys"),
            Some(json!({ "name": name, "role": role })),
        )
        .await
    }

    /// Creates a store in `org` and deploys an agent of `agent_type` into it; returns the
    /// store's and the agent instance's ids.
    pub async fn store_with_agent(&mut self, org: &str, agent_type: &str) -> (String, String) {
        let store = self
            .ok(
                Method::POST,
                &format!("/v1/organizations/{org}/stores"),
                Some(json!({ "name": "S", "domain": "s.example.com" })),
            )
            .await;
        let store = store["id"].as_str().unwrap().to_owned();
        let agent = self
            .ok(
                Method::POST,
                &format!("/v1/stores/{store}/agent-instances"),
                Some(json!({ "agent_type": agent_type })),
            )
            .await;
        (store, agent["id"].as_str().unwrap().to_owned())
    }
}

/// Creates an organization as the admin; returns its id and a client with its owner key
/// (holding the creation's consistency token).
pub async fn organization<'a>(app: &'a TestApp, slug: &str, tier: &str) -> (String, Client<'a>) {
    let mut admin = Client::new(app, crate::helpers::ADMIN_KEY);
    let created = admin
        .ok(
            Method::POST,
            "/v1/organizations",
            Some(json!({ "name": slug, "slug": slug, "tier": tier, "billing_email": format!("billing@{slug}.example.com") })),
        )
        .await;
    let mut owner = Client::new(app, created["api_key"]["secret"].as_str().unwrap());
    owner.position = admin.position;
    (created["id"].as_str().unwrap().to_owned(), owner)
}

#[tokio::test]
async fn a_new_user_walks_through_the_platform() {
    let app = spawn_app().await;
    let (org, mut owner) = organization(&app, "walkers", "basic").await;

    let me = owner
        .ok(Method::GET, &format!("/v1/organizations/{org}"), None)
        .await;
    assert_eq!(me["tier"], "basic");

    let store = owner
        .ok(
            Method::POST,
            &format!("/v1/organizations/{org}/stores"),
            Some(json!({ "name": "Main shop", "domain": "shop.walkers.example.com", "platform": "shopify" })),
        )
        .await;
    let store_id = store["id"].as_str().unwrap().to_owned();

    // Sales agents are a Pro feature.
    let (status, problem) = owner
        .send(
            Method::POST,
            &format!("/v1/stores/{store_id}/agent-instances"),
            Some(json!({ "agent_type": "sales" })),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        problem["type"].as_str().unwrap().ends_with("tier-required"),
        "{problem}"
    );
    assert_eq!(problem["required_tier"], "pro");

    let agent = owner
        .ok(
            Method::POST,
            &format!("/v1/stores/{store_id}/agent-instances"),
            Some(json!({ "agent_type": "customer_service" })),
        )
        .await;
    let agent_id = agent["id"].as_str().unwrap().to_owned();
    assert_eq!(agent["agent_version"], "1.1.0");

    let widget = owner
        .ok(
            Method::POST,
            &format!("/v1/agent-instances/{agent_id}/widget-keys"),
            None,
        )
        .await;
    let widget_secret = widget["secret"].as_str().unwrap().to_owned();
    assert!(widget_secret.starts_with("pk_widget_"));

    // The widget runs conversations: customer messages only.
    let mut widget = Client::new(&app, widget_secret);
    for i in 0..3 {
        let conversation = widget
            .ok(
                Method::POST,
                "/v1/conversations",
                Some(json!({ "agent_instance_id": agent_id, "customer_ref": format!("cust-{i}"), "channel": "web" })),
            )
            .await;
        let id = conversation["id"].as_str().unwrap().to_owned();
        widget
            .ok(
                Method::POST,
                &format!("/v1/conversations/{id}/messages"),
                Some(json!({ "role": "customer", "content": "Where is my order?" })),
            )
            .await;
        // Token counts are the platform's, never a widget's.
        let (status, problem) = widget
            .send(
                Method::POST,
                &format!("/v1/conversations/{id}/messages"),
                Some(
                    json!({ "role": "customer", "content": "Where is my order?", "tokens_in": 10_000_000 }),
                ),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
        assert_eq!(problem["field"], "tokens_in");
        let (status, _) = widget
            .send(
                Method::POST,
                &format!("/v1/conversations/{id}/messages"),
                Some(json!({ "role": "agent", "content": "pretending" })),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        owner
            .ok(
                Method::POST,
                &format!("/v1/conversations/{id}/messages"),
                Some(
                    json!({ "role": "agent", "content": "It ships today.", "tokens_in": 9, "tokens_out": 7 }),
                ),
            )
            .await;
        let (status, _) = widget
            .send(
                Method::POST,
                &format!("/v1/conversations/{id}/end"),
                Some(json!({ "resolution": "resolved" })),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "a widget key cannot end conversations"
        );
        owner
            .ok(
                Method::POST,
                &format!("/v1/conversations/{id}/end"),
                Some(json!({ "resolution": "resolved" })),
            )
            .await;
    }

    // After its start, a conversation's commands are decided from the streams the server
    // keeps: the metric says so.
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("tenantry_conversation_decisions_total{source=\"memory\"}"),
        "{metrics}"
    );

    // Upgrade to Pro: now a sales agent is possible.
    let upgraded = owner
        .ok(
            Method::POST,
            &format!("/v1/organizations/{org}/tier"),
            Some(json!({ "tier": "pro" })),
        )
        .await;
    assert_eq!(upgraded["tier"], "pro");
    owner
        .ok(
            Method::POST,
            &format!("/v1/stores/{store_id}/agent-instances"),
            Some(json!({ "agent_type": "sales" })),
        )
        .await;

    // Read everything back (the client sends its last token, so nothing is stale).
    let org_view = owner
        .ok(Method::GET, &format!("/v1/organizations/{org}"), None)
        .await;
    assert_eq!(org_view["tier"], "pro");
    let stores = owner
        .ok(
            Method::GET,
            &format!("/v1/organizations/{org}/stores"),
            None,
        )
        .await;
    assert_eq!(stores["data"].as_array().unwrap().len(), 1);
    let agents = owner
        .ok(
            Method::GET,
            &format!("/v1/stores/{store_id}/agent-instances"),
            None,
        )
        .await;
    assert_eq!(agents["data"].as_array().unwrap().len(), 2);
    let conversations = owner
        .ok(
            Method::GET,
            &format!("/v1/agent-instances/{agent_id}/conversations"),
            None,
        )
        .await;
    let conversations = conversations["data"].as_array().unwrap();
    assert_eq!(conversations.len(), 3);
    assert!(conversations
        .iter()
        .all(|c| c["status"] == "ended" && c["message_count"] == 2));
    let first = conversations[0]["id"].as_str().unwrap();
    let detail = owner
        .ok(Method::GET, &format!("/v1/conversations/{first}"), None)
        .await;
    let messages = detail["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["role"], "customer");
    assert_eq!(detail["tokens_in"], 9);
    assert_eq!(detail["tokens_out"], 7);
    let members = owner
        .ok(
            Method::GET,
            &format!("/v1/organizations/{org}/members"),
            None,
        )
        .await;
    assert_eq!(members["data"][0]["role"], "owner");
    let keys = owner
        .ok(
            Method::GET,
            &format!("/v1/organizations/{org}/api-keys"),
            None,
        )
        .await;
    assert_eq!(keys["data"][0]["role"], "owner");
    assert!(keys["data"][0].get("secret").is_none());
    let definitions = owner.ok(Method::GET, "/v1/agent-definitions", None).await;
    assert!(definitions["data"].as_array().unwrap().len() >= 4);
}

#[tokio::test]
async fn if_match_idempotency_and_etags() {
    let app = spawn_app().await;
    let (org, mut owner) = organization(&app, "careful-http", "pro").await;
    let store = owner
        .ok(
            Method::POST,
            &format!("/v1/organizations/{org}/stores"),
            Some(json!({ "name": "A", "domain": "a.example.com" })),
        )
        .await;
    let id = store["id"].as_str().unwrap().to_owned();
    let version = store["version"].as_i64().unwrap();

    // ETag on a single-resource GET.
    let response = app
        .client
        .get(app.url(&format!("/v1/stores/{id}")))
        .bearer_auth(&owner.key)
        .header("X-Tenantry-Min-Position", owner.position.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["etag"], format!("\"{version}\""));

    // A stale If-Match is 412; the current one works.
    let stale = app
        .client
        .patch(app.url(&format!("/v1/stores/{id}")))
        .bearer_auth(&owner.key)
        .header("If-Match", format!("\"{}\"", version + 5))
        .json(&json!({ "name": "B" }))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    let fresh = app
        .client
        .patch(app.url(&format!("/v1/stores/{id}")))
        .bearer_auth(&owner.key)
        .header("If-Match", format!("\"{version}\""))
        .json(&json!({ "name": "B" }))
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), StatusCode::OK);

    // The same Idempotency-Key and body: the same response, one store.
    let create = || {
        app.client
            .post(app.url(&format!("/v1/organizations/{org}/stores")))
            .bearer_auth(&owner.key)
            .header("Idempotency-Key", "store-2")
            .json(&json!({ "name": "Second", "domain": "b.example.com" }))
    };
    let first: Value = create().send().await.unwrap().json().await.unwrap();
    let again = create().send().await.unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    let again: Value = again.json().await.unwrap();
    assert_eq!(first, again);
    // The same key with another body is a conflict.
    let other = app
        .client
        .post(app.url(&format!("/v1/organizations/{org}/stores")))
        .bearer_auth(&owner.key)
        .header("Idempotency-Key", "store-2")
        .json(&json!({ "name": "Third", "domain": "c.example.com" }))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::CONFLICT);

    // Oversized and unknown fields.
    let huge = "x".repeat(1024 * 1024 + 10);
    let response = app
        .client
        .post(app.url(&format!("/v1/organizations/{org}/stores")))
        .bearer_auth(&owner.key)
        .header("content-type", "application/json")
        .body(format!("{{\"name\": \"{huge}\"}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let (status, problem) = owner
        .send(
            Method::POST,
            &format!("/v1/organizations/{org}/stores"),
            Some(json!({ "name": "A", "domain": "a.example.com", "colour": "red" })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["field"], "colour");
}

#[tokio::test]
async fn each_organization_is_rate_limited_by_its_tier() {
    let app = crate::helpers::spawn_app_with(|s| s.rate_limit_per_minute = Some(5)).await;
    let (org, owner) = organization(&app, "hasty", "basic").await;
    let (other_org, other) = organization(&app, "patient", "basic").await;
    let get = |key: &str, org: &str| {
        app.client
            .get(app.url(&format!("/v1/organizations/{org}/stores")))
            .bearer_auth(key.to_owned())
            .send()
    };
    for remaining in (0..5).rev() {
        let response = get(&owner.key, &org).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["ratelimit-limit"], "5");
        assert_eq!(
            response.headers()["ratelimit-remaining"],
            remaining.to_string().as_str()
        );
    }
    let limited = get(&owner.key, &org).await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(
        limited.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert_eq!(
        limited.headers()["content-type"],
        "application/problem+json"
    );
    // Another organization has its own allowance; the platform admin has none.
    assert_eq!(
        get(&other.key, &other_org).await.unwrap().status(),
        StatusCode::OK
    );
    for _ in 0..8 {
        assert_eq!(
            get(crate::helpers::ADMIN_KEY, &org).await.unwrap().status(),
            StatusCode::OK
        );
    }
}

/// The tier comes from what created the organization: before the read model has it (here it
/// never will, projections are off) a new Pro organization is limited as Pro, not as Basic.
#[tokio::test]
async fn a_new_organization_is_limited_by_its_own_tier_at_once() {
    use futures::StreamExt;
    let app = crate::helpers::spawn_app_with(|s| s.run_projections = false).await;
    let (org, owner) = organization(&app, "eager", "pro").await;
    let path = app.url(&format!("/v1/organizations/{org}/stores"));
    let statuses: Vec<(StatusCode, String)> = futures::stream::iter(0..700)
        .map(|_| {
            let request = app.client.get(&path).bearer_auth(&owner.key).send();
            async move {
                let response = request.await.unwrap();
                let limit = response.headers()["ratelimit-limit"]
                    .to_str()
                    .unwrap()
                    .to_owned();
                (response.status(), limit)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let limited = statuses
        .iter()
        .filter(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(limited, 0, "{limited} of 700 answered 429");
    assert!(statuses.iter().all(|(_, limit)| limit == "3000"));
}

/// A widget key spends allowances of its own (per key and per client address), never its
/// organization's: a flood of widget requests leaves the owner's secret key untouched.
#[tokio::test]
async fn widget_traffic_does_not_drain_its_organizations_limit() {
    let app = crate::helpers::spawn_app_with(|s| s.rate_limit_per_minute = Some(50)).await;
    let (org, mut owner) = organization(&app, "popular", "pro").await;
    let (_, agent) = owner.store_with_agent(&org, "sales").await;
    let widget = owner
        .ok(
            Method::POST,
            &format!("/v1/agent-instances/{agent}/widget-keys"),
            None,
        )
        .await;
    let widget = widget["secret"].as_str().unwrap().to_owned();
    // Any request of the widget's counts, whatever the route answers (here 403).
    let path = app.url(&format!("/v1/organizations/{org}/stores"));
    let mut limited = 0;
    for i in 0..150 {
        let response = app
            .client
            .get(&path)
            .bearer_auth(&widget)
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            limited += 1;
            assert_eq!(response.headers()["ratelimit-limit"], "120", "request {i}");
        } else {
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "request {i}");
        }
    }
    // 120 at once, then two a second.
    assert!(
        (20..=30).contains(&limited),
        "120 a minute per client address: {limited} of 150 limited"
    );
    let response = app
        .client
        .get(&path)
        .bearer_auth(&owner.key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["ratelimit-limit"], "50");
    let remaining: u32 = response.headers()["ratelimit-remaining"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        remaining >= 40,
        "the owner's allowance is its own: {remaining} left"
    );
}
