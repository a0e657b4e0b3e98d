//! The `tenantry-bench` binary: parses the command line, starts tracing (the in-process
//! platform logs as `tenantry serve` does) and runs the benchmark.

use std::io::IsTerminal;

use clap::Parser;
use tenantry::cli::LogFormat;
use tenantry_bench::BenchArgs;
use tracing_subscriber::EnvFilter;

/// Measure the platform against the raw database on this machine.
#[derive(Debug, Parser)]
#[command(name = "tenantry-bench", version)]
struct Cli {
    /// Log format of the in-process platform: human-readable text or one JSON object per line.
    #[arg(long, value_enum, env = "TENANTRY_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    #[command(flatten)]
    bench: BenchArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_env("TENANTRY_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,async_nats=warn"));
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match cli.log_format {
        LogFormat::Json => subscriber.json().init(),
        LogFormat::Text => subscriber.init(),
    }
    tenantry_bench::run(cli.bench).await
}
