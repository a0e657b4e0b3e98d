//! The OpenAPI 3.1 document and the offline `/docs` page.
//!
//! Routes are registered through [`ApiRouter::route`], which adds the handler to the axum
//! router and its [`Op`] to the document in one call: a route cannot exist undocumented, and
//! its [`Access`] rule is both what the document says and what the extractors check.
//!
//! An [`Op`] names the Rust types of its query string, body and answer (`.body::<T>()`,
//! `.returns::<T>(status)`, `.lists::<T>()`), and `components.schemas` is generated from
//! those types by `schemars`: the document describes what the handlers parse and send, with
//! each rule stated once where the type is (the slug pattern in `tenantry_domain::schema`).

use std::borrow::Cow;
use std::sync::Arc;

use axum::handler::Handler;
use axum::http::header::CONTENT_TYPE;
use axum::http::Method;
use axum::response::IntoResponse;
use axum::routing::{delete, get, patch, post};
use axum::Router;
use cqrs_es::Aggregate;
use schemars::generate::SchemaSettings;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Map, Value};
use tenantry_domain::agent_instance::AgentInstance;
use tenantry_domain::billing::Month;
use tenantry_domain::conversation::Conversation;
use tenantry_domain::organization::Organization;
use tenantry_domain::store::Store;
use tenantry_projections::queries::Page;
use uuid::Uuid;

use crate::access::{self, Access};
use crate::error::Problem;
use crate::resources::{Acknowledgement, ListParams};
use crate::AppState;

/// A body schema in the document: a `$ref` to the component of the type that a route named,
/// made when the document is built.
pub type SchemaOf = fn(&mut SchemaGenerator) -> Schema;

fn schema_of<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// `T`'s own schema, not a `$ref`: the query string's parameters are its properties.
fn properties_of<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    T::json_schema(generator)
}

/// A plain-text body (with [`Op::media_type`]).
pub struct Text;

impl JsonSchema for Text {
    fn schema_name() -> Cow<'static, str> {
        "Text".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string" })
    }
}

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
    /// The query string's type (each property a parameter).
    pub query: Option<SchemaOf>,
    /// The request body's type (described as it deserializes).
    pub request: Option<SchemaOf>,
    /// The success status, and the body's type (described as it serializes).
    pub status: u16,
    pub response: SchemaOf,
    /// The success body's media type.
    pub media_type: &'static str,
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
            query: None,
            request: None,
            status,
            response: schema_of::<Acknowledgement>,
            media_type: "application/json",
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
    /// The query string is a `T`.
    pub fn query<T: JsonSchema>(mut self) -> Self {
        self.query = Some(properties_of::<T>);
        self
    }
    /// The request body is a `T`.
    pub fn body<T: JsonSchema>(mut self) -> Self {
        self.request = Some(schema_of::<T>);
        self
    }
    /// Success is `status` with a `T` (an [`Acknowledgement`] until a route says otherwise).
    pub fn returns<T: JsonSchema>(mut self, status: u16) -> Self {
        self.status = status;
        self.response = schema_of::<T>;
        self
    }
    /// Success is 200 with a [`Page`] of `T`s, the query string [`ListParams`].
    pub fn lists<T: JsonSchema>(self) -> Self {
        self.returns::<Page<T>>(200).query::<ListParams>()
    }
    /// The success body is `media_type`, not JSON (its schema describes the text, or each
    /// line of NDJSON).
    pub fn media_type(mut self, media_type: &'static str) -> Self {
        self.media_type = media_type;
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

    /// The method and path of each route open to anyone ([`Access::Public`]); none has a
    /// parameter.
    pub fn public_routes(&self) -> Vec<(Method, &'static str)> {
        self.ops
            .iter()
            .filter(|op| op.access == Access::Public)
            .map(|op| (op.method.clone(), op.path))
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

/// `components.schemas`, generated from the types the routes name. A generator describes
/// every type under one contract, fixed when it is made, so there are two: request bodies as
/// they deserialize (an `Option` field may be left out, a `#[serde(default)]` one too) and
/// responses as they serialize (an `Option` field is there, maybe null; a
/// `skip_serializing_if` one may be missing). Both put their components at
/// `#/components/schemas`, where their `$ref`s point.
struct Components {
    requests: SchemaGenerator,
    responses: SchemaGenerator,
}

impl Components {
    fn new() -> Self {
        // OpenAPI 3.1's schemas are JSON Schema 2020-12; components carry no `$schema`.
        let settings = SchemaSettings::draft2020_12().with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        });
        Self {
            requests: settings.clone().for_deserialize().into_generator(),
            responses: settings.for_serialize().into_generator(),
        }
    }

    fn request(&mut self, schema: SchemaOf) -> Value {
        schema(&mut self.requests).to_value()
    }

    fn response(&mut self, schema: SchemaOf) -> Value {
        schema(&mut self.responses).to_value()
    }

    /// Every component either generator made.
    ///
    /// # Panics
    /// When a request and a response component share a name but not a schema: one `$ref`
    /// would describe two things (the unit tests build the whole document, so this shows
    /// there, not at startup).
    fn into_schemas(mut self) -> Map<String, Value> {
        let mut schemas = self.responses.take_definitions(true);
        for (name, schema) in self.requests.take_definitions(true) {
            match schemas.get(&name) {
                Some(other) => assert_eq!(
                    other, &schema,
                    "{name} reads differently as a request and as a response: give one a `#[schemars(rename)]`"
                ),
                None => {
                    schemas.insert(name, schema);
                }
            }
        }
        schemas
    }
}

fn parameters(op: &Op, components: &mut Components) -> Vec<Value> {
    let mut params: Vec<Value> = op
        .path
        .split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            let schema = match name {
                "month" => components.request(schema_of::<Month>),
                "stream_type" => {
                    json!({ "type": "string", "enum": [Organization::TYPE, Store::TYPE, AgentInstance::TYPE, Conversation::TYPE] })
                }
                _ => components.request(schema_of::<Uuid>),
            };
            json!({ "name": name, "in": "path", "required": true, "schema": schema })
        })
        .collect();
    if let Some(query) = op.query {
        let query = components.request(query);
        let required = query["required"].as_array().cloned().unwrap_or_default();
        let properties = query["properties"].as_object().cloned().unwrap_or_default();
        for (name, mut schema) in properties {
            // A query string leaves a value out; it cannot send null.
            if let Some(Value::Array(types)) = schema.get_mut("type") {
                types.retain(|t| t != "null");
                if let [single] = types.as_slice() {
                    schema["type"] = single.clone();
                }
            }
            let required = required.contains(&Value::String(name.clone()));
            params.push(
                json!({ "name": name, "in": "query", "required": required, "schema": schema }),
            );
        }
    }
    let header = |name: &str, description: &str| json!({ "name": name, "in": "header", "required": false, "description": description, "schema": { "type": "string" } });
    match op.method {
        Method::GET => {
            params.push(header(
                "X-Tenantry-Min-Position",
                "A consistency token (X-Tenantry-Position of an earlier command): wait until the read model has passed it",
            ));
        }
        Method::POST => params.push(header(
            "Idempotency-Key",
            "The same key and body return the first response and record nothing new (kept 24 hours or more)",
        )),
        _ => params.push(header("If-Match", "The version (ETag) the change applies to; 412 when stale")),
    }
    params
}

fn operation(op: &Op, components: &mut Components) -> Value {
    let success_schema = components.response(op.response);
    let problem_schema = components.response(schema_of::<Problem<'static>>);
    let mut responses = Map::new();
    let mut content = Map::new();
    content.insert(op.media_type.into(), json!({ "schema": success_schema }));
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
            "content": content,
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
        responses.insert(
            status.into(),
            json!({
                "description": description,
                "content": { "application/problem+json": { "schema": problem_schema } },
            }),
        );
    }
    let mut operation = json!({
        "summary": op.summary,
        "description": format!("Access: {}.", op.describe_access()),
        "tags": [op.tag],
        "operationId": format!("{}_{}", op.method.as_str().to_lowercase(), op.path.trim_start_matches('/').replace(['/', '{', '}', '-'], "_")),
        "parameters": parameters(op, components),
        "responses": responses,
    });
    if let Some(body) = op.request {
        operation["requestBody"] = json!({
            "required": true,
            "content": { "application/json": { "schema": components.request(body) } },
        });
    }
    if op.access != Access::Public {
        operation["security"] = json!([{ "bearer": [] }]);
    }
    operation
}

/// The whole document.
pub fn document(ops: &[Op]) -> Value {
    let mut components = Components::new();
    let mut paths = Map::new();
    for op in ops {
        let entry = paths.entry(op.path).or_insert_with(|| json!({}));
        entry[op.method.as_str().to_lowercase()] = operation(op, &mut components);
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
            "schemas": components.into_schemas(),
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
        d.querySelector('pre').textContent = JSON.stringify(Object.values(ok[1].content)[0].schema, null, 2); box.appendChild(d); }
      root.appendChild(box);
    }
  }
});
</script></body></html>"#;

#[cfg(test)]
mod tests {
    use tenantry_domain::schema::SLUG_PATTERN;

    use super::*;

    /// The document `/openapi.json` serves.
    fn whole() -> Value {
        document(&crate::routes().ops)
    }

    /// Every `$ref` in `value`.
    fn refs<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(reference)) = map.get("$ref") {
                    found.push(reference);
                }
                map.values().for_each(|v| refs(v, found));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
            _ => {}
        }
    }

    #[test]
    fn every_ref_names_a_component() {
        let doc = whole();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(found.len() > 100, "the walk found only {}", found.len());
        for reference in found {
            let name = reference
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("{reference} points outside the components"));
            let name = name.replace("~1", "/").replace("~0", "~");
            assert!(
                schemas.contains_key(&name),
                "{reference} names no component"
            );
        }
    }

    #[test]
    fn components_are_plain_schemas_each_of_one_type() {
        let doc = whole();
        for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
            assert!(schema.is_object(), "{name}");
            assert!(schema.get("$schema").is_none(), "{name} carries a $schema");
            // schemars numbers the second type that claims a name (Store2): rename one.
            assert!(
                !name.ends_with(|c: char| c.is_ascii_digit()),
                "{name}: two types claim one component name"
            );
        }
    }

    #[test]
    fn bodies_and_answers_are_named_components() {
        let doc = whole();
        for (path, methods) in doc["paths"].as_object().unwrap() {
            for (method, op) in methods.as_object().unwrap() {
                let body = &op["requestBody"]["content"]["application/json"]["schema"];
                assert!(
                    body.is_null() || body["$ref"].is_string(),
                    "{method} {path}"
                );
                for (status, response) in op["responses"].as_object().unwrap() {
                    let (_, media) = response["content"]
                        .as_object()
                        .unwrap()
                        .iter()
                        .next()
                        .unwrap();
                    assert!(
                        media["schema"]["$ref"].is_string(),
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_slug_pattern_is_stated_once_by_the_domain() {
        let doc = whole();
        let create = &doc["components"]["schemas"]["CreateOrganization"];
        assert_eq!(create["properties"]["slug"]["pattern"], SLUG_PATTERN);
        assert_eq!(doc.to_string().matches(SLUG_PATTERN).count(), 1);
    }

    #[test]
    fn requests_read_as_deserialized_and_answers_as_serialized() {
        let doc = whole();
        let schemas = &doc["components"]["schemas"];
        // A request refuses unknown fields; an Option field may be left out.
        let create = &schemas["CreateOrganization"];
        assert_eq!(create["additionalProperties"], false);
        assert_eq!(
            create["required"],
            json!(["name", "slug", "tier", "billing_email"])
        );
        // An answer always has its Option fields (maybe null), but not a skipped one.
        let required = schemas["Conversation"]["required"].as_array().unwrap();
        assert!(required.contains(&json!("customer_ref")));
        assert!(!required.contains(&json!("started_at")));
        // A page is a component of its own, named after its items.
        assert_eq!(
            schemas["StorePage"]["properties"]["data"]["items"]["$ref"],
            "#/components/schemas/Store"
        );
    }

    #[test]
    fn query_strings_are_parameters() {
        let doc = whole();
        let parameter = |path: &str, name: &str| {
            doc["paths"][path]["get"]["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["in"] == "query" && p["name"] == name)
                .unwrap_or_else(|| panic!("{path} has no ?{name}="))
                .clone()
        };
        let limit = parameter("/v1/organizations/{org}/stores", "limit");
        assert_eq!(limit["required"], false);
        assert_eq!(limit["schema"]["type"], "integer");
        assert_eq!(
            (&limit["schema"]["minimum"], &limit["schema"]["maximum"]),
            (&json!(1), &json!(100))
        );
        assert_eq!(limit["schema"]["default"], 20);
        let month = parameter("/v1/organizations/{org}/usage", "month");
        assert_eq!(
            month["schema"]["pattern"],
            tenantry_domain::schema::MONTH_PATTERN
        );
        parameter("/v1/organizations/{org}/volume", "from");
        parameter("/v1/organizations/{org}/events", "after");
        parameter(
            "/v1/organizations/{org}/history/{stream_type}/{stream_id}",
            "as_of",
        );
    }
}
