//! `ferry`: the command-line face of Ferry. `ferry transform` works on files without a cluster;
//! everything else is a request to the hub over NATS (`docs/protocol.md` shows each).

mod client;
mod commands;
mod output;
mod transform;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ferry",
    version,
    about = "Ferry: disaster recovery and migration for Kubernetes"
)]
struct Cli {
    #[command(flatten)]
    global: client::Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Transform rules on objects in files: preview, apply, order.
    #[command(subcommand)]
    Transform(transform::TransformCommand),
    /// The spokes registered with the hub.
    Clusters,
    /// Restore points: create, list, describe, delete.
    #[command(subcommand, alias = "backups")]
    Backup(commands::BackupCommand),
    /// Rehydrate a restore point into a cluster.
    Restore(commands::RestoreArgs),
    /// Capture an application in one cluster and restore it into another, as one operation.
    Migrate(commands::MigrateArgs),
    /// Operations: list, get, watch, cancel.
    #[command(subcommand, alias = "operation", alias = "ops")]
    Operations(commands::OperationsCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Transform(t) => transform::run(t).map(|()| std::process::ExitCode::SUCCESS),
        other => match tokio::runtime::Runtime::new() {
            Ok(rt) => rt.block_on(async {
                let client = client::Client::connect(&cli.global).await?;
                match other {
                    Command::Clusters => commands::clusters(&client).await,
                    Command::Backup(b) => commands::backup(&client, b).await,
                    Command::Restore(r) => commands::restore(&client, r).await,
                    Command::Migrate(m) => commands::migrate(&client, m).await,
                    Command::Operations(o) => commands::operations(&client, o).await,
                    Command::Transform(_) => unreachable!("handled above"),
                }
            }),
            Err(e) => Err(anyhow::anyhow!("starting the runtime: {e}")),
        },
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", ferry_protocol::error_text(e.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}
