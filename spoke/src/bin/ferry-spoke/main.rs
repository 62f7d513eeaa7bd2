//! `ferry-spoke`: the spoke agent's binary. `ferry-spoke run` is the agent; `ferry-spoke repo ...`
//! works on a volume repository with nothing but its location and passphrase — no hub, no NATS —
//! so data stays readable with Ferry's own binary even when the rest of Ferry is gone.

mod mover;
mod progress;
mod repo;
mod run;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "ferry-spoke", version, about = "Ferry's per-cluster agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work on a portable volume repository directly.
    Repo(repo::RepoArgs),
    /// Run the agent: register with the hub over NATS and carry out its commands.
    Run(run::RunArgs),
    /// Move one volume between a mount and the repository (what mover pods run).
    Mover(mover::MoverArgs),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Repo(args) => repo::run(args).await,
            Command::Run(args) => run::run(args).await,
            Command::Mover(args) => mover::run(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", ferry_protocol::error_text(e.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}
