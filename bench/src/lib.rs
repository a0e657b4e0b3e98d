//! `tenantry-bench`: the platform measured against the raw database, on this machine.
//!
//! Each figure with a physical reference is printed beside it, measured in the same run on
//! the same database: `pgbench -M prepared` inserting one event-shaped row per transaction
//! (and ten) at the same concurrency. Scenarios: append (event store alone), commands over HTTP,
//! projection lag under half that load, rebuild, replay, and resident memory.
//!
//! A tool beside the product: it starts the platform in-process through the `tenantry`
//! library (and its throwaway services through `tenantry::dev`), as `tenantry serve` would.
//! [`run`] runs the scenarios in order; each module owns one part:
//! `pgbench` the reference, `append` the event store alone, `http` the API
//! under load (with its own keep-alive client), `lag` the projections' lag, `volume` the
//! events the read-side scenarios run over, `load` the driver the timed scenarios share,
//! `machine` memory and CPU, and `report` the figures.

mod append;
mod http;
mod lag;
mod load;
mod machine;
mod pgbench;
mod report;
mod volume;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tenantry::{Application, Settings};
use tenantry_eventstore::EventStore;

use crate::append::{append_scenario, AppendMode};
use crate::http::{http_replay, http_scenario, setup_tenants};
use crate::lag::caught_up;
use crate::machine::{rss_mib, MemoryWatch};
use crate::report::{percentile, quantile, AppendFigures, Figures};
use crate::volume::generate_volume;

/// The throwaway PostgreSQL keeps its defaults (durability included); autovacuum's visits are
/// logged, to tell them from the platform's own stalls.
const BENCH_SETTINGS: &[&str] = &["log_autovacuum_min_duration=0"];

/// What to run.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Use this database instead of starting a throwaway one (it should be empty).
    #[arg(long)]
    pub database_url: Option<String>,
    #[arg(long)]
    pub nats_url: Option<String>,
    /// Seconds each scenario runs after its warm-up.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Print a JSON summary as the last line.
    #[arg(long)]
    pub json: bool,
    /// Events recorded for the rebuild, replay and reconcile scenarios.
    #[arg(long, default_value_t = 1_000_000)]
    pub volume: u64,
    /// Of those, the events of the one tenant whose history is replayed.
    #[arg(long, default_value_t = 200_000)]
    pub replay_events: u64,
}

/// The platform admin key of the in-process server (its tenants are throwaway).
const ADMIN_KEY: &str = "bench-admin-key-0000000000";

/// Runs the benchmark.
///
/// # Errors
/// When the services cannot start or a scenario fails.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let mut services = None;
    let (database_url, nats_url) = match (&args.database_url, &args.nats_url) {
        (Some(db), Some(nats)) => (db.clone(), nats.clone()),
        _ => {
            eprintln!("starting throwaway PostgreSQL and NATS under .tenantry/bench…");
            let started = tenantry::dev::Services::start(
                &PathBuf::from(".tenantry/bench"),
                54359,
                42259,
                true,
                BENCH_SETTINGS,
            )
            .await?;
            let urls = (started.database_url.clone(), started.nats_url.clone());
            services = Some(started);
            urls
        }
    };
    let result = scenarios(&database_url, &nats_url, &args).await;
    if let Some(services) = services {
        services.stop();
    }
    let figures = result?;
    if args.json {
        println!("{}", serde_json::to_string(&figures)?);
    }
    Ok(())
}

/// Every scenario in order, on the services at `database_url` and `nats_url`.
async fn scenarios(
    database_url: &str,
    nats_url: &str,
    args: &BenchArgs,
) -> anyhow::Result<Figures> {
    let mut f = Figures::default();
    let seconds = args.seconds;
    let settings = {
        let mut s = Settings::new(database_url.into(), nats_url.into(), ADMIN_KEY.into());
        s.listen = "127.0.0.1:0".into();
        s.rate_limit_per_minute = Some(10_000_000);
        s.db_max_connections = 40;
        // A key of its own: the bench's tenants are throwaway.
        s.vault = tenantry_eventstore::Vault::new(&tenantry_eventstore::MasterKey::generate());
        s
    };
    // The event store alone first: pgbench and the appends run before the platform starts,
    // so no relay or projection shares the cores with them.
    let store = EventStore::connect(database_url, 40).await?;
    tenantry_eventstore::MIGRATOR.run(store.pool()).await?;
    pgbench::create_table(&store).await?;

    f.pgbench_one_row_tps = pgbench::run(database_url, 16, seconds, 1)?;
    println!(
        "pgbench -M prepared, 1 row/tx, 16 clients   {:>10.0} tx/s",
        f.pgbench_one_row_tps
    );
    f.pgbench_ten_rows_events_per_s = pgbench::run(database_url, 16, seconds, 10)? * 10.0;
    println!(
        "pgbench -M prepared, 10 rows/tx, 16 clients {:>10.0} rows/s",
        f.pgbench_ten_rows_events_per_s
    );
    let pg = f.pgbench_one_row_tps;
    for (mode, figures) in [
        (AppendMode::Fresh, &mut f.append),
        (AppendMode::Existing, &mut f.append_existing),
        (AppendMode::InTransaction, &mut f.append_in_transaction),
    ] {
        let (rate, latencies) = append_scenario(&store, seconds, mode).await?;
        *figures = AppendFigures::report(mode.label(), rate, &latencies, pg);
    }

    let app = Application::build(settings.clone()).await?;
    let port = app.port().context("the API listens")?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stop_rx.await;
    }));
    f.rss_at_rest_mib = rss_mib();
    println!(
        "memory at rest                 {:>10.1} MiB",
        f.rss_at_rest_mib
    );
    // The relay and projections work off the appends before the HTTP load.
    let drained = caught_up(&store, Duration::from_secs(300)).await?;
    eprintln!(
        "projections caught up on the appends in {:.1} s",
        drained.as_secs_f64()
    );

    // The database as a deployed one is: vacuumed and analyzed since its bulk of events came
    // in. Otherwise autovacuum's first pass over the fresh tables falls in the HTTP scenarios.
    let started = Instant::now();
    sqlx::query("VACUUM (ANALYZE)")
        .execute(store.pool())
        .await?;
    eprintln!(
        "vacuumed and analyzed the database in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let tenants = Arc::new(setup_tenants(&client, &base, 50).await?);
    let (rate, latencies, peak_lags) = http_scenario(
        format!("127.0.0.1:{port}"),
        tenants.clone(),
        &store,
        seconds,
        None,
    )
    .await?;
    // Half the peak rate: each of the 32 clients runs a six-command conversation every
    // 32 × 6 × 2 / rate seconds.
    let pace = Duration::from_secs_f64(32.0 * 6.0 * 2.0 / rate.max(1.0));
    // Let the projections work off the peak's backlog first.
    let drained = caught_up(&store, Duration::from_secs(120)).await?;
    eprintln!(
        "projections caught up {:.1} s after the peak",
        drained.as_secs_f64()
    );
    let (_, _, lags) = http_scenario(
        format!("127.0.0.1:{port}"),
        tenants.clone(),
        &store,
        seconds,
        Some(pace),
    )
    .await?;
    f.http_commands_per_s = rate;
    f.http_p50_ms = percentile(&latencies, 0.5);
    f.http_p99_ms = percentile(&latencies, 0.99);
    f.http_p999_ms = percentile(&latencies, 0.999);
    f.projection_lag_p50_ms = quantile(&lags.worst, 0.5);
    f.projection_lag_p99_ms = quantile(&lags.worst, 0.99);
    f.projection_lag_max_ms = lags.worst.last().copied().unwrap_or(0.0);
    f.projection_lag_peak_p99_ms = quantile(&peak_lags.worst, 0.99);
    f.cpu_busy_at_peak = peak_lags.cpu_busy;
    f.cpu_busy_at_half_peak = lags.cpu_busy;
    f.projection_lag_by_projection = lags
        .by_projection
        .iter()
        .map(|(name, samples)| {
            let figures = [quantile(samples, 0.5), quantile(samples, 0.99)];
            let max = samples.last().copied().unwrap_or(0.0);
            (name.clone(), [figures[0], figures[1], max])
        })
        .collect();
    f.http_ratio_to_pgbench = f.http_commands_per_s / f.pgbench_one_row_tps;
    f.rss_after_http_mib = rss_mib();
    println!(
        "commands over HTTP, 32 clients  {:>8.0} commands/s  p50 {:.2} ms  p99 {:.2} ms  p999 {:.2} ms  ({:.0} % of pgbench)",
        f.http_commands_per_s,
        f.http_p50_ms,
        f.http_p99_ms,
        f.http_p999_ms,
        f.http_ratio_to_pgbench * 100.0
    );
    println!(
        "projection lag at half the peak p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms  (p99 at peak {:.1} ms)",
        f.projection_lag_p50_ms,
        f.projection_lag_p99_ms,
        f.projection_lag_max_ms,
        f.projection_lag_peak_p99_ms
    );
    println!(
        "  machine CPU busy: {:.0} % at the peak, {:.0} % at half of it",
        f.cpu_busy_at_peak * 100.0,
        f.cpu_busy_at_half_peak * 100.0
    );
    for (name, [p50, p99, max]) in &f.projection_lag_by_projection {
        println!("  {name:<14} lag p50 {p50:.1} ms  p99 {p99:.1} ms  max {max:.1} ms");
    }
    println!(
        "memory after HTTP load         {:>10.1} MiB",
        f.rss_after_http_mib
    );

    eprintln!(
        "recording {} events of whole conversations ({} of them for one tenant)…",
        args.volume, args.replay_events
    );
    let started = Instant::now();
    generate_volume(&store, &tenants, args.volume, args.replay_events).await?;
    f.volume_events_per_s = args.volume as f64 / started.elapsed().as_secs_f64();
    f.volume_caught_up_s = caught_up(&store, Duration::from_secs(900))
        .await?
        .as_secs_f64();
    println!(
        "volume recorded                 {:>8.0} events/s; live projections caught up {:.1} s later",
        f.volume_events_per_s, f.volume_caught_up_s
    );

    let started = Instant::now();
    let events =
        tenantry_projections::rebuild::rebuild_all(&store, &tenantry_projections::all(), |_| {})
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .events;
    f.rebuild_events = events;
    // Distinct events per second for all read models together (one pass over the feed).
    f.rebuild_events_per_s = events as f64 / started.elapsed().as_secs_f64();
    println!(
        "rebuild, all projections        {:>8.0} events/s over {} events ({:.0} % of pgbench ten-row)",
        f.rebuild_events_per_s,
        events,
        f.rebuild_events_per_s / f.pgbench_ten_rows_events_per_s * 100.0
    );

    f.replay_rss_before_mib = rss_mib();
    let watch = MemoryWatch::start();
    let (rate, lines) = http_replay(&client, &base, &tenants[0]).await?;
    f.replay_rss_peak_mib = watch.peak_mib().max(f.replay_rss_before_mib);
    drop(watch);
    f.replay_events = lines;
    f.replay_events_per_s = rate;
    println!(
        "replay over HTTP, one tenant    {:>8.0} events/s over {} events; memory {:.1} → peak {:.1} MiB",
        rate, lines, f.replay_rss_before_mib, f.replay_rss_peak_mib
    );

    f.reconcile_rss_before_mib = rss_mib();
    let watch = MemoryWatch::start();
    let started = Instant::now();
    let month = tenantry_domain::billing::Month::of(chrono::Utc::now());
    let report = tenantry_projections::reconcile::reconcile(&store, month, None, |_| {})
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    f.reconcile_seconds = started.elapsed().as_secs_f64();
    f.reconcile_rss_peak_mib = watch.peak_mib().max(f.reconcile_rss_before_mib);
    drop(watch);
    f.reconcile_events = report.events_scanned;
    f.reconcile_differences = report.differences.len();
    println!(
        "reconcile {month}                {:>8.1} s over {} events, {} differences; memory {:.1} → peak {:.1} MiB",
        f.reconcile_seconds,
        report.events_scanned,
        f.reconcile_differences,
        f.reconcile_rss_before_mib,
        f.reconcile_rss_peak_mib
    );

    let _ = stop_tx.send(());
    let _ = server.await;
    Ok(f)
}
