//! The OpenAPI 3.1 document and the offline `/docs` page.
//!
//! Routes are registered through [`ApiRouter::route`], which adds the handler to the axum
//! router and its [`Op`] to the document in one call: a route cannot exist undocumented, and
//! its [`Access`] rule is both what the document says and what the extractors check.

use std::sync::Arc;

use axum::handler::Handler;
use axum::http::header::CONTENT_TYPE;
use axum::http::Method;
use axum::response::IntoResponse;
use axum::routing::{delete, get, patch, post};
use axum::Router;
use cqrs_es::Aggregate;
use serde_json::{json, Map, Value};
use tenantry_domain::agent_instance::AgentInstance;
use tenantry_domain::conversation::Conversation;
use tenantry_domain::organization::Organization;
use tenantry_domain::store::Store;

use crate::access::{self, Access};
use crate::AppState;

/// One documented operation.
#[derive(Clone, Debug)]
pub struct Op {
    pub method: Method,
    pub path: &'static str,
    pub summary: &'static str,
    pub tag: &'static str,
    /// Who may call it.
    pub access: Access,
    /// What the rule adds that depends on the body (checked by the handler or the domain).
    pub note: Option<&'static str>,
    /// The request body schema (a name in `components.schemas`).
    pub request: Option<&'static str>,
    /// The success status and body schema.
    pub status: u16,
    pub response: &'static str,
    /// Whether the response is a page of `response` items.
    pub list: bool,
}

impl Op {
    fn new(method: Method, path: &'static str, summary: &'static str) -> Self {
        let status = if method == Method::POST { 201 } else { 200 };
        Self {
            method,
            path,
            summary,
            tag: "",
            // Until a route says otherwise, it is closed to all but the platform admin.
            access: Access::PlatformAdmin,
            note: None,
            request: None,
            status,
            response: "Acknowledgement",
            list: false,
        }
    }
    pub fn get(path: &'static str, summary: &'static str) -> Self {
        Self::new(Method::GET, path, summary)
    }
    pub fn post(path: &'static str, summary: &'static str) -> Self {
        Self::new(Method::POST, path, summary)
    }
    pub fn patch(path: &'static str, summary: &'static str) -> Self {
        Self::new(Method::PATCH, path, summary)
    }
    pub fn delete(path: &'static str, summary: &'static str) -> Self {
        Self::new(Method::DELETE, path, summary)
    }
    pub fn tag(mut self, tag: &'static str) -> Self {
        self.tag = tag;
        self
    }
    pub fn access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }
    /// A part of the rule that depends on the body, in words.
    pub fn note(mut self, note: &'static str) -> Self {
        self.note = Some(note);
        self
    }
    /// Who may call, in words.
    pub fn describe_access(&self) -> String {
        match self.note {
            Some(note) => format!("{} ({note})", self.access.describe()),
            None => self.access.describe(),
        }
    }
    pub fn body(mut self, schema: &'static str) -> Self {
        self.request = Some(schema);
        self
    }
    pub fn returns(mut self, status: u16, schema: &'static str) -> Self {
        self.status = status;
        self.response = schema;
        self
    }
    pub fn lists(mut self, schema: &'static str) -> Self {
        self.status = 200;
        self.response = schema;
        self.list = true;
        self
    }
}

/// An axum router that documents what it routes.
#[derive(Default)]
pub struct ApiRouter {
    router: Router<AppState>,
    ops: Vec<Op>,
}

impl ApiRouter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Routes `op.method op.path` to `handler` under the rule `op.access`, and documents it
    /// as `op`.
    pub fn route<H, T>(mut self, op: Op, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let rule = op.access;
        let handler = handler.layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                access::declare(rule, request, next)
            },
        ));
        let method_router = match op.method {
            Method::GET => get(handler),
            Method::POST => post(handler),
            Method::PATCH => patch(handler),
            Method::DELETE => delete(handler),
            ref other => unreachable!("no route uses {other}"),
        };
        self.router = self.router.route(op.path, method_router);
        self.ops.push(op);
        self
    }

    /// The paths of the routes open to anyone ([`Access::Public`]); none has a parameter.
    pub fn public_paths(&self) -> Vec<&'static str> {
        self.ops
            .iter()
            .filter(|op| op.access == Access::Public)
            .map(|op| op.path)
            .collect()
    }

    pub fn merge(mut self, other: ApiRouter) -> Self {
        self.router = self.router.merge(other.router);
        self.ops.extend(other.ops);
        self
    }

    /// The router, with `/openapi.json` and `/docs` added.
    pub fn finish(self) -> Router<AppState> {
        let document = Arc::new(document(&self.ops));
        self.router
            .route(
                "/openapi.json",
                get(move || {
                    let document = document.clone();
                    async move { axum::Json(document.as_ref().clone()) }
                }),
            )
            .route(
                "/docs",
                get(|| async {
                    ([(CONTENT_TYPE, "text/html; charset=utf-8")], DOCS_PAGE).into_response()
                }),
            )
    }
}

fn problem_ref() -> Value {
    json!({ "content": { "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } } } })
}

fn parameters(op: &Op) -> Vec<Value> {
    let mut params: Vec<Value> = op
        .path
        .split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            let schema = if name == "month" {
                json!({ "type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$" })
            } else if name == "stream_type" {
                json!({ "type": "string", "enum": [Organization::TYPE, Store::TYPE, AgentInstance::TYPE, Conversation::TYPE] })
            } else {
                json!({ "type": "string", "format": "uuid" })
            };
            json!({ "name": name, "in": "path", "required": true, "schema": schema })
        })
        .collect();
    let header = |name: &str, description: &str| json!({ "name": name, "in": "header", "required": false, "description": description, "schema": { "type": "string" } });
    match op.method {
        Method::GET => {
            params.push(header(
                "X-Tenantry-Min-Position",
                "A consistency token (X-Tenantry-Position of an earlier command): wait until the read model has passed it",
            ));
            if op.list {
                params.push(json!({ "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 100, "default": 20 } }));
                params.push(json!({ "name": "cursor", "in": "query", "schema": { "type": "string" } }));
            }
        }
        Method::POST => params.push(header(
            "Idempotency-Key",
            "The same key and body return the first response and record nothing new (kept 24 hours or more)",
        )),
        _ => params.push(header("If-Match", "The version (ETag) the change applies to; 412 when stale")),
    }
    params
}

fn operation(op: &Op) -> Value {
    let success_schema = if op.list {
        json!({
            "type": "object",
            "required": ["data", "next_cursor"],
            "properties": {
                "data": { "type": "array", "items": { "$ref": format!("#/components/schemas/{}", op.response) } },
                "next_cursor": { "type": ["string", "null"] },
            },
        })
    } else {
        json!({ "$ref": format!("#/components/schemas/{}", op.response) })
    };
    let mut responses = Map::new();
    responses.insert(
        op.status.to_string(),
        json!({
            "description": "Success",
            "headers": {
                "X-Tenantry-Position": { "description": "Consistency token of the command's last event", "schema": { "type": "string" } },
                "ETag": { "description": "The resource's version", "schema": { "type": "string" } },
                "RateLimit-Limit": { "schema": { "type": "integer" } },
                "RateLimit-Remaining": { "schema": { "type": "integer" } },
            },
            "content": { "application/json": { "schema": success_schema } },
        }),
    );
    for (status, description) in [
        ("400", "Malformed JSON, query or header"),
        ("401", "Missing, unknown or revoked key"),
        ("403", "The key's role or kind may not do this, or the tier does not include it (type ends in tier-required)"),
        ("404", "No such resource in the caller's organization"),
        ("409", "The request conflicts with the current state (a rule of the domain, a taken slug, a reused idempotency key)"),
        ("412", "If-Match names another version"),
        ("413", "The body is larger than 1 MiB"),
        ("422", "A field is missing or invalid (field names it)"),
        ("429", "Rate limit exceeded; see Retry-After"),
        ("503", "The read model has not reached X-Tenantry-Min-Position yet; see Retry-After"),
    ] {
        let mut response = problem_ref();
        response["description"] = Value::String(description.into());
        responses.insert(status.into(), response);
    }
    let mut operation = json!({
        "summary": op.summary,
        "description": format!("Access: {}.", op.describe_access()),
        "tags": [op.tag],
        "operationId": format!("{}_{}", op.method.as_str().to_lowercase(), op.path.trim_start_matches('/').replace(['/', '{', '}', '-'], "_")),
        "parameters": parameters(op),
        "responses": responses,
    });
    if let Some(body) = op.request {
        operation["requestBody"] = json!({
            "required": true,
            "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{body}") } } },
        });
    }
    if op.access != Access::Public {
        operation["security"] = json!([{ "bearer": [] }]);
    }
    operation
}

/// The whole document.
pub fn document(ops: &[Op]) -> Value {
    let mut paths = Map::new();
    for op in ops {
        let entry = paths.entry(op.path).or_insert_with(|| json!({}));
        entry[op.method.as_str().to_lowercase()] = operation(op);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Tenantry API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Multi-tenant platform for AI agents. Errors are RFC 9457 problem+json; money is a decimal string; times are RFC 3339 UTC.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "description": "The platform admin key, an sk_live_ organization key or a pk_widget_ widget key" } },
            "schemas": crate::schemas::all(),
        },
    })
}

/// Renders `/openapi.json` with nothing but what the binary serves.
const DOCS_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Tenantry API</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#1d2433}
h1{margin-bottom:.2rem}.op{border:1px solid #d8dde6;border-radius:6px;margin:.6rem 0;padding:.5rem .8rem}
.m{display:inline-block;min-width:4.5rem;font-weight:700}.GET{color:#1a7f37}.POST{color:#0550ae}.PATCH{color:#9a6700}.DELETE{color:#cf222e}
code{font-size:13px}details pre{background:#f6f8fa;padding:.6rem;overflow:auto}
</style></head><body>
<h1>Tenantry API</h1><p id="about"></p><div id="ops">Loading /openapi.json…</div>
<script>
fetch('/openapi.json').then(r => r.json()).then(doc => {
  document.getElementById('about').textContent = doc.info.description + ' Version ' + doc.info.version + '.';
  const root = document.getElementById('ops'); root.textContent = '';
  const schemas = doc.components.schemas;
  const name = ref => ref && ref.split('/').pop();
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const box = document.createElement('div'); box.className = 'op';
      const head = document.createElement('div');
      head.innerHTML = '<span class="m ' + method.toUpperCase() + '">' + method.toUpperCase() + '</span> <code></code> — <span></span>';
      head.querySelector('code').textContent = path; head.querySelector('span:last-child').textContent = op.summary;
      box.appendChild(head);
      const info = document.createElement('div'); info.textContent = op.description; box.appendChild(info);
      const body = op.requestBody && name(op.requestBody.content['application/json'].schema.$ref);
      if (body) { const d = document.createElement('details'); d.innerHTML = '<summary>Body: ' + body + '</summary><pre></pre>';
        d.querySelector('pre').textContent = JSON.stringify(schemas[body], null, 2); box.appendChild(d); }
      const ok = Object.entries(op.responses).find(([s]) => s.startsWith('2'));
      if (ok) { const d = document.createElement('details'); d.innerHTML = '<summary>' + ok[0] + ' response</summary><pre></pre>';
        d.querySelector('pre').textContent = JSON.stringify(ok[1].content['application/json'].schema, null, 2); box.appendChild(d); }
      root.appendChild(box);
    }
  }
});
</script></body></html>"#;
