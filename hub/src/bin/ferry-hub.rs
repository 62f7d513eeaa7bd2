//! `ferry-hub`: the control plane service. It needs NATS (with JetStream) and a directory for
//! its database; spokes and clients find it through NATS alone.

use anyhow::Context;
use clap::Parser;
use ferry_hub::service::{Hub, HubConfig};
use ferry_hub::store::Store;
use ferry_protocol::subjects::{Subjects, DEFAULT_PREFIX};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "ferry-hub", version, about = "Ferry's control plane")]
struct Args {
    /// NATS server URL.
    #[arg(long, env = "FERRY_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// NATS credentials file.
    #[arg(long, env = "FERRY_NATS_CREDS")]
    nats_creds: Option<PathBuf>,
    /// Subject prefix shared with the spokes.
    #[arg(long, env = "FERRY_PREFIX", default_value = DEFAULT_PREFIX)]
    prefix: String,
    /// Directory of the hub's database.
    #[arg(long, env = "FERRY_HUB_DATA", default_value = "ferry-hub-data")]
    data: PathBuf,
    /// Address for /healthz and /metrics.
    #[arg(long, env = "FERRY_HUB_LISTEN", default_value = "127.0.0.1:9464")]
    listen: String,
    /// Seconds a spoke may hold a command without saying it still works on it; after that the
    /// command is delivered again (to the spoke, restarted).
    #[arg(long, env = "FERRY_HUB_ACK_WAIT", default_value_t = 30)]
    ack_wait: u64,
    /// Seconds a spoke may stay silent before its steps fail.
    #[arg(long, env = "FERRY_HUB_SPOKE_TIMEOUT", default_value_t = 30)]
    spoke_timeout: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let subjects = Subjects::new(&args.prefix).context("--prefix")?;
    let store =
        Store::open(&args.data).with_context(|| format!("opening {}", args.data.display()))?;
    let mut options = async_nats::ConnectOptions::new()
        .name("ferry-hub")
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
    let config = HubConfig {
        subjects,
        spoke_timeout: Duration::from_secs(args.spoke_timeout.max(1)),
        ack_wait: Duration::from_secs(args.ack_wait.max(2)),
    };
    let hub = Hub::start(config, nats, store).await?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(listen = %listener.local_addr()?, "hub serving /healthz and /metrics");
    tokio::spawn(ferry_hub::http::serve(hub.clone(), listener));
    tokio::select! {
        r = hub.run() => r?,
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted"),
    }
    Ok(())
}
