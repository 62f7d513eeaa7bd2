//! `ferry-spoke mover`: what a mover pod runs. It moves one volume between the path where its
//! pod mounts it and the repository, named by its environment (`FERRY_REPOSITORY`,
//! `FERRY_PASSWORD` and the store's credentials, from a Secret the spoke made).
//!
//! Under the stand-in's process kubelet a pod's volumes appear below `$FERRY_SANDBOX` rather
//! than at their mount paths (there is no container); paths are taken from there when it is set.

use anyhow::Context;
use clap::{Args, Subcommand};
use ferry_repository::backend::Backend;
use ferry_repository::backup::{block, fs, BackupOptions};
use ferry_repository::repo::Repository;
use ferry_repository::restore::{restore, restore_block, RestoreOptions};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Args)]
pub struct MoverArgs {
    #[command(subcommand)]
    command: MoverCommand,
}

#[derive(Subcommand)]
enum MoverCommand {
    /// A mounted volume (a directory, or with --block a device) into a new snapshot.
    Backup {
        #[arg(long)]
        path: PathBuf,
        #[arg(long)]
        block: bool,
        /// The snapshot's source name.
        #[arg(long)]
        source: String,
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    /// A snapshot onto a mounted (empty) volume.
    Restore {
        #[arg(long)]
        snapshot: String,
        #[arg(long)]
        path: PathBuf,
        #[arg(long)]
        block: bool,
    },
}

/// Where the pod's mount path is for this process.
fn mounted(path: PathBuf) -> PathBuf {
    match std::env::var_os("FERRY_SANDBOX") {
        Some(sandbox) if path.is_absolute() => {
            PathBuf::from(sandbox).join(path.strip_prefix("/").unwrap_or(&path))
        }
        _ => path,
    }
}

pub async fn run(args: MoverArgs) -> anyhow::Result<ExitCode> {
    let location = std::env::var("FERRY_REPOSITORY").context("FERRY_REPOSITORY is not set")?;
    let pass = crate::repo::passphrase(&None)?;
    let repo = Arc::new(
        Repository::open(Backend::open(&location)?, &pass)
            .await
            .with_context(|| format!("opening the repository {location}"))?,
    );
    match args.command {
        MoverCommand::Backup {
            path,
            block: is_block,
            source,
            tags,
        } => {
            let path = mounted(path);
            let options = BackupOptions {
                source: Some(source),
                tags,
                parent: Some(String::new()),
                ..Default::default()
            };
            let (name, snap) = if is_block {
                block::backup(repo, &path, options, None).await?
            } else {
                fs::backup(repo, &path, options).await?
            };
            println!(
                "{}",
                serde_json::json!({"snapshot": name, "tree": snap.tree.to_string(), "files": snap.summary.files, "bytes": snap.summary.bytes})
            );
        }
        MoverCommand::Restore {
            snapshot,
            path,
            block: is_block,
        } => {
            let path = mounted(path);
            let (name, snap) = repo.find_snapshot(&snapshot, None).await?;
            // The workload starts on this volume once the mover reports: what it reports
            // restored must survive the node going down.
            let options = RestoreOptions {
                sync: true,
                ..Default::default()
            };
            let summary = if is_block {
                restore_block(repo, &snap, &path, options).await?
            } else {
                restore(repo, &snap, &path, options).await?
            };
            println!(
                "{}",
                serde_json::json!({"snapshot": name, "files": summary.files, "bytes": summary.bytes})
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
