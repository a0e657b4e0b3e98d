//! Usage, invoices, the dashboard and statistics, and the platform's billing jobs.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use tenantry_domain::billing::Month;
use tenantry_domain::{OrganizationId, Role, TenantId};
use tenantry_projections::billing::{self as billing_model, NAME as BILLING};
use tenantry_projections::directory::NAME as DIRECTORY;
use tenantry_projections::organizations::NAME as ORGANIZATIONS;
use uuid::Uuid;

use crate::access::{Access, Authorized};
use crate::command::CommandWith;
use crate::consistency::MinPosition;
use crate::extract::Query;
use crate::jobs;
use crate::openapi::{ApiRouter, Op};
use crate::paths::{InstancePath, OrgPath, Params, StorePath};
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
            .returns(200, "Usage"),
            usage,
        )
        .route(
            Op::get(
                "/v1/organizations/{org}/invoices",
                "Invoices, newest month first",
            )
            .tag(T)
            .access(Access::Role(Role::Admin))
            .returns(200, "Invoices"),
            invoices,
        )
        .route(
            Op::get(
                "/v1/organizations/{org}/invoices/{month}",
                "One month's invoice (draft until closed)",
            )
            .tag(T)
            .access(Access::Role(Role::Admin))
            .returns(200, "Invoice"),
            invoice,
        )
        .route(
            Op::get(
                "/v1/organizations/{org}/dashboard",
                "The organization at a glance",
            )
            .tag(T)
            .access(Access::Role(Role::Member))
            .returns(200, "Dashboard"),
            dashboard,
        )
        .route(
            Op::get(
                "/v1/organizations/{org}/volume",
                "Daily conversation counts (?from=&to= dates)",
            )
            .tag(T)
            .access(Access::Role(Role::Member))
            .returns(200, "Volume"),
            volume,
        )
        .route(
            Op::get("/v1/stores/{store}/stats", "A store's activity")
                .tag(T)
                .access(Access::Role(Role::Member))
                .returns(200, "Stats"),
            store_stats,
        )
        .route(
            Op::get(
                "/v1/agent-instances/{id}/stats",
                "An agent instance's activity",
            )
            .tag(T)
            .access(Access::Role(Role::Member))
            .returns(200, "Stats"),
            instance_stats,
        )
        .route(
            Op::post(
                "/v1/admin/billing/close",
                "Finalize every organization's invoice of a past month",
            )
            .tag(T)
            .access(Access::PlatformAdmin)
            .body("MonthRequest")
            .returns(200, "CloseReport"),
            close,
        )
        .route(
            Op::post(
                "/v1/admin/reconciliations",
                "Recompute a month from the event log and compare",
            )
            .tag(T)
            .access(Access::PlatformAdmin)
            .body("MonthRequest")
            .returns(200, "Reconciliation"),
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MonthParam {
    month: Option<String>,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
struct Counters {
    conversations: i64,
    messages: i64,
    tokens_in: i64,
    tokens_out: i64,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
struct InstanceUsage {
    agent_instance_id: Uuid,
    conversations: i64,
    messages: i64,
    tokens_in: i64,
    tokens_out: i64,
}

#[derive(Serialize)]
struct Usage {
    month: Month,
    #[serde(flatten)]
    counters: Counters,
    included_conversations: i64,
    allowance_used: String,
    overage_conversations: i64,
    overage_so_far: String,
    by_agent_instance: Vec<InstanceUsage>,
}

async fn usage(
    State(state): State<AppState>,
    min_position: MinPosition,
    Query(params): Query<MonthParam>,
    OrgPath(org): OrgPath,
) -> Result<axum::Json<Usage>, ApiError> {
    let month = parse_month(params.month.as_deref())?;
    min_position.wait(&state, &[BILLING]).await?;
    let mut tx = state.store.begin_tenant(TenantId::from(org)).await?;
    let counters: Option<Counters> = sqlx::query_as(
        "SELECT conversations, messages, tokens_in, tokens_out FROM usage_monthly WHERE tenant_id = $1 AND month = $2",
    )
    .bind(org.as_uuid())
    .bind(month.to_string())
    .fetch_optional(&mut *tx)
    .await?;
    let by_agent_instance: Vec<InstanceUsage> = sqlx::query_as(
        "SELECT instance_id AS agent_instance_id, conversations, messages, tokens_in, tokens_out FROM usage_by_instance \
         WHERE tenant_id = $1 AND month = $2 ORDER BY instance_id",
    )
    .bind(org.as_uuid())
    .bind(month.to_string())
    .fetch_all(&mut *tx)
    .await?;
    let timeline = billing_model::timeline(&mut tx, org.as_uuid())
        .await
        .map_err(ApiError::internal)?;
    let bill = billing_model::draft_from(&mut tx, org.as_uuid(), month, &timeline)
        .await
        .map_err(ApiError::internal)?;
    tx.commit().await?;
    let counters = counters.unwrap_or(Counters {
        conversations: 0,
        messages: 0,
        tokens_in: 0,
        tokens_out: 0,
    });
    let included = timeline
        .iter()
        .rev()
        .find(|c| c.from < month.end())
        .map_or(0, |c| c.terms.included_conversations as i64);
    let overage_lines = bill.lines.iter().skip(1).step_by(2);
    let overage_conversations = overage_lines
        .clone()
        .map(|l| i64::try_from(l.quantity.trunc().mantissa()).unwrap_or(0))
        .sum();
    let overage: rust_decimal::Decimal = overage_lines.map(|l| l.amount.0).sum();
    let used = if included > 0 {
        counters.conversations as f64 / included as f64 * 100.0
    } else {
        0.0
    };
    Ok(axum::Json(Usage {
        month,
        counters,
        included_conversations: included,
        allowance_used: format!("{used:.1}%"),
        overage_conversations,
        overage_so_far: format!("{overage:.2}"),
        by_agent_instance,
    }))
}

/// The organization's slug, read in the caller's tenant transaction.
async fn slug_of(conn: &mut PgConnection, org: OrganizationId) -> Result<String, ApiError> {
    let slug: Option<String> =
        sqlx::query_scalar("SELECT slug FROM organization_slugs WHERE tenant_id = $1")
            .bind(org.as_uuid())
            .fetch_optional(conn)
            .await?;
    slug.ok_or(ApiError::NotFound("organization"))
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
) -> Result<axum::Json<billing_model::Invoice>, ApiError> {
    min_position.wait(&state, &[BILLING]).await?;
    let mut tx = state.store.begin_tenant(TenantId::from(org)).await?;
    let slug = slug_of(&mut tx, org).await?;
    let invoice = billing_model::invoice(&mut tx, org.as_uuid(), &slug, month)
        .await
        .map_err(ApiError::internal)?;
    tx.commit().await?;
    Ok(axum::Json(invoice))
}

async fn invoices(
    State(state): State<AppState>,
    min_position: MinPosition,
    OrgPath(org): OrgPath,
) -> Result<Response, ApiError> {
    min_position.wait(&state, &[BILLING]).await?;
    let mut tx = state.store.begin_tenant(TenantId::from(org)).await?;
    let slug = slug_of(&mut tx, org).await?;
    let timeline = billing_model::timeline(&mut tx, org.as_uuid())
        .await
        .map_err(ApiError::internal)?;
    let mut data = Vec::new();
    if let Some(first) = timeline.first() {
        let last = Month::of(Utc::now());
        let mut month = Month::of(first.from);
        while month <= last && data.len() < 120 {
            data.push(
                billing_model::invoice_from(&mut tx, org.as_uuid(), &slug, month, &timeline)
                    .await
                    .map_err(ApiError::internal)?,
            );
            month = month.next();
        }
    }
    tx.commit().await?;
    data.reverse();
    Ok(axum::Json(serde_json::json!({ "data": data })).into_response())
}

/// Sums over months.
#[derive(Debug, sqlx::FromRow)]
struct Totals {
    conversations: i64,
    messages: i64,
    tokens_in: i64,
    tokens_out: i64,
    last_activity: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
struct CountBy {
    key: String,
    count: i64,
}

async fn dashboard(
    State(state): State<AppState>,
    min_position: MinPosition,
    OrgPath(org): OrgPath,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    min_position
        .wait(&state, &[ORGANIZATIONS, DIRECTORY, BILLING])
        .await?;
    let month = Month::of(Utc::now());
    let id = org.as_uuid();
    let mut tx = state.store.begin_tenant(TenantId::from(org)).await?;
    let (tier, status): (String, String) =
        sqlx::query_as("SELECT tier, status FROM organizations WHERE tenant_id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(ApiError::NotFound("organization"))?;
    let stores: Vec<CountBy> = sqlx::query_as(
        "SELECT status AS key, count(*) AS count FROM stores WHERE tenant_id = $1 GROUP BY status",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    let by_status: Vec<CountBy> = sqlx::query_as(
        "SELECT status AS key, count(*) AS count FROM agent_instances WHERE tenant_id = $1 GROUP BY status",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    let by_type: Vec<CountBy> = sqlx::query_as(
        "SELECT agent_type AS key, count(*) AS count FROM agent_instances WHERE tenant_id = $1 AND status <> 'archived' GROUP BY agent_type",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    let this_month: Option<(i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT conversations, messages, tokens_in, tokens_out FROM usage_monthly WHERE tenant_id = $1 AND month = $2",
    )
    .bind(id)
    .bind(month.to_string())
    .fetch_optional(&mut *tx)
    .await?;
    let all_time: Totals = sqlx::query_as(
        "SELECT COALESCE(sum(conversations), 0)::bigint AS conversations, COALESCE(sum(messages), 0)::bigint AS messages, \
                COALESCE(sum(tokens_in), 0)::bigint AS tokens_in, COALESCE(sum(tokens_out), 0)::bigint AS tokens_out, \
                max(last_activity) AS last_activity FROM usage_monthly WHERE tenant_id = $1",
    )
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    let alerts: Vec<(String, i32, DateTime<Utc>)> = sqlx::query_as(
        "SELECT month, threshold, recorded_at FROM usage_alerts WHERE tenant_id = $1 ORDER BY recorded_at DESC LIMIT 24",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    let timeline = billing_model::timeline(&mut tx, id)
        .await
        .map_err(ApiError::internal)?;
    tx.commit().await?;
    let (conversations, messages, tokens_in, tokens_out) = this_month.unwrap_or_default();
    let included = timeline
        .last()
        .map_or(0, |c| c.terms.included_conversations);
    let share = if included > 0 {
        conversations as f64 / included as f64
    } else {
        0.0
    };
    let map = |rows: Vec<CountBy>| {
        rows.into_iter()
            .map(|r| (r.key, serde_json::json!(r.count)))
            .collect::<serde_json::Map<_, _>>()
    };
    Ok(axum::Json(serde_json::json!({
        "organization_id": id,
        "tier": tier,
        "status": status,
        "stores": map(stores),
        "agent_instances": { "by_status": map(by_status), "by_type": map(by_type) },
        "this_month": {
            "month": month,
            "conversations": conversations,
            "messages": messages,
            "tokens_in": tokens_in,
            "tokens_out": tokens_out,
            "included_conversations": included,
            "allowance_used": format!("{:.1}%", share * 100.0),
        },
        "all_time": {
            "conversations": all_time.conversations,
            "messages": all_time.messages,
            "tokens_in": all_time.tokens_in,
            "tokens_out": all_time.tokens_out,
        },
        "last_activity": all_time.last_activity,
        "usage_alerts": alerts.into_iter().map(|(month, threshold, at)| serde_json::json!({ "month": month, "threshold": threshold, "recorded_at": at })).collect::<Vec<_>>(),
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Range {
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
}

async fn volume(
    State(state): State<AppState>,
    min_position: MinPosition,
    Query(range): Query<Range>,
    OrgPath(org): OrgPath,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let to = range.to.unwrap_or_else(|| Utc::now().date_naive());
    let from = range.from.unwrap_or(to - chrono::Days::new(29));
    if from > to || (to - from).num_days() > 366 {
        return Err(ApiError::BadRequest {
            code: "invalid-query",
            detail: "from must not be after to, and the range is at most 366 days".into(),
        });
    }
    min_position.wait(&state, &[BILLING]).await?;
    let mut tx = state.store.begin_tenant(TenantId::from(org)).await?;
    let days: Vec<(NaiveDate, i64)> = sqlx::query_as(
        "SELECT d::date, COALESCE(sum(v.conversations), 0)::bigint \
         FROM generate_series($2::date, $3::date, interval '1 day') d \
         LEFT JOIN daily_volume v ON v.tenant_id = $1 AND v.day = d::date GROUP BY d ORDER BY d",
    )
    .bind(org.as_uuid())
    .bind(from)
    .bind(to)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let data: Vec<_> = days
        .into_iter()
        .map(|(day, n)| serde_json::json!({ "day": day, "conversations": n }))
        .collect();
    Ok(axum::Json(
        serde_json::json!({ "from": from, "to": to, "data": data }),
    ))
}

/// Activity of the instances matching `filter` (`instance_id = $2` or a store's instances).
async fn stats(
    state: &AppState,
    org: OrganizationId,
    filter: &str,
    id: Uuid,
) -> Result<serde_json::Value, ApiError> {
    let month = Month::of(Utc::now());
    let mut tx = state.store.begin_tenant(TenantId::from(org)).await?;
    let sql = format!(
        "SELECT COALESCE(sum(u.conversations) FILTER (WHERE u.month = $3), 0)::bigint AS month_conversations, \
                COALESCE(sum(u.messages) FILTER (WHERE u.month = $3), 0)::bigint AS month_messages, \
                COALESCE(sum(u.conversations), 0)::bigint AS conversations, COALESCE(sum(u.messages), 0)::bigint AS messages, \
                COALESCE(sum(u.tokens_in), 0)::bigint AS tokens_in, COALESCE(sum(u.tokens_out), 0)::bigint AS tokens_out, \
                max(u.last_activity) AS last_activity \
         FROM usage_by_instance u JOIN agent_instances i ON i.tenant_id = u.tenant_id AND i.instance_id = u.instance_id \
         WHERE u.tenant_id = $1 AND {filter}"
    );
    #[derive(sqlx::FromRow)]
    struct Row {
        month_conversations: i64,
        month_messages: i64,
        #[sqlx(flatten)]
        totals: Totals,
    }
    let row: Row = sqlx::query_as(&sql)
        .bind(org.as_uuid())
        .bind(id)
        .bind(month.to_string())
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(serde_json::json!({
        "id": id,
        "this_month": { "month": month, "conversations": row.month_conversations, "messages": row.month_messages },
        "all_time": {
            "conversations": row.totals.conversations,
            "messages": row.totals.messages,
            "tokens_in": row.totals.tokens_in,
            "tokens_out": row.totals.tokens_out,
        },
        "last_activity": row.totals.last_activity,
    }))
}

async fn store_stats(
    State(state): State<AppState>,
    min_position: MinPosition,
    StorePath { org, store }: StorePath,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    min_position.wait(&state, &[DIRECTORY, BILLING]).await?;
    Ok(axum::Json(
        stats(&state, org, "i.store_id = $2", store.as_uuid()).await?,
    ))
}

async fn instance_stats(
    State(state): State<AppState>,
    min_position: MinPosition,
    InstancePath { org, instance: id }: InstancePath,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    min_position.wait(&state, &[DIRECTORY, BILLING]).await?;
    Ok(axum::Json(
        stats(&state, org, "i.instance_id = $2", id.as_uuid()).await?,
    ))
}

#[derive(Debug, Deserialize)]
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
