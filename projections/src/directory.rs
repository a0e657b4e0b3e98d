//! The directory read models: members, API keys, stores, agent instances, widget keys,
//! conversations and their messages, as the API lists and shows them.

use async_trait::async_trait;
use sqlx::PgConnection;
use tenantry_domain::agent_instance::AgentInstanceEvent;
use tenantry_domain::conversation::ConversationEvent;
use tenantry_domain::organization::OrganizationEvent;
use tenantry_domain::store::StoreEvent;
use tenantry_eventstore::RecordedEvent;

use crate::{Projection, ProjectionError};

/// Builds `members`, `api_keys`, `stores`, `agent_instances`, `widget_keys`,
/// `conversations` and `messages`.
pub struct Directory;

/// Its name, also used by queries that wait for it.
pub const NAME: &str = "directory";

#[async_trait]
impl Projection for Directory {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "members",
            "api_keys",
            "stores",
            "agent_instances",
            "widget_keys",
            "conversations",
            "messages",
        ]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        match event.stream_type.as_str() {
            "organization" => organization(conn, event).await,
            "store" => store(conn, event).await,
            "agent_instance" => agent_instance(conn, event).await,
            "conversation" => conversation(conn, event).await,
            _ => Ok(()),
        }
    }
}

async fn organization(conn: &mut PgConnection, e: &RecordedEvent) -> Result<(), ProjectionError> {
    let t = e.tenant_id;
    let at = e.recorded_at;
    match e.decode::<OrganizationEvent>()? {
        OrganizationEvent::MemberInvited {
            member_id,
            email,
            role,
        } => {
            sqlx::query("INSERT INTO members (tenant_id, member_id, email, role, created_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(t)
                .bind(member_id.as_uuid())
                .bind(e.stored_text("email").unwrap_or(email.as_str()))
                .bind(role.as_str())
                .bind(at)
                .execute(conn)
                .await?;
        }
        OrganizationEvent::MemberRoleChanged { member_id, role } => {
            sqlx::query("UPDATE members SET role = $3 WHERE tenant_id = $1 AND member_id = $2")
                .bind(t)
                .bind(member_id.as_uuid())
                .bind(role.as_str())
                .execute(conn)
                .await?;
        }
        OrganizationEvent::MemberRemoved { member_id } => {
            sqlx::query("DELETE FROM members WHERE tenant_id = $1 AND member_id = $2")
                .bind(t)
                .bind(member_id.as_uuid())
                .execute(conn)
                .await?;
        }
        OrganizationEvent::ApiKeyIssued {
            key_id,
            name,
            role,
            prefix,
            ..
        } => {
            sqlx::query(
                "INSERT INTO api_keys (tenant_id, key_id, name, role, prefix, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(t)
            .bind(key_id.as_uuid())
            .bind(name.as_str())
            .bind(role.as_str())
            .bind(prefix)
            .bind(at)
            .execute(conn)
            .await?;
        }
        OrganizationEvent::ApiKeyRevoked { key_id } => {
            sqlx::query("UPDATE api_keys SET revoked_at = $3 WHERE tenant_id = $1 AND key_id = $2")
                .bind(t)
                .bind(key_id.as_uuid())
                .bind(at)
                .execute(conn)
                .await?;
        }
        _ => {}
    }
    Ok(())
}

async fn store(conn: &mut PgConnection, e: &RecordedEvent) -> Result<(), ProjectionError> {
    let (t, id, at, v) = (e.tenant_id, e.stream_id, e.recorded_at, e.version);
    match e.decode::<StoreEvent>()? {
        StoreEvent::StoreCreated {
            name,
            domain,
            platform,
            ..
        } => {
            sqlx::query(
                "INSERT INTO stores (tenant_id, store_id, name, domain, platform, status, version, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, 'active', $6, $7, $7)",
            )
            .bind(t)
            .bind(id)
            .bind(name.as_str())
            .bind(domain.as_str())
            .bind(platform.as_str())
            .bind(v)
            .bind(at)
            .execute(conn)
            .await?;
        }
        StoreEvent::StoreUpdated {
            name,
            domain,
            platform,
        } => {
            sqlx::query(
                "UPDATE stores SET name = $3, domain = $4, platform = $5, version = $6, updated_at = $7 \
                 WHERE tenant_id = $1 AND store_id = $2",
            )
            .bind(t)
            .bind(id)
            .bind(name.as_str())
            .bind(domain.as_str())
            .bind(platform.as_str())
            .bind(v)
            .bind(at)
            .execute(conn)
            .await?;
        }
        StoreEvent::StoreDeactivated {} | StoreEvent::StoreReactivated {} => {
            let status = if e.event_type == "StoreDeactivated" {
                "deactivated"
            } else {
                "active"
            };
            sqlx::query("UPDATE stores SET status = $3, version = $4, updated_at = $5 WHERE tenant_id = $1 AND store_id = $2")
                .bind(t)
                .bind(id)
                .bind(status)
                .bind(v)
                .bind(at)
                .execute(conn)
                .await?;
        }
    }
    Ok(())
}

async fn agent_instance(conn: &mut PgConnection, e: &RecordedEvent) -> Result<(), ProjectionError> {
    let (t, id, at, v) = (e.tenant_id, e.stream_id, e.recorded_at, e.version);
    // What else changes besides the version; the value is bound as $5.
    let (assignment, value): (Option<&str>, Option<serde_json::Value>) = match e
        .decode::<AgentInstanceEvent>(
    )? {
        AgentInstanceEvent::AgentInstanceDeployed {
            store_id,
            agent_type,
            version,
            config,
            ..
        } => {
            sqlx::query(
                "INSERT INTO agent_instances (tenant_id, instance_id, store_id, agent_type, version, config, status, \
                                              stream_version, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, $8, $8)",
            )
            .bind(t)
            .bind(id)
            .bind(store_id.as_uuid())
            .bind(agent_type.as_str())
            .bind(version)
            .bind(serde_json::Value::Object(config))
            .bind(v)
            .bind(at)
            .execute(conn)
            .await?;
            return Ok(());
        }
        AgentInstanceEvent::WidgetKeyIssued { key_id, prefix, .. } => {
            sqlx::query("INSERT INTO widget_keys (tenant_id, key_id, instance_id, prefix, created_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(t)
                .bind(key_id.as_uuid())
                .bind(id)
                .bind(prefix)
                .bind(at)
                .execute(&mut *conn)
                .await?;
            (None, None)
        }
        AgentInstanceEvent::WidgetKeyRevoked { key_id } => {
            sqlx::query(
                "UPDATE widget_keys SET revoked_at = $3 WHERE tenant_id = $1 AND key_id = $2",
            )
            .bind(t)
            .bind(key_id.as_uuid())
            .bind(at)
            .execute(&mut *conn)
            .await?;
            (None, None)
        }
        AgentInstanceEvent::AgentConfigChanged { config } => {
            (Some("config = $5"), Some(serde_json::Value::Object(config)))
        }
        AgentInstanceEvent::AgentInstancePaused {} => (Some("status = 'paused'"), None),
        AgentInstanceEvent::AgentInstanceResumed {} => (Some("status = 'active'"), None),
        AgentInstanceEvent::AgentInstanceArchived { .. } => (Some("status = 'archived'"), None),
        AgentInstanceEvent::AgentInstanceUpgraded { to, .. } => {
            (Some("version = $5"), Some(serde_json::Value::String(to)))
        }
    };
    let assignment = assignment.map(|a| format!("{a}, ")).unwrap_or_default();
    let sql = format!(
        "UPDATE agent_instances SET {assignment}stream_version = $3, updated_at = $4 \
         WHERE tenant_id = $1 AND instance_id = $2"
    );
    let mut query = sqlx::query(&sql).bind(t).bind(id).bind(v).bind(at);
    match value {
        Some(serde_json::Value::String(s)) => query = query.bind(s),
        Some(other) => query = query.bind(other),
        None => {}
    }
    query.execute(conn).await?;
    Ok(())
}

async fn conversation(conn: &mut PgConnection, e: &RecordedEvent) -> Result<(), ProjectionError> {
    let (t, id, at, v) = (e.tenant_id, e.stream_id, e.recorded_at, e.version);
    match e.decode::<ConversationEvent>()? {
        ConversationEvent::ConversationStarted {
            agent_instance_id,
            store_id,
            customer_ref,
            channel,
            ..
        } => {
            sqlx::query(
                "INSERT INTO conversations (tenant_id, conversation_id, instance_id, store_id, customer_ref, channel, \
                                            status, version, started_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'open', $7, $8, $8)",
            )
            .bind(t)
            .bind(id)
            .bind(agent_instance_id.as_uuid())
            .bind(store_id.as_uuid())
            .bind(customer_ref.and(e.stored_text("customer_ref")))
            .bind(channel.as_str())
            .bind(v)
            .bind(at)
            .execute(conn)
            .await?;
        }
        ConversationEvent::MessageAppended {
            message_id,
            role,
            content,
            tokens_in,
            tokens_out,
            ..
        } => {
            sqlx::query(
                "INSERT INTO messages (tenant_id, conversation_id, message_id, seq, role, content, tokens_in, tokens_out, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(t)
            .bind(id)
            .bind(message_id.as_uuid())
            .bind(v)
            .bind(role.as_str())
            .bind(e.stored_text("content").unwrap_or(content.as_str()))
            .bind(tokens_in as i64)
            .bind(tokens_out as i64)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "UPDATE conversations SET messages = messages + 1, tokens_in = tokens_in + $3, \
                        tokens_out = tokens_out + $4, version = $5, updated_at = $6 \
                 WHERE tenant_id = $1 AND conversation_id = $2",
            )
            .bind(t)
            .bind(id)
            .bind(tokens_in as i64)
            .bind(tokens_out as i64)
            .bind(v)
            .bind(at)
            .execute(conn)
            .await?;
        }
        ConversationEvent::ConversationEnded { resolution, .. } => {
            sqlx::query(
                "UPDATE conversations SET status = 'ended', resolution = $3, version = $4, updated_at = $5 \
                 WHERE tenant_id = $1 AND conversation_id = $2",
            )
            .bind(t)
            .bind(id)
            .bind(resolution.as_str())
            .bind(v)
            .bind(at)
            .execute(conn)
            .await?;
        }
    }
    Ok(())
}
