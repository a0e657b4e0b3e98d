//! Queries of the `billing` read model (with the directory's and organizations' tables where
//! a figure needs them): usage, invoices, the dashboard, daily volume, per-store and
//! per-instance activity.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use schemars::JsonSchema;
use serde::Serialize;
use sqlx::PgConnection;
use tenantry_domain::billing::Month;
use tenantry_domain::{AgentInstanceId, IncludedConversations, OrganizationId, StoreId};
use uuid::Uuid;

use super::{Query, Sealed};
use crate::billing::{self as model, Invoice, NAME as BILLING};
use crate::directory::NAME as DIRECTORY;
use crate::organizations::NAME as ORGANIZATIONS;
use crate::ProjectionError;

impl Sealed for Invoice {}

/// Conversations, messages and tokens.
#[derive(Debug, Default, Serialize, JsonSchema, sqlx::FromRow)]
pub struct Counters {
    pub conversations: i64,
    pub messages: i64,
    pub tokens_in: i64,
    pub tokens_out: i64,
}

#[derive(Debug, Serialize, JsonSchema, sqlx::FromRow)]
pub struct InstanceUsage {
    pub agent_instance_id: Uuid,
    pub conversations: i64,
    pub messages: i64,
    pub tokens_in: i64,
    pub tokens_out: i64,
}

/// A month's usage against the allowance.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Usage {
    pub month: Month,
    #[serde(flatten)]
    pub counters: Counters,
    pub included_conversations: IncludedConversations,
    pub allowance_used: String,
    pub overage_conversations: i64,
    pub overage_so_far: String,
    pub by_agent_instance: Vec<InstanceUsage>,
}

impl Sealed for Usage {}

/// An organization's usage in a month.
pub struct UsageOf(pub OrganizationId, pub Month);

impl Query for UsageOf {
    type Output = Usage;
    const READS: &'static [&'static str] = &[BILLING];

    async fn run(self, conn: &mut PgConnection) -> Result<Self::Output, ProjectionError> {
        let UsageOf(org, month) = self;
        let counters: Option<Counters> = sqlx::query_as(
            "SELECT conversations, messages, tokens_in, tokens_out FROM usage_monthly WHERE tenant_id = $1 AND month = $2",
        )
        .bind(org.as_uuid())
        .bind(month.to_string())
        .fetch_optional(&mut *conn)
        .await?;
        let by_agent_instance: Vec<InstanceUsage> = sqlx::query_as(
            "SELECT instance_id AS agent_instance_id, conversations, messages, tokens_in, tokens_out FROM usage_by_instance \
             WHERE tenant_id = $1 AND month = $2 ORDER BY instance_id",
        )
        .bind(org.as_uuid())
        .bind(month.to_string())
        .fetch_all(&mut *conn)
        .await?;
        let timeline = model::timeline(&mut *conn, org.as_uuid()).await?;
        let bill = model::draft_from(conn, org.as_uuid(), month, &timeline).await?;
        let counters = counters.unwrap_or_default();
        let included = timeline
            .iter()
            .rev()
            .find(|c| c.from < month.end())
            .map_or(IncludedConversations::ZERO, |c| {
                c.terms.included_conversations
            });
        let overage_lines = bill.lines.iter().skip(1).step_by(2);
        let overage_conversations = overage_lines
            .clone()
            .map(|l| i64::try_from(l.quantity.trunc().mantissa()).unwrap_or(0))
            .sum();
        let overage: Decimal = overage_lines.map(|l| l.amount.0).sum();
        let used = if !included.is_zero() {
            counters.conversations as f64 / f64::from(included) * 100.0
        } else {
            0.0
        };
        Ok(Usage {
            month,
            counters,
            included_conversations: included,
            allowance_used: format!("{used:.1}%"),
            overage_conversations,
            overage_so_far: format!("{overage:.2}"),
            by_agent_instance,
        })
    }
}

/// The organization's slug (`None` for no such organization).
async fn slug_of(
    conn: &mut PgConnection,
    org: OrganizationId,
) -> Result<Option<String>, ProjectionError> {
    Ok(
        sqlx::query_scalar("SELECT slug FROM organization_slugs WHERE tenant_id = $1")
            .bind(org.as_uuid())
            .fetch_optional(conn)
            .await?,
    )
}

/// An organization's invoice of a month: finalized once the month is closed, the draft
/// before (`None` for no such organization).
pub struct InvoiceOf(pub OrganizationId, pub Month);

impl Query for InvoiceOf {
    type Output = Option<Invoice>;
    const READS: &'static [&'static str] = &[BILLING];

    async fn run(self, conn: &mut PgConnection) -> Result<Self::Output, ProjectionError> {
        let InvoiceOf(org, month) = self;
        let Some(slug) = slug_of(&mut *conn, org).await? else {
            return Ok(None);
        };
        Ok(Some(
            model::invoice(conn, org.as_uuid(), &slug, month).await?,
        ))
    }
}

/// Every invoice of an organization, newest first (at most ten years).
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "Invoices")]
pub struct InvoiceList {
    pub data: Vec<Invoice>,
}

impl Sealed for InvoiceList {}

/// An organization's invoices, from its first month to this one (`None` for no such
/// organization).
pub struct InvoicesOf(pub OrganizationId);

impl Query for InvoicesOf {
    type Output = Option<InvoiceList>;
    const READS: &'static [&'static str] = &[BILLING];

    async fn run(self, conn: &mut PgConnection) -> Result<Self::Output, ProjectionError> {
        let org = self.0;
        let Some(slug) = slug_of(&mut *conn, org).await? else {
            return Ok(None);
        };
        let timeline = model::timeline(&mut *conn, org.as_uuid()).await?;
        let mut data = Vec::new();
        if let Some(first) = timeline.first() {
            let last = Month::of(Utc::now());
            let mut month = Month::of(first.from);
            while month <= last && data.len() < 120 {
                data.push(
                    model::invoice_from(&mut *conn, org.as_uuid(), &slug, month, &timeline).await?,
                );
                month = month.next();
            }
        }
        data.reverse();
        Ok(Some(InvoiceList { data }))
    }
}

/// Conversations, messages and tokens over every month.
#[derive(Debug, Serialize, JsonSchema, sqlx::FromRow)]
pub struct Totals {
    pub conversations: i64,
    pub messages: i64,
    pub tokens_in: i64,
    pub tokens_out: i64,
}

/// This month's figures on the dashboard.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ThisMonth {
    pub month: Month,
    #[serde(flatten)]
    pub counters: Counters,
    pub included_conversations: IncludedConversations,
    pub allowance_used: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct InstanceCounts {
    pub by_status: BTreeMap<String, i64>,
    pub by_type: BTreeMap<String, i64>,
}

#[derive(Debug, Serialize, JsonSchema, sqlx::FromRow)]
pub struct UsageAlert {
    pub month: String,
    pub threshold: i32,
    pub recorded_at: DateTime<Utc>,
}

/// An organization at a glance.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Dashboard {
    pub organization_id: Uuid,
    #[schemars(extend("enum" = ["basic", "pro", "enterprise"]))]
    pub tier: String,
    #[schemars(extend("enum" = ["trial", "active", "past_due", "suspended", "closed"]))]
    pub status: String,
    /// Stores by status.
    pub stores: BTreeMap<String, i64>,
    pub agent_instances: InstanceCounts,
    pub this_month: ThisMonth,
    pub all_time: Totals,
    pub last_activity: Option<DateTime<Utc>>,
    /// The latest usage alerts, newest first (at most 24).
    pub usage_alerts: Vec<UsageAlert>,
}

impl Sealed for Dashboard {}

/// `(key, count)` rows as a map.
async fn counts(
    conn: &mut PgConnection,
    sql: &str,
    org: OrganizationId,
) -> Result<BTreeMap<String, i64>, ProjectionError> {
    let rows: Vec<(String, i64)> = sqlx::query_as(sql)
        .bind(org.as_uuid())
        .fetch_all(conn)
        .await?;
    Ok(rows.into_iter().collect())
}

/// An organization's dashboard (`None` for no such organization).
pub struct DashboardOf(pub OrganizationId);

impl Query for DashboardOf {
    type Output = Option<Dashboard>;
    const READS: &'static [&'static str] = &[ORGANIZATIONS, DIRECTORY, BILLING];

    async fn run(self, conn: &mut PgConnection) -> Result<Self::Output, ProjectionError> {
        let org = self.0;
        let id = org.as_uuid();
        let month = Month::of(Utc::now());
        let Some((tier, status)): Option<(String, String)> =
            sqlx::query_as("SELECT tier, status FROM organizations WHERE tenant_id = $1")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?
        else {
            return Ok(None);
        };
        let stores = counts(
            &mut *conn,
            "SELECT status, count(*) FROM stores WHERE tenant_id = $1 GROUP BY status",
            org,
        )
        .await?;
        let by_status = counts(
            &mut *conn,
            "SELECT status, count(*) FROM agent_instances WHERE tenant_id = $1 GROUP BY status",
            org,
        )
        .await?;
        let by_type = counts(
            &mut *conn,
            "SELECT agent_type, count(*) FROM agent_instances WHERE tenant_id = $1 AND status <> 'archived' GROUP BY agent_type",
            org,
        )
        .await?;
        let this_month: Option<Counters> = sqlx::query_as(
            "SELECT conversations, messages, tokens_in, tokens_out FROM usage_monthly WHERE tenant_id = $1 AND month = $2",
        )
        .bind(id)
        .bind(month.to_string())
        .fetch_optional(&mut *conn)
        .await?;
        let (all_time, last_activity): (Totals, Option<DateTime<Utc>>) = {
            #[derive(sqlx::FromRow)]
            struct Row {
                #[sqlx(flatten)]
                totals: Totals,
                last_activity: Option<DateTime<Utc>>,
            }
            let row: Row = sqlx::query_as(
                "SELECT COALESCE(sum(conversations), 0)::bigint AS conversations, COALESCE(sum(messages), 0)::bigint AS messages, \
                        COALESCE(sum(tokens_in), 0)::bigint AS tokens_in, COALESCE(sum(tokens_out), 0)::bigint AS tokens_out, \
                        max(last_activity) AS last_activity FROM usage_monthly WHERE tenant_id = $1",
            )
            .bind(id)
            .fetch_one(&mut *conn)
            .await?;
            (row.totals, row.last_activity)
        };
        let usage_alerts: Vec<UsageAlert> = sqlx::query_as(
            "SELECT month, threshold, recorded_at FROM usage_alerts WHERE tenant_id = $1 ORDER BY recorded_at DESC LIMIT 24",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
        let timeline = model::timeline(conn, id).await?;
        let counters = this_month.unwrap_or_default();
        let included = timeline.last().map_or(IncludedConversations::ZERO, |c| {
            c.terms.included_conversations
        });
        let share = if !included.is_zero() {
            counters.conversations as f64 / f64::from(included)
        } else {
            0.0
        };
        Ok(Some(Dashboard {
            organization_id: id,
            tier,
            status,
            stores,
            agent_instances: InstanceCounts { by_status, by_type },
            this_month: ThisMonth {
                month,
                counters,
                included_conversations: included,
                allowance_used: format!("{:.1}%", share * 100.0),
            },
            all_time,
            last_activity,
            usage_alerts,
        }))
    }
}

#[derive(Debug, Serialize, JsonSchema, sqlx::FromRow)]
pub struct Day {
    pub day: NaiveDate,
    pub conversations: i64,
}

/// Conversations started per day.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Volume {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub data: Vec<Day>,
}

impl Sealed for Volume {}

/// An organization's daily conversation volume from one day to another (both included).
pub struct VolumeOf {
    pub org: OrganizationId,
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl Query for VolumeOf {
    type Output = Volume;
    const READS: &'static [&'static str] = &[BILLING];

    async fn run(self, conn: &mut PgConnection) -> Result<Self::Output, ProjectionError> {
        let VolumeOf { org, from, to } = self;
        let data: Vec<Day> = sqlx::query_as(
            "SELECT d::date AS day, COALESCE(sum(v.conversations), 0)::bigint AS conversations \
             FROM generate_series($2::date, $3::date, interval '1 day') d \
             LEFT JOIN daily_volume v ON v.tenant_id = $1 AND v.day = d::date GROUP BY d ORDER BY d",
        )
        .bind(org.as_uuid())
        .bind(from)
        .bind(to)
        .fetch_all(conn)
        .await?;
        Ok(Volume { from, to, data })
    }
}

/// This month's conversations and messages.
#[derive(Debug, Serialize, JsonSchema)]
pub struct MonthActivity {
    pub month: Month,
    pub conversations: i64,
    pub messages: i64,
}

/// The activity of a store's or an agent instance's conversations.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "Stats")]
pub struct Activity {
    pub id: Uuid,
    pub this_month: MonthActivity,
    pub all_time: Totals,
    pub last_activity: Option<DateTime<Utc>>,
}

impl Sealed for Activity {}

/// Whose activity.
#[derive(Clone, Copy, Debug)]
pub enum ActivityOf {
    /// A store's agent instances', together.
    Store(OrganizationId, StoreId),
    AgentInstance(OrganizationId, AgentInstanceId),
}

impl Query for ActivityOf {
    type Output = Activity;
    const READS: &'static [&'static str] = &[DIRECTORY, BILLING];

    async fn run(self, conn: &mut PgConnection) -> Result<Self::Output, ProjectionError> {
        let (org, filter, id) = match self {
            ActivityOf::Store(org, store) => (org, "i.store_id = $2", store.as_uuid()),
            ActivityOf::AgentInstance(org, instance) => {
                (org, "i.instance_id = $2", instance.as_uuid())
            }
        };
        let month = Month::of(Utc::now());
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
            last_activity: Option<DateTime<Utc>>,
        }
        let row: Row = sqlx::query_as(&sql)
            .bind(org.as_uuid())
            .bind(id)
            .bind(month.to_string())
            .fetch_one(conn)
            .await?;
        Ok(Activity {
            id,
            this_month: MonthActivity {
                month,
                conversations: row.month_conversations,
                messages: row.month_messages,
            },
            all_time: row.totals,
            last_activity: row.last_activity,
        })
    }
}
