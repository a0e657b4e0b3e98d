//! Usage, invoices, the dashboard and statistics, and the platform's billing jobs.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use chrono::{NaiveDate, Utc};
use schemars::JsonSchema;
use serde::Deserialize;
use tenantry_domain::billing::Month;
use tenantry_domain::{OrganizationId, Role};
use tenantry_projections::billing::Invoice;
use tenantry_projections::queries::billing::{
    Activity, ActivityOf, Dashboard, DashboardOf, InvoiceList, InvoiceOf, InvoicesOf, Usage,
    UsageOf, Volume, VolumeOf,
};
use tenantry_projections::reconcile::Reconciliation;

use crate::access::{Access, Authorized};
use crate::command::CommandWith;
use crate::consistency::MinPosition;
use crate::extract::Query;
use crate::jobs;
use crate::openapi::{ApiRouter, Op};
use crate::paths::{InstancePath, OrgPath, Params, StorePath};
use crate::resources::read;
use crate::{ApiError, AppState};

pub fn router() -> ApiRouter {
    const T: &str = "billing";
    ApiRouter::new()
        .route(
            Op::get(
                "/v1/organizations/{org}/usage",
                "Usage of a month (default: this month)",
            )
            .tag(T)
            .access(Access::Role(Role::Member))
            .query::<MonthParam>()
            .returns::<Usage>(200),
            usage,
        )
        .route(
            Op::get(
                "/v1/organizations/{org}/invoices",
                "Invoices, newest month first",
            )
            .tag(T)
            .access(Access::Role(Role::Admin))
            .returns::<InvoiceList>(200),
            invoices,
        )
        .route(
            Op::get(
                "/v1/organizations/{org}/invoices/{month}",
                "One month's invoice (draft until closed)",
            )
            .tag(T)
            .access(Access::Role(Role::Admin))
            .returns::<Invoice>(200),
            invoice,
        )
        .route(
            Op::get(
                "/v1/organizations/{org}/dashboard",
                "The organization at a glance",
            )
            .tag(T)
            .access(Access::Role(Role::Member))
            .returns::<Dashboard>(200),
            dashboard,
        )
        .route(
            Op::get(
                "/v1/organizations/{org}/volume",
                "Daily conversation counts (?from=&to= dates)",
            )
            .tag(T)
            .access(Access::Role(Role::Member))
            .query::<Range>()
            .returns::<Volume>(200),
            volume,
        )
        .route(
            Op::get("/v1/stores/{store}/stats", "A store's activity")
                .tag(T)
                .access(Access::Role(Role::Member))
                .returns::<Activity>(200),
            store_stats,
        )
        .route(
            Op::get(
                "/v1/agent-instances/{id}/stats",
                "An agent instance's activity",
            )
            .tag(T)
            .access(Access::Role(Role::Member))
            .returns::<Activity>(200),
            instance_stats,
        )
        .route(
            Op::post(
                "/v1/admin/billing/close",
                "Finalize every organization's invoice of a past month",
            )
            .tag(T)
            .access(Access::PlatformAdmin)
            .body::<MonthRequest>()
            .returns::<jobs::CloseReport>(200),
            close,
        )
        .route(
            Op::post(
                "/v1/admin/reconciliations",
                "Recompute a month from the event log and compare",
            )
            .tag(T)
            .access(Access::PlatformAdmin)
            .body::<MonthRequest>()
            .returns::<Reconciliation>(200),
            reconcile,
        )
}

fn parse_month(raw: Option<&str>) -> Result<Month, ApiError> {
    match raw {
        None | Some("") => Ok(Month::of(Utc::now())),
        Some(raw) => {
            raw.parse()
                .map_err(|e: tenantry_domain::ValidationError| ApiError::BadRequest {
                    code: "invalid-query",
                    detail: format!("month {}", e.message),
                })
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct MonthParam {
    /// Default: this month.
    #[schemars(with = "Option<Month>")]
    month: Option<String>,
}

async fn usage(
    State(state): State<AppState>,
    min_position: MinPosition,
    Query(params): Query<MonthParam>,
    OrgPath(org): OrgPath,
) -> Result<axum::Json<Usage>, ApiError> {
    let month = parse_month(params.month.as_deref())?;
    Ok(axum::Json(
        read(&state, org, min_position, UsageOf(org, month)).await?,
    ))
}

/// `{org}/invoices/{month}`: the month is read once the caller is allowed.
struct InvoicePath {
    org: OrganizationId,
    month: Month,
}

impl FromRequestParts<AppState> for InvoicePath {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let OrgPath(org) = OrgPath::from_request_parts(parts, state).await?;
        let params = Params::of(parts, state).await?;
        let month =
            params
                .raw("month")?
                .parse()
                .map_err(|e: tenantry_domain::ValidationError| ApiError::BadRequest {
                    code: "invalid-month",
                    detail: e.message,
                })?;
        Ok(InvoicePath { org, month })
    }
}

async fn invoice(
    State(state): State<AppState>,
    min_position: MinPosition,
    InvoicePath { org, month }: InvoicePath,
) -> Result<axum::Json<Invoice>, ApiError> {
    let invoice = read(&state, org, min_position, InvoiceOf(org, month))
        .await?
        .ok_or(ApiError::NotFound("organization"))?;
    Ok(axum::Json(invoice))
}

async fn invoices(
    State(state): State<AppState>,
    min_position: MinPosition,
    OrgPath(org): OrgPath,
) -> Result<axum::Json<InvoiceList>, ApiError> {
    let invoices = read(&state, org, min_position, InvoicesOf(org))
        .await?
        .ok_or(ApiError::NotFound("organization"))?;
    Ok(axum::Json(invoices))
}

async fn dashboard(
    State(state): State<AppState>,
    min_position: MinPosition,
    OrgPath(org): OrgPath,
) -> Result<axum::Json<Dashboard>, ApiError> {
    let dashboard = read(&state, org, min_position, DashboardOf(org))
        .await?
        .ok_or(ApiError::NotFound("organization"))?;
    Ok(axum::Json(dashboard))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Range {
    /// Default: 29 days before `to`.
    from: Option<NaiveDate>,
    /// Default: today; at most 366 days after `from`.
    to: Option<NaiveDate>,
}

async fn volume(
    State(state): State<AppState>,
    min_position: MinPosition,
    Query(range): Query<Range>,
    OrgPath(org): OrgPath,
) -> Result<axum::Json<Volume>, ApiError> {
    let to = range.to.unwrap_or_else(|| Utc::now().date_naive());
    let from = range.from.unwrap_or(to - chrono::Days::new(29));
    if from > to || (to - from).num_days() > 366 {
        return Err(ApiError::BadRequest {
            code: "invalid-query",
            detail: "from must not be after to, and the range is at most 366 days".into(),
        });
    }
    let volume = read(&state, org, min_position, VolumeOf { org, from, to }).await?;
    Ok(axum::Json(volume))
}

async fn store_stats(
    State(state): State<AppState>,
    min_position: MinPosition,
    StorePath { org, store }: StorePath,
) -> Result<axum::Json<Activity>, ApiError> {
    let activity = read(&state, org, min_position, ActivityOf::Store(org, store)).await?;
    Ok(axum::Json(activity))
}

async fn instance_stats(
    State(state): State<AppState>,
    min_position: MinPosition,
    InstancePath { org, instance }: InstancePath,
) -> Result<axum::Json<Activity>, ApiError> {
    let activity = read(
        &state,
        org,
        min_position,
        ActivityOf::AgentInstance(org, instance),
    )
    .await?;
    Ok(axum::Json(activity))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct MonthRequest {
    month: Month,
}

async fn close(
    State(state): State<AppState>,
    command: CommandWith<MonthRequest, Authorized>,
) -> Result<Response, ApiError> {
    let report = jobs::close_month(&state.commands, command.body.month, &command.request).await?;
    Ok(axum::Json(report).into_response())
}

async fn reconcile(
    State(state): State<AppState>,
    command: CommandWith<MonthRequest, Authorized>,
) -> Result<Response, ApiError> {
    let report =
        tenantry_projections::reconcile::reconcile(&state.store, command.body.month, None, |_| {})
            .await?;
    Ok(axum::Json(report).into_response())
}
