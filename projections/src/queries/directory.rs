//! Queries of the `directory` read model: stores, agent instances, conversations and their
//! messages, members, API keys. Each view is also what a command on the aggregate answers
//! (`of`), so a resource reads the same whether it was just written or read back.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;
use sqlx::PgConnection;
use tenantry_domain::agent_instance::AgentInstance;
use tenantry_domain::conversation::Conversation;
use tenantry_domain::organization::Organization;
use tenantry_domain::personal::PersonalKind;
use tenantry_domain::store::Store;
use tenantry_domain::{AgentInstanceId, ConversationId, MemberId, OrganizationId, StoreId};
use uuid::Uuid;

use super::{Page, PageRequest, Query, Sealed};
use crate::directory::NAME as DIRECTORY;
use crate::ProjectionError;

#[derive(Debug, Serialize, JsonSchema, sqlx::FromRow)]
#[schemars(rename = "Store")]
pub struct StoreView {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub name: String,
    pub domain: String,
    #[schemars(extend("enum" = ["shopify", "woocommerce", "magento", "bigcommerce", "custom"]))]
    pub platform: String,
    #[schemars(extend("enum" = ["active", "deactivated"]))]
    pub status: String,
    pub version: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
}

impl Sealed for StoreView {}

impl StoreView {
    /// The store as a command left it (`None` when it does not exist).
    pub fn of(store: &Store, version: i64) -> Option<Self> {
        Some(Self {
            id: store.id?.as_uuid(),
            organization_id: store.organization_id?.as_uuid(),
            name: store.name.as_ref()?.to_string(),
            domain: store.domain.as_ref()?.to_string(),
            platform: store.platform?.to_string(),
            status: if store.active {
                "active"
            } else {
                "deactivated"
            }
            .into(),
            version,
            created_at: None,
        })
    }
}

const STORE_COLUMNS: &str =
    "store_id AS id, tenant_id AS organization_id, name, domain, platform, status, version, created_at";

/// A page of an organization's stores.
pub struct Stores(pub OrganizationId, pub PageRequest);

impl Query for Stores {
    type Output = Page<StoreView>;
    const READS: &'static [&'static str] = &[DIRECTORY];

    async fn run(self, conn: &mut PgConnection) -> Result<Self::Output, ProjectionError> {
        let Stores(org, page) = self;
        let sql = format!(
            "SELECT {STORE_COLUMNS} FROM stores WHERE tenant_id = $1 AND ($2::uuid IS NULL OR store_id < $2) \
             ORDER BY store_id DESC LIMIT $3"
        );
        let rows: Vec<StoreView> = sqlx::query_as(&sql)
            .bind(org.as_uuid())
            .bind(page.after)
            .bind(page.limit + 1)
            .fetch_all(conn)
            .await?;
        Ok(Page::of(rows, page.limit, |s| s.id))
    }
}

/// One store.
pub struct StoreById(pub OrganizationId, pub StoreId);

impl Query for StoreById {
    type Output = Option<StoreView>;
    const READS: &'static [&'static str] = &[DIRECTORY];

    async fn run(self, conn: &mut PgConnection) -> Result<Self::Output, ProjectionError> {
        let StoreById(org, store) = self;
        let sql =
            format!("SELECT {STORE_COLUMNS} FROM stores WHERE tenant_id = $1 AND store_id = $2");
        Ok(sqlx::query_as(&sql)
            .bind(org.as_uuid())
            .bind(store.as_uuid())
            .fetch_optional(conn)
            .await?)
    }
}

#[derive(Debug, Serialize, JsonSchema, sqlx::FromRow)]
#[schemars(rename = "AgentInstance")]
pub struct AgentInstanceView {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub store_id: Uuid,
    #[schemars(extend("enum" = ["customer_service", "sales", "marketing"]))]
    pub agent_type: String,
    /// The catalog version the instance runs.
    pub agent_version: String,
    pub config: Value,
    #[schemars(extend("enum" = ["active", "paused", "archived"]))]
    pub status: String,
    /// The instance's own version (for `If-Match`).
    pub version: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
}

impl Sealed for AgentInstanceView {}

impl AgentInstanceView {
    /// The instance as a command left it (`None` when it does not exist).
    pub fn of(instance: &AgentInstance, version: i64) -> Option<Self> {
        Some(Self {
            id: instance.id?.as_uuid(),
            organization_id: instance.organization_id?.as_uuid(),
            store_id: instance.store_id?.as_uuid(),
            agent_type: instance.agent_type?.to_string(),
            agent_version: instance.version.clone()?,
            config: Value::Object(instance.config.clone()),
            status: instance.status.as_str().to_owned(),
            version,
            created_at: None,
        })
    }
}

const INSTANCE_COLUMNS: &str =
    "instance_id AS id, tenant_id AS organization_id, store_id, agent_type, \
     version AS agent_version, config, status, stream_version AS version, created_at";

/// A page of a store's agent instances.
pub struct AgentInstances(pub OrganizationId, pub StoreId, pub PageRequest);

impl Query for AgentInstances {
    type Output = Page<AgentInstanceView>;
    const READS: &'static [&'static str] = &[DIRECTORY];

    async fn run(self, conn: &mut PgConnection) -> Result<Self::Output, ProjectionError> {
        let AgentInstances(org, store, page) = self;
        let sql = format!(
            "SELECT {INSTANCE_COLUMNS} FROM agent_instances WHERE tenant_id = $1 AND store_id = $2 \
             AND ($3::uuid IS NULL OR instance_id < $3) ORDER BY instance_id DESC LIMIT $4"
        );
        let rows: Vec<AgentInstanceView> = sqlx::query_as(&sql)
            .bind(org.as_uuid())
            .bind(store.as_uuid())
            .bind(page.after)
            .bind(page.limit + 1)
            .fetch_all(conn)
            .await?;
        Ok(Page::of(rows, page.limit, |i| i.id))
    }
}

/// One agent instance.
pub struct AgentInstanceById(pub OrganizationId, pub AgentInstanceId);

impl Query for AgentInstanceById {
    type Output = Option<AgentInstanceView>;
    const READS: &'static [&'static str] = &[DIRECTORY];

    async fn run(self, conn: &mut PgConnection) -> Result<Self::Output, ProjectionError> {
        let AgentInstanceById(org, instance) = self;
        let sql = format!(
            "SELECT {INSTANCE_COLUMNS} FROM agent_instances WHERE tenant_id = $1 AND instance_id = $2"
        );
        Ok(sqlx::query_as(&sql)
            .bind(org.as_uuid())
            .bind(instance.as_uuid())
            .fetch_optional(conn)
            .await?)
    }
}

#[derive(Debug, Serialize, JsonSchema, sqlx::FromRow)]
#[schemars(rename = "Conversation")]
pub struct ConversationView {
    pub id: Uuid,
    pub agent_instance_id: Uuid,
    pub store_id: Uuid,
    pub customer_ref: Option<String>,
    #[schemars(extend("enum" = ["web", "email", "api"]))]
    pub channel: String,
    #[schemars(extend("enum" = ["open", "ended"]))]
    pub status: String,
    /// `resolved`, `abandoned` or `escalated` once ended.
    pub resolution: Option<String>,
    /// How many messages it holds (the transcript is `messages` of the conversation shown
    /// alone).
    pub message_count: i64,
    pub tokens_in: i64,
    pub tokens_out: i64,
    pub version: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
}

impl Sealed for ConversationView {
    fn sealed(&mut self) -> Vec<(&mut String, PersonalKind)> {
        self.customer_ref
            .iter_mut()
            .map(|r| (r, PersonalKind::CustomerRef))
            .collect()
    }
}

impl ConversationView {
    /// The conversation as a command left it (`None` when it does not exist).
    pub fn of(c: &Conversation, version: i64) -> Option<Self> {
        Some(Self {
            id: c.id?.as_uuid(),
            agent_instance_id: c.agent_instance_id?.as_uuid(),
            store_id: c.store_id?.as_uuid(),
            customer_ref: c.customer_ref.as_ref().map(|r| r.to_string()),
            channel: c.channel?.to_string(),
            status: if c.ended.is_some() { "ended" } else { "open" }.into(),
            resolution: c.ended.map(|r| r.to_string()),
            message_count: c.messages as i64,
            tokens_in: c.tokens_in as i64,
            tokens_out: c.tokens_out as i64,
            version,
            started_at: None,
        })
    }
}

const CONVERSATION_COLUMNS: &str =
    "conversation_id AS id, instance_id AS agent_instance_id, store_id, customer_ref, channel, \
     status, resolution, messages AS message_count, tokens_in, tokens_out, version, started_at";

#[derive(Debug, Serialize, JsonSchema, sqlx::FromRow)]
#[schemars(rename = "Message")]
pub struct MessageView {
    pub id: Uuid,
    #[schemars(extend("enum" = ["customer", "agent"]))]
    pub role: String,
    pub content: String,
    pub tokens_in: i64,
    pub tokens_out: i64,
    pub created_at: DateTime<Utc>,
}

impl Sealed for MessageView {
    fn sealed(&mut self) -> Vec<(&mut String, PersonalKind)> {
        vec![(&mut self.content, PersonalKind::Text)]
    }
}

/// A conversation with its transcript.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "ConversationWithMessages")]
pub struct WithMessages {
    #[serde(flatten)]
    pub conversation: ConversationView,
    /// The transcript, oldest first.
    pub messages: Vec<MessageView>,
}

impl Sealed for WithMessages {
    fn sealed(&mut self) -> Vec<(&mut String, PersonalKind)> {
        let mut sealed = self.conversation.sealed();
        sealed.extend(self.messages.sealed());
        sealed
    }
}

/// A page of an agent instance's conversations.
pub struct Conversations(pub OrganizationId, pub AgentInstanceId, pub PageRequest);

impl Query for Conversations {
    type Output = Page<ConversationView>;
    const READS: &'static [&'static str] = &[DIRECTORY];

    async fn run(self, conn: &mut PgConnection) -> Result<Self::Output, ProjectionError> {
        let Conversations(org, instance, page) = self;
        let sql = format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE tenant_id = $1 AND instance_id = $2 \
             AND ($3::uuid IS NULL OR conversation_id < $3) ORDER BY conversation_id DESC LIMIT $4"
        );
        let rows: Vec<ConversationView> = sqlx::query_as(&sql)
            .bind(org.as_uuid())
            .bind(instance.as_uuid())
            .bind(page.after)
            .bind(page.limit + 1)
            .fetch_all(conn)
            .await?;
        Ok(Page::of(rows, page.limit, |c| c.id))
    }
}

/// One conversation with its transcript.
pub struct ConversationById(pub OrganizationId, pub ConversationId);

impl Query for ConversationById {
    type Output = Option<WithMessages>;
    const READS: &'static [&'static str] = &[DIRECTORY];

    async fn run(self, conn: &mut PgConnection) -> Result<Self::Output, ProjectionError> {
        let ConversationById(org, id) = self;
        let sql = format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE tenant_id = $1 AND conversation_id = $2"
        );
        let conversation: Option<ConversationView> = sqlx::query_as(&sql)
            .bind(org.as_uuid())
            .bind(id.as_uuid())
            .fetch_optional(&mut *conn)
            .await?;
        let Some(conversation) = conversation else {
            return Ok(None);
        };
        let messages = sqlx::query_as(
            "SELECT message_id AS id, role, content, tokens_in, tokens_out, created_at FROM messages \
             WHERE tenant_id = $1 AND conversation_id = $2 ORDER BY seq",
        )
        .bind(org.as_uuid())
        .bind(id.as_uuid())
        .fetch_all(conn)
        .await?;
        Ok(Some(WithMessages {
            conversation,
            messages,
        }))
    }
}

#[derive(Debug, Serialize, JsonSchema, sqlx::FromRow)]
#[schemars(rename = "Member")]
pub struct MemberView {
    pub id: Uuid,
    pub email: String,
    #[schemars(extend("enum" = ["owner", "admin", "developer", "member"]))]
    pub role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
}

impl Sealed for MemberView {
    fn sealed(&mut self) -> Vec<(&mut String, PersonalKind)> {
        vec![(&mut self.email, PersonalKind::Email)]
    }
}

impl MemberView {
    /// The member as a command left the organization (`None` when there is none such).
    pub fn of(org: &Organization, id: MemberId) -> Option<Self> {
        let member = org.members.get(&id)?;
        Some(Self {
            id: id.as_uuid(),
            email: member.email.to_string(),
            role: member.role.to_string(),
            created_at: None,
        })
    }
}

/// A page of an organization's members.
pub struct Members(pub OrganizationId, pub PageRequest);

impl Query for Members {
    type Output = Page<MemberView>;
    const READS: &'static [&'static str] = &[DIRECTORY];

    async fn run(self, conn: &mut PgConnection) -> Result<Self::Output, ProjectionError> {
        let Members(org, page) = self;
        let rows: Vec<MemberView> = sqlx::query_as(
            "SELECT member_id AS id, email, role, created_at FROM members \
             WHERE tenant_id = $1 AND ($2::uuid IS NULL OR member_id < $2) ORDER BY member_id DESC LIMIT $3",
        )
        .bind(org.as_uuid())
        .bind(page.after)
        .bind(page.limit + 1)
        .fetch_all(conn)
        .await?;
        Ok(Page::of(rows, page.limit, |m| m.id))
    }
}

#[derive(Debug, Serialize, JsonSchema, sqlx::FromRow)]
#[schemars(rename = "ApiKey")]
pub struct ApiKeyView {
    pub id: Uuid,
    pub name: String,
    #[schemars(extend("enum" = ["owner", "admin", "developer", "member"]))]
    pub role: String,
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl Sealed for ApiKeyView {}

/// A page of an organization's API keys (never their secrets).
pub struct ApiKeys(pub OrganizationId, pub PageRequest);

impl Query for ApiKeys {
    type Output = Page<ApiKeyView>;
    const READS: &'static [&'static str] = &[DIRECTORY];

    async fn run(self, conn: &mut PgConnection) -> Result<Self::Output, ProjectionError> {
        let ApiKeys(org, page) = self;
        let rows: Vec<ApiKeyView> = sqlx::query_as(
            "SELECT k.key_id AS id, k.name, k.role, k.prefix, k.created_at, k.revoked_at, c.last_used_at \
             FROM api_keys k LEFT JOIN credentials c ON c.tenant_id = k.tenant_id AND c.key_id = k.key_id \
             WHERE k.tenant_id = $1 AND ($2::uuid IS NULL OR k.key_id < $2) ORDER BY k.key_id DESC LIMIT $3",
        )
        .bind(org.as_uuid())
        .bind(page.after)
        .bind(page.limit + 1)
        .fetch_all(conn)
        .await?;
        Ok(Page::of(rows, page.limit, |k| k.id))
    }
}
