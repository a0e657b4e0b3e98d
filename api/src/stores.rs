//! Stores: `/v1/organizations/{org}/stores` and `/v1/stores/{store}`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tenantry_commands::Request;
use tenantry_domain::store::{Store, StoreAction};
use tenantry_domain::{Platform, Role, StoreDomain, StoreId, StoreName, TenantId};
use tenantry_projections::directory::NAME as DIRECTORY;
use uuid::Uuid;

use crate::access::Access;
use crate::command::{etag, Command, CommandWith};
use crate::consistency::MinPosition;
use crate::extract::Query;
use crate::openapi::{ApiRouter, Op};
use crate::paths::{OrgPath, StorePath};
use crate::resources::{answer, ListParams, Page};
use crate::{ApiError, AppState};

pub fn router() -> ApiRouter {
    const T: &str = "stores";
    ApiRouter::new()
        .route(
            Op::get("/v1/organizations/{org}/stores", "List stores")
                .tag(T)
                .access(Access::Role(Role::Member))
                .lists("Store"),
            list,
        )
        .route(
            Op::post(
                "/v1/organizations/{org}/stores",
                "Create a store (tier limit)",
            )
            .tag(T)
            .access(Access::Role(Role::Admin))
            .body("CreateStore")
            .returns(201, "Store"),
            create,
        )
        .route(
            Op::get("/v1/stores/{store}", "Show a store")
                .tag(T)
                .access(Access::Role(Role::Member))
                .returns(200, "Store"),
            show,
        )
        .route(
            Op::patch("/v1/stores/{store}", "Change a store")
                .tag(T)
                .access(Access::Role(Role::Admin))
                .body("UpdateStore")
                .returns(200, "Store"),
            update,
        )
        .route(
            Op::post(
                "/v1/stores/{store}/deactivate",
                "Deactivate a store (frees its slot)",
            )
            .tag(T)
            .access(Access::Role(Role::Admin))
            .returns(200, "Store"),
            deactivate,
        )
        .route(
            Op::post(
                "/v1/stores/{store}/activate",
                "Reactivate a store (tier limit)",
            )
            .tag(T)
            .access(Access::Role(Role::Admin))
            .returns(200, "Store"),
            activate,
        )
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct StoreView {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub name: String,
    pub domain: String,
    pub platform: String,
    pub status: String,
    pub version: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str =
    "store_id AS id, tenant_id AS organization_id, name, domain, platform, status, version, created_at";

impl StoreView {
    fn of(store: &Store, version: i64) -> Result<Self, ApiError> {
        let missing = || ApiError::NotFound("store");
        Ok(Self {
            id: store.id.ok_or_else(missing)?.as_uuid(),
            organization_id: store.organization_id.ok_or_else(missing)?.as_uuid(),
            name: store.name.as_ref().ok_or_else(missing)?.to_string(),
            domain: store.domain.as_ref().ok_or_else(missing)?.to_string(),
            platform: store.platform.ok_or_else(missing)?.to_string(),
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

async fn list(
    State(state): State<AppState>,
    min_position: MinPosition,
    Query(params): Query<ListParams>,
    OrgPath(org): OrgPath,
) -> Result<axum::Json<Page<StoreView>>, ApiError> {
    let (limit, after) = params.parse()?;
    min_position.wait(&state, &[DIRECTORY]).await?;
    let mut tx = state.store.begin_tenant(TenantId::from(org)).await?;
    let sql = format!(
        "SELECT {COLUMNS} FROM stores WHERE tenant_id = $1 AND ($2::uuid IS NULL OR store_id < $2) \
         ORDER BY store_id DESC LIMIT $3"
    );
    let rows: Vec<StoreView> = sqlx::query_as(&sql)
        .bind(org.as_uuid())
        .bind(after)
        .bind(limit + 1)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(axum::Json(Page::of(rows, limit, |s| s.id)))
}

async fn show(
    State(state): State<AppState>,
    min_position: MinPosition,
    StorePath { org, store }: StorePath,
) -> Result<Response, ApiError> {
    min_position.wait(&state, &[DIRECTORY]).await?;
    let mut tx = state.store.begin_tenant(TenantId::from(org)).await?;
    let sql = format!("SELECT {COLUMNS} FROM stores WHERE tenant_id = $1 AND store_id = $2");
    let view: Option<StoreView> = sqlx::query_as(&sql)
        .bind(org.as_uuid())
        .bind(store.as_uuid())
        .fetch_optional(&mut *tx)
        .await?;
    tx.commit().await?;
    let view = view.ok_or(ApiError::NotFound("store"))?;
    Ok((etag(view.version), axum::Json(view)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateStore {
    name: StoreName,
    domain: StoreDomain,
    platform: Option<Platform>,
}

async fn create(
    State(state): State<AppState>,
    command: CommandWith<CreateStore, OrgPath>,
) -> Result<Response, ApiError> {
    let OrgPath(org) = command.path;
    let id = StoreId::new();
    let action = StoreAction::Create {
        id,
        organization_id: org,
        name: command.body.name,
        domain: command.body.domain,
        platform: command.body.platform.unwrap_or(Platform::Custom),
    };
    let done = state
        .commands
        .execute((org, id), action, &command.request)
        .await?;
    Ok(answer(
        StatusCode::CREATED,
        &done,
        StoreView::of(&done.aggregate, done.version)?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateStore {
    name: Option<StoreName>,
    domain: Option<StoreDomain>,
    platform: Option<Platform>,
}

/// Runs a store action (the caller was allowed by the route's rule).
async fn run(
    state: &AppState,
    StorePath { org, store }: StorePath,
    request: &Request,
    action: StoreAction,
) -> Result<Response, ApiError> {
    let done = state
        .commands
        .execute((org, store), action, request)
        .await?;
    Ok(answer(
        StatusCode::OK,
        &done,
        StoreView::of(&done.aggregate, done.version)?,
    ))
}

async fn update(
    State(state): State<AppState>,
    command: CommandWith<UpdateStore, StorePath>,
) -> Result<Response, ApiError> {
    let body = command.body;
    let action = StoreAction::Update {
        name: body.name,
        domain: body.domain,
        platform: body.platform,
    };
    run(&state, command.path, &command.request, action).await
}

async fn deactivate(
    State(state): State<AppState>,
    command: Command<StorePath>,
) -> Result<Response, ApiError> {
    run(
        &state,
        command.path,
        &command.request,
        StoreAction::Deactivate,
    )
    .await
}

async fn activate(
    State(state): State<AppState>,
    command: Command<StorePath>,
) -> Result<Response, ApiError> {
    run(
        &state,
        command.path,
        &command.request,
        StoreAction::Reactivate,
    )
    .await
}
