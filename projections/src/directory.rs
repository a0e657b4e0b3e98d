//! The directory read models: members, API keys, stores, agent instances, widget keys,
//! conversations and their messages, as the API lists and shows them.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use sqlx::PgConnection;
use tenantry_domain::agent_instance::{AgentInstance, AgentInstanceEvent};
use tenantry_domain::conversation::{Conversation, ConversationEvent};
use tenantry_domain::organization::{Organization, OrganizationEvent};
use tenantry_domain::store::{Store, StoreEvent};
use tenantry_eventstore::RecordedEvent;
use uuid::Uuid;

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
        self.apply_batch(conn, std::slice::from_ref(event)).await
    }

    /// Conversation events are gathered and written in a few statements; any other event
    /// first writes what was gathered before it.
    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let mut conversations = Conversations::default();
        for event in events {
            if event.stream_type == Conversation::TYPE {
                conversations.add(event)?;
                continue;
            }
            conversations.write(conn).await?;
            match event.stream_type.as_str() {
                Organization::TYPE => organization(conn, event).await?,
                Store::TYPE => store(conn, event).await?,
                AgentInstance::TYPE => agent_instance(conn, event).await?,
                _ => {}
            }
        }
        conversations.write(conn).await
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

/// A conversation row as started.
struct Started {
    tenant: Uuid,
    id: Uuid,
    instance: Uuid,
    store: Uuid,
    /// As stored: sealed.
    customer_ref: Option<String>,
    channel: &'static str,
    version: i64,
    at: DateTime<Utc>,
}

/// A message row.
struct Message {
    tenant: Uuid,
    conversation: Uuid,
    id: Uuid,
    seq: i64,
    role: &'static str,
    /// As stored: sealed.
    content: String,
    tokens_in: i64,
    tokens_out: i64,
    at: DateTime<Utc>,
}

/// What later events change on a conversation row.
#[derive(Default)]
struct Change {
    messages: i64,
    tokens_in: i64,
    tokens_out: i64,
    version: i64,
    updated_at: Option<DateTime<Utc>>,
    /// `ended` with this resolution.
    resolution: Option<&'static str>,
}

/// Conversation events of a batch: new rows, new messages, and each conversation's change.
#[derive(Default)]
struct Conversations {
    started: Vec<Started>,
    messages: Vec<Message>,
    changes: HashMap<(Uuid, Uuid), Change>,
}

impl Conversations {
    fn add(&mut self, e: &RecordedEvent) -> Result<(), ProjectionError> {
        let (tenant, id, at, version) = (e.tenant_id, e.stream_id, e.recorded_at, e.version);
        match e.decode::<ConversationEvent>()? {
            ConversationEvent::ConversationStarted {
                agent_instance_id,
                store_id,
                customer_ref,
                channel,
                ..
            } => self.started.push(Started {
                tenant,
                id,
                instance: agent_instance_id.as_uuid(),
                store: store_id.as_uuid(),
                customer_ref: customer_ref
                    .and(e.stored_text("customer_ref"))
                    .map(str::to_owned),
                channel: channel.as_str(),
                version,
                at,
            }),
            ConversationEvent::MessageAppended {
                message_id,
                role,
                content,
                tokens_in,
                tokens_out,
                ..
            } => {
                self.messages.push(Message {
                    tenant,
                    conversation: id,
                    id: message_id.as_uuid(),
                    seq: version,
                    role: role.as_str(),
                    content: e
                        .stored_text("content")
                        .unwrap_or(content.as_str())
                        .to_owned(),
                    tokens_in: tokens_in as i64,
                    tokens_out: tokens_out as i64,
                    at,
                });
                let row = self.change(e);
                row.messages += 1;
                row.tokens_in = row.tokens_in.saturating_add(tokens_in as i64);
                row.tokens_out = row.tokens_out.saturating_add(tokens_out as i64);
            }
            ConversationEvent::ConversationEnded { resolution, .. } => {
                self.change(e).resolution = Some(resolution.as_str());
            }
        }
        Ok(())
    }

    /// The change of `e`'s conversation, moved to `e`'s version and time.
    fn change(&mut self, e: &RecordedEvent) -> &mut Change {
        let change = self.changes.entry((e.tenant_id, e.stream_id)).or_default();
        change.version = change.version.max(e.version);
        change.updated_at = Some(
            change
                .updated_at
                .map_or(e.recorded_at, |u| u.max(e.recorded_at)),
        );
        change
    }

    /// Writes what was gathered (new rows, then messages, then changes) and empties it.
    async fn write(&mut self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        let Conversations {
            started,
            messages,
            changes,
        } = std::mem::take(self);
        if !started.is_empty() {
            sqlx::query(
                "INSERT INTO conversations (tenant_id, conversation_id, instance_id, store_id, customer_ref, channel, \
                                            status, version, started_at, updated_at) \
                 SELECT t, c, i, s, r, ch, 'open', v, at, at \
                 FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::text[], $7::bigint[], $8::timestamptz[]) \
                   AS u(t, c, i, s, r, ch, v, at)",
            )
            .bind(started.iter().map(|r| r.tenant).collect::<Vec<_>>())
            .bind(started.iter().map(|r| r.id).collect::<Vec<_>>())
            .bind(started.iter().map(|r| r.instance).collect::<Vec<_>>())
            .bind(started.iter().map(|r| r.store).collect::<Vec<_>>())
            .bind(started.iter().map(|r| r.customer_ref.clone()).collect::<Vec<_>>())
            .bind(started.iter().map(|r| r.channel).collect::<Vec<_>>())
            .bind(started.iter().map(|r| r.version).collect::<Vec<_>>())
            .bind(started.iter().map(|r| r.at).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        if !messages.is_empty() {
            sqlx::query(
                "INSERT INTO messages (tenant_id, conversation_id, message_id, seq, role, content, tokens_in, tokens_out, created_at) \
                 SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::bigint[], $5::text[], $6::text[], $7::bigint[], $8::bigint[], $9::timestamptz[])",
            )
            .bind(messages.iter().map(|m| m.tenant).collect::<Vec<_>>())
            .bind(messages.iter().map(|m| m.conversation).collect::<Vec<_>>())
            .bind(messages.iter().map(|m| m.id).collect::<Vec<_>>())
            .bind(messages.iter().map(|m| m.seq).collect::<Vec<_>>())
            .bind(messages.iter().map(|m| m.role).collect::<Vec<_>>())
            .bind(messages.iter().map(|m| m.content.as_str()).collect::<Vec<_>>())
            .bind(messages.iter().map(|m| m.tokens_in).collect::<Vec<_>>())
            .bind(messages.iter().map(|m| m.tokens_out).collect::<Vec<_>>())
            .bind(messages.iter().map(|m| m.at).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        if !changes.is_empty() {
            let rows: Vec<_> = changes.iter().collect();
            sqlx::query(
                "UPDATE conversations c SET messages = c.messages + u.messages, \
                        tokens_in = c.tokens_in + u.tokens_in, tokens_out = c.tokens_out + u.tokens_out, \
                        version = GREATEST(c.version, u.version), updated_at = GREATEST(c.updated_at, u.at), \
                        status = CASE WHEN u.resolution IS NULL THEN c.status ELSE 'ended' END, \
                        resolution = COALESCE(u.resolution, c.resolution) \
                 FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::timestamptz[], $8::text[]) \
                   AS u(t, id, messages, tokens_in, tokens_out, version, at, resolution) \
                 WHERE c.tenant_id = u.t AND c.conversation_id = u.id",
            )
            .bind(rows.iter().map(|((t, _), _)| *t).collect::<Vec<_>>())
            .bind(rows.iter().map(|((_, id), _)| *id).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, c)| c.messages).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, c)| c.tokens_in).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, c)| c.tokens_out).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, c)| c.version).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, c)| c.updated_at).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, c)| c.resolution).collect::<Vec<_>>())
            .execute(conn)
            .await?;
        }
        Ok(())
    }
}
