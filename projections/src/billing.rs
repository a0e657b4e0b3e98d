//! The billing read models: usage counters per organization, month and agent instance, daily
//! volume, the terms timeline and billable conversations that invoices are computed from,
//! usage alerts and finalized invoices.

use async_trait::async_trait;
use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use cqrs_es::Aggregate;
use sqlx::PgConnection;
use tenantry_domain::billing::{apply_to_timeline, bill, segments, Bill, Line, Month, TermsChange};
use tenantry_domain::conversation::{Conversation, ConversationEvent};
use tenantry_domain::organization::{Organization, OrganizationEvent};
use tenantry_domain::{BaseFee, IncludedConversations, Money, OverageRate, Terms};
use tenantry_eventstore::{EventStore, RecordedEvent};
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
        self.apply_batch(conn, std::slice::from_ref(event)).await
    }

    /// Conversation events are summed per counter row and written in one statement per table;
    /// an organization event (which may change the terms the usage alerts read) first writes
    /// what was summed before it.
    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let mut usage = Usage::default();
        for event in events {
            match event.stream_type.as_str() {
                Organization::TYPE => {
                    usage.write(conn).await?;
                    organization(conn, event).await?;
                }
                Conversation::TYPE => usage.add(event)?,
                _ => {}
            }
        }
        usage.write(conn).await
    }
}

/// What a conversation event adds to a counter row.
#[derive(Debug, Default)]
struct Counts {
    conversations: i64,
    messages: i64,
    tokens_in: i64,
    tokens_out: i64,
    last_activity: Option<DateTime<Utc>>,
}

impl Counts {
    fn touch(&mut self, at: DateTime<Utc>) {
        self.last_activity = Some(self.last_activity.map_or(at, |last| last.max(at)));
    }
}

/// A month's sums, and when each conversation started, in feed order.
#[derive(Debug, Default)]
struct Monthly {
    counts: Counts,
    starts: Vec<DateTime<Utc>>,
}

/// Conversation events of a batch, summed per row of each table.
#[derive(Debug, Default)]
struct Usage {
    /// (tenant, started at, conversation).
    billable: Vec<(Uuid, DateTime<Utc>, Uuid)>,
    monthly: HashMap<(Uuid, String), Monthly>,
    by_instance: HashMap<(Uuid, String, Uuid), Counts>,
    /// Per (tenant, day, instance): the store and the conversations started.
    daily: HashMap<(Uuid, NaiveDate, Uuid), (Uuid, i64)>,
}

impl Usage {
    fn add(&mut self, e: &RecordedEvent) -> Result<(), ProjectionError> {
        let (t, at) = (e.tenant_id, e.recorded_at);
        let month = Month::of(at).to_string();
        match e.decode::<ConversationEvent>()? {
            ConversationEvent::ConversationStarted {
                conversation_id,
                agent_instance_id,
                store_id,
                ..
            } => {
                self.billable.push((t, at, conversation_id.as_uuid()));
                let monthly = self.monthly.entry((t, month.clone())).or_default();
                monthly.counts.conversations += 1;
                monthly.counts.touch(at);
                monthly.starts.push(at);
                let instance = self
                    .by_instance
                    .entry((t, month, agent_instance_id.as_uuid()))
                    .or_default();
                instance.conversations += 1;
                instance.touch(at);
                let day = at.date_naive();
                self.daily
                    .entry((t, day, agent_instance_id.as_uuid()))
                    .or_insert((store_id.as_uuid(), 0))
                    .1 += 1;
            }
            ConversationEvent::MessageAppended {
                agent_instance_id,
                tokens_in,
                tokens_out,
                ..
            } => {
                let rows = [
                    &mut self.monthly.entry((t, month.clone())).or_default().counts,
                    self.by_instance
                        .entry((t, month, agent_instance_id.as_uuid()))
                        .or_default(),
                ];
                for counts in rows {
                    counts.messages += 1;
                    // Bounded per message by the domain; saturating all the same.
                    let (tokens_in, tokens_out) = (
                        i64::try_from(tokens_in).unwrap_or(i64::MAX),
                        i64::try_from(tokens_out).unwrap_or(i64::MAX),
                    );
                    counts.tokens_in = counts.tokens_in.saturating_add(tokens_in);
                    counts.tokens_out = counts.tokens_out.saturating_add(tokens_out);
                    counts.touch(at);
                }
            }
            ConversationEvent::ConversationEnded { .. } => {}
        }
        Ok(())
    }

    /// Writes the sums (one statement per table) and the usage alerts they cross; empties
    /// the batch.
    async fn write(&mut self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        let Usage {
            billable,
            monthly,
            by_instance,
            daily,
        } = std::mem::take(self);
        if !billable.is_empty() {
            let tenants: Vec<Uuid> = billable.iter().map(|b| b.0).collect();
            let times: Vec<DateTime<Utc>> = billable.iter().map(|b| b.1).collect();
            let ids: Vec<Uuid> = billable.iter().map(|b| b.2).collect();
            sqlx::query(
                "INSERT INTO billable_conversations (tenant_id, started_at, conversation_id) \
                 SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::uuid[])",
            )
            .bind(tenants)
            .bind(times)
            .bind(ids)
            .execute(&mut *conn)
            .await?;
        }
        if !monthly.is_empty() {
            let rows: Vec<_> = monthly
                .iter()
                .map(|((t, m), month)| (*t, m.clone(), &month.counts))
                .collect();
            let totals: Vec<(Uuid, String, i64)> = sqlx::query_as(
                "INSERT INTO usage_monthly (tenant_id, month, conversations, messages, tokens_in, tokens_out, last_activity) \
                 SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::timestamptz[]) \
                 ON CONFLICT (tenant_id, month) DO UPDATE SET \
                   conversations = usage_monthly.conversations + EXCLUDED.conversations, \
                   messages = usage_monthly.messages + EXCLUDED.messages, \
                   tokens_in = usage_monthly.tokens_in + EXCLUDED.tokens_in, \
                   tokens_out = usage_monthly.tokens_out + EXCLUDED.tokens_out, \
                   last_activity = GREATEST(usage_monthly.last_activity, EXCLUDED.last_activity) \
                 RETURNING tenant_id, month, conversations",
            )
            .bind(rows.iter().map(|r| r.0).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.1.clone()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.2.conversations).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.2.messages).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.2.tokens_in).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.2.tokens_out).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.2.last_activity).collect::<Vec<_>>())
            .fetch_all(&mut *conn)
            .await?;
            // Usage alerts: the conversation that brought the count to a threshold.
            for (tenant, month, total) in totals {
                let Some(Monthly { starts, .. }) = monthly.get(&(tenant, month)) else {
                    continue;
                };
                let starts_here = u64::try_from(starts.len()).unwrap_or(u64::MAX);
                let before = u64::try_from(total)
                    .unwrap_or(0)
                    .saturating_sub(starts_here);
                usage_alert_policy(conn, tenant, before, starts).await?;
            }
        }
        if !by_instance.is_empty() {
            let rows: Vec<_> = by_instance.iter().collect();
            sqlx::query(
                "INSERT INTO usage_by_instance (tenant_id, month, instance_id, conversations, messages, tokens_in, tokens_out, last_activity) \
                 SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::timestamptz[]) \
                 ON CONFLICT (tenant_id, month, instance_id) DO UPDATE SET \
                   conversations = usage_by_instance.conversations + EXCLUDED.conversations, \
                   messages = usage_by_instance.messages + EXCLUDED.messages, \
                   tokens_in = usage_by_instance.tokens_in + EXCLUDED.tokens_in, \
                   tokens_out = usage_by_instance.tokens_out + EXCLUDED.tokens_out, \
                   last_activity = GREATEST(usage_by_instance.last_activity, EXCLUDED.last_activity)",
            )
            .bind(rows.iter().map(|((t, _, _), _)| *t).collect::<Vec<_>>())
            .bind(rows.iter().map(|((_, m, _), _)| m.clone()).collect::<Vec<_>>())
            .bind(rows.iter().map(|((_, _, i), _)| *i).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, c)| c.conversations).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, c)| c.messages).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, c)| c.tokens_in).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, c)| c.tokens_out).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, c)| c.last_activity).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        if !daily.is_empty() {
            let rows: Vec<_> = daily.iter().collect();
            sqlx::query(
                "INSERT INTO daily_volume (tenant_id, day, instance_id, store_id, conversations) \
                 SELECT * FROM unnest($1::uuid[], $2::date[], $3::uuid[], $4::uuid[], $5::bigint[]) \
                 ON CONFLICT (tenant_id, day, instance_id) DO UPDATE SET \
                   conversations = daily_volume.conversations + EXCLUDED.conversations",
            )
            .bind(rows.iter().map(|((t, _, _), _)| *t).collect::<Vec<_>>())
            .bind(rows.iter().map(|((_, d, _), _)| *d).collect::<Vec<_>>())
            .bind(rows.iter().map(|((_, _, i), _)| *i).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, (s, _))| *s).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, (_, n))| *n).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
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
        .bind(change.terms.base_fee.get())
        .bind(i64::from(change.terms.included_conversations))
        .bind(change.terms.overage_rate.get())
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
                // As recorded (see `Terms`): a row is never dropped for its terms.
                terms: Terms {
                    base_fee: BaseFee::recorded(row.base_fee),
                    included_conversations: IncludedConversations::recorded(
                        u64::try_from(row.included).unwrap_or(u64::MAX),
                    ),
                    overage_rate: OverageRate::recorded(row.overage_rate),
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
        segment.conversations = u64::try_from(count).unwrap_or(0);
    }
    Ok(bill(month, &segments))
}

/// A month's invoice: finalized (as recorded) or the live draft.
#[derive(Clone, Debug, PartialEq, serde::Serialize, schemars::JsonSchema)]
pub struct Invoice {
    pub month: Month,
    pub number: String,
    /// `draft` while the month is open, `finalized` after the close.
    #[schemars(extend("enum" = ["draft", "finalized"]))]
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

/// The usage-alert policy: when conversations started in a month reach 80 % or 100 % of the
/// included ones, leave an intent for the worker that records `UsageThresholdCrossed`. The
/// month's count was `before`, then one conversation started at each of `starts`.
async fn usage_alert_policy(
    conn: &mut PgConnection,
    tenant: Uuid,
    before: u64,
    starts: &[DateTime<Utc>],
) -> Result<(), ProjectionError> {
    let Some(&at) = starts.last() else {
        return Ok(());
    };
    // The allowance of the last billed (not trial, not closed) terms in force: one row, not
    // the whole timeline. Terms change only by organization events, which end a batch, so
    // the terms at the batch's last start hold for all of them.
    let included: Option<i64> = sqlx::query_scalar(
        "SELECT included FROM billing_terms WHERE tenant_id = $1 AND effective_at <= $2 \
           AND NOT closed AND NOT trial ORDER BY effective_at DESC LIMIT 1",
    )
    .bind(tenant)
    .bind(at)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(included) = included
        .and_then(|n| IncludedConversations::try_from(n).ok())
        .map(u64::from)
    else {
        return Ok(());
    };
    let thresholds = [
        (80i32, included.saturating_mul(80).div_ceil(100)),
        (100i32, included),
    ];
    for (threshold, at_count) in thresholds {
        // The start that made the count `at_count`, if it is in this batch.
        let Some(start) = at_count
            .checked_sub(before + 1)
            .and_then(|i| starts.get(i as usize))
        else {
            continue; // includes a zero allowance: no start makes the count 0
        };
        sqlx::query(
            "INSERT INTO usage_alert_intents (tenant_id, month, threshold) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(tenant)
        .bind(Month::of(*start).to_string())
        .bind(threshold)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Waits up to `timeout` until the billing projection has applied everything committed so
/// far (below the feed horizon); false when it did not get there in time.
///
/// # Errors
/// On a database failure.
pub async fn caught_up(store: &EventStore, timeout: Duration) -> Result<bool, ProjectionError> {
    let mut tx = store.begin_system().await?;
    let head = tenantry_eventstore::read::feed_head(&mut tx).await?;
    tx.commit().await?;
    match head {
        None => Ok(true),
        Some(head) => {
            Ok(crate::consistency::wait_until_passed(store.pool(), &[NAME], head, timeout).await?)
        }
    }
}

/// The organizations whose billing began before `until`, with their slugs, in tenant order:
/// those with an invoice for a month that ends then.
///
/// # Errors
/// On a database failure.
pub async fn billed_before(
    conn: &mut PgConnection,
    until: DateTime<Utc>,
) -> Result<Vec<(Uuid, String)>, ProjectionError> {
    Ok(sqlx::query_as(
        "SELECT t.tenant_id, s.slug FROM (SELECT tenant_id, min(effective_at) AS since FROM billing_terms GROUP BY tenant_id) t \
         JOIN organization_slugs s ON s.tenant_id = t.tenant_id WHERE t.since < $1 ORDER BY t.tenant_id",
    )
    .bind(until)
    .fetch_all(conn)
    .await?)
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
