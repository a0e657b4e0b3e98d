use clap::Parser;
use tenantry::app::shutdown_signal;
use tenantry::cli::{Cli, Command, InvoicesCommand};
use tenantry::Application;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    cli.log_format.init();

    match cli.command {
        Command::Serve(args) => {
            if args.admin_key.trim().len() < 16 {
                anyhow::bail!("TENANTRY_ADMIN_KEY must be at least 16 characters");
            }
            Application::build(args.settings())
                .await?
                .run_until_stopped(shutdown_signal())
                .await
        }
        Command::Relay(args) => {
            Application::build(args.settings(false, true, false))
                .await?
                .run_until_stopped(shutdown_signal())
                .await
        }
        Command::Project(args) => {
            Application::build(args.settings(false, false, true))
                .await?
                .run_until_stopped(shutdown_signal())
                .await
        }
        Command::Migrate { database_url } => tenantry::app::migrate(&database_url).await,
        Command::Dev(args) => tenantry::dev::run(args).await,
        Command::Invoices {
            command:
                InvoicesCommand::Close {
                    database_url,
                    month,
                },
        } => tenantry::jobs::close(&database_url, &month).await,
        Command::Reconcile {
            database_url,
            month,
            tenant,
            json,
        } => {
            let clean = tenantry::jobs::reconcile(&database_url, &month, tenant, json).await?;
            if !clean {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Replay(args) => {
            let clean = tenantry::jobs::replay(args).await?;
            if !clean {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Export {
            database_url,
            tenant,
            out,
        } => tenantry::jobs::export(&database_url, tenant, &out).await,
        Command::Import { database_url, dir } => tenantry::jobs::import(&database_url, &dir).await,
        Command::Erase {
            database_url,
            tenant,
            customer,
        } => tenantry::jobs::erase(&database_url, tenant, customer.as_deref()).await,
        Command::Rebuild {
            database_url,
            projection,
            all,
        } => tenantry::jobs::rebuild(&database_url, projection.as_deref(), all).await,
    }
}
