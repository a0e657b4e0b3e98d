//! Conversations: started and fed by developer keys or by a widget key of their agent
//! instance.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tenantry_domain::agent_instance::AgentInstance;
use tenantry_domain::conversation::{Conversation, ConversationAction};
use tenantry_domain::personal::PersonalKind;
use tenantry_domain::{
    AgentInstanceId, Channel, ConversationId, CustomerRef, MessageContent, MessageId, MessageRole,
    Resolution, Role, TenantId,
};
use tenantry_projections::directory::NAME as DIRECTORY;
use uuid::Uuid;

use crate::access::{Access, Target};
use crate::auth::Principal;
use crate::command::{etag, CommandWith};
use crate::consistency::MinPosition;
use crate::extract::Query;
use crate::openapi::{ApiRouter, Op};
use crate::paths::{ConversationPath, ConversationTarget, InstancePath};
use crate::resources::{answer, owner_of, ListParams, Page};
use crate::{ApiError, AppState};

pub fn router() -> ApiRouter {
    const T: &str = "conversations";
    ApiRouter::new()
        .route(
            Op::post(
                "/v1/conversations",
                "Start a conversation on an active agent instance",
            )
            .tag(T)
            .access(Access::RoleOrWidget(Role::Developer))
            .body("StartConversation")
            .returns(201, "Conversation"),
            start,
        )
        .route(
            Op::get(
                "/v1/conversations/{id}",
                "Show a conversation with its messages",
            )
            .tag(T)
            .access(Access::Role(Role::Member))
            .returns(200, "ConversationWithMessages"),
            show,
        )
        .route(
            Op::post("/v1/conversations/{id}/messages", "Add a message")
                .tag(T)
                .access(Access::RoleOrWidget(Role::Developer))
                .note("a widget key adds customer messages only")
                .body("AppendMessage")
                .returns(201, "Conversation"),
            append,
        )
        .route(
            Op::post("/v1/conversations/{id}/end", "End a conversation")
                .tag(T)
                .access(Access::Role(Role::Developer))
                .body("EndConversation")
                .returns(200, "Conversation"),
            end,
        )
        .route(
            Op::get(
                "/v1/agent-instances/{id}/conversations",
                "List an agent instance's conversations",
            )
            .tag(T)
            .access(Access::Role(Role::Member))
            .lists("Conversation"),
            list,
        )
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct ConversationView {
    pub id: Uuid,
    pub agent_instance_id: Uuid,
    pub store_id: Uuid,
    pub customer_ref: Option<String>,
    pub channel: String,
    pub status: String,
    pub resolution: Option<String>,
    pub messages: i64,
    pub tokens_in: i64,
    pub tokens_out: i64,
    pub version: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str =
    "conversation_id AS id, instance_id AS agent_instance_id, store_id, customer_ref, channel, \
     status, resolution, messages, tokens_in, tokens_out, version, started_at";

impl ConversationView {
    fn of(c: &Conversation, version: i64) -> Result<Self, ApiError> {
        let missing = || ApiError::NotFound("conversation");
        Ok(Self {
            id: c.id.ok_or_else(missing)?.as_uuid(),
            agent_instance_id: c.agent_instance_id.ok_or_else(missing)?.as_uuid(),
            store_id: c.store_id.ok_or_else(missing)?.as_uuid(),
            customer_ref: c.customer_ref.as_ref().map(|r| r.to_string()),
            channel: c.channel.ok_or_else(missing)?.to_string(),
            status: if c.ended.is_some() { "ended" } else { "open" }.into(),
            resolution: c.ended.map(|r| r.to_string()),
            messages: c.messages as i64,
            tokens_in: c.tokens_in as i64,
            tokens_out: c.tokens_out as i64,
            version,
            started_at: None,
        })
    }
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct MessageView {
    pub id: Uuid,
    pub role: String,
    pub content: String,
    pub tokens_in: i64,
    pub tokens_out: i64,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Start {
    agent_instance_id: Uuid,
    customer_ref: Option<CustomerRef>,
    channel: Option<Channel>,
}

/// The instance is named in the body: the route's rule is checked here, on it. A key whose
/// role alone the rule admits starts it in its own organization, where the command finds the
/// instance or answers 404; other callers are looked up first, so that another
/// organization's instance is 404 before any 403.
async fn start(
    State(state): State<AppState>,
    rule: Access,
    command: CommandWith<Start, ()>,
) -> Result<Response, ApiError> {
    let instance = command.body.agent_instance_id;
    let org = match rule.admits_by_role(&command.principal) {
        Some(org) => org,
        None => {
            owner_of::<AgentInstance>(&state, &command.principal, instance, "agent instance")
                .await?
        }
    };
    let instance = AgentInstanceId::from_uuid(instance);
    rule.check(&command.principal, Target::Instance(org, instance))?;
    let id = ConversationId::new();
    let action = ConversationAction::Start {
        id,
        agent_instance_id: instance,
        customer_ref: command.body.customer_ref,
        channel: command.body.channel.unwrap_or(Channel::Api),
    };
    let done = state
        .commands
        .execute((org, id), action, &command.request)
        .await?;
    Ok(answer(
        StatusCode::CREATED,
        &done,
        ConversationView::of(&done.aggregate, done.version)?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Append {
    role: MessageRole,
    content: MessageContent,
    #[serde(default)]
    tokens_in: u64,
    #[serde(default)]
    tokens_out: u64,
}

async fn append(
    State(state): State<AppState>,
    command: CommandWith<Append, ConversationTarget>,
) -> Result<Response, ApiError> {
    let ConversationTarget { org, id } = command.path;
    if matches!(command.principal, Principal::Widget { .. })
        && command.body.role != MessageRole::Customer
    {
        return Err(ApiError::Forbidden(
            "a widget key may only add customer messages".into(),
        ));
    }
    let action = ConversationAction::AppendMessage {
        message_id: MessageId::new(),
        role: command.body.role,
        content: command.body.content,
        tokens_in: command.body.tokens_in,
        tokens_out: command.body.tokens_out,
    };
    let done = state
        .commands
        .execute((org, id), action, &command.request)
        .await?;
    Ok(answer(
        StatusCode::CREATED,
        &done,
        ConversationView::of(&done.aggregate, done.version)?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct End {
    resolution: Resolution,
}

async fn end(
    State(state): State<AppState>,
    command: CommandWith<End, ConversationTarget>,
) -> Result<Response, ApiError> {
    let ConversationTarget { org, id } = command.path;
    let action = ConversationAction::End {
        resolution: command.body.resolution,
    };
    let done = state
        .commands
        .execute((org, id), action, &command.request)
        .await?;
    Ok(answer(
        StatusCode::OK,
        &done,
        ConversationView::of(&done.aggregate, done.version)?,
    ))
}

#[derive(Serialize)]
struct WithMessages {
    #[serde(flatten)]
    conversation: ConversationView,
    messages_list: Vec<MessageView>,
}

async fn show(
    State(state): State<AppState>,
    min_position: MinPosition,
    ConversationPath { org, id }: ConversationPath,
) -> Result<Response, ApiError> {
    min_position.wait(&state, &[DIRECTORY]).await?;
    let mut tx = state.store.begin_tenant(TenantId::from(org)).await?;
    let sql = format!(
        "SELECT {COLUMNS} FROM conversations WHERE tenant_id = $1 AND conversation_id = $2"
    );
    let mut view: Option<ConversationView> = sqlx::query_as(&sql)
        .bind(org.as_uuid())
        .bind(id.as_uuid())
        .fetch_optional(&mut *tx)
        .await?;
    let mut messages: Vec<MessageView> = sqlx::query_as(
        "SELECT message_id AS id, role, content, tokens_in, tokens_out, created_at FROM messages \
         WHERE tenant_id = $1 AND conversation_id = $2 ORDER BY seq",
    )
    .bind(org.as_uuid())
    .bind(id.as_uuid())
    .fetch_all(&mut *tx)
    .await?;
    let sealed = view
        .iter_mut()
        .filter_map(|c| c.customer_ref.as_mut())
        .map(|r| (r, PersonalKind::CustomerRef))
        .chain(
            messages
                .iter_mut()
                .map(|m| (&mut m.content, PersonalKind::Text)),
        );
    state
        .store
        .vault()
        .open(&mut tx, Some(TenantId::from(org)), sealed.collect())
        .await?;
    tx.commit().await?;
    let view = view.ok_or(ApiError::NotFound("conversation"))?;
    let version = view.version;
    Ok((
        etag(version),
        axum::Json(WithMessages {
            conversation: view,
            messages_list: messages,
        }),
    )
        .into_response())
}

async fn list(
    State(state): State<AppState>,
    min_position: MinPosition,
    Query(params): Query<ListParams>,
    InstancePath { org, instance }: InstancePath,
) -> Result<axum::Json<Page<ConversationView>>, ApiError> {
    let (limit, after) = params.parse()?;
    min_position.wait(&state, &[DIRECTORY]).await?;
    let mut tx = state.store.begin_tenant(TenantId::from(org)).await?;
    let sql = format!(
        "SELECT {COLUMNS} FROM conversations WHERE tenant_id = $1 AND instance_id = $2 \
         AND ($3::uuid IS NULL OR conversation_id < $3) ORDER BY conversation_id DESC LIMIT $4"
    );
    let mut rows: Vec<ConversationView> = sqlx::query_as(&sql)
        .bind(org.as_uuid())
        .bind(instance.as_uuid())
        .bind(after)
        .bind(limit + 1)
        .fetch_all(&mut *tx)
        .await?;
    let refs = rows
        .iter_mut()
        .filter_map(|c| c.customer_ref.as_mut())
        .map(|r| (r, PersonalKind::CustomerRef));
    state
        .store
        .vault()
        .open(&mut tx, Some(TenantId::from(org)), refs.collect())
        .await?;
    tx.commit().await?;
    Ok(axum::Json(Page::of(rows, limit, |c| c.id)))
}
