//! Stores: `/v1/organizations/{org}/stores` and `/v1/stores/{store}`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Deserialize;
use tenantry_commands::Request;
use tenantry_domain::store::{Store, StoreAction};
use tenantry_domain::{Platform, Role, StoreDomain, StoreId, StoreName};
use tenantry_projections::queries::directory::{StoreById, StoreView, Stores};

use crate::access::Access;
use crate::command::{etag, Command, CommandWith};
use crate::consistency::MinPosition;
use crate::extract::Query;
use crate::openapi::{ApiRouter, Op};
use crate::paths::{OrgPath, StorePath};
use crate::resources::{answer, read, ListParams, Page};
use crate::{ApiError, AppState};

pub fn router() -> ApiRouter {
    const T: &str = "stores";
    ApiRouter::new()
        .route(
            Op::get("/v1/organizations/{org}/stores", "List stores")
                .tag(T)
                .access(Access::Role(Role::Member))
                .lists::<StoreView>(),
            list,
        )
        .route(
            Op::post(
                "/v1/organizations/{org}/stores",
                "Create a store (tier limit)",
            )
            .tag(T)
            .access(Access::Role(Role::Admin))
            .body::<CreateStore>()
            .returns::<StoreView>(201),
            create,
        )
        .route(
            Op::get("/v1/stores/{store}", "Show a store")
                .tag(T)
                .access(Access::Role(Role::Member))
                .returns::<StoreView>(200),
            show,
        )
        .route(
            Op::patch("/v1/stores/{store}", "Change a store")
                .tag(T)
                .access(Access::Role(Role::Admin))
                .body::<UpdateStore>()
                .returns::<StoreView>(200),
            update,
        )
        .route(
            Op::post(
                "/v1/stores/{store}/deactivate",
                "Deactivate a store (frees its slot)",
            )
            .tag(T)
            .access(Access::Role(Role::Admin))
            .returns::<StoreView>(200),
            deactivate,
        )
        .route(
            Op::post(
                "/v1/stores/{store}/activate",
                "Reactivate a store (tier limit)",
            )
            .tag(T)
            .access(Access::Role(Role::Admin))
            .returns::<StoreView>(200),
            activate,
        )
}

async fn list(
    State(state): State<AppState>,
    min_position: MinPosition,
    Query(params): Query<ListParams>,
    OrgPath(org): OrgPath,
) -> Result<axum::Json<Page<StoreView>>, ApiError> {
    let page = params.page()?;
    let stores = read(&state, org, min_position, Stores(org, page)).await?;
    Ok(axum::Json(stores))
}

async fn show(
    State(state): State<AppState>,
    min_position: MinPosition,
    StorePath { org, store }: StorePath,
) -> Result<Response, ApiError> {
    let view = read(&state, org, min_position, StoreById(org, store))
        .await?
        .ok_or(ApiError::NotFound("store"))?;
    Ok((etag(view.version), axum::Json(view)).into_response())
}

/// The answer to a store command.
fn view(store: &Store, version: i64) -> Result<StoreView, ApiError> {
    StoreView::of(store, version).ok_or(ApiError::NotFound("store"))
}

#[derive(Debug, Deserialize, JsonSchema)]
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
        view(&done.aggregate, done.version)?,
    ))
}

#[derive(Debug, Deserialize, JsonSchema)]
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
        view(&done.aggregate, done.version)?,
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
