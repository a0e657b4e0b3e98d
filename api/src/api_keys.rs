//! `/v1/organizations/{org}/api-keys`: organization secret keys.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tenantry_domain::organization::OrganizationCommand;
use tenantry_domain::{KeyName, Role, TenantId};
use tenantry_projections::directory::NAME as DIRECTORY;
use uuid::Uuid;

use tenantry_commands::NewApiKey;

use crate::access::Access;
use crate::command::{Command, CommandWith};
use crate::consistency::MinPosition;
use crate::extract::Query;
use crate::openapi::{ApiRouter, Op};
use crate::paths::{ApiKeyPath, OrgPath};
use crate::resources::{answer, ListParams, Page};
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
            .lists("ApiKey"),
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
            .body("IssueApiKey")
            .returns(201, "IssuedApiKey"),
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
#[derive(Debug, Serialize)]
pub struct IssuedKey {
    pub id: Uuid,
    pub secret: String,
    pub prefix: String,
    pub role: &'static str,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct ApiKeyView {
    pub id: Uuid,
    pub name: String,
    pub role: String,
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

async fn list(
    State(state): State<AppState>,
    min_position: MinPosition,
    Query(params): Query<ListParams>,
    OrgPath(org): OrgPath,
) -> Result<axum::Json<Page<ApiKeyView>>, ApiError> {
    let (limit, after) = params.parse()?;
    min_position.wait(&state, &[DIRECTORY]).await?;
    let mut tx = state.store.begin_tenant(TenantId::from(org)).await?;
    let rows: Vec<ApiKeyView> = sqlx::query_as(
        "SELECT k.key_id AS id, k.name, k.role, k.prefix, k.created_at, k.revoked_at, c.last_used_at \
         FROM api_keys k LEFT JOIN credentials c ON c.tenant_id = k.tenant_id AND c.key_id = k.key_id \
         WHERE k.tenant_id = $1 AND ($2::uuid IS NULL OR k.key_id < $2) ORDER BY k.key_id DESC LIMIT $3",
    )
    .bind(org.as_uuid())
    .bind(after)
    .bind(limit + 1)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(axum::Json(Page::of(rows, limit, |k| k.id)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
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
        let view =
            serde_json::json!({ "id": id, "prefix": key.prefix, "role": key.role, "secret": null });
        return Ok(answer(StatusCode::CREATED, &done, view));
    }
    let view = IssuedKey {
        id: key_id.as_uuid(),
        secret: secret.secret,
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
        serde_json::json!({ "id": key.as_uuid(), "revoked": true }),
    ))
}
