//! `/v1/organizations`: the organization itself, its tier and lifecycle.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::postgres::PgRow;
use sqlx::Row;
use tenantry_commands::organizations::NewOrganization;
use tenantry_commands::Request;
use tenantry_domain::organization::{Organization, OrganizationCommand};
use tenantry_domain::personal::PersonalKind;
use tenantry_domain::{
    Email, Money, OrganizationId, OrganizationName, Role, Slug, TenantId, Terms, Tier,
};
use tenantry_projections::organizations::NAME as ORGANIZATIONS;
use uuid::Uuid;

use crate::access::{Access, Authorized};
use crate::command::{etag, Command, CommandWith};
use crate::consistency::MinPosition;
use crate::extract::Query;
use crate::openapi::{ApiRouter, Op};
use crate::paths::OrgPath;
use crate::resources::{answer, ListParams, Page};
use crate::{ApiError, AppState};

pub fn router() -> ApiRouter {
    const T: &str = "organizations";
    ApiRouter::new()
        .route(
            Op::get("/v1/organizations", "List organizations, newest first")
                .tag(T)
                .access(Access::PlatformAdmin)
                .lists("Organization"),
            list,
        )
        .route(
            Op::post(
                "/v1/organizations",
                "Create an organization with its owner and owner key",
            )
            .tag(T)
            .access(Access::PlatformAdmin)
            .body("CreateOrganization")
            .returns(201, "OrganizationCreated"),
            create,
        )
        .route(
            Op::get("/v1/organizations/{org}", "Show an organization")
                .tag(T)
                .access(Access::Role(Role::Member))
                .returns(200, "Organization"),
            show,
        )
        .route(
            Op::patch(
                "/v1/organizations/{org}",
                "Change name, billing email or settings",
            )
            .tag(T)
            .access(Access::Role(Role::Admin))
            .body("UpdateOrganization")
            .returns(200, "Organization"),
            update,
        )
        .route(
            Op::delete("/v1/organizations/{org}", "Close the organization")
                .tag(T)
                .access(Access::Role(Role::Owner))
                .returns(200, "Organization"),
            close,
        )
        .route(
            Op::post(
                "/v1/organizations/{org}/tier",
                "Change tier (Enterprise with its own terms)",
            )
            .tag(T)
            .access(Access::Role(Role::Owner))
            .body("ChangeTier")
            .returns(200, "Organization"),
            change_tier,
        )
        .route(
            Op::post(
                "/v1/organizations/{org}/suspend",
                "Suspend the organization",
            )
            .tag(T)
            .access(Access::PlatformAdmin)
            .body("Suspend")
            .returns(200, "Organization"),
            suspend,
        )
        .route(
            Op::post(
                "/v1/organizations/{org}/reactivate",
                "Reactivate a suspended organization",
            )
            .tag(T)
            .access(Access::PlatformAdmin)
            .returns(200, "Organization"),
            reactivate,
        )
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

    /// From the write side, right after a command.
    async fn of(state: &AppState, org: &Organization, version: i64) -> Result<Self, ApiError> {
        let missing = || ApiError::NotFound("organization");
        let id = org.id.ok_or_else(missing)?;
        Ok(Self {
            id: id.as_uuid(),
            name: org.name.as_ref().ok_or_else(missing)?.to_string(),
            slug: org.slug.as_ref().ok_or_else(missing)?.to_string(),
            tier: org.tier.ok_or_else(missing)?.to_string(),
            billing_email: org.billing_email.as_ref().ok_or_else(missing)?.to_string(),
            status: org.status.as_str().to_owned(),
            version,
            created_at: first_recorded_at(state, id).await?,
        })
    }
}

/// When the organization's first event was recorded.
async fn first_recorded_at(
    state: &AppState,
    id: OrganizationId,
) -> Result<DateTime<Utc>, ApiError> {
    let mut tx = state.store.begin_tenant(TenantId::from(id)).await?;
    let at: Option<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT recorded_at FROM events WHERE tenant_id = $1 AND stream_type = 'organization' \
         AND stream_id = $1 AND version = 1",
    )
    .bind(id.as_uuid())
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    at.ok_or(ApiError::NotFound("organization"))
}

/// Negotiated Enterprise terms, as sent: all three or none.
fn custom_terms(
    base_fee: Option<Decimal>,
    included_conversations: Option<u64>,
    overage_rate: Option<Decimal>,
) -> Result<Option<Terms>, ApiError> {
    {
        match (base_fee, included_conversations, overage_rate) {
            (None, None, None) => Ok(None),
            (Some(base_fee), Some(included_conversations), Some(overage_rate)) => Ok(Some(Terms {
                base_fee: Money(base_fee),
                included_conversations,
                overage_rate: Money(overage_rate),
            })),
            _ => Err(ApiError::Validation {
                field: "base_fee".into(),
                message: "base_fee, included_conversations and overage_rate go together".into(),
            }),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateOrganization {
    name: OrganizationName,
    slug: Slug,
    tier: Tier,
    billing_email: Email,
    base_fee: Option<Decimal>,
    included_conversations: Option<u64>,
    overage_rate: Option<Decimal>,
}

/// A new organization with the owner key's secret, shown this once.
#[derive(Serialize)]
struct Created {
    #[serde(flatten)]
    organization: OrganizationView,
    api_key: Option<crate::api_keys::IssuedKey>,
}

async fn create(
    State(state): State<AppState>,
    command: CommandWith<CreateOrganization, Authorized>,
) -> Result<Response, ApiError> {
    let body = command.body;
    let mut new = NewOrganization::new(body.name, body.slug, body.tier, body.billing_email);
    new.custom_terms = custom_terms(
        body.base_fee,
        body.included_conversations,
        body.overage_rate,
    )?;
    // Keys for creating organizations belong to the platform, not to an organization.
    let request = command
        .request
        .with_idempotency_scope(TenantId::from_uuid(Uuid::nil()));
    let (done, key_id, secret) = state.commands.execute((), new, &request).await?;
    let organization = OrganizationView::of(&state, &done.aggregate, done.version).await?;
    // A replay cannot show the secret again: only its hash was kept.
    let api_key = (!done.replayed).then(|| crate::api_keys::IssuedKey {
        id: key_id.as_uuid(),
        secret: secret.secret,
        prefix: secret.prefix,
        role: Role::Owner.as_str(),
    });
    Ok(answer(
        StatusCode::CREATED,
        &done,
        Created {
            organization,
            api_key,
        },
    ))
}

async fn show(
    State(state): State<AppState>,
    min_position: MinPosition,
    OrgPath(org): OrgPath,
) -> Result<Response, ApiError> {
    min_position.wait(&state, &[ORGANIZATIONS]).await?;
    let mut tx = state.store.begin_tenant(TenantId::from(org)).await?;
    let sql = format!("SELECT {COLUMNS} FROM organizations WHERE tenant_id = $1");
    let row = sqlx::query(&sql)
        .bind(org.as_uuid())
        .fetch_optional(&mut *tx)
        .await?;
    let mut view = OrganizationView::from_row(&row.ok_or(ApiError::NotFound("organization"))?)?;
    let email = vec![(&mut view.billing_email, PersonalKind::Email)];
    state
        .store
        .vault()
        .open(&mut tx, Some(TenantId::from(org)), email)
        .await?;
    tx.commit().await?;
    Ok((etag(view.version), axum::Json(view)).into_response())
}

async fn list(
    State(state): State<AppState>,
    min_position: MinPosition,
    Query(params): Query<ListParams>,
    _: Authorized,
) -> Result<axum::Json<Page<OrganizationView>>, ApiError> {
    let (limit, after) = params.parse()?;
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
    let mut views = rows
        .iter()
        .map(OrganizationView::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let emails = views
        .iter_mut()
        .map(|v| (&mut v.billing_email, PersonalKind::Email));
    state
        .store
        .vault()
        .open(&mut tx, None, emails.collect())
        .await?;
    tx.commit().await?;
    Ok(axum::Json(Page::of(views, limit, |o| o.id)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateOrganization {
    name: Option<OrganizationName>,
    billing_email: Option<Email>,
    settings: Option<Map<String, Value>>,
}

/// Runs an organization command (the caller was allowed by the route's rule).
async fn run(
    state: &AppState,
    org: OrganizationId,
    request: &Request,
    what: OrganizationCommand,
) -> Result<Response, ApiError> {
    let done = state.commands.execute(org, what, request).await?;
    let view = OrganizationView::of(state, &done.aggregate, done.version).await?;
    Ok(answer(StatusCode::OK, &done, view))
}

async fn update(
    State(state): State<AppState>,
    command: CommandWith<UpdateOrganization, OrgPath>,
) -> Result<Response, ApiError> {
    let OrgPath(org) = command.path;
    let body = command.body;
    let what = OrganizationCommand::ChangeDetails {
        name: body.name,
        billing_email: body.billing_email,
        settings: body.settings,
    };
    run(&state, org, &command.request, what).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeTier {
    tier: Tier,
    base_fee: Option<Decimal>,
    included_conversations: Option<u64>,
    overage_rate: Option<Decimal>,
}

async fn change_tier(
    State(state): State<AppState>,
    command: CommandWith<ChangeTier, OrgPath>,
) -> Result<Response, ApiError> {
    let OrgPath(org) = command.path;
    let body = command.body;
    let what = OrganizationCommand::ChangeTier {
        tier: body.tier,
        custom_terms: custom_terms(
            body.base_fee,
            body.included_conversations,
            body.overage_rate,
        )?,
    };
    run(&state, org, &command.request, what).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Suspend {
    reason: Option<String>,
}

async fn suspend(
    State(state): State<AppState>,
    command: CommandWith<Option<Suspend>, OrgPath>,
) -> Result<Response, ApiError> {
    let OrgPath(org) = command.path;
    let what = OrganizationCommand::Suspend {
        reason: command
            .body
            .unwrap_or_default()
            .reason
            .unwrap_or_else(|| "suspended by the platform".into()),
        by_platform_admin: true,
    };
    run(&state, org, &command.request, what).await
}

async fn reactivate(
    State(state): State<AppState>,
    command: Command<OrgPath>,
) -> Result<Response, ApiError> {
    let OrgPath(org) = command.path;
    let what = OrganizationCommand::Reactivate {
        by_platform_admin: true,
    };
    run(&state, org, &command.request, what).await
}

async fn close(
    State(state): State<AppState>,
    command: Command<OrgPath>,
) -> Result<Response, ApiError> {
    let OrgPath(org) = command.path;
    run(&state, org, &command.request, OrganizationCommand::Close).await
}
