//! The `tenantry-bench` binary: parses the command line, starts tracing (the in-process
//! platform logs as `tenantry serve` does) and runs the benchmark.

use clap::Parser;
use tenantry::cli::LogFormat;
use tenantry_bench::BenchArgs;

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
    cli.log_format.init();
    tenantry_bench::run(cli.bench).await
}
