//! JSON Schemas of the request and response bodies, for the OpenAPI document.

use serde_json::{json, Map, Value};

fn uuid() -> Value {
    json!({ "type": "string", "format": "uuid" })
}
fn time() -> Value {
    json!({ "type": "string", "format": "date-time" })
}
fn text() -> Value {
    json!({ "type": "string" })
}
fn nullable(kind: &str) -> Value {
    json!({ "type": [kind, "null"] })
}
fn one_of(values: &[&str]) -> Value {
    json!({ "type": "string", "enum": values })
}
fn money() -> Value {
    json!({ "type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?$", "description": "USD as a decimal string" })
}
fn count() -> Value {
    json!({ "type": "integer", "minimum": 0 })
}

/// An object schema: `(name, schema, required)`; unknown fields are refused on requests.
fn object(fields: &[(&str, Value, bool)], request: bool) -> Value {
    let properties: Map<String, Value> = fields
        .iter()
        .map(|(n, s, _)| ((*n).to_owned(), s.clone()))
        .collect();
    let required: Vec<&str> = fields
        .iter()
        .filter(|(_, _, r)| *r)
        .map(|(n, _, _)| *n)
        .collect();
    let mut schema = json!({ "type": "object", "properties": properties, "required": required });
    if request {
        schema["additionalProperties"] = Value::Bool(false);
    }
    schema
}

const TIERS: &[&str] = &["basic", "pro", "enterprise"];
const ROLES: &[&str] = &["owner", "admin", "developer", "member"];
const AGENT_TYPES: &[&str] = &["customer_service", "sales", "marketing"];

/// Every named schema.
pub fn all() -> Value {
    let organization = object(
        &[
            ("id", uuid(), true),
            ("name", text(), true),
            ("slug", text(), true),
            ("tier", one_of(TIERS), true),
            (
                "billing_email",
                json!({ "type": "string", "format": "email" }),
                true,
            ),
            (
                "status",
                one_of(&["trial", "active", "past_due", "suspended", "closed"]),
                true,
            ),
            ("version", count(), true),
            ("created_at", time(), true),
        ],
        false,
    );
    let issued_key = object(
        &[
            ("id", uuid(), true),
            ("secret", nullable("string"), true),
            ("prefix", text(), true),
            ("role", one_of(ROLES), true),
        ],
        false,
    );
    let mut created = organization.clone();
    created["properties"]["api_key"] =
        json!({ "oneOf": [{ "$ref": "#/components/schemas/IssuedApiKey" }, { "type": "null" }] });
    let terms = |mut fields: Vec<(&'static str, Value, bool)>| {
        fields.push(("base_fee", money(), false));
        fields.push(("included_conversations", count(), false));
        fields.push(("overage_rate", money(), false));
        fields
    };
    let conversation_fields = vec![
        ("id", uuid(), true),
        ("agent_instance_id", uuid(), true),
        ("store_id", uuid(), true),
        ("customer_ref", nullable("string"), true),
        ("channel", one_of(&["web", "email", "api"]), true),
        ("status", one_of(&["open", "ended"]), true),
        ("resolution", nullable("string"), true),
        ("message_count", count(), true),
        ("tokens_in", count(), true),
        ("tokens_out", count(), true),
        ("version", count(), true),
        ("started_at", time(), false),
    ];
    let message = object(
        &[
            ("id", uuid(), true),
            ("role", one_of(&["customer", "agent"]), true),
            ("content", text(), true),
            ("tokens_in", count(), true),
            ("tokens_out", count(), true),
            ("created_at", time(), true),
        ],
        false,
    );
    let invoice = object(
        &[
            ("month", text(), true),
            ("number", text(), true),
            ("status", one_of(&["draft", "finalized"]), true),
            (
                "lines",
                json!({ "type": "array", "items": object(&[
                ("description", text(), true), ("quantity", text(), true), ("unit_price", money(), true), ("amount", money(), true),
            ], false) }),
                true,
            ),
            ("total", money(), true),
        ],
        false,
    );
    let mut with_messages = object(&conversation_fields, false);
    with_messages["properties"]["messages"] = json!({ "type": "array", "items": message });
    json!({
        "Problem": object(&[
            ("type", text(), true), ("title", text(), true), ("status", count(), true), ("detail", text(), true),
            ("field", text(), false), ("required_tier", one_of(TIERS), false),
        ], false),
        "Acknowledgement": object(&[("id", uuid(), true), ("revoked", json!({ "type": "boolean" }), false), ("removed", json!({ "type": "boolean" }), false)], false),
        "Organization": organization,
        "OrganizationCreated": created,
        "CreateOrganization": object(&terms(vec![
            ("name", text(), true), ("slug", json!({ "type": "string", "pattern": "^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$" }), true),
            ("tier", one_of(TIERS), true), ("billing_email", json!({ "type": "string", "format": "email" }), true),
        ]), true),
        "UpdateOrganization": object(&[("name", text(), false), ("billing_email", text(), false), ("settings", json!({ "type": "object" }), false)], true),
        "ChangeTier": object(&terms(vec![("tier", one_of(TIERS), true)]), true),
        "Suspend": object(&[("reason", json!({ "type": "string", "minLength": 1, "maxLength": 1000 }), false)], true),
        "Member": object(&[("id", uuid(), true), ("email", text(), true), ("role", one_of(ROLES), true), ("created_at", time(), false)], false),
        "Erasure": object(&[("organization_id", uuid(), true), ("scope", one_of(&["tenant", "customer"]), true), ("keys_destroyed", count(), true)], false),
        "EraseCustomer": object(&[("customer_ref", text(), true)], true),
        "Invite": object(&[("email", text(), true), ("role", one_of(ROLES), true)], true),
        "ChangeRole": object(&[("role", one_of(ROLES), true)], true),
        "ApiKey": object(&[
            ("id", uuid(), true), ("name", text(), true), ("role", one_of(ROLES), true), ("prefix", text(), true),
            ("created_at", time(), true), ("revoked_at", nullable("string"), true), ("last_used_at", nullable("string"), true),
        ], false),
        "IssueApiKey": object(&[("name", text(), true), ("role", one_of(ROLES), true)], true),
        "IssuedApiKey": issued_key,
        "Store": object(&[
            ("id", uuid(), true), ("organization_id", uuid(), true), ("name", text(), true), ("domain", text(), true),
            ("platform", text(), true), ("status", one_of(&["active", "deactivated"]), true), ("version", count(), true),
            ("created_at", time(), false),
        ], false),
        "CreateStore": object(&[("name", text(), true), ("domain", text(), true), ("platform", one_of(&["shopify", "woocommerce", "magento", "bigcommerce", "custom"]), false)], true),
        "UpdateStore": object(&[("name", text(), false), ("domain", text(), false), ("platform", text(), false)], true),
        "AgentDefinitions": object(&[("data", json!({ "type": "array", "items": object(&[
            ("agent_type", one_of(AGENT_TYPES), true), ("version", text(), true), ("description", text(), true),
            ("capabilities", json!({ "type": "array", "items": text() }), true), ("minimum_tier", one_of(TIERS), true),
        ], false) }), true)], false),
        "AgentInstance": object(&[
            ("id", uuid(), true), ("organization_id", uuid(), true), ("store_id", uuid(), true),
            ("agent_type", one_of(AGENT_TYPES), true), ("agent_version", text(), true), ("config", json!({ "type": "object" }), true),
            ("status", one_of(&["active", "paused", "archived"]), true), ("version", count(), true), ("created_at", time(), false),
        ], false),
        "Deploy": object(&[("agent_type", one_of(AGENT_TYPES), true), ("version", text(), false), ("config", json!({ "type": "object", "description": "prompt keys need the enterprise tier" }), false)], true),
        "ChangeConfig": object(&[("config", json!({ "type": "object" }), true)], true),
        "Upgrade": object(&[("version", text(), true)], true),
        "WidgetKey": object(&[("id", uuid(), true), ("agent_instance_id", uuid(), true), ("secret", nullable("string"), true), ("prefix", text(), true)], false),
        "Conversation": object(&conversation_fields, false),
        "ConversationWithMessages": with_messages,
        "StartConversation": object(&[("agent_instance_id", uuid(), true), ("customer_ref", text(), false), ("channel", one_of(&["web", "email", "api"]), false)], true),
        "AppendMessage": object(&[("role", one_of(&["customer", "agent"]), true), ("content", text(), true), ("tokens_in", count(), false), ("tokens_out", count(), false)], true),
        "EndConversation": object(&[("resolution", one_of(&["resolved", "abandoned", "escalated"]), true)], true),
        "Usage": object(&[
            ("month", text(), true), ("conversations", count(), true), ("messages", count(), true),
            ("tokens_in", count(), true), ("tokens_out", count(), true), ("included_conversations", count(), true),
            ("allowance_used", text(), true), ("overage_conversations", count(), true), ("overage_so_far", money(), true),
            ("by_agent_instance", json!({ "type": "array", "items": { "type": "object" } }), true),
        ], false),
        "Invoice": invoice.clone(),
        "Invoices": object(&[("data", json!({ "type": "array", "items": invoice }), true)], false),
        "Dashboard": json!({ "type": "object", "description": "tier, status, stores, agent instances by status and type, this month and all time, allowance used, last activity, usage alerts" }),
        "Volume": object(&[("from", text(), true), ("to", text(), true), ("data", json!({ "type": "array", "items": object(&[("day", text(), true), ("conversations", count(), true)], false) }), true)], false),
        "Stats": json!({ "type": "object", "description": "this month and all time: conversations, messages, tokens; last activity" }),
        "HistoryEvent": object(&[
            ("tenant_id", uuid(), true), ("stream_type", text(), true), ("stream_id", uuid(), true), ("version", count(), true),
            ("event_id", uuid(), true), ("event_type", text(), true), ("schema_version", count(), true),
            ("payload", json!({ "type": "object" }), true), ("metadata", json!({ "type": "object" }), true),
            ("recorded_at", time(), true), ("cursor", json!({ "type": "object" }), true), ("hash", text(), true),
        ], false),
        "Verification": object(&[("ok", json!({ "type": "boolean" }), true), ("streams", count(), true), ("events", count(), true), ("broken", json!({ "type": "array" }), true), ("report", json!({ "type": "array" }), true)], false),
        "AggregateState": object(&[("stream_type", text(), true), ("stream_id", uuid(), true), ("version", count(), true), ("as_of", time(), true), ("state", json!({ "type": "object" }), true)], false),
        "MonthRequest": object(&[("month", json!({ "type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$" }), true)], true),
        "CloseReport": object(&[("month", text(), true), ("finalized", count(), true), ("already_finalized", count(), true)], false),
        "Reconciliation": object(&[
            ("month", text(), true), ("organizations", count(), true), ("events_scanned", count(), true),
            ("differences", json!({ "type": "array", "items": object(&[("tenant_id", uuid(), true), ("field", text(), true), ("expected", text(), true), ("found", text(), true)], false) }), true),
        ], false),
    })
}
