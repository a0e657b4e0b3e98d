//! End to end over HTTP: an organization travels command → event store → relay → NATS →
//! projection → read model → query.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, ADMIN_KEY};

fn body(name: &str, slug: &str, tier: &str, email: &str) -> Value {
    json!({ "name": name, "slug": slug, "tier": tier, "billing_email": email })
}

async fn problem(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, "application/problem+json", "status {status}");
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["status"], status.as_u16());
    (status, problem)
}

#[tokio::test]
async fn create_then_read_your_write() {
    let app = spawn_app().await;
    let response = app
        .admin(Method::POST, "/v1/organizations")
        .json(&body("Acme Inc", "acme", "pro", "billing@acme.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let position = response.headers()["x-tenantry-position"]
        .to_str()
        .unwrap()
        .to_owned();
    let mut created: Value = response.json().await.unwrap();
    assert_eq!(created["name"], "Acme Inc");
    assert_eq!(created["slug"], "acme");
    assert_eq!(created["tier"], "pro");
    assert_eq!(created["billing_email"], "billing@acme.com");
    assert_eq!(created["status"], "active");
    // OrganizationCreated, the owner's MemberInvited and the owner's ApiKeyIssued.
    assert_eq!(created["version"], 3);
    let api_key = created.as_object_mut().unwrap().remove("api_key").unwrap();
    assert!(api_key["secret"].as_str().unwrap().starts_with("sk_live_"));
    assert_eq!(api_key["role"], "owner");
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));
    let id = created["id"].as_str().unwrap();

    // Sent with the token, the read is never stale: it waits for the projection.
    let response = app
        .admin(Method::GET, &format!("/v1/organizations/{id}"))
        .header("X-Tenantry-Min-Position", &position)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let read: Value = response.json().await.unwrap();
    assert_eq!(read, created);
}

#[tokio::test]
async fn the_read_comes_from_the_projection() {
    // With no projection running, the read model never gets the organization: the query waits
    // the bounded time for the token and answers 503 with Retry-After.
    let app = spawn_app_with(|s| {
        s.run_projections = false;
        s.consistency_timeout = Duration::from_millis(300);
    })
    .await;
    let response = app.create_organization("waiting").await;
    let position = response.headers()["x-tenantry-position"]
        .to_str()
        .unwrap()
        .to_owned();
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let response = app
        .admin(Method::GET, &format!("/v1/organizations/{id}"))
        .header("X-Tenantry-Min-Position", &position)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["retry-after"], "1");
    let (status, problem) = problem(response).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(problem["type"], "urn:tenantry:problem:not-yet-consistent");

    // Without a token the read model simply has nothing yet.
    let response = app
        .admin(Method::GET, &format!("/v1/organizations/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn organizations_are_listed_newest_first_by_cursor() {
    let app = spawn_app().await;
    let mut position = String::new();
    for slug in ["first", "second", "third"] {
        let response = app.create_organization(slug).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        position = response.headers()["x-tenantry-position"]
            .to_str()
            .unwrap()
            .to_owned();
    }
    let page: Value = app
        .admin(Method::GET, "/v1/organizations?limit=2")
        .header("X-Tenantry-Min-Position", &position)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let slugs: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["third", "second"]);
    let cursor = page["next_cursor"].as_str().unwrap();

    let page: Value = app
        .admin(
            Method::GET,
            &format!("/v1/organizations?limit=2&cursor={cursor}"),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let slugs: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["first"]);
    assert!(page["next_cursor"].is_null());

    for bad in ["limit=0", "limit=101", "limit=ten", "cursor=nope"] {
        let response = app
            .admin(Method::GET, &format!("/v1/organizations?{bad}"))
            .send()
            .await
            .unwrap();
        let (status, _) = problem(response).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[tokio::test]
async fn a_missing_or_wrong_key_is_401() {
    let app = spawn_app().await;
    let no_key = app
        .client
        .get(app.url("/v1/organizations"))
        .send()
        .await
        .unwrap();
    let (status, problem_body) = problem(no_key).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(problem_body["type"], "urn:tenantry:problem:unauthorized");

    let wrong = app
        .client
        .post(app.url("/v1/organizations"))
        .bearer_auth(format!("{ADMIN_KEY}x"))
        .json(&body("Acme", "acme", "pro", "billing@acme.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(wrong).await.0, StatusCode::UNAUTHORIZED);

    let not_bearer = app
        .client
        .get(app.url("/v1/organizations"))
        .header("Authorization", format!("Basic {ADMIN_KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(not_bearer).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn invalid_fields_are_422_naming_the_field() {
    let app = spawn_app().await;
    let cases = [
        (body("", "acme", "pro", "billing@acme.com"), "name"),
        (body("   ", "acme", "pro", "billing@acme.com"), "name"),
        (body("Acme", "acme", "pro", "not-an-email"), "billing_email"),
        (body("Acme", "acme", "pro", "a@b"), "billing_email"),
        (body("Acme", "acme", "gold", "billing@acme.com"), "tier"),
        (body("Acme", "Acme", "pro", "billing@acme.com"), "slug"),
        (body("Acme", "ac", "pro", "billing@acme.com"), "slug"),
        (
            body("Acme", &"a".repeat(41), "pro", "billing@acme.com"),
            "slug",
        ),
        (body("Acme", "acme_inc", "pro", "billing@acme.com"), "slug"),
        (
            json!({ "name": "Acme", "tier": "pro", "billing_email": "billing@acme.com" }),
            "slug",
        ),
        (
            json!({ "name": 7, "slug": "acme", "tier": "pro", "billing_email": "billing@acme.com" }),
            "name",
        ),
    ];
    for (request, field) in cases {
        let response = app
            .admin(Method::POST, "/v1/organizations")
            .json(&request)
            .send()
            .await
            .unwrap();
        let (status, problem) = problem(response).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{request}");
        assert_eq!(problem["field"], field, "{request}");
        assert_eq!(problem["type"], "urn:tenantry:problem:validation");
        assert!(!problem["detail"].as_str().unwrap().is_empty());
    }

    let malformed = app
        .admin(Method::POST, "/v1/organizations")
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    let (status, problem_body) = problem(malformed).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem_body["type"], "urn:tenantry:problem:malformed-json");

    // None of the refused requests recorded anything.
    let mut tx = app.store.begin_system().await.unwrap();
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(events, 0);
}

#[tokio::test]
async fn a_taken_slug_is_409_and_records_nothing() {
    let app = spawn_app().await;
    assert_eq!(
        app.create_organization("taken").await.status(),
        StatusCode::CREATED
    );
    let again = app
        .admin(Method::POST, "/v1/organizations")
        .json(&body("Someone else", "taken", "basic", "other@example.com"))
        .send()
        .await
        .unwrap();
    let (status, problem_body) = problem(again).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(problem_body["type"], "urn:tenantry:problem:slug-taken");

    let mut tx = app.store.begin_system().await.unwrap();
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(events, 3, "only the first organization's three events");
}

#[tokio::test]
async fn concurrent_creations_with_one_slug_make_one_organization() {
    let app = spawn_app().await;
    let mut requests = Vec::new();
    for _ in 0..8 {
        requests.push(app.create_organization("contested"));
    }
    let statuses: Vec<StatusCode> = futures::future::join_all(requests)
        .await
        .iter()
        .map(|r| r.status())
        .collect();
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CONFLICT)
            .count(),
        7,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn unknown_ids_and_routes_are_404() {
    let app = spawn_app().await;
    for path in [
        "/v1/organizations/0190a1f2-0000-7000-8000-000000000000",
        "/v1/nothing-here",
    ] {
        let response = app.admin(Method::GET, path).send().await.unwrap();
        assert_eq!(problem(response).await.0, StatusCode::NOT_FOUND, "{path}");
    }
    let bad_id = app
        .admin(Method::GET, "/v1/organizations/not-a-uuid")
        .send()
        .await
        .unwrap();
    let (status, problem_body) = problem(bad_id).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem_body["type"], "urn:tenantry:problem:invalid-id");
    let bad_token = app
        .admin(Method::GET, "/v1/organizations")
        .header("X-Tenantry-Min-Position", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(problem(bad_token).await.0, StatusCode::BAD_REQUEST);
    let wrong_method = app
        .admin(Method::PUT, "/v1/organizations")
        .send()
        .await
        .unwrap();
    let (status, problem_body) = problem(wrong_method).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        problem_body["type"],
        "urn:tenantry:problem:method-not-allowed"
    );
}

#[tokio::test]
async fn health_readiness_and_metrics_need_no_key() {
    let app = spawn_app().await;
    // Ready once the NATS connection (made in the background at start) is up.
    app.ready().await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    app.create_organization("measured").await;
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("tenantry_feed_lag_seconds{component=\"relay\""),
        "{metrics}"
    );
    for expected in [
        "tenantry_http_requests_total{method=\"POST\",route=\"/v1/organizations\",status=\"201\"}",
        "tenantry_http_request_duration_seconds_bucket",
        "tenantry_commands_total{aggregate=\"organization\",outcome=\"ok\"}",
        "tenantry_feed_lag_seconds{component=\"projection\",name=\"directory\"}",
    ] {
        assert!(
            metrics.contains(expected),
            "{expected} missing from:\n{metrics}"
        );
    }
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let app = spawn_app().await;
    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    // Every route the authorization matrix calls, and the operational ones.
    let routes = [
        ("get", "/v1/organizations"),
        ("post", "/v1/organizations"),
        ("get", "/v1/organizations/{org}"),
        ("patch", "/v1/organizations/{org}"),
        ("delete", "/v1/organizations/{org}"),
        ("post", "/v1/organizations/{org}/tier"),
        ("post", "/v1/organizations/{org}/suspend"),
        ("post", "/v1/organizations/{org}/reactivate"),
        ("get", "/v1/organizations/{org}/members"),
        ("post", "/v1/organizations/{org}/members"),
        ("patch", "/v1/organizations/{org}/members/{member}"),
        ("delete", "/v1/organizations/{org}/members/{member}"),
        ("get", "/v1/organizations/{org}/api-keys"),
        ("post", "/v1/organizations/{org}/api-keys"),
        ("delete", "/v1/organizations/{org}/api-keys/{key}"),
        ("get", "/v1/organizations/{org}/stores"),
        ("post", "/v1/organizations/{org}/stores"),
        ("get", "/v1/stores/{store}"),
        ("patch", "/v1/stores/{store}"),
        ("post", "/v1/stores/{store}/deactivate"),
        ("post", "/v1/stores/{store}/activate"),
        ("get", "/v1/agent-definitions"),
        ("get", "/v1/stores/{store}/agent-instances"),
        ("post", "/v1/stores/{store}/agent-instances"),
        ("get", "/v1/agent-instances/{id}"),
        ("delete", "/v1/agent-instances/{id}"),
        ("patch", "/v1/agent-instances/{id}/config"),
        ("post", "/v1/agent-instances/{id}/pause"),
        ("post", "/v1/agent-instances/{id}/resume"),
        ("post", "/v1/agent-instances/{id}/upgrade"),
        ("post", "/v1/agent-instances/{id}/widget-keys"),
        ("delete", "/v1/agent-instances/{id}/widget-keys/{key}"),
        ("post", "/v1/conversations"),
        ("get", "/v1/conversations/{id}"),
        ("post", "/v1/conversations/{id}/messages"),
        ("post", "/v1/conversations/{id}/end"),
        ("get", "/v1/agent-instances/{id}/conversations"),
        ("get", "/v1/organizations/{org}/usage"),
        ("get", "/v1/organizations/{org}/invoices"),
        ("get", "/v1/organizations/{org}/invoices/{month}"),
        ("get", "/v1/organizations/{org}/dashboard"),
        ("get", "/v1/organizations/{org}/volume"),
        ("get", "/v1/stores/{store}/stats"),
        ("get", "/v1/agent-instances/{id}/stats"),
        ("post", "/v1/admin/billing/close"),
        ("post", "/v1/admin/reconciliations"),
        ("get", "/v1/organizations/{org}/events"),
        ("get", "/v1/organizations/{org}/audit/verify"),
        ("post", "/v1/organizations/{org}/erase"),
        ("post", "/v1/organizations/{org}/erase-customer"),
        (
            "get",
            "/v1/organizations/{org}/history/{stream_type}/{stream_id}",
        ),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
    ];
    let mut documented = 0;
    for (_, methods) in doc["paths"].as_object().unwrap() {
        documented += methods.as_object().unwrap().len();
    }
    assert_eq!(
        documented,
        routes.len(),
        "the document and this list disagree"
    );
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for (method, path) in routes {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not documented");
        assert!(!op["summary"].as_str().unwrap().is_empty());
        for (status, response) in op["responses"].as_object().unwrap() {
            let content = response["content"].as_object().unwrap();
            let schema = &content.values().next().unwrap()["schema"];
            let reference = schema["$ref"]
                .as_str()
                .or_else(|| schema["properties"]["data"]["items"]["$ref"].as_str());
            let name = reference.unwrap().rsplit('/').next().unwrap();
            assert!(
                schemas.contains_key(name),
                "{method} {path} {status}: no schema {name}"
            );
        }
        if let Some(body) =
            op["requestBody"]["content"]["application/json"]["schema"]["$ref"].as_str()
        {
            assert!(schemas.contains_key(body.rsplit('/').next().unwrap()));
        }
    }
    // The docs page is served by the binary and loads nothing from elsewhere.
    let page = app.client.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    assert!(page.contains("/openapi.json"));
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "the docs page must not load remote assets"
    );
}

#[tokio::test]
async fn hostile_values_are_refused_before_they_reach_an_event() {
    let app = spawn_app().await;
    let (org, mut owner) = crate::walkthrough::organization(&app, "hostile", "pro").await;
    let store = owner
        .ok(
            Method::POST,
            &format!("/v1/organizations/{org}/stores"),
            Some(json!({ "name": "S", "domain": "s.example.com" })),
        )
        .await;
    let store = store["id"].as_str().unwrap().to_owned();
    let deploy = |config: Value| json!({ "agent_type": "sales", "config": config });
    for (config, why) in [
        (json!({ "temperature": 0.7 }), "float"),
        (json!({ "greeting": "hi\u{0}there" }), "NUL"),
        (json!({ "blob": "x".repeat(70 * 1024) }), "size"),
    ] {
        let (status, problem) = owner
            .send(
                Method::POST,
                &format!("/v1/stores/{store}/agent-instances"),
                Some(deploy(config)),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{why}: {problem}");
        assert_eq!(problem["field"], "config", "{why}");
    }
    let agent = owner
        .ok(
            Method::POST,
            &format!("/v1/stores/{store}/agent-instances"),
            Some(deploy(json!({ "greeting": "hi" }))),
        )
        .await;
    let conversation = owner
        .ok(
            Method::POST,
            "/v1/conversations",
            Some(json!({ "agent_instance_id": agent["id"] })),
        )
        .await;
    let id = conversation["id"].as_str().unwrap();
    for (body, field) in [
        (
            json!({ "role": "customer", "content": "a\u{0}b" }),
            "content",
        ),
        (
            json!({ "role": "customer", "content": "ok", "tokens_in": 10_000_001u64 }),
            "tokens_in",
        ),
        (
            json!({ "role": "customer", "content": "ok", "tokens_out": u64::MAX }),
            "tokens_out",
        ),
        (
            json!({ "role": "customer", "content": "ok", "tokens_in": -1 }),
            "tokens_in",
        ),
    ] {
        let (status, problem) = owner
            .send(
                Method::POST,
                &format!("/v1/conversations/{id}/messages"),
                Some(body),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
        assert_eq!(problem["field"], field);
    }
    let response = app
        .client
        .post(app.url(&format!("/v1/conversations/{id}/messages")))
        .bearer_auth(&owner.key)
        .header("X-Correlation-Id", "x".repeat(200))
        .json(&json!({ "role": "customer", "content": "ok" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}
