//! The API description against the server: for every documented operation, the documented
//! parameters are accepted, a read answers its documented status and content type, and a
//! body sent as anything but JSON is refused (415) where a body is documented. So
//! `/openapi.json` cannot drift from what the server does without this failing.

use chrono::Utc;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, ADMIN_KEY};
use crate::walkthrough::organization;

/// The ids a documented path is filled with.
struct Ids {
    org: String,
    store: String,
    instance: String,
    conversation: String,
    member: String,
    api_key: String,
    widget_key: String,
}

impl Ids {
    /// `path` with its parameters filled in.
    fn fill(&self, path: &str) -> String {
        let id = if path.starts_with("/v1/agent-instances/") {
            &self.instance
        } else {
            &self.conversation
        };
        let key = if path.contains("/widget-keys/") {
            &self.widget_key
        } else {
            &self.api_key
        };
        path.replace("{org}", &self.org)
            .replace("{store}", &self.store)
            .replace("{id}", id)
            .replace("{member}", &self.member)
            .replace("{key}", key)
            .replace("{month}", &Utc::now().format("%Y-%m").to_string())
            .replace("{stream_type}", "organization")
            .replace("{stream_id}", &self.org)
    }

    /// A value the server should accept for query parameter `name` of schema `schema`.
    fn sample(&self, name: &str, schema: &Value) -> String {
        let now = Utc::now();
        match name {
            "month" => return now.format("%Y-%m").to_string(),
            "types" => return "OrganizationCreated".into(),
            "stream_type" => return "organization".into(),
            "stream_id" => return self.org.clone(),
            "cursor" | "after" => return String::new(),
            _ => {}
        }
        let kinds: Vec<&str> = match &schema["type"] {
            Value::String(kind) => vec![kind.as_str()],
            Value::Array(kinds) => kinds.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if kinds.contains(&"integer") {
            return schema["minimum"].as_i64().unwrap_or(1).max(1).to_string();
        }
        match schema["format"].as_str() {
            Some("date-time") => now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            Some("date") => now.format("%Y-%m-%d").to_string(),
            Some("uuid") => self.org.clone(),
            _ => schema["enum"][0].as_str().unwrap_or("x").to_owned(),
        }
    }
}

#[tokio::test]
async fn every_documented_operation_does_what_the_document_says() {
    let app = spawn_app().await;
    let (org, mut owner) = organization(&app, "contract", "pro").await;
    let (store, instance) = owner.store_with_agent(&org, "customer_service").await;
    let conversation = owner
        .ok(
            Method::POST,
            "/v1/conversations",
            Some(json!({ "agent_instance_id": instance, "customer_ref": "c-1" })),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let widget_key = owner
        .ok(
            Method::POST,
            &format!("/v1/agent-instances/{instance}/widget-keys"),
            Some(json!({})),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let first_id = |page: Value| page["data"][0]["id"].as_str().unwrap().to_owned();
    let member = first_id(
        owner
            .ok(
                Method::GET,
                &format!("/v1/organizations/{org}/members"),
                None,
            )
            .await,
    );
    let api_key = first_id(
        owner
            .ok(
                Method::GET,
                &format!("/v1/organizations/{org}/api-keys"),
                None,
            )
            .await,
    );
    let ids = Ids {
        org,
        store,
        instance,
        conversation,
        member,
        api_key,
        widget_key,
    };
    let position = owner.position.clone().unwrap();

    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut checked = 0;
    let mut wrong = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let method: Method = method.to_uppercase().parse().unwrap();
            let url = app.url(&ids.fill(path));
            let what = format!("{method} {path}");
            if op.get("requestBody").is_some() {
                // A body is JSON: anything else is refused before it is read.
                let response = app
                    .client
                    .request(method.clone(), &url)
                    .bearer_auth(ADMIN_KEY)
                    .header("content-type", "text/plain")
                    .body("{}")
                    .send()
                    .await
                    .unwrap();
                let content_type = content_type(&response);
                if response.status() != StatusCode::UNSUPPORTED_MEDIA_TYPE
                    || content_type != "application/problem+json"
                {
                    wrong.push(format!(
                        "{what}: a text/plain body got {} {content_type}",
                        response.status()
                    ));
                }
                checked += 1;
            }
            if method != Method::GET {
                continue;
            }
            // A read: every documented query parameter is accepted, and the answer has the
            // documented status and content type.
            let mut params: Vec<(String, String)> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query")
                .map(|p| {
                    let name = p["name"].as_str().unwrap().to_owned();
                    let value = ids.sample(&name, &p["schema"]);
                    (name, value)
                })
                .collect();
            if params.iter().any(|(n, _)| n == "version") {
                // As of a time or a version: one at a time.
                params.retain(|(n, _)| n != "as_of");
            }
            let (status, documented) = op["responses"]
                .as_object()
                .unwrap()
                .iter()
                .find(|(code, _)| code.starts_with('2'))
                .map(|(code, response)| {
                    let content = response["content"].as_object();
                    let first = content.and_then(|c| c.keys().next().cloned());
                    (code.parse::<u16>().unwrap(), first)
                })
                .unwrap_or_else(|| panic!("{what} documents no success"));
            let response = app
                .client
                .get(&url)
                .query(&params)
                .bearer_auth(ADMIN_KEY)
                .header("X-Tenantry-Min-Position", &position)
                .send()
                .await
                .unwrap();
            let got = content_type(&response);
            let got_status = response.status().as_u16();
            let body = response.text().await.unwrap();
            if got_status != status {
                wrong.push(format!(
                    "{what}?{params:?}: documented {status}, got {got_status}: {body}"
                ));
            } else if let Some(documented) = documented {
                let documented = documented.split(';').next().unwrap_or("").trim();
                if got != documented {
                    wrong.push(format!("{what}: documented {documented}, sent {got}"));
                }
            }
            checked += 1;
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {checked} checks failed:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert!(checked >= 40, "only {checked} checks ran");

    // And what is not documented is refused: an unknown query parameter, a path segment that
    // is not UTF-8 (as a problem like any other).
    let unknown = app
        .client
        .get(app.url(&format!("/v1/organizations/{}/stores", ids.org)))
        .query(&[("colour", "blue")])
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    let garbled = app
        .client
        .get(app.url("/v1/stores/%ff%fe"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(garbled.status(), StatusCode::BAD_REQUEST);
    assert_eq!(content_type(&garbled), "application/problem+json");
}

/// The media type of `response`, without parameters.
fn content_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_owned()
}
