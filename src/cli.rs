//! The command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use tenantry_eventstore::{MasterKey, Vault};

use crate::Settings;

#[derive(Debug, Parser)]
#[command(
    name = "tenantry",
    version,
    about = "Multi-tenant platform for AI agents"
)]
pub struct Cli {
    /// Log format: human-readable text or one JSON object per line.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "TENANTRY_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    /// Starts logging to stderr in this format, filtered by `TENANTRY_LOG` (default `info`,
    /// sqlx and NATS at `warn`): how `tenantry` and the tools beside it log.
    pub fn init(self) {
        use std::io::IsTerminal;
        let filter =
            tracing_subscriber::EnvFilter::try_from_env("TENANTRY_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,sqlx=warn,async_nats=warn")
            });
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            // Colours only for a terminal: not into log files, and not formatted for nothing
            // (a request's span fields are formatted as it begins).
            .with_ansi(std::io::stderr().is_terminal());
        match self {
            LogFormat::Json => subscriber.json().init(),
            LogFormat::Text => subscriber.init(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the API, the relay and the projections in one process.
    Serve(ServeArgs),
    /// Run only the relay (publishes the feed to NATS).
    Relay(ServiceArgs),
    /// Run only the projections (build the read models from NATS).
    Project(ServiceArgs),
    /// Apply pending migrations and exit.
    Migrate {
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
    /// Start throwaway PostgreSQL and NATS under .tenantry/ and serve on them.
    Dev(DevArgs),
    /// Invoices: `tenantry invoices close --month YYYY-MM`.
    Invoices {
        #[command(subcommand)]
        command: InvoicesCommand,
    },
    /// Recompute a month's usage and invoices from the event log and compare them with the
    /// read models; exits 1 when they differ.
    Reconcile {
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        /// The month, YYYY-MM.
        #[arg(long)]
        month: String,
        /// Only this organization.
        #[arg(long)]
        tenant: Option<uuid::Uuid>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// A tenant's history as NDJSON in feed order (or `--verify` its hash chains).
    Replay(ReplayArgs),
    /// Write a tenant's events and a manifest into a directory.
    Export {
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        #[arg(long)]
        tenant: uuid::Uuid,
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Verify and re-create a tenant exported by `tenantry export`.
    Import {
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        dir: std::path::PathBuf,
    },
    /// Erase a tenant's personal data, or one end customer's: destroys their data keys
    /// (irreversible) and records the erasure in the tenant's history.
    Erase {
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        #[arg(long)]
        tenant: uuid::Uuid,
        /// Only this end customer (their customer reference).
        #[arg(long)]
        customer: Option<String>,
    },
    /// Replay the feed from PostgreSQL into fresh tables of a projection, then switch.
    Rebuild {
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        /// The projection (organizations, directory, billing).
        projection: Option<String>,
        /// Every projection.
        #[arg(long, conflicts_with = "projection")]
        all: bool,
    },
}

/// Which tenant's history, and what of it.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    #[arg(long)]
    pub tenant: uuid::Uuid,
    /// Only events recorded at or after this instant (RFC 3339).
    #[arg(long)]
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    /// Only events recorded before this instant (RFC 3339).
    #[arg(long)]
    pub to: Option<chrono::DateTime<chrono::Utc>>,
    /// Only these event types (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub types: Option<Vec<String>>,
    /// Write the NDJSON here instead of standard output.
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
    /// Verify every stream's hash chain instead of printing the history.
    #[arg(long)]
    pub verify: bool,
}

#[derive(Debug, Subcommand)]
pub enum InvoicesCommand {
    /// Finalize every organization's invoice of a past month (running it twice changes nothing).
    Close {
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        /// The month, YYYY-MM.
        #[arg(long)]
        month: String,
    },
}

/// Connections shared by every long-running command.
#[derive(Debug, Args)]
pub struct ServiceArgs {
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// JetStream stream that carries the feed.
    #[arg(long, env = "TENANTRY_NATS_STREAM", default_value = "TENANTRY_EVENTS")]
    pub nats_stream: String,
    /// Subject prefix of the feed (`<prefix>.events.<tenant>.<stream_type>.<event_type>`).
    #[arg(long, env = "TENANTRY_NATS_PREFIX", default_value = "tenantry")]
    pub nats_prefix: String,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub service: ServiceArgs,
    #[arg(long, env = "TENANTRY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// The platform admin key (`Authorization: Bearer <key>`).
    #[arg(long, env = "TENANTRY_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: String,
    /// How long a query waits for `X-Tenantry-Min-Position`, in milliseconds.
    #[arg(long, env = "TENANTRY_CONSISTENCY_TIMEOUT_MS", default_value_t = 5000)]
    pub consistency_timeout_ms: u64,
    /// The master key that wraps the data keys personal data is sealed under: 64 hex digits
    /// (`openssl rand -hex 32`). Keep it out of the database and its backups.
    #[arg(long, env = "TENANTRY_MASTER_KEY", hide_env_values = true, value_parser = parse_master_key)]
    pub master_key: MasterKey,
}

/// `--master-key`: 64 hex digits.
pub fn parse_master_key(text: &str) -> Result<MasterKey, String> {
    MasterKey::parse(text)
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Where the throwaway services keep their data.
    #[arg(long, default_value = ".tenantry/dev")]
    pub dir: PathBuf,
    #[arg(long, env = "TENANTRY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    #[arg(long, default_value_t = 54329)]
    pub pg_port: u16,
    #[arg(long, default_value_t = 42229)]
    pub nats_port: u16,
    /// Start from empty data directories.
    #[arg(long)]
    pub fresh: bool,
    /// Start PostgreSQL and NATS only, write their URLs to `<dir>/env`, and wait for Ctrl-C
    /// (what `make test` uses).
    #[arg(long)]
    pub services_only: bool,
}

impl ServiceArgs {
    /// Settings for a process that runs only some of the parts.
    pub fn settings(&self, api: bool, relay: bool, projections: bool) -> Settings {
        let mut settings = Settings::new(
            self.database_url.clone(),
            self.nats_url.clone(),
            String::new(),
        );
        settings.nats_stream = self.nats_stream.clone();
        settings.nats_prefix = self.nats_prefix.clone();
        settings.run_api = api;
        settings.run_relay = relay;
        settings.run_projections = projections;
        settings
    }
}

impl ServeArgs {
    pub fn settings(&self) -> Settings {
        let mut settings = self.service.settings(true, true, true);
        settings.listen = self.listen.clone();
        settings.admin_key = self.admin_key.clone();
        settings.consistency_timeout = Duration::from_millis(self.consistency_timeout_ms);
        settings.vault = Vault::new(&self.master_key);
        settings
    }
}
