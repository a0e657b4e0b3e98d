//! The application: one process running the API, the relay and the projections (each can be
//! switched off to run them as separate processes).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tenantry_api::auth::{AdminKey, FailedAuth, LastUsed};
use tenantry_api::credentials;
use tenantry_api::rate_limit::RateLimits;
use tenantry_api::{AppState, Shared};
use tenantry_commands::{CommandBus, Relay};
use tenantry_eventstore::bus::Bus;
use tenantry_eventstore::notified::{self, Subscriber};
use tenantry_eventstore::{EventStore, Vault, MIGRATOR};
use tenantry_projections::Runner;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

/// Everything the application is configured with.
#[derive(Clone, Debug)]
pub struct Settings {
    pub database_url: String,
    pub nats_url: String,
    pub listen: String,
    pub admin_key: String,
    /// JetStream stream name (`TENANTRY_EVENTS`).
    pub nats_stream: String,
    /// Subject prefix (`tenantry`).
    pub nats_prefix: String,
    pub consistency_timeout: Duration,
    pub db_max_connections: u32,
    pub run_api: bool,
    pub run_relay: bool,
    pub run_projections: bool,
    /// Requests per minute for every tier instead of the price list's (tests, load runs).
    pub rate_limit_per_minute: Option<u32>,
    /// Failed authentications a client address may have in a minute before it is answered
    /// 429 (20).
    pub failed_auth_per_minute: u32,
    /// Seals and opens personal data (`TENANTRY_MASTER_KEY`); the API needs it, the relay and
    /// the projections handle personal data sealed and do not.
    pub vault: Vault,
}

impl Settings {
    /// Defaults for everything but the connection strings and the admin key.
    pub fn new(database_url: String, nats_url: String, admin_key: String) -> Self {
        Self {
            database_url,
            nats_url,
            listen: "127.0.0.1:8080".into(),
            admin_key,
            nats_stream: "TENANTRY_EVENTS".into(),
            nats_prefix: "tenantry".into(),
            consistency_timeout: Duration::from_secs(5),
            db_max_connections: 32,
            run_api: true,
            run_relay: true,
            run_projections: true,
            rate_limit_per_minute: None,
            failed_auth_per_minute: 20,
            vault: Vault::disabled(),
        }
    }
}

/// A built application, ready to run.
pub struct Application {
    listener: Option<TcpListener>,
    state: AppState,
    workers: JoinSet<()>,
    shutdown: watch::Sender<bool>,
}

impl Application {
    /// Connects to PostgreSQL and NATS, applies pending migrations, starts the relay and the
    /// projections (as configured) and binds the API's listener.
    ///
    /// # Errors
    /// When a service is unreachable, a migration fails or the address cannot be bound.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let store = EventStore::connect(&settings.database_url, settings.db_max_connections)
            .await
            .context("connecting to PostgreSQL")?
            .with_vault(settings.vault.clone())
            .keeping(tenantry_commands::conversations::KEPT);
        MIGRATOR
            .run(store.pool())
            .await
            .context("applying migrations")?;
        let nats = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(&settings.nats_url)
            .await
            .context("connecting to NATS")?;
        let bus = Bus::new(nats.clone(), &settings.nats_stream, &settings.nats_prefix);

        let appended = Arc::new(Notify::new());
        let (shutdown, stopped) = watch::channel(false);
        let mut workers = JoinSet::new();
        let mut pipeline: Vec<Pin<Box<dyn Future<Output = ()> + Send>>> = Vec::new();
        if settings.run_relay {
            let relay = Relay::new(store.clone(), bus.clone(), appended.clone());
            pipeline.push(Box::pin(relay.run(stopped.clone())));
        }
        if settings.run_projections {
            // One consumer for all: each event delivered and decoded once.
            let runner = Runner::feeding(
                store.clone(),
                bus.clone(),
                tenantry_projections::CONSUMER,
                tenantry_projections::all(),
            );
            pipeline.push(Box::pin(runner.run(stopped.clone())));
            let commands = CommandBus::new(store.clone(), appended.clone());
            workers.spawn(record_usage_alerts(commands, stopped.clone()));
        }
        if !pipeline.is_empty() {
            workers.spawn(on_own_thread(pipeline)?);
        }
        if settings.run_api {
            workers.spawn(purge_idempotency_keys(store.clone(), stopped.clone()));
        }
        let listener = if settings.run_api {
            Some(
                TcpListener::bind(&settings.listen)
                    .await
                    .with_context(|| format!("binding {}", settings.listen))?,
            )
        } else {
            None
        };
        let last_used = LastUsed::default();
        let credentials = credentials::cache();
        if settings.run_api {
            // Credentials, kept streams and data keys: one listening connection for all.
            let mut kept: Vec<Box<dyn Subscriber>> =
                vec![Box::new(credentials.clone()), store.kept().subscriber()];
            if store.vault().is_configured() {
                kept.push(store.vault().subscriber());
            }
            workers.spawn(notified::listen(
                store.pool().clone(),
                kept,
                stopped.clone(),
            ));
            workers.spawn(flush_last_used(
                last_used.clone(),
                store.clone(),
                stopped.clone(),
            ));
        }
        let state = AppState::new(Shared {
            commands: CommandBus::new(store.clone(), appended),
            store,
            nats,
            admin_key: AdminKey::new(&settings.admin_key),
            credentials,
            last_used,
            unknown_keys: credentials::UnknownKeys::default(),
            failed_auth: FailedAuth::new(settings.failed_auth_per_minute),
            rate_limits: RateLimits::new(settings.rate_limit_per_minute),
            consistency_timeout: settings.consistency_timeout,
        });
        Ok(Self {
            listener,
            state,
            workers,
            shutdown,
        })
    }

    /// The port the API listens on (useful when configured with port 0).
    pub fn port(&self) -> Option<u16> {
        self.listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port())
    }

    /// Serves until `signal` resolves, then stops the API, the relay and the projections.
    ///
    /// # Errors
    /// When the server fails.
    pub async fn run_until_stopped(
        mut self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        match self.listener.take() {
            Some(listener) => {
                tracing::info!(address = %listener.local_addr()?, "serving the API");
                let app = tenantry_api::router(self.state.clone());
                // Each request knows its client's address: limits per address need it.
                let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
                axum::serve(listener, app)
                    .with_graceful_shutdown(signal)
                    .await?;
            }
            None => signal.await,
        }
        let _ = self.shutdown.send(true);
        while self.workers.join_next().await.is_some() {}
        Ok(())
    }
}

/// Runs the relay and the projection runners on a thread of their own, on a single-threaded
/// runtime, and resolves when they have all returned.
///
/// They wait on little but I/O, and their latency is the projection lag: sharing the API's
/// worker threads, each wake-up queued behind request handling whenever the API was busy. On a
/// thread of its own the pipeline is scheduled by the operating system as soon as it wakes
/// (it sleeps most of the time, so the scheduler owes it), however busy the API is.
fn on_own_thread(
    tasks: Vec<Pin<Box<dyn Future<Output = ()> + Send>>>,
) -> anyhow::Result<impl Future<Output = ()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the pipeline's runtime")?;
    // The returned future holds `cancel`: if it is dropped (its runtime went away before the
    // shutdown signal was sent), the thread drops the tasks and their connections too.
    let (cancel, cancelled) = tokio::sync::oneshot::channel::<()>();
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("tenantry-pipeline".into())
        .spawn(move || {
            runtime.block_on(async move {
                // Each on its own task, as on the API's runtime: one that panics is logged
                // and the others go on.
                let all = tasks.into_iter().map(tokio::spawn).collect::<Vec<_>>();
                let all = async {
                    for task in all {
                        if let Err(err) = task.await {
                            tracing::error!(error = %err, "a relay or projection task ended");
                        }
                    }
                };
                tokio::select! {
                    _ = all => {}
                    _ = cancelled => {}
                }
            });
            let _ = done.send(());
        })
        .context("starting the pipeline's thread")?;
    Ok(async move {
        let _cancel = cancel;
        let _ = finished.await;
    })
}

/// The usage-alert policy, second half: records the alerts the billing projection decided
/// (`RecordUsageAlert`, once per threshold per month by the aggregate), each in a command
/// transaction of its own, then forgets them. A crash in between records nothing twice.
async fn record_usage_alerts(commands: CommandBus, mut shutdown: watch::Receiver<bool>) {
    use tenantry_domain::organization::OrganizationCommand;
    use tenantry_projections::billing::{alert_recorded, pending_alerts};
    let request = tenantry_commands::Request::new(tenantry_eventstore::Metadata {
        actor: Some("system:usage-alerts".into()),
        ..Default::default()
    });
    while !*shutdown.borrow() {
        let round = async {
            let store = commands.event_store();
            let mut tx = store.begin_system().await?;
            let pending = pending_alerts(&mut tx).await?;
            tx.commit().await?;
            for (tenant, month, threshold) in pending {
                let org = tenantry_domain::OrganizationId::from_uuid(tenant);
                let command = OrganizationCommand::RecordUsageAlert { month, threshold };
                commands.execute(org, command, &request).await?;
                let mut tx = store.begin_system().await?;
                alert_recorded(&mut tx, tenant, month, threshold).await?;
                tx.commit().await?;
            }
            anyhow::Ok(())
        };
        if let Err(err) = round.await {
            tracing::warn!(error = %err, "recording usage alerts failed; retrying");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Idempotency keys are promised for at least 24 hours; they are deleted after 48.
async fn purge_idempotency_keys(store: EventStore, mut shutdown: watch::Receiver<bool>) {
    const KEEP: Duration = Duration::from_secs(48 * 3600);
    while !*shutdown.borrow() {
        match tenantry_commands::idempotency::purge_idempotency_keys(&store, KEEP).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "purged expired idempotency keys"),
            Err(err) => tracing::warn!(error = %err, "purging idempotency keys failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Writes keys' `last_used_at` every 30 seconds (and once more at shutdown) instead of on
/// every request.
async fn flush_last_used(
    last_used: LastUsed,
    store: EventStore,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(30)) => false,
            _ = shutdown.changed() => true,
        };
        if let Err(err) = last_used.flush(&store).await {
            tracing::warn!(error = %err, "recording when keys were last used failed");
        }
        if stopping || *shutdown.borrow() {
            return;
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down");
}

/// Applies pending migrations to the database at `url`.
///
/// # Errors
/// When the database is unreachable or a migration fails.
pub async fn migrate(url: &str) -> anyhow::Result<()> {
    let store = EventStore::connect(url, 2)
        .await
        .context("connecting to PostgreSQL")?;
    MIGRATOR
        .run(store.pool())
        .await
        .context("applying migrations")?;
    tracing::info!("migrations applied");
    Ok(())
}
