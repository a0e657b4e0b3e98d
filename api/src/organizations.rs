//! `/v1/organizations`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgRow;
use sqlx::Row;
use tenantry_commands::organizations::NewOrganization;
use tenantry_commands::Request;
use tenantry_domain::organization::Organization;
use tenantry_domain::{Email, OrganizationName, Slug, TenantId, Tier};
use tenantry_eventstore::Metadata;
use tenantry_projections::organizations::NAME as ORGANIZATIONS;
use uuid::Uuid;

use crate::auth::PlatformAdmin;
use crate::consistency::{position_headers, MinPosition};
use crate::extract::{parse_id, Json, Query};
use crate::{ApiError, AppState, REQUEST_ID};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/organizations", get(list).post(create))
        .route("/v1/organizations/{id}", get(show))
}

/// An organization as the API shows it.
#[derive(Debug, Serialize)]
pub struct OrganizationView {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    pub tier: String,
    pub billing_email: String,
    pub status: String,
    pub version: i64,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str = "tenant_id, name, slug, tier, billing_email, status, version, created_at";

impl OrganizationView {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("tenant_id")?,
            name: row.try_get("name")?,
            slug: row.try_get("slug")?,
            tier: row.try_get("tier")?,
            billing_email: row.try_get("billing_email")?,
            status: row.try_get("status")?,
            version: row.try_get("version")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

#[derive(Deserialize)]
struct CreateOrganization {
    name: OrganizationName,
    slug: Slug,
    tier: Tier,
    billing_email: Email,
}

/// The metadata of events caused by this request.
pub fn metadata(actor: &str, headers: &HeaderMap) -> Metadata {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let request_id = header(REQUEST_ID.as_str());
    Metadata {
        actor: Some(actor.to_owned()),
        correlation_id: header("x-correlation-id").or_else(|| request_id.clone()),
        request_id,
        causation_id: None,
        idempotency_key: header("idempotency-key"),
    }
}

async fn create(
    State(state): State<AppState>,
    _admin: PlatformAdmin,
    headers: HeaderMap,
    Json(body): Json<CreateOrganization>,
) -> Result<impl IntoResponse, ApiError> {
    let new = NewOrganization::new(body.name, body.slug, body.tier, body.billing_email);
    let request = Request::new(metadata(PlatformAdmin::ACTOR, &headers));
    let done = state.commands.create_organization(new, &request).await?;
    let created_at = first_recorded_at(&state, done.id).await?;
    let view = view_of(&done.aggregate, done.version, Some(created_at))?;
    Ok((
        StatusCode::CREATED,
        position_headers(done.position()),
        axum::Json(view),
    ))
}

/// When the stream's first event was recorded.
async fn first_recorded_at(state: &AppState, id: Uuid) -> Result<DateTime<Utc>, ApiError> {
    let mut tx = state.store.begin_tenant(TenantId::from_uuid(id)).await?;
    let at: Option<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT recorded_at FROM events WHERE tenant_id = $1 AND stream_type = 'organization' \
         AND stream_id = $1 AND version = 1",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    at.ok_or(ApiError::NotFound("organization"))
}

fn view_of(
    org: &Organization,
    version: i64,
    created_at: Option<DateTime<Utc>>,
) -> Result<OrganizationView, ApiError> {
    let missing = || ApiError::internal(std::io::Error::other("organization state incomplete"));
    Ok(OrganizationView {
        id: org.id.ok_or_else(missing)?.as_uuid(),
        name: org.name.as_ref().ok_or_else(missing)?.to_string(),
        slug: org.slug.as_ref().ok_or_else(missing)?.to_string(),
        tier: org.tier.ok_or_else(missing)?.to_string(),
        billing_email: org.billing_email.as_ref().ok_or_else(missing)?.to_string(),
        status: org.status.as_str().to_owned(),
        version,
        created_at: created_at.ok_or_else(missing)?,
    })
}

async fn show(
    State(state): State<AppState>,
    _admin: PlatformAdmin,
    min_position: MinPosition,
    Path(id): Path<String>,
) -> Result<axum::Json<OrganizationView>, ApiError> {
    let id = parse_id(&id, "organization")?;
    min_position.wait(&state, &[ORGANIZATIONS]).await?;
    let mut tx = state.store.begin_tenant(TenantId::from_uuid(id)).await?;
    let sql = format!("SELECT {COLUMNS} FROM organizations WHERE tenant_id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(&mut *tx).await?;
    tx.commit().await?;
    let row = row.ok_or(ApiError::NotFound("organization"))?;
    Ok(axum::Json(OrganizationView::from_row(&row)?))
}

#[derive(Deserialize)]
struct ListParams {
    limit: Option<i64>,
    cursor: Option<String>,
}

/// A page of a list, newest first.
#[derive(Serialize)]
pub struct Page<T> {
    pub data: Vec<T>,
    /// Pass as `?cursor=` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    _admin: PlatformAdmin,
    min_position: MinPosition,
    Query(params): Query<ListParams>,
) -> Result<axum::Json<Page<OrganizationView>>, ApiError> {
    let limit = params.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::BadRequest {
            code: "invalid-query",
            detail: "limit must be between 1 and 100".into(),
        });
    }
    let after = match params.cursor.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(Uuid::parse_str(raw).map_err(|_| ApiError::BadRequest {
            code: "invalid-query",
            detail: "cursor is not one this API returned".into(),
        })?),
    };
    min_position.wait(&state, &[ORGANIZATIONS]).await?;
    let mut tx = state.store.begin_system().await?;
    let sql = format!(
        "SELECT {COLUMNS} FROM organizations \
         WHERE ($1::uuid IS NULL OR tenant_id < $1) ORDER BY tenant_id DESC LIMIT $2"
    );
    let rows = sqlx::query(&sql)
        .bind(after)
        .bind(limit + 1)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    let mut data = rows
        .iter()
        .map(OrganizationView::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let next_cursor = if data.len() as i64 > limit {
        data.truncate(limit as usize);
        data.last().map(|o| o.id.to_string())
    } else {
        None
    };
    Ok(axum::Json(Page { data, next_cursor }))
}
