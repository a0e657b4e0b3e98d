//! `/v1/organizations/{org}/api-keys`: organization secret keys.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tenantry_domain::organization::OrganizationCommand;
use tenantry_domain::{KeyName, Role};
use tenantry_projections::queries::directory::{ApiKeyView, ApiKeys};
use uuid::Uuid;

use tenantry_commands::NewApiKey;

use crate::access::Access;
use crate::command::{Command, CommandWith};
use crate::consistency::MinPosition;
use crate::extract::Query;
use crate::openapi::{ApiRouter, Op};
use crate::paths::{ApiKeyPath, OrgPath};
use crate::resources::{answer, read, Acknowledgement, ListParams, Page};
use crate::{ApiError, AppState};

pub fn router() -> ApiRouter {
    const T: &str = "api-keys";
    ApiRouter::new()
        .route(
            Op::get(
                "/v1/organizations/{org}/api-keys",
                "List API keys (never their secrets)",
            )
            .tag(T)
            .access(Access::Role(Role::Admin))
            .lists::<ApiKeyView>(),
            list,
        )
        .route(
            Op::post(
                "/v1/organizations/{org}/api-keys",
                "Issue an API key; its secret is shown once",
            )
            .tag(T)
            .access(Access::Role(Role::Admin))
            .note("never a role above the caller's")
            .body::<Issue>()
            .returns::<IssuedKey>(201),
            issue,
        )
        .route(
            Op::delete(
                "/v1/organizations/{org}/api-keys/{key}",
                "Revoke an API key (at once)",
            )
            .tag(T)
            .access(Access::Role(Role::Admin)),
            revoke,
        )
}

/// A key just issued: its secret is shown this once.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "IssuedApiKey")]
pub struct IssuedKey {
    pub id: Uuid,
    /// Null when the request was a replay: only the secret's hash was kept.
    pub secret: Option<String>,
    pub prefix: String,
    #[schemars(with = "Role")]
    pub role: &'static str,
}

async fn list(
    State(state): State<AppState>,
    min_position: MinPosition,
    Query(params): Query<ListParams>,
    OrgPath(org): OrgPath,
) -> Result<axum::Json<Page<ApiKeyView>>, ApiError> {
    let page = params.page()?;
    Ok(axum::Json(
        read(&state, org, min_position, ApiKeys(org, page)).await?,
    ))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "IssueApiKey")]
struct Issue {
    name: KeyName,
    role: Role,
}

async fn issue(
    State(state): State<AppState>,
    command: CommandWith<Issue, OrgPath>,
) -> Result<Response, ApiError> {
    let OrgPath(org) = command.path;
    if let Some(held) = command.principal.role() {
        if !held.includes(command.body.role) {
            return Err(ApiError::Forbidden(format!(
                "a key with the {held} role cannot issue one with the {} role: a key never grants more than its creator's",
                command.body.role
            )));
        }
    }
    let (done, key_id, secret) = state
        .commands
        .execute(
            org,
            NewApiKey {
                name: command.body.name,
                role: command.body.role,
            },
            &command.request,
        )
        .await?;
    if done.replayed {
        // Only the hash was kept: the secret cannot be shown again.
        let (id, key) = done
            .aggregate
            .api_keys
            .iter()
            .next_back()
            .ok_or(ApiError::NotFound("api key"))?;
        let view = IssuedKey {
            id: id.as_uuid(),
            secret: None,
            prefix: key.prefix.clone(),
            role: key.role.as_str(),
        };
        return Ok(answer(StatusCode::CREATED, &done, view));
    }
    let view = IssuedKey {
        id: key_id.as_uuid(),
        secret: Some(secret.secret),
        prefix: secret.prefix,
        role: command.body.role.as_str(),
    };
    Ok(answer(StatusCode::CREATED, &done, view))
}

async fn revoke(
    State(state): State<AppState>,
    command: Command<ApiKeyPath>,
) -> Result<Response, ApiError> {
    let ApiKeyPath { org, key } = command.path;
    let what = OrganizationCommand::RevokeApiKey { key_id: key };
    let done = state.commands.execute(org, what, &command.request).await?;
    // Refused from now on here; other servers hear of it from PostgreSQL.
    state.credentials.forget_all();
    Ok(answer(
        StatusCode::OK,
        &done,
        Acknowledgement::revoked(key.as_uuid()),
    ))
}
