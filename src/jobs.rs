//! The batch commands: `invoices close`, `reconcile`, `rebuild`. Each prints progress on
//! stderr and its result on stdout.

use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use tenantry_commands::{CommandBus, Erase, Request};
use tenantry_domain::billing::Month;
use tenantry_eventstore::{EventStore, MasterKey, Metadata, Vault, MIGRATOR};
use tokio::sync::Notify;

/// The store at `url`, migrated, with the vault of `TENANTRY_MASTER_KEY` when it is set
/// (replay opens personal data with it; without it, sealed fields cannot be shown).
async fn store(url: &str) -> anyhow::Result<EventStore> {
    let vault = match std::env::var("TENANTRY_MASTER_KEY") {
        Ok(key) => {
            Vault::new(&MasterKey::parse(&key).map_err(|e| anyhow!("TENANTRY_MASTER_KEY: {e}"))?)
        }
        Err(_) => Vault::disabled(),
    };
    let store = EventStore::connect(url, 4)
        .await
        .context("connecting to PostgreSQL")?
        .with_vault(vault);
    MIGRATOR
        .run(store.pool())
        .await
        .context("applying migrations")?;
    Ok(store)
}

/// A request made at the command line: the actor is `cli:<user>`.
fn cli_request() -> Request {
    Request::new(Metadata {
        actor: Some(format!(
            "cli:{}",
            std::env::var("USER").unwrap_or_else(|_| "unknown".into())
        )),
        ..Metadata::default()
    })
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
    let report = tenantry_projections::reconcile::reconcile(&store, month, tenant, |n| {
        eprintln!("  {n} events scanned")
    })
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
    let names: Vec<&str> = projections.iter().map(|p| p.name()).collect();
    eprintln!("rebuilding {} in one pass over the feed…", names.join(", "));
    let started = std::time::Instant::now();
    let mut reported = 0;
    let done = tenantry_projections::rebuild::rebuild_all(&store, &projections, |n| {
        if n >= reported + 100_000 {
            reported = n;
            eprintln!(
                "  {n} events ({:.0} events/s)",
                n as f64 / started.elapsed().as_secs_f64()
            );
        }
    })
    .await
    .map_err(|e| anyhow!("{e}"))?;
    println!(
        "{}: rebuilt from {} events in {:.1} s, now at {}",
        names.join(", "),
        done.events,
        started.elapsed().as_secs_f64(),
        done.checkpoint
    );
    Ok(())
}

/// Records a command-line access to a tenant's history.
async fn audit(
    store: &EventStore,
    tenant: uuid::Uuid,
    kind: &str,
    scope: String,
) -> anyhow::Result<()> {
    let commands = CommandBus::new(store.clone(), Arc::new(Notify::new()));
    let request = cli_request();
    let command = tenantry_domain::organization::OrganizationCommand::RecordHistoryAccess {
        kind: kind.into(),
        scope,
    };
    commands
        .execute(
            tenantry_domain::OrganizationId::from_uuid(tenant),
            command,
            &request,
        )
        .await
        .map_err(|e| anyhow!("recording the access: {e}"))?;
    Ok(())
}

/// `tenantry replay`; returns false when `--verify` found a broken stream.
///
/// # Errors
/// On a database or file failure.
pub async fn replay(args: crate::cli::ReplayArgs) -> anyhow::Result<bool> {
    use futures::StreamExt;
    use std::io::Write;
    let store = store(&args.database_url).await?;
    let tenant = tenantry_domain::TenantId::from_uuid(args.tenant);
    if args.verify {
        audit(&store, args.tenant, "verify", "all streams".into()).await?;
        let mut tx = store.begin_tenant(tenant).await?;
        let reports = tenantry_eventstore::read::verify_tenant(&mut tx, tenant).await?;
        tx.commit().await?;
        let mut clean = true;
        for report in &reports {
            match &report.broken {
                None => println!(
                    "ok      {}/{} ({} events)",
                    report.stream_type, report.stream_id, report.events
                ),
                Some(broken) => {
                    clean = false;
                    println!(
                        "BROKEN  {}/{} at version {}: {}",
                        report.stream_type, report.stream_id, broken.version, broken.reason
                    );
                }
            }
        }
        eprintln!(
            "{} streams, {}",
            reports.len(),
            if clean { "all verified" } else { "some broken" }
        );
        return Ok(clean);
    }
    let filter = tenantry_eventstore::read::HistoryFilter {
        event_types: args.types.clone(),
        from: args.from,
        to: args.to,
        ..Default::default()
    };
    audit(&store, args.tenant, "replay", format!("{filter:?}")).await?;
    let mut out: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(std::io::BufWriter::new(std::fs::File::create(path)?)),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut tx = store.begin_tenant(tenant).await?;
    let mut count = 0u64;
    {
        let mut chunks =
            tenantry_eventstore::read::stream_revealed_history(&mut tx, &store, tenant, &filter);
        while let Some(chunk) = chunks.next().await {
            for event in &chunk? {
                serde_json::to_writer(&mut out, event)?;
                out.write_all(b"\n")?;
                count += 1;
                if count % 100_000 == 0 {
                    eprintln!("  {count} events");
                }
            }
        }
    }
    tx.commit().await?;
    out.flush()?;
    eprintln!("{count} events replayed");
    Ok(true)
}

/// `tenantry export --tenant ID --out DIR`.
///
/// # Errors
/// On a database or file failure.
pub async fn export(url: &str, tenant: uuid::Uuid, dir: &std::path::Path) -> anyhow::Result<()> {
    let store = store(url).await?;
    audit(&store, tenant, "export", dir.display().to_string()).await?;
    let manifest = crate::transfer::export(&store, tenant, dir).await?;
    println!(
        "exported {} events in {} streams to {}",
        manifest.events,
        manifest.streams.len(),
        dir.display()
    );
    Ok(())
}

/// `tenantry import DIR`.
///
/// # Errors
/// When the export does not verify or the tenant exists, or on a failure.
pub async fn import(url: &str, dir: &std::path::Path) -> anyhow::Result<()> {
    let store = store(url).await?;
    let manifest = crate::transfer::import(&store, dir).await?;
    println!(
        "imported tenant {} ({} events, chains verified)",
        manifest.tenant_id, manifest.events
    );
    Ok(())
}

/// `tenantry erase --tenant ID [--customer REF]`.
///
/// # Errors
/// For an unknown tenant or customer, or on a failure.
pub async fn erase(url: &str, tenant: uuid::Uuid, customer: Option<&str>) -> anyhow::Result<()> {
    let store = store(url).await?;
    let commands = CommandBus::new(store, Arc::new(Notify::new()));
    let request = cli_request();
    let org = tenantry_domain::OrganizationId::from_uuid(tenant);
    let (_, destroyed) = match customer {
        None => commands.execute(org, Erase::Tenant, &request).await,
        Some(customer) => {
            let customer = tenantry_domain::CustomerRef::parse(customer)
                .map_err(|e| anyhow!("--customer: {e}"))?;
            commands
                .execute(org, Erase::Customer(customer), &request)
                .await
        }
    }
    .map_err(|e| anyhow!("{e}"))?;
    println!(
        "erased: {destroyed} data key(s) of tenant {tenant} destroyed{}",
        customer.map(|_| " (one customer)").unwrap_or_default()
    );
    Ok(())
}
