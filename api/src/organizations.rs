//! `/v1/organizations`: the organization itself, its tier and lifecycle.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cqrs_es::Aggregate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tenantry_commands::organizations::NewOrganization;
use tenantry_commands::Request;
use tenantry_domain::organization::{Organization, OrganizationCommand};
use tenantry_domain::{
    BaseFee, Email, IncludedConversations, OrganizationId, OrganizationName, OverageRate, Reason,
    Role, Slug, TenantId, Terms, Tier,
};
use tenantry_projections::queries::organizations::{
    OrganizationById, OrganizationView, Organizations,
};
use tenantry_projections::queries::Scope;
use uuid::Uuid;

use crate::access::{Access, Authorized};
use crate::command::{etag, Command, CommandWith};
use crate::consistency::MinPosition;
use crate::extract::Query;
use crate::openapi::{ApiRouter, Op};
use crate::paths::OrgPath;
use crate::resources::{answer, read, ListParams, Page};
use crate::{ApiError, AppState};

pub fn router() -> ApiRouter {
    const T: &str = "organizations";
    ApiRouter::new()
        .route(
            Op::get("/v1/organizations", "List organizations, newest first")
                .tag(T)
                .access(Access::PlatformAdmin)
                .lists::<OrganizationView>(),
            list,
        )
        .route(
            Op::post(
                "/v1/organizations",
                "Create an organization with its owner and owner key",
            )
            .tag(T)
            .access(Access::PlatformAdmin)
            .body::<CreateOrganization>()
            .returns::<Created>(201),
            create,
        )
        .route(
            Op::get("/v1/organizations/{org}", "Show an organization")
                .tag(T)
                .access(Access::Role(Role::Member))
                .returns::<OrganizationView>(200),
            show,
        )
        .route(
            Op::patch(
                "/v1/organizations/{org}",
                "Change name, billing email or settings",
            )
            .tag(T)
            .access(Access::Role(Role::Admin))
            .body::<UpdateOrganization>()
            .returns::<OrganizationView>(200),
            update,
        )
        .route(
            Op::delete("/v1/organizations/{org}", "Close the organization")
                .tag(T)
                .access(Access::Role(Role::Owner))
                .returns::<OrganizationView>(200),
            close,
        )
        .route(
            Op::post(
                "/v1/organizations/{org}/tier",
                "Change tier (Enterprise with its own terms)",
            )
            .tag(T)
            .access(Access::Role(Role::Owner))
            .note("an owner picks Basic or Pro; Enterprise and its terms are set by the platform admin only")
            .body::<ChangeTier>()
            .returns::<OrganizationView>(200),
            change_tier,
        )
        .route(
            Op::post(
                "/v1/organizations/{org}/suspend",
                "Suspend the organization",
            )
            .tag(T)
            .access(Access::PlatformAdmin)
            .body::<Suspend>()
            .returns::<OrganizationView>(200),
            suspend,
        )
        .route(
            Op::post(
                "/v1/organizations/{org}/reactivate",
                "Reactivate a suspended organization",
            )
            .tag(T)
            .access(Access::PlatformAdmin)
            .returns::<OrganizationView>(200),
            reactivate,
        )
}

/// The answer to an organization command: the organization as the command left it, created
/// when its stream began.
async fn view(
    state: &AppState,
    org: &Organization,
    version: i64,
) -> Result<OrganizationView, ApiError> {
    let missing = || ApiError::NotFound("organization");
    let id = org.id.ok_or_else(missing)?;
    let created_at = state
        .store
        .started_at(TenantId::from(id), Organization::TYPE, id.as_uuid())
        .await?
        .ok_or_else(missing)?;
    OrganizationView::of(org, version, created_at).ok_or_else(missing)
}

/// Negotiated Enterprise terms, as sent: all three or none (each already within its bounds).
fn custom_terms(
    base_fee: Option<BaseFee>,
    included_conversations: Option<IncludedConversations>,
    overage_rate: Option<OverageRate>,
) -> Result<Option<Terms>, ApiError> {
    {
        match (base_fee, included_conversations, overage_rate) {
            (None, None, None) => Ok(None),
            (Some(base_fee), Some(included_conversations), Some(overage_rate)) => Ok(Some(Terms {
                base_fee,
                included_conversations,
                overage_rate,
            })),
            _ => Err(ApiError::Validation {
                field: "base_fee".into(),
                message: "base_fee, included_conversations and overage_rate go together".into(),
            }),
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CreateOrganization {
    name: OrganizationName,
    slug: Slug,
    tier: Tier,
    billing_email: Email,
    /// Enterprise terms, all three or none, set by the platform admin only: the monthly fee
    /// in USD, …
    base_fee: Option<BaseFee>,
    /// … the conversations it includes, …
    included_conversations: Option<IncludedConversations>,
    /// … and the USD per conversation beyond them.
    overage_rate: Option<OverageRate>,
}

/// A new organization with the owner key's secret, shown this once.
#[derive(Serialize, JsonSchema)]
#[schemars(rename = "OrganizationCreated")]
struct Created {
    #[serde(flatten)]
    organization: OrganizationView,
    /// The owner's key; null when the request was a replay (only its hash was kept).
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
    let organization = view(&state, &done.aggregate, done.version).await?;
    // A replay cannot show the secret again: only its hash was kept.
    let api_key = (!done.replayed).then(|| crate::api_keys::IssuedKey {
        id: key_id.as_uuid(),
        secret: Some(secret.secret),
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
    let view = read(&state, org, min_position, OrganizationById(org))
        .await?
        .ok_or(ApiError::NotFound("organization"))?;
    Ok((etag(view.version), axum::Json(view)).into_response())
}

async fn list(
    State(state): State<AppState>,
    min_position: MinPosition,
    Query(params): Query<ListParams>,
    _: Authorized,
) -> Result<axum::Json<Page<OrganizationView>>, ApiError> {
    let page = params.page()?;
    let organizations = read(&state, Scope::Platform, min_position, Organizations(page)).await?;
    Ok(axum::Json(organizations))
}

#[derive(Debug, Deserialize, JsonSchema)]
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
    let view = view(state, &done.aggregate, done.version).await?;
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

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ChangeTier {
    tier: Tier,
    /// Enterprise terms, all three or none, set by the platform admin only: the monthly fee
    /// in USD, …
    base_fee: Option<BaseFee>,
    /// … the conversations it includes, …
    included_conversations: Option<IncludedConversations>,
    /// … and the USD per conversation beyond them.
    overage_rate: Option<OverageRate>,
}

/// The route lets an owner in; the domain lets only the platform admin move an organization to
/// Enterprise, whose terms the platform sets (403 `platform-admin-only` for an owner).
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
        by_platform_admin: command.principal.is_admin(),
    };
    run(&state, org, &command.request, what).await
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Suspend {
    reason: Option<Reason>,
}

async fn suspend(
    State(state): State<AppState>,
    command: CommandWith<Option<Suspend>, OrgPath>,
) -> Result<Response, ApiError> {
    let OrgPath(org) = command.path;
    let reason = match command.body.unwrap_or_default().reason {
        Some(reason) => reason,
        None => Reason::parse("suspended by the platform").map_err(ApiError::internal)?,
    };
    let what = OrganizationCommand::Suspend {
        reason,
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
