//! Agent instances, their widget keys, and the agent catalog.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tenantry_commands::keys::{Secret, WIDGET_KEY_PREFIX};
use tenantry_commands::Request;
use tenantry_domain::agent_instance::{AgentInstance, AgentInstanceAction};
use tenantry_domain::catalog::{AgentDefinition, CATALOG};
use tenantry_domain::{AgentInstanceId, AgentType, Role, WidgetKeyId};
use tenantry_projections::queries::directory::{
    AgentInstanceById, AgentInstanceView, AgentInstances,
};
use uuid::Uuid;

use crate::access::{Access, Authorized};
use crate::command::{etag, Command, CommandWith};
use crate::consistency::MinPosition;
use crate::extract::Query;
use crate::openapi::{ApiRouter, Op};
use crate::paths::{InstancePath, StorePath, WidgetKeyPath};
use crate::resources::{answer, read, Acknowledgement, ListParams, Page};
use crate::{ApiError, AppState};

pub fn router() -> ApiRouter {
    const T: &str = "agent-instances";
    ApiRouter::new()
        .route(
            Op::get("/v1/agent-definitions", "The agent catalog")
                .tag(T)
                .access(Access::AnyKey)
                .returns::<AgentDefinitions>(200),
            definitions,
        )
        .route(
            Op::get(
                "/v1/stores/{store}/agent-instances",
                "List a store's agent instances",
            )
            .tag(T)
            .access(Access::Role(Role::Member))
            .lists::<AgentInstanceView>(),
            list,
        )
        .route(
            Op::post(
                "/v1/stores/{store}/agent-instances",
                "Deploy an agent (tier limits and agent types)",
            )
            .tag(T)
            .access(Access::Role(Role::Developer))
            .body::<Deploy>()
            .returns::<AgentInstanceView>(201),
            deploy,
        )
        .route(
            Op::get("/v1/agent-instances/{id}", "Show an agent instance")
                .tag(T)
                .access(Access::Role(Role::Member))
                .returns::<AgentInstanceView>(200),
            show,
        )
        .route(
            Op::delete("/v1/agent-instances/{id}", "Archive an agent instance")
                .tag(T)
                .access(Access::Role(Role::Developer))
                .returns::<AgentInstanceView>(200),
            archive,
        )
        .route(
            Op::patch(
                "/v1/agent-instances/{id}/config",
                "Replace config overrides (prompt keys: Enterprise)",
            )
            .tag(T)
            .access(Access::Role(Role::Developer))
            .body::<ChangeConfig>()
            .returns::<AgentInstanceView>(200),
            change_config,
        )
        .route(
            Op::post("/v1/agent-instances/{id}/pause", "Pause (frees its slot)")
                .tag(T)
                .access(Access::Role(Role::Developer))
                .returns::<AgentInstanceView>(200),
            pause,
        )
        .route(
            Op::post("/v1/agent-instances/{id}/resume", "Resume (tier limit)")
                .tag(T)
                .access(Access::Role(Role::Developer))
                .returns::<AgentInstanceView>(200),
            resume,
        )
        .route(
            Op::post(
                "/v1/agent-instances/{id}/upgrade",
                "Move to another catalog version",
            )
            .tag(T)
            .access(Access::Role(Role::Developer))
            .body::<Upgrade>()
            .returns::<AgentInstanceView>(200),
            upgrade,
        )
        .route(
            Op::post(
                "/v1/agent-instances/{id}/widget-keys",
                "Issue a widget key; its secret is shown once",
            )
            .tag(T)
            .access(Access::Role(Role::Developer))
            .returns::<IssuedWidgetKey>(201),
            issue_widget_key,
        )
        .route(
            Op::delete(
                "/v1/agent-instances/{id}/widget-keys/{key}",
                "Revoke a widget key (at once)",
            )
            .tag(T)
            .access(Access::Role(Role::Developer)),
            revoke_widget_key,
        )
}

/// The agent catalog.
#[derive(Debug, Serialize, JsonSchema)]
struct AgentDefinitions {
    data: &'static [AgentDefinition],
}

/// Any valid key may read the catalog.
async fn definitions(_: Authorized) -> Result<axum::Json<AgentDefinitions>, ApiError> {
    Ok(axum::Json(AgentDefinitions { data: CATALOG }))
}

async fn list(
    State(state): State<AppState>,
    min_position: MinPosition,
    Query(params): Query<ListParams>,
    StorePath { org, store }: StorePath,
) -> Result<axum::Json<Page<AgentInstanceView>>, ApiError> {
    let page = params.page()?;
    let instances = read(&state, org, min_position, AgentInstances(org, store, page)).await?;
    Ok(axum::Json(instances))
}

async fn show(
    State(state): State<AppState>,
    min_position: MinPosition,
    InstancePath { org, instance }: InstancePath,
) -> Result<Response, ApiError> {
    let view = read(&state, org, min_position, AgentInstanceById(org, instance))
        .await?
        .ok_or(ApiError::NotFound("agent instance"))?;
    Ok((etag(view.version), axum::Json(view)).into_response())
}

/// The answer to an agent-instance command.
fn view(instance: &AgentInstance, version: i64) -> Result<AgentInstanceView, ApiError> {
    AgentInstanceView::of(instance, version).ok_or(ApiError::NotFound("agent instance"))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Deploy {
    agent_type: AgentType,
    /// A catalog version of the type (default: its newest).
    version: Option<String>,
    /// Overrides of the definition's settings; prompt keys need the Enterprise tier.
    #[serde(default)]
    config: Map<String, Value>,
}

async fn deploy(
    State(state): State<AppState>,
    command: CommandWith<Deploy, StorePath>,
) -> Result<Response, ApiError> {
    let StorePath { org, store } = command.path;
    let id = AgentInstanceId::new();
    let action = AgentInstanceAction::Deploy {
        id,
        store_id: store,
        organization_id: org,
        agent_type: command.body.agent_type,
        version: command.body.version,
        config: command.body.config,
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

/// Runs an agent instance action (the caller was allowed by the route's rule).
async fn run(
    state: &AppState,
    InstancePath { org, instance }: InstancePath,
    request: &Request,
    action: AgentInstanceAction,
) -> Result<Response, ApiError> {
    let done = state
        .commands
        .execute((org, instance), action, request)
        .await?;
    Ok(answer(
        StatusCode::OK,
        &done,
        view(&done.aggregate, done.version)?,
    ))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ChangeConfig {
    config: Map<String, Value>,
}

async fn change_config(
    State(state): State<AppState>,
    command: CommandWith<ChangeConfig, InstancePath>,
) -> Result<Response, ApiError> {
    let action = AgentInstanceAction::ChangeConfig {
        config: command.body.config,
    };
    run(&state, command.path, &command.request, action).await
}

async fn pause(
    State(state): State<AppState>,
    command: Command<InstancePath>,
) -> Result<Response, ApiError> {
    run(
        &state,
        command.path,
        &command.request,
        AgentInstanceAction::Pause,
    )
    .await
}

async fn resume(
    State(state): State<AppState>,
    command: Command<InstancePath>,
) -> Result<Response, ApiError> {
    run(
        &state,
        command.path,
        &command.request,
        AgentInstanceAction::Resume,
    )
    .await
}

async fn archive(
    State(state): State<AppState>,
    command: Command<InstancePath>,
) -> Result<Response, ApiError> {
    run(
        &state,
        command.path,
        &command.request,
        AgentInstanceAction::Archive,
    )
    .await
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Upgrade {
    version: String,
}

async fn upgrade(
    State(state): State<AppState>,
    command: CommandWith<Upgrade, InstancePath>,
) -> Result<Response, ApiError> {
    let action = AgentInstanceAction::Upgrade {
        version: command.body.version,
    };
    run(&state, command.path, &command.request, action).await
}

/// A widget key just issued: its secret is shown this once.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "WidgetKey")]
struct IssuedWidgetKey {
    id: Uuid,
    agent_instance_id: Uuid,
    /// Null when the request was a replay: only the secret's hash was kept.
    secret: Option<String>,
    prefix: String,
}

async fn issue_widget_key(
    State(state): State<AppState>,
    command: Command<InstancePath>,
) -> Result<Response, ApiError> {
    let InstancePath { org, instance } = command.path;
    let key_id = WidgetKeyId::new();
    let secret = Secret::generate(WIDGET_KEY_PREFIX);
    let action = AgentInstanceAction::IssueWidgetKey {
        key_id,
        prefix: secret.prefix.clone(),
        hash: secret.hash.clone(),
    };
    let done = state
        .commands
        .execute((org, instance), action, &command.request)
        .await?;
    let view = if done.replayed {
        // Only the hash was kept: the secret cannot be shown again.
        let (id, key) = done
            .aggregate
            .widget_keys
            .iter()
            .next_back()
            .ok_or(ApiError::NotFound("widget key"))?;
        IssuedWidgetKey {
            id: id.as_uuid(),
            agent_instance_id: instance.as_uuid(),
            secret: None,
            prefix: key.prefix.clone(),
        }
    } else {
        IssuedWidgetKey {
            id: key_id.as_uuid(),
            agent_instance_id: instance.as_uuid(),
            secret: Some(secret.secret),
            prefix: secret.prefix,
        }
    };
    Ok(answer(StatusCode::CREATED, &done, view))
}

async fn revoke_widget_key(
    State(state): State<AppState>,
    command: Command<WidgetKeyPath>,
) -> Result<Response, ApiError> {
    let WidgetKeyPath {
        org,
        instance,
        key: key_id,
    } = command.path;
    let action = AgentInstanceAction::RevokeWidgetKey { key_id };
    let done = state
        .commands
        .execute((org, instance), action, &command.request)
        .await?;
    // Refused from now on here; other servers hear of it from PostgreSQL.
    state.credentials.forget_all();
    Ok(answer(
        StatusCode::OK,
        &done,
        Acknowledgement::revoked(key_id.as_uuid()),
    ))
}
