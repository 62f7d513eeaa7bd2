//! `ferry-spoke run`: the agent — connects to its cluster, its repository and NATS, registers
//! with the hub and carries out the hub's commands until stopped.

use anyhow::Context;
use clap::Args;
use ferry_protocol::subjects::{validate_token, Subjects, DEFAULT_PREFIX};
use ferry_repository::backend::Backend;
use ferry_repository::repo::{InitOptions, RepoError, Repository};
use ferry_spoke::agent::{Agent, AgentConfig};
use ferry_spoke::cluster::Cluster;
use ferry_spoke::mover::{store_env_from_process, MoverConfig};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args)]
pub struct RunArgs {
    /// This cluster's name in the fleet (one NATS subject token).
    #[arg(long, env = "FERRY_CLUSTER")]
    cluster: String,
    /// NATS server URL.
    #[arg(long, env = "FERRY_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// NATS credentials file (a user's JWT and seed), for a server with accounts.
    #[arg(long, env = "FERRY_NATS_CREDS")]
    nats_creds: Option<PathBuf>,
    /// Subject prefix shared with the hub.
    #[arg(long, env = "FERRY_PREFIX", default_value = DEFAULT_PREFIX)]
    prefix: String,
    /// kubeconfig context (default: the current one, or in-cluster).
    #[arg(long)]
    context: Option<String>,
    /// Repository for restore points: a path, file://, s3://bucket/prefix, gs://, az://.
    #[arg(long, short = 'r', env = "FERRY_REPOSITORY")]
    repo: String,
    /// File holding the passphrase (else the FERRY_PASSWORD variable).
    #[arg(long, env = "FERRY_PASSWORD_FILE")]
    password_file: Option<PathBuf>,
    /// Create the repository if there is none at that location.
    #[arg(long)]
    init_repository: bool,
    /// Seconds between heartbeats.
    #[arg(long, default_value_t = 5)]
    heartbeat: u64,
    /// The image of mover pods (this binary's image: they run `ferry-spoke mover`).
    #[arg(long, env = "FERRY_MOVER_IMAGE", default_value = concat!("ghcr.io/ferry-dr/ferry-spoke:", env!("CARGO_PKG_VERSION")))]
    mover_image: String,
    /// Seconds a snapshot or a mover pod may take.
    #[arg(long, default_value_t = 3600)]
    mover_timeout: u64,
    /// Storage classes (comma-separated, `*` for all) whose CSI driver makes a read-only claim
    /// from a snapshot without copying it (shallow clones): capture movers read their snapshots
    /// through such a claim.
    #[arg(long, env = "FERRY_READ_ONLY_CLONES", value_delimiter = ',')]
    read_only_clones: Vec<String>,
}

async fn open_repository(args: &RunArgs) -> anyhow::Result<Repository> {
    let pass = crate::repo::passphrase(&args.password_file)?;
    let open = Repository::open(Backend::open(&args.repo)?, &pass).await;
    match open {
        Err(RepoError::NotARepository { .. }) if args.init_repository => {
            match Repository::init(Backend::open(&args.repo)?, &pass, InitOptions::default()).await
            {
                Ok(r) => Ok(r),
                // Another spoke created it first.
                Err(RepoError::AlreadyInitialized { .. }) => {
                    Ok(Repository::open(Backend::open(&args.repo)?, &pass).await?)
                }
                Err(e) => Err(e.into()),
            }
        }
        other => Ok(other?),
    }
}

pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    validate_token(&args.cluster).context("--cluster")?;
    let subjects = Subjects::new(&args.prefix).context("--prefix")?;
    let cluster = Cluster::connect(args.context.as_deref()).await?;
    let repo = Arc::new(
        open_repository(&args)
            .await
            .with_context(|| format!("opening the repository {}", args.repo))?,
    );
    let mut options = async_nats::ConnectOptions::new()
        .name(format!("ferry-spoke {}", args.cluster))
        .retry_on_initial_connect();
    if let Some(creds) = &args.nats_creds {
        options = options
            .credentials_file(creds)
            .await
            .with_context(|| format!("reading {}", creds.display()))?;
    }
    let nats = options
        .connect(&args.nats)
        .await
        .with_context(|| format!("connecting to NATS at {}", args.nats))?;
    let mover = MoverConfig {
        image: args.mover_image.clone(),
        repository: args.repo.clone(),
        password: crate::repo::passphrase(&args.password_file)?,
        store_env: store_env_from_process(),
        timeout: Duration::from_secs(args.mover_timeout.max(1)),
        read_only_clones: args.read_only_clones.clone(),
    };
    let config = AgentConfig {
        cluster_name: args.cluster.clone(),
        subjects,
        heartbeat: Duration::from_secs(args.heartbeat.max(1)),
        mover: Some(mover),
    };
    tracing::info!(cluster = %args.cluster, nats = %args.nats, "spoke starting");
    let agent = Arc::new(Agent::new(config, nats, cluster, repo).await?);
    tokio::select! {
        r = agent.run() => r?,
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted"),
    }
    Ok(ExitCode::SUCCESS)
}
