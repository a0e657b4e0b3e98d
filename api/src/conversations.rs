//! Conversations: started and fed by developer keys or by a widget key of their agent
//! instance.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Deserialize;
use tenantry_domain::agent_instance::AgentInstance;
use tenantry_domain::conversation::{Conversation, ConversationAction};
use tenantry_domain::{
    AgentInstanceId, Channel, ConversationId, CustomerRef, MessageContent, MessageId, MessageRole,
    Resolution, Role,
};
use tenantry_projections::queries::directory::{
    ConversationById, ConversationView, Conversations, WithMessages,
};
use uuid::Uuid;

use crate::access::{Access, Target};
use crate::auth::Principal;
use crate::command::{etag, CommandWith};
use crate::consistency::MinPosition;
use crate::extract::Query;
use crate::openapi::{ApiRouter, Op};
use crate::paths::{ConversationPath, ConversationTarget, InstancePath};
use crate::resources::{answer, owner_of, read, ListParams, Page};
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
            .body::<Start>()
            .returns::<ConversationView>(201),
            start,
        )
        .route(
            Op::get(
                "/v1/conversations/{id}",
                "Show a conversation with its messages",
            )
            .tag(T)
            .access(Access::Role(Role::Member))
            .returns::<WithMessages>(200),
            show,
        )
        .route(
            Op::post("/v1/conversations/{id}/messages", "Add a message")
                .tag(T)
                .access(Access::RoleOrWidget(Role::Developer))
                .note("a widget key adds customer messages only")
                .body::<Append>()
                .returns::<ConversationView>(201),
            append,
        )
        .route(
            Op::post("/v1/conversations/{id}/end", "End a conversation")
                .tag(T)
                .access(Access::Role(Role::Developer))
                .body::<End>()
                .returns::<ConversationView>(200),
            end,
        )
        .route(
            Op::get(
                "/v1/agent-instances/{id}/conversations",
                "List an agent instance's conversations",
            )
            .tag(T)
            .access(Access::Role(Role::Member))
            .lists::<ConversationView>(),
            list,
        )
}

/// The answer to a conversation command.
fn view(conversation: &Conversation, version: i64) -> Result<ConversationView, ApiError> {
    ConversationView::of(conversation, version).ok_or(ApiError::NotFound("conversation"))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "StartConversation")]
struct Start {
    agent_instance_id: Uuid,
    /// The end customer, as the caller knows them (personal data).
    customer_ref: Option<CustomerRef>,
    /// Default: `api`.
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
        view(&done.aggregate, done.version)?,
    ))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "AppendMessage")]
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
        view(&done.aggregate, done.version)?,
    ))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "EndConversation")]
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
        view(&done.aggregate, done.version)?,
    ))
}

async fn show(
    State(state): State<AppState>,
    min_position: MinPosition,
    ConversationPath { org, id }: ConversationPath,
) -> Result<Response, ApiError> {
    let view = read(&state, org, min_position, ConversationById(org, id))
        .await?
        .ok_or(ApiError::NotFound("conversation"))?;
    Ok((etag(view.conversation.version), axum::Json(view)).into_response())
}

async fn list(
    State(state): State<AppState>,
    min_position: MinPosition,
    Query(params): Query<ListParams>,
    InstancePath { org, instance }: InstancePath,
) -> Result<axum::Json<Page<ConversationView>>, ApiError> {
    let page = params.page()?;
    let conversations = read(
        &state,
        org,
        min_position,
        Conversations(org, instance, page),
    )
    .await?;
    Ok(axum::Json(conversations))
}
