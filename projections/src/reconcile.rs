//! Reconciliation: a month's usage and invoices recomputed straight from the event log and
//! compared with the read models, field by field (`tenantry reconcile`,
//! `POST /v1/admin/reconciliations`). Differences are corrected by rebuilding, never by
//! editing a finalized invoice.

use std::collections::{BTreeMap, BTreeSet};

use cqrs_es::Aggregate;
use futures::StreamExt;
use schemars::JsonSchema;
use serde::Serialize;
use tenantry_domain::billing::{apply_to_timeline, bill, segment_of, segments, Month, TermsChange};
use tenantry_domain::conversation::{Conversation, ConversationEvent};
use tenantry_domain::organization::{Organization, OrganizationEvent};
use tenantry_eventstore::read::stream_recorded;
use tenantry_eventstore::EventStore;
use uuid::Uuid;

use crate::billing;
use crate::ProjectionError;

/// One difference between the read models and the event log.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Difference {
    pub tenant_id: Uuid,
    pub field: String,
    pub expected: String,
    pub found: String,
}

/// What reconciling a month found.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Reconciliation {
    pub month: Month,
    pub organizations: usize,
    pub events_scanned: u64,
    pub differences: Vec<Difference>,
}

#[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
struct Usage {
    conversations: i64,
    messages: i64,
    tokens_in: i64,
    tokens_out: i64,
}

/// Recomputes `month`'s usage and invoices (of one tenant, or all) straight from the event
/// log, streaming it (memory grows with organizations, not events), and compares them with
/// the read models. `progress` is called with the events scanned so far, every 100,000.
///
/// # Errors
/// On a database failure.
pub async fn reconcile(
    store: &EventStore,
    month: Month,
    tenant: Option<Uuid>,
    mut progress: impl FnMut(u64),
) -> Result<Reconciliation, ProjectionError> {
    let mut scanned = 0u64;
    let mut tick = |scanned: &mut u64| {
        *scanned += 1;
        if *scanned % 100_000 == 0 {
            progress(*scanned);
        }
    };
    // Pass 1: every organization's terms timeline up to the end of the month.
    let mut timelines: BTreeMap<Uuid, Vec<TermsChange>> = BTreeMap::new();
    let mut tx = store.begin_system().await?;
    {
        let mut events = stream_recorded(&mut tx, Organization::TYPE, tenant, None, month.end());
        while let Some(event) = events.next().await {
            let event = event?;
            tick(&mut scanned);
            let decoded: OrganizationEvent = event.decode()?;
            apply_to_timeline(
                timelines.entry(event.tenant_id).or_default(),
                event.recorded_at,
                &decoded,
            );
        }
    }
    let month_segments: BTreeMap<Uuid, _> = timelines
        .iter()
        .map(|(t, timeline)| (*t, segments(month, timeline, &[])))
        .collect();
    let mut segment_counts: BTreeMap<Uuid, Vec<u64>> = month_segments
        .iter()
        .map(|(t, s)| (*t, vec![0; s.len()]))
        .collect();
    let mut usage: BTreeMap<Uuid, Usage> = BTreeMap::new();

    // Pass 2: the month's conversations and messages.
    {
        let mut events = stream_recorded(
            &mut tx,
            Conversation::TYPE,
            tenant,
            Some(month.start()),
            month.end(),
        );
        while let Some(event) = events.next().await {
            let event = event?;
            tick(&mut scanned);
            let entry = usage.entry(event.tenant_id).or_default();
            match event.decode::<ConversationEvent>()? {
                ConversationEvent::ConversationStarted { .. } => {
                    entry.conversations += 1;
                    let segments = month_segments
                        .get(&event.tenant_id)
                        .map(Vec::as_slice)
                        .unwrap_or(&[]);
                    if let Some(i) = segment_of(segments, event.recorded_at) {
                        if let Some(counts) = segment_counts.get_mut(&event.tenant_id) {
                            counts[i] += 1;
                        }
                    }
                }
                ConversationEvent::MessageAppended {
                    tokens_in,
                    tokens_out,
                    ..
                } => {
                    entry.messages += 1;
                    entry.tokens_in += tokens_in as i64;
                    entry.tokens_out += tokens_out as i64;
                }
                ConversationEvent::ConversationEnded { .. } => {}
            }
        }
    }

    // Compare with the read models.
    let mut differences = Vec::new();
    let tenants: BTreeSet<Uuid> = timelines.keys().chain(usage.keys()).copied().collect();
    for &t in &tenants {
        let mut diff = |field: &str, expected: String, found: String| {
            if expected != found {
                differences.push(Difference {
                    tenant_id: t,
                    field: field.to_owned(),
                    expected,
                    found,
                });
            }
        };
        let expected = usage.get(&t).copied().unwrap_or_default();
        let found: Option<(i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT conversations, messages, tokens_in, tokens_out FROM usage_monthly WHERE tenant_id = $1 AND month = $2",
        )
        .bind(t)
        .bind(month.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let found = found.map_or(Usage::default(), |(c, m, i, o)| Usage {
            conversations: c,
            messages: m,
            tokens_in: i,
            tokens_out: o,
        });
        for (field, expected, found) in [
            (
                "usage.conversations",
                expected.conversations,
                found.conversations,
            ),
            ("usage.messages", expected.messages, found.messages),
            ("usage.tokens_in", expected.tokens_in, found.tokens_in),
            ("usage.tokens_out", expected.tokens_out, found.tokens_out),
        ] {
            diff(field, expected.to_string(), found.to_string());
        }

        let mut expected_segments = month_segments.get(&t).cloned().unwrap_or_default();
        for (segment, count) in expected_segments
            .iter_mut()
            .zip(segment_counts.get(&t).cloned().unwrap_or_default())
        {
            segment.conversations = count;
        }
        let expected_bill = bill(month, &expected_segments);
        let slug: String =
            sqlx::query_scalar("SELECT slug FROM organization_slugs WHERE tenant_id = $1")
                .bind(t)
                .fetch_optional(&mut *tx)
                .await?
                .unwrap_or_default();
        let found_invoice = billing::invoice(&mut tx, t, &slug, month).await?;
        diff(
            "invoice.total",
            expected_bill.total.to_string(),
            found_invoice.total.to_string(),
        );
        diff(
            "invoice.lines",
            expected_bill.lines.len().to_string(),
            found_invoice.lines.len().to_string(),
        );
        for (i, (e, f)) in expected_bill
            .lines
            .iter()
            .zip(&found_invoice.lines)
            .enumerate()
        {
            diff(
                &format!("invoice.lines[{i}].quantity"),
                e.quantity.normalize().to_string(),
                f.quantity.normalize().to_string(),
            );
            diff(
                &format!("invoice.lines[{i}].amount"),
                e.amount.to_string(),
                f.amount.to_string(),
            );
            diff(
                &format!("invoice.lines[{i}].unit_price"),
                e.unit_price.to_string(),
                f.unit_price.to_string(),
            );
        }
    }
    tx.commit().await?;
    Ok(Reconciliation {
        month,
        organizations: tenants.len(),
        events_scanned: scanned,
        differences,
    })
}
