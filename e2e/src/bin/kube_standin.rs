//! Runs one stand-in Kubernetes API server until interrupted.

use anyhow::Context;
use clap::Parser;
use ferry_e2e::apiserver::kubelet::ImageProgram;
use ferry_e2e::apiserver::{StandIn, StandInConfig};
use std::path::PathBuf;

#[derive(Parser)]
#[command(about = "A Kubernetes API server stand-in that kubectl and kube-rs can use")]
struct Args {
    /// Cluster name, used for the kubeconfig context.
    #[arg(long, default_value = "standin")]
    name: String,
    /// Directory for volumes, snapshots, certificates, the kubeconfig and persisted objects.
    #[arg(long)]
    data_dir: PathBuf,
    /// Listen address (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// Serve plain HTTP instead of HTTPS.
    #[arg(long)]
    insecure_http: bool,
    /// Kubernetes minor version to report (kubectl's dispatcher follows it).
    #[arg(long, default_value_t = 33)]
    minor: u32,
    /// Keep objects in the data directory across restarts.
    #[arg(long)]
    persist: bool,
    /// Bearer token clients must present (random if not given; written to the kubeconfig).
    #[arg(long)]
    token: Option<String>,
    /// Run pods whose image matches IMAGE_GLOB as local processes of PROGRAM (repeatable), e.g.
    /// `--run-image '*/cache-operator:*=/usr/local/bin/cache-operator'`.
    #[arg(long = "run-image", value_name = "IMAGE_GLOB=PROGRAM", value_parser = ImageProgram::parse)]
    run_image: Vec<ImageProgram>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let mut config = StandInConfig::new(args.name, args.data_dir);
    config.listen = args.listen;
    config.tls = !args.insecure_http;
    config.minor_version = args.minor;
    config.persist = args.persist;
    config.image_programs = args.run_image;
    if args.token.is_some() {
        config.token = args.token;
    }
    let standin = StandIn::start(config)
        .await
        .context("starting the stand-in API server")?;
    println!("server: {}", standin.url);
    println!("kubeconfig: {}", standin.kubeconfig_path.display());
    tokio::signal::ctrl_c()
        .await
        .context("waiting for ctrl-c")?;
    standin.shutdown().await;
    Ok(())
}
