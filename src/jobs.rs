//! The batch commands: `invoices close`, `reconcile`, `rebuild`. Each prints progress on
//! stderr and its result on stdout.

use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use tenantry_commands::{CommandBus, Request};
use tenantry_domain::billing::Month;
use tenantry_eventstore::{EventStore, Metadata, MIGRATOR};
use tokio::sync::Notify;

async fn store(url: &str) -> anyhow::Result<EventStore> {
    let store = EventStore::connect(url, 4)
        .await
        .context("connecting to PostgreSQL")?;
    MIGRATOR
        .run(store.pool())
        .await
        .context("applying migrations")?;
    Ok(store)
}

fn month(raw: &str) -> anyhow::Result<Month> {
    raw.parse().map_err(|e| anyhow!("--month: {e}"))
}

/// `tenantry invoices close --month YYYY-MM`.
///
/// # Errors
/// For a month that has not ended, a lagging billing read model or a database failure.
pub async fn close(url: &str, raw_month: &str) -> anyhow::Result<()> {
    let month = month(raw_month)?;
    let commands = CommandBus::new(store(url).await?, Arc::new(Notify::new()));
    let request = Request::new(Metadata {
        actor: Some("system:invoices-close".into()),
        ..Metadata::default()
    });
    eprintln!("closing {month}…");
    let report = tenantry_api::jobs::close_month(&commands, month, &request)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    println!(
        "{month}: {} invoices finalized, {} already final",
        report.finalized, report.already_finalized
    );
    Ok(())
}

/// `tenantry reconcile --month YYYY-MM [--tenant ID] [--json]`; returns whether it was clean.
///
/// # Errors
/// On a database failure.
pub async fn reconcile(
    url: &str,
    raw_month: &str,
    tenant: Option<uuid::Uuid>,
    json: bool,
) -> anyhow::Result<bool> {
    let month = month(raw_month)?;
    let store = store(url).await?;
    eprintln!("reconciling {month} against the event log…");
    let report =
        tenantry_api::jobs::reconcile(&store, month, tenant, |n| eprintln!("  {n} events scanned"))
            .await
            .map_err(|e| anyhow!("{e}"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for d in &report.differences {
            println!(
                "tenant={} field={} expected={} found={}",
                d.tenant_id, d.field, d.expected, d.found
            );
        }
        println!(
            "{month}: {} organizations, {} events scanned, {} differences",
            report.organizations,
            report.events_scanned,
            report.differences.len()
        );
    }
    Ok(report.differences.is_empty())
}

/// `tenantry rebuild <projection>|--all`.
///
/// # Errors
/// For an unknown projection or a database failure.
pub async fn rebuild(url: &str, projection: Option<&str>, all: bool) -> anyhow::Result<()> {
    let projections = match (projection, all) {
        (_, true) => tenantry_projections::all(),
        (Some(name), false) => vec![tenantry_projections::by_name(name).ok_or_else(|| {
            let names: Vec<_> = tenantry_projections::all()
                .iter()
                .map(|p| p.name())
                .collect();
            anyhow!("no projection {name}; there are {}", names.join(", "))
        })?],
        (None, false) => bail!("name a projection or pass --all"),
    };
    let store = store(url).await?;
    for projection in projections {
        let name = projection.name();
        eprintln!("rebuilding {name}…");
        let done = tenantry_projections::rebuild::rebuild(&store, projection, |n| {
            eprintln!("  {name}: {n} events")
        })
        .await
        .map_err(|e| anyhow!("{e}"))?;
        println!(
            "{name}: rebuilt from {} events, now at {}",
            done.events, done.checkpoint
        );
    }
    Ok(())
}
