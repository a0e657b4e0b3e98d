//! The billing read models: usage counters per organization, month and agent instance, daily
//! volume, the terms timeline and billable conversations that invoices are computed from,
//! usage alerts and finalized invoices.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use tenantry_domain::billing::{apply_to_timeline, bill, segments, Bill, Line, Month, TermsChange};
use tenantry_domain::conversation::ConversationEvent;
use tenantry_domain::organization::OrganizationEvent;
use tenantry_domain::{Money, Terms};
use tenantry_eventstore::RecordedEvent;
use uuid::Uuid;

use crate::{Projection, ProjectionError};

/// Builds `billing_terms`, `billable_conversations`, `usage_monthly`, `usage_by_instance`,
/// `daily_volume`, `usage_alerts` and `invoices`.
pub struct Billing;

/// Its name, also used by queries that wait for it.
pub const NAME: &str = "billing";

#[async_trait]
impl Projection for Billing {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "billing_terms",
            "billable_conversations",
            "usage_monthly",
            "usage_by_instance",
            "daily_volume",
            "usage_alerts",
            "invoices",
        ]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        match event.stream_type.as_str() {
            "organization" => organization(conn, event).await,
            "conversation" => conversation(conn, event).await,
            _ => Ok(()),
        }
    }
}

/// Replaces the organization's stored timeline.
async fn save_timeline(
    conn: &mut PgConnection,
    tenant: Uuid,
    timeline: &[TermsChange],
) -> Result<(), ProjectionError> {
    sqlx::query("DELETE FROM billing_terms WHERE tenant_id = $1")
        .bind(tenant)
        .execute(&mut *conn)
        .await?;
    for change in timeline {
        sqlx::query(
            "INSERT INTO billing_terms (tenant_id, effective_at, tier, base_fee, included, overage_rate, trial, closed) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(tenant)
        .bind(change.from)
        .bind(change.tier.as_str())
        .bind(change.terms.base_fee.0)
        .bind(change.terms.included_conversations as i64)
        .bind(change.terms.overage_rate.0)
        .bind(change.trial)
        .bind(change.closed)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn organization(conn: &mut PgConnection, e: &RecordedEvent) -> Result<(), ProjectionError> {
    let (t, at) = (e.tenant_id, e.recorded_at);
    let event = e.decode::<OrganizationEvent>()?;
    let mut changes = timeline(conn, t).await?;
    if apply_to_timeline(&mut changes, at, &event) {
        return save_timeline(conn, t, &changes).await;
    }
    match event {
        OrganizationEvent::InvoiceFinalized {
            month,
            number,
            lines,
            total,
        } => {
            sqlx::query(
                "INSERT INTO invoices (tenant_id, month, number, lines, total, finalized_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(t)
            .bind(month.to_string())
            .bind(number)
            .bind(serde_json::to_value(&lines).map_err(|e| tenantry_eventstore::StoreError::Decode(e.to_string()))?)
            .bind(total.0)
            .bind(at)
            .execute(conn)
            .await?;
        }
        OrganizationEvent::UsageThresholdCrossed { month, threshold } => {
            sqlx::query(
                "INSERT INTO usage_alerts (tenant_id, month, threshold, recorded_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(t)
            .bind(month.to_string())
            .bind(i32::from(threshold))
            .bind(at)
            .execute(conn)
            .await?;
        }
        _ => {}
    }
    Ok(())
}

async fn conversation(conn: &mut PgConnection, e: &RecordedEvent) -> Result<(), ProjectionError> {
    let (t, at) = (e.tenant_id, e.recorded_at);
    let month = Month::of(at).to_string();
    match e.decode::<ConversationEvent>()? {
        ConversationEvent::ConversationStarted {
            conversation_id,
            agent_instance_id,
            store_id,
            ..
        } => {
            sqlx::query("INSERT INTO billable_conversations (tenant_id, started_at, conversation_id) VALUES ($1, $2, $3)")
                .bind(t)
                .bind(at)
                .bind(conversation_id.as_uuid())
                .execute(&mut *conn)
                .await?;
            let count: i64 = sqlx::query_scalar(
                "INSERT INTO usage_monthly (tenant_id, month, conversations, last_activity) VALUES ($1, $2, 1, $3) \
                 ON CONFLICT (tenant_id, month) DO UPDATE SET conversations = usage_monthly.conversations + 1, \
                   last_activity = GREATEST(usage_monthly.last_activity, EXCLUDED.last_activity) \
                 RETURNING conversations",
            )
            .bind(t)
            .bind(&month)
            .bind(at)
            .fetch_one(&mut *conn)
            .await?;
            usage_alert_policy(conn, t, at, count as u64).await?;
            sqlx::query(
                "INSERT INTO usage_by_instance (tenant_id, month, instance_id, conversations, last_activity) \
                 VALUES ($1, $2, $3, 1, $4) \
                 ON CONFLICT (tenant_id, month, instance_id) DO UPDATE SET \
                   conversations = usage_by_instance.conversations + 1, \
                   last_activity = GREATEST(usage_by_instance.last_activity, EXCLUDED.last_activity)",
            )
            .bind(t)
            .bind(&month)
            .bind(agent_instance_id.as_uuid())
            .bind(at)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "INSERT INTO daily_volume (tenant_id, day, instance_id, store_id, conversations) \
                 VALUES ($1, ($2 AT TIME ZONE 'UTC')::date, $3, $4, 1) \
                 ON CONFLICT (tenant_id, day, instance_id) DO UPDATE SET conversations = daily_volume.conversations + 1",
            )
            .bind(t)
            .bind(at)
            .bind(agent_instance_id.as_uuid())
            .bind(store_id.as_uuid())
            .execute(conn)
            .await?;
        }
        ConversationEvent::MessageAppended {
            agent_instance_id,
            tokens_in,
            tokens_out,
            ..
        } => {
            sqlx::query(
                "INSERT INTO usage_monthly (tenant_id, month, messages, tokens_in, tokens_out, last_activity) \
                 VALUES ($1, $2, 1, $3, $4, $5) \
                 ON CONFLICT (tenant_id, month) DO UPDATE SET messages = usage_monthly.messages + 1, \
                   tokens_in = usage_monthly.tokens_in + EXCLUDED.tokens_in, \
                   tokens_out = usage_monthly.tokens_out + EXCLUDED.tokens_out, \
                   last_activity = GREATEST(usage_monthly.last_activity, EXCLUDED.last_activity)",
            )
            .bind(t)
            .bind(&month)
            .bind(tokens_in as i64)
            .bind(tokens_out as i64)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "INSERT INTO usage_by_instance (tenant_id, month, instance_id, messages, tokens_in, tokens_out, last_activity) \
                 VALUES ($1, $2, $3, 1, $4, $5, $6) \
                 ON CONFLICT (tenant_id, month, instance_id) DO UPDATE SET \
                   messages = usage_by_instance.messages + 1, \
                   tokens_in = usage_by_instance.tokens_in + EXCLUDED.tokens_in, \
                   tokens_out = usage_by_instance.tokens_out + EXCLUDED.tokens_out, \
                   last_activity = GREATEST(usage_by_instance.last_activity, EXCLUDED.last_activity)",
            )
            .bind(t)
            .bind(&month)
            .bind(agent_instance_id.as_uuid())
            .bind(tokens_in as i64)
            .bind(tokens_out as i64)
            .bind(at)
            .execute(conn)
            .await?;
        }
        ConversationEvent::ConversationEnded { .. } => {}
    }
    Ok(())
}

/// The organization's terms timeline, oldest first.
///
/// # Errors
/// On a database failure.
pub async fn timeline(
    conn: &mut PgConnection,
    tenant: Uuid,
) -> Result<Vec<TermsChange>, ProjectionError> {
    #[derive(sqlx::FromRow)]
    struct Row {
        effective_at: DateTime<Utc>,
        tier: String,
        base_fee: rust_decimal::Decimal,
        included: i64,
        overage_rate: rust_decimal::Decimal,
        trial: bool,
        closed: bool,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT effective_at, tier, base_fee, included, overage_rate, trial, closed FROM billing_terms \
         WHERE tenant_id = $1 ORDER BY effective_at",
    )
    .bind(tenant)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            Some(TermsChange {
                from: row.effective_at,
                tier: row.tier.parse().ok()?,
                terms: Terms {
                    base_fee: Money(row.base_fee),
                    included_conversations: row.included as u64,
                    overage_rate: Money(row.overage_rate),
                },
                trial: row.trial,
                closed: row.closed,
            })
        })
        .collect())
}

/// The bill of `month` as the read models stand: the month's segments from the terms
/// timeline, each with the conversations started in it.
///
/// # Errors
/// On a database failure.
pub async fn draft(
    conn: &mut PgConnection,
    tenant: Uuid,
    month: Month,
) -> Result<Bill, ProjectionError> {
    let timeline = timeline(conn, tenant).await?;
    draft_from(conn, tenant, month, &timeline).await
}

/// [`draft`] for a caller that already read the organization's `timeline`.
///
/// # Errors
/// On a database failure.
pub async fn draft_from(
    conn: &mut PgConnection,
    tenant: Uuid,
    month: Month,
    timeline: &[TermsChange],
) -> Result<Bill, ProjectionError> {
    let mut segments = segments(month, timeline, &[]);
    for segment in &mut segments {
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM billable_conversations WHERE tenant_id = $1 AND started_at >= $2 AND started_at < $3",
        )
        .bind(tenant)
        .bind(segment.start)
        .bind(segment.end)
        .fetch_one(&mut *conn)
        .await?;
        segment.conversations = count as u64;
    }
    Ok(bill(month, &segments))
}

/// A month's invoice: finalized (as recorded) or the live draft.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Invoice {
    pub month: Month,
    pub number: String,
    /// `draft` while the month is open, `finalized` after the close.
    pub status: &'static str,
    pub lines: Vec<Line>,
    pub total: Money,
}

/// The invoice number of `slug`'s `month`: unique, and sequential per organization.
pub fn invoice_number(slug: &str, month: Month) -> String {
    format!("INV-{slug}-{}", month.compact())
}

/// The invoice of `month`: the finalized one if the month is closed, otherwise the draft.
///
/// # Errors
/// On a database failure.
pub async fn invoice(
    conn: &mut PgConnection,
    tenant: Uuid,
    slug: &str,
    month: Month,
) -> Result<Invoice, ProjectionError> {
    let timeline = timeline(conn, tenant).await?;
    invoice_from(conn, tenant, slug, month, &timeline).await
}

/// [`invoice`] for a caller that already read the organization's `timeline`.
///
/// # Errors
/// On a database failure.
pub async fn invoice_from(
    conn: &mut PgConnection,
    tenant: Uuid,
    slug: &str,
    month: Month,
    timeline: &[TermsChange],
) -> Result<Invoice, ProjectionError> {
    let finalized: Option<(String, serde_json::Value, rust_decimal::Decimal)> = sqlx::query_as(
        "SELECT number, lines, total FROM invoices WHERE tenant_id = $1 AND month = $2",
    )
    .bind(tenant)
    .bind(month.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    if let Some((number, lines, total)) = finalized {
        let lines = serde_json::from_value(lines)
            .map_err(|e| tenantry_eventstore::StoreError::Decode(e.to_string()))?;
        return Ok(Invoice {
            month,
            number,
            status: "finalized",
            lines,
            total: Money(total),
        });
    }
    let bill = draft_from(conn, tenant, month, timeline).await?;
    Ok(Invoice {
        month,
        number: invoice_number(slug, month),
        status: "draft",
        lines: bill.lines,
        total: bill.total,
    })
}

/// The usage-alert policy, first half: when this month's conversations reach ⌈80 %⌉ and
/// 100 % of the included ones (terms in force, not pro-rated), leave an intent in this
/// projection's transaction (so exactly once with its checkpoint). The policy worker records
/// it on the organization stream in a command transaction of its own: appending from here
/// would give the organization stream an event whose transaction id is older than events it
/// follows, and the feed must deliver each stream in version order.
async fn usage_alert_policy(
    conn: &mut PgConnection,
    tenant: Uuid,
    at: DateTime<Utc>,
    count: u64,
) -> Result<(), ProjectionError> {
    // The allowance of the last billed (not trial, not closed) terms in force: one row, not
    // the whole timeline, since this runs for every conversation started.
    let included: Option<i64> = sqlx::query_scalar(
        "SELECT included FROM billing_terms WHERE tenant_id = $1 AND effective_at <= $2 \
           AND NOT closed AND NOT trial ORDER BY effective_at DESC LIMIT 1",
    )
    .bind(tenant)
    .bind(at)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(included) = included.map(|n| n.max(0) as u64) else {
        return Ok(());
    };
    let thresholds = [
        (80i32, included.saturating_mul(80).div_ceil(100)),
        (100i32, included),
    ];
    for (threshold, at_count) in thresholds {
        if at_count == 0 || count != at_count {
            continue;
        }
        sqlx::query(
            "INSERT INTO usage_alert_intents (tenant_id, month, threshold) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(tenant)
        .bind(Month::of(at).to_string())
        .bind(threshold)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The alerts waiting to be recorded: (tenant, month, threshold).
///
/// # Errors
/// On a database failure.
pub async fn pending_alerts(
    conn: &mut PgConnection,
) -> Result<Vec<(Uuid, Month, u8)>, ProjectionError> {
    let rows: Vec<(Uuid, String, i32)> =
        sqlx::query_as("SELECT tenant_id, month, threshold FROM usage_alert_intents ORDER BY tenant_id, month, threshold LIMIT 500")
            .fetch_all(conn)
            .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(t, m, th)| Some((t, m.parse().ok()?, u8::try_from(th).ok()?)))
        .collect())
}

/// Forgets an alert once it is recorded.
///
/// # Errors
/// On a database failure.
pub async fn alert_recorded(
    conn: &mut PgConnection,
    tenant: Uuid,
    month: Month,
    threshold: u8,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "DELETE FROM usage_alert_intents WHERE tenant_id = $1 AND month = $2 AND threshold = $3",
    )
    .bind(tenant)
    .bind(month.to_string())
    .bind(i32::from(threshold))
    .execute(conn)
    .await?;
    Ok(())
}
