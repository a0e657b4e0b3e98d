//! The authorization matrix: every route × every kind of caller, and another tenant's key on
//! every route that takes an id (404, never 403, never its data).

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tenantry_domain::Role;

use std::time::Duration;

use crate::helpers::{eventually, spawn_app, ADMIN_KEY};
use crate::walkthrough::organization;

/// What a route needs.
#[derive(Clone, Copy, Debug)]
enum Need {
    /// The platform admin, on a platform route.
    Platform,
    /// The platform admin, on a route of the organization.
    PlatformOn,
    /// A key of the organization with at least this role.
    Role(Role),
    /// A developer key, or a widget key of the instance.
    Talk,
    /// Any valid key.
    Any,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Caller {
    NoKey,
    BadKey,
    RevokedKey,
    PlatformAdmin,
    Role(Role),
    Widget,
    OtherTenantOwner,
}

fn allowed(caller: Caller, need: Need) -> Result<(), StatusCode> {
    use Caller as C;
    match (caller, need) {
        (C::NoKey | C::BadKey | C::RevokedKey, _) => Err(StatusCode::UNAUTHORIZED),
        (C::PlatformAdmin, _) | (_, Need::Any) => Ok(()),
        (_, Need::Platform) => Err(StatusCode::FORBIDDEN),
        (C::OtherTenantOwner, _) => Err(StatusCode::NOT_FOUND),
        (C::Widget, Need::Talk) => Ok(()),
        (C::Widget, _) | (_, Need::PlatformOn) => Err(StatusCode::FORBIDDEN),
        (C::Role(held), Need::Role(needed)) if held.includes(needed) => Ok(()),
        (C::Role(held), Need::Talk) if held.includes(Role::Developer) => Ok(()),
        (C::Role(_), _) => Err(StatusCode::FORBIDDEN),
    }
}

#[tokio::test]
async fn every_route_answers_every_caller_as_it_should() {
    // The matrix presents a bad and a revoked key on every route: some 70 failed
    // authentications from one address within seconds, more than a minute's allowance.
    let app = crate::helpers::spawn_app_with(|s| s.failed_auth_per_minute = 1_000).await;
    let (org, mut owner) = organization(&app, "matrix", "pro").await;
    let (_, other_owner) = organization(&app, "matrix-other", "pro").await;

    let mut keys = Vec::new();
    for role in ["admin", "developer", "member"] {
        let key = owner
            .ok(
                Method::POST,
                &format!("/v1/organizations/{org}/api-keys"),
                Some(json!({ "name": role, "role": role })),
            )
            .await;
        keys.push(key["secret"].as_str().unwrap().to_owned());
    }
    let revoked = owner.issue_key(&org, "old", "owner").await;
    owner
        .ok(
            Method::DELETE,
            &format!(
                "/v1/organizations/{org}/api-keys/{}",
                revoked["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    let doomed_key = owner.issue_key(&org, "doomed", "member").await;
    let member = owner
        .ok(
            Method::POST,
            &format!("/v1/organizations/{org}/members"),
            Some(json!({ "email": "m@matrix.example.com", "role": "member" })),
        )
        .await;
    let store = owner
        .ok(
            Method::POST,
            &format!("/v1/organizations/{org}/stores"),
            Some(json!({ "name": "S", "domain": "s.example.com" })),
        )
        .await;
    let store = store["id"].as_str().unwrap().to_owned();
    let instance = owner
        .ok(
            Method::POST,
            &format!("/v1/stores/{store}/agent-instances"),
            Some(json!({ "agent_type": "customer_service" })),
        )
        .await;
    let instance = instance["id"].as_str().unwrap().to_owned();
    let widget = owner
        .ok(
            Method::POST,
            &format!("/v1/agent-instances/{instance}/widget-keys"),
            None,
        )
        .await;
    let doomed_widget = owner
        .ok(
            Method::POST,
            &format!("/v1/agent-instances/{instance}/widget-keys"),
            None,
        )
        .await;
    let conversation = owner
        .ok(
            Method::POST,
            "/v1/conversations",
            Some(json!({ "agent_instance_id": instance })),
        )
        .await;
    let conversation = conversation["id"].as_str().unwrap().to_owned();
    // The matrix sends no consistency tokens: let every read model catch up with the setup
    // first (the dashboard waits for all three).
    owner
        .ok(
            Method::GET,
            &format!("/v1/organizations/{org}/dashboard"),
            None,
        )
        .await;

    let member_id = member["id"].as_str().unwrap();
    let doomed_key = doomed_key["id"].as_str().unwrap();
    let doomed_widget = doomed_widget["id"].as_str().unwrap();
    let new_org = json!({ "name": "N", "slug": "matrix-new", "tier": "basic", "billing_email": "n@example.com" });
    let routes: Vec<(Method, String, Option<Value>, Need)> = vec![
        (
            Method::GET,
            "/v1/organizations".into(),
            None,
            Need::Platform,
        ),
        (
            Method::POST,
            "/v1/organizations".into(),
            Some(new_org),
            Need::Platform,
        ),
        (
            Method::GET,
            format!("/v1/organizations/{org}"),
            None,
            Need::Role(Role::Member),
        ),
        (
            Method::PATCH,
            format!("/v1/organizations/{org}"),
            Some(json!({ "name": "Matrix" })),
            Need::Role(Role::Admin),
        ),
        (
            Method::POST,
            format!("/v1/organizations/{org}/tier"),
            Some(json!({ "tier": "pro" })),
            Need::Role(Role::Owner),
        ),
        (
            Method::GET,
            format!("/v1/organizations/{org}/members"),
            None,
            Need::Role(Role::Member),
        ),
        (
            Method::POST,
            format!("/v1/organizations/{org}/members"),
            Some(json!({ "email": "d@matrix.example.com", "role": "developer" })),
            Need::Role(Role::Admin),
        ),
        (
            Method::PATCH,
            format!("/v1/organizations/{org}/members/{member_id}"),
            Some(json!({ "role": "developer" })),
            Need::Role(Role::Admin),
        ),
        (
            Method::GET,
            format!("/v1/organizations/{org}/api-keys"),
            None,
            Need::Role(Role::Admin),
        ),
        (
            Method::POST,
            format!("/v1/organizations/{org}/api-keys"),
            Some(json!({ "name": "k", "role": "member" })),
            Need::Role(Role::Admin),
        ),
        (
            Method::GET,
            format!("/v1/organizations/{org}/stores"),
            None,
            Need::Role(Role::Member),
        ),
        (
            Method::POST,
            format!("/v1/organizations/{org}/stores"),
            Some(json!({ "name": "T", "domain": "t.example.com" })),
            Need::Role(Role::Admin),
        ),
        (
            Method::GET,
            format!("/v1/stores/{store}"),
            None,
            Need::Role(Role::Member),
        ),
        (
            Method::PATCH,
            format!("/v1/stores/{store}"),
            Some(json!({ "name": "S2" })),
            Need::Role(Role::Admin),
        ),
        (Method::GET, "/v1/agent-definitions".into(), None, Need::Any),
        (
            Method::GET,
            format!("/v1/stores/{store}/agent-instances"),
            None,
            Need::Role(Role::Member),
        ),
        (
            Method::POST,
            format!("/v1/stores/{store}/agent-instances"),
            Some(json!({ "agent_type": "sales" })),
            Need::Role(Role::Developer),
        ),
        (
            Method::GET,
            format!("/v1/agent-instances/{instance}"),
            None,
            Need::Role(Role::Member),
        ),
        (
            Method::PATCH,
            format!("/v1/agent-instances/{instance}/config"),
            Some(json!({ "config": { "greeting": "hi" } })),
            Need::Role(Role::Developer),
        ),
        (
            Method::POST,
            format!("/v1/agent-instances/{instance}/upgrade"),
            Some(json!({ "version": "1.0.0" })),
            Need::Role(Role::Developer),
        ),
        (
            Method::POST,
            format!("/v1/agent-instances/{instance}/widget-keys"),
            None,
            Need::Role(Role::Developer),
        ),
        (
            Method::GET,
            format!("/v1/agent-instances/{instance}/conversations"),
            None,
            Need::Role(Role::Member),
        ),
        (
            Method::POST,
            "/v1/conversations".into(),
            Some(json!({ "agent_instance_id": instance })),
            Need::Talk,
        ),
        (
            Method::POST,
            format!("/v1/conversations/{conversation}/messages"),
            Some(json!({ "role": "customer", "content": "hi" })),
            Need::Talk,
        ),
        (
            Method::GET,
            format!("/v1/conversations/{conversation}"),
            None,
            Need::Role(Role::Member),
        ),
        // State changes that end things go last.
        (
            Method::POST,
            format!("/v1/agent-instances/{instance}/pause"),
            None,
            Need::Role(Role::Developer),
        ),
        (
            Method::POST,
            format!("/v1/agent-instances/{instance}/resume"),
            None,
            Need::Role(Role::Developer),
        ),
        (
            Method::DELETE,
            format!("/v1/agent-instances/{instance}/widget-keys/{doomed_widget}"),
            None,
            Need::Role(Role::Developer),
        ),
        (
            Method::POST,
            format!("/v1/conversations/{conversation}/end"),
            Some(json!({ "resolution": "resolved" })),
            Need::Role(Role::Developer),
        ),
        (
            Method::POST,
            format!("/v1/stores/{store}/deactivate"),
            None,
            Need::Role(Role::Admin),
        ),
        (
            Method::POST,
            format!("/v1/stores/{store}/activate"),
            None,
            Need::Role(Role::Admin),
        ),
        (
            Method::DELETE,
            format!("/v1/agent-instances/{instance}"),
            None,
            Need::Role(Role::Developer),
        ),
        (
            Method::DELETE,
            format!("/v1/organizations/{org}/members/{member_id}"),
            None,
            Need::Role(Role::Admin),
        ),
        (
            Method::DELETE,
            format!("/v1/organizations/{org}/api-keys/{doomed_key}"),
            None,
            Need::Role(Role::Admin),
        ),
        (
            Method::POST,
            format!("/v1/organizations/{org}/suspend"),
            None,
            Need::PlatformOn,
        ),
        (
            Method::POST,
            format!("/v1/organizations/{org}/reactivate"),
            None,
            Need::PlatformOn,
        ),
        (
            Method::DELETE,
            format!("/v1/organizations/{org}"),
            None,
            Need::Role(Role::Owner),
        ),
    ];

    // Denied callers first (they change nothing), then the allowed ones.
    let callers: Vec<(Caller, Option<String>)> = vec![
        (Caller::NoKey, None),
        (Caller::BadKey, Some("sk_live_not-a-real-key".into())),
        (Caller::RevokedKey, None),
        (Caller::OtherTenantOwner, Some(other_owner.key.clone())),
        (
            Caller::Widget,
            Some(widget["secret"].as_str().unwrap().to_owned()),
        ),
        (Caller::Role(Role::Member), Some(keys[2].clone())),
        (Caller::Role(Role::Developer), Some(keys[1].clone())),
        (Caller::Role(Role::Admin), Some(keys[0].clone())),
        (Caller::Role(Role::Owner), Some(owner.key.clone())),
        (Caller::PlatformAdmin, Some(ADMIN_KEY.into())),
    ];
    let revoked_secret = revoked["secret"].as_str().unwrap().to_owned();
    let mut failures = Vec::new();
    for (method, path, body, need) in &routes {
        // Once an allowed caller has deleted the target, later ones find nothing there.
        let mut consumed = false;
        for (caller, key) in &callers {
            let key = if *caller == Caller::RevokedKey {
                Some(revoked_secret.clone())
            } else {
                key.clone()
            };
            let mut request = app.client.request(method.clone(), app.url(path));
            if let Some(key) = key {
                request = request.bearer_auth(key);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request.send().await.unwrap();
            let status = response.status();
            let text = response.text().await.unwrap();
            let ok = match allowed(*caller, *need) {
                Ok(()) if consumed && status == StatusCode::NOT_FOUND => true,
                Ok(()) => !matches!(status.as_u16(), 401 | 403 | 404) && status.as_u16() < 500,
                Err(expected) => status == expected,
            };
            consumed |= *method == Method::DELETE && status.is_success();
            if !ok {
                failures.push(format!(
                    "{method} {path} as {caller:?}: {status} (expected {:?}) {text}",
                    allowed(*caller, *need)
                ));
            }
            if *caller == Caller::OtherTenantOwner && status == StatusCode::NOT_FOUND {
                assert!(
                    !text.contains("matrix.example.com") && !text.contains("\"S\""),
                    "{path} leaked: {text}"
                );
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} cells wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Servers keep credentials in memory between requests. A revocation by another server
/// reaches this one through PostgreSQL's notification; one through this server counts at once.
#[tokio::test]
async fn kept_credentials_are_forgotten_when_revoked_anywhere() {
    let app = spawn_app().await;
    let (org, mut owner) = organization(&app, "keeper", "pro").await;
    // Readable from the read model before any other key asks for it.
    owner
        .ok(Method::GET, &format!("/v1/organizations/{org}"), None)
        .await;
    let mut db = crate::helpers::superuser(&app.database_url).await;
    let mut issue = async |name: &str| {
        let key = owner.issue_key(&org, name, "member").await;
        (
            key["id"].as_str().unwrap().to_owned(),
            key["secret"].as_str().unwrap().to_owned(),
        )
    };
    let status = async |secret: &str| {
        app.client
            .get(app.url(&format!("/v1/organizations/{org}")))
            .bearer_auth(secret)
            .send()
            .await
            .unwrap()
            .status()
    };
    let revoke_in_database = async |db: &mut sqlx::PgConnection, id: &str, announce: bool| {
        // Without the trigger (as a server of an older version, or a hand edit, would write).
        let role = if announce { "origin" } else { "replica" };
        sqlx::query(&format!("SET session_replication_role = {role}"))
            .execute(&mut *db)
            .await
            .unwrap();
        sqlx::query("UPDATE credentials SET revoked_at = now() WHERE key_id = $1::uuid")
            .bind(id)
            .execute(&mut *db)
            .await
            .unwrap();
    };

    // The answer is kept: a change PostgreSQL does not announce goes unseen. (The server
    // keeps nothing until its listener is up, so try with fresh keys until it is.)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing is ever kept"
        );
        let (id, secret) = issue("silent").await;
        assert_eq!(status(&secret).await, StatusCode::OK);
        revoke_in_database(&mut db, &id, false).await;
        if status(&secret).await == StatusCode::OK {
            break;
        }
    }

    // Revoked by another server: announced at commit, forgotten here within moments.
    let (id, secret) = issue("elsewhere").await;
    assert_eq!(status(&secret).await, StatusCode::OK);
    assert_eq!(status(&secret).await, StatusCode::OK);
    revoke_in_database(&mut db, &id, true).await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            status(&secret).await == StatusCode::UNAUTHORIZED
        })
        .await,
        "a key revoked elsewhere kept working"
    );

    // Revoked through this server: refused from its very next request.
    let (id, secret) = issue("here").await;
    assert_eq!(status(&secret).await, StatusCode::OK);
    owner
        .ok(
            Method::DELETE,
            &format!("/v1/organizations/{org}/api-keys/{id}"),
            None,
        )
        .await;
    assert_eq!(status(&secret).await, StatusCode::UNAUTHORIZED);
}

/// A request that is wrong in more than one way gets one answer, always the same: no key
/// (401), then the headers, the query and the body, then a malformed id (400), then another
/// organization's resource (404), then a role that may not (403).
#[tokio::test]
async fn the_first_thing_wrong_with_a_request_is_what_it_is_told() {
    // method, path, key, If-Match, body: the answer's status and problem type.
    const CASES: &str = "
        GET   /v1/organizations?bogus=1              none   -    -       401 unauthorized
        GET   /v1/organizations?bogus=1              member -    -       400 invalid-query
        GET   /v1/organizations/ORG/api-keys?bogus=1 member -    -       400 invalid-query
        GET   /v1/organizations                      member -    -       403 forbidden
        GET   /v1/stores/not-a-uuid                  other  -    -       400 invalid-id
        POST  /v1/stores/not-a-uuid/deactivate       member -    -       400 invalid-id
        PATCH /v1/stores/STORE                       other  soon fine    400 invalid-if-match
        PATCH /v1/stores/STORE                       member -    invalid 422 validation
        PATCH /v1/stores/not-a-uuid                  member -    invalid 422 validation
        PATCH /v1/stores/not-a-uuid                  member -    fine    400 invalid-id
        PATCH /v1/stores/STORE                       other  -    fine    404 not-found
        PATCH /v1/stores/STORE                       member -    fine    403 forbidden
        POST  /v1/organizations/ORG/suspend          other  -    -       404 not-found
        POST  /v1/organizations/ORG/suspend          owner  -    -       403 forbidden
    ";
    let app = spawn_app().await;
    let (org, mut owner) = organization(&app, "order", "pro").await;
    let (_, other) = organization(&app, "order-other", "pro").await;
    let member = owner.issue_key(&org, "m", "member").await;
    let store = owner
        .ok(
            Method::POST,
            &format!("/v1/organizations/{org}/stores"),
            Some(json!({ "name": "S", "domain": "s.example.com" })),
        )
        .await;
    let store = store["id"].as_str().unwrap();

    let mut wrong = Vec::new();
    for case in CASES.lines().filter(|l| !l.trim().is_empty()) {
        let [method, path, key, if_match, body, status, problem] = case
            .split_whitespace()
            .collect::<Vec<_>>()
            .try_into()
            .unwrap();
        let path = path.replace("ORG", &org).replace("STORE", store);
        let mut request = app.client.request(method.parse().unwrap(), app.url(&path));
        match key {
            "member" => request = request.bearer_auth(member["secret"].as_str().unwrap()),
            "other" => request = request.bearer_auth(&other.key),
            "owner" => request = request.bearer_auth(&owner.key),
            _ => {}
        }
        if if_match != "-" {
            request = request.header("if-match", if_match);
        }
        match body {
            "fine" => request = request.json(&json!({ "name": "T" })),
            "invalid" => request = request.json(&json!({ "name": "" })),
            _ => {}
        }
        let response = request.send().await.unwrap();
        let code = response.status().as_u16();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        let kind = answer["type"].as_str().unwrap_or_default();
        let got = format!(
            "{code} {}",
            kind.trim_start_matches("urn:tenantry:problem:")
        );
        if got != format!("{status} {problem}") {
            wrong.push(format!(
                "{method} {path}: {got}, expected {status} {problem}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Keys follow the members' rule: owner and admin keys are issued and revoked by an owner,
/// and the organization keeps at least one owner key.
#[tokio::test]
async fn only_an_owner_manages_owner_and_admin_keys_and_one_owner_key_stays() {
    let app = spawn_app().await;
    let (org, mut owner) = organization(&app, "keyrule", "pro").await;
    let issue = |role: &str| json!({ "name": role, "role": role });
    let keys = format!("/v1/organizations/{org}/api-keys");
    let admin = owner.ok(Method::POST, &keys, Some(issue("admin"))).await;
    let mut admin_client = crate::walkthrough::Client::new(&app, admin["secret"].as_str().unwrap());
    admin_client.position = owner.position.clone();

    // An admin key issues neither owner nor admin keys; developer keys it may.
    for role in ["owner", "admin"] {
        let (status, problem) = admin_client
            .send(Method::POST, &keys, Some(issue(role)))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{role}: {problem}");
    }
    let developer = admin_client
        .ok(Method::POST, &keys, Some(issue("developer")))
        .await;

    // An admin key revokes neither the owner's key nor an admin's, but a developer's.
    let listed = owner.ok(Method::GET, &keys, None).await;
    let owner_key = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["role"] == "owner")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for id in [owner_key.as_str(), admin["id"].as_str().unwrap()] {
        let (status, problem) = admin_client
            .send(Method::DELETE, &format!("{keys}/{id}"), None)
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    }
    admin_client
        .ok(
            Method::DELETE,
            &format!("{keys}/{}", developer["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(
        owner.send(Method::GET, &keys, None).await.0,
        StatusCode::OK,
        "the owner's key still works"
    );

    // The last owner key cannot be revoked, by its owner or by the platform admin.
    let mut platform = crate::walkthrough::Client::new(&app, ADMIN_KEY);
    for caller in [&mut owner, &mut platform] {
        let (status, problem) = caller
            .send(Method::DELETE, &format!("{keys}/{owner_key}"), None)
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{problem}");
        assert_eq!(
            problem["type"], "urn:tenantry:problem:last-owner-key",
            "{problem}"
        );
    }
    // With a second owner key, the first can go.
    let second = owner.ok(Method::POST, &keys, Some(issue("owner"))).await;
    owner
        .ok(Method::DELETE, &format!("{keys}/{owner_key}"), None)
        .await;
    let mut second = crate::walkthrough::Client::new(&app, second["secret"].as_str().unwrap());
    second
        .ok(
            Method::DELETE,
            &format!("{keys}/{}", admin["id"].as_str().unwrap()),
            None,
        )
        .await;
}

/// Failed authentications are limited per client address: after 20 in a minute, 429 with
/// Retry-After, and keys the server does not know are no longer looked up for that address;
/// known keys keep working.
#[tokio::test]
async fn failed_authentications_are_limited_per_address() {
    let app = spawn_app().await;
    let (org, owner) = organization(&app, "guarded", "pro").await;
    let path = app.url(&format!("/v1/organizations/{org}/stores"));
    let get = |key: String| app.client.get(&path).bearer_auth(key).send();
    assert_eq!(
        get(owner.key.clone()).await.unwrap().status(),
        StatusCode::OK
    );
    for attempt in 1..=20 {
        let response = get("sk_live_nobody-has-this-key".into()).await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "attempt {attempt}"
        );
    }
    for key in [
        "sk_live_nobody-has-this-key",
        "sk_live_nor-this-one",
        "pk_widget_or-this",
    ] {
        let response = get(key.into()).await.unwrap();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "{key}");
        let retry_after: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry_after), "{retry_after}");
    }
    assert_eq!(
        get(owner.key.clone()).await.unwrap().status(),
        StatusCode::OK,
        "a known key still works from that address"
    );
}
