//! `ferry-spoke repo`: the repository engine as a command.

use crate::progress::{sink, ProgressMode};
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use ferry_repository::backend::Backend;
use ferry_repository::backup::block::ChangedRanges;
use ferry_repository::backup::{block, fs, BackupOptions};
use ferry_repository::check::{check, CheckOptions};
use ferry_repository::prune::{prune, stats, PruneOptions};
use ferry_repository::repair::{repair_index, RepairOptions};
use ferry_repository::repo::{InitOptions, Repository};
use ferry_repository::restore::{restore, restore_block, RestoreOptions};
use ferry_repository::tree::{NodeKind, SnapshotKind};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Args)]
pub struct RepoArgs {
    /// Repository location: a path, file://, s3://bucket/prefix, gs://, az://.
    #[arg(long, short = 'r', env = "FERRY_REPOSITORY")]
    repo: String,
    /// File holding the passphrase (else the FERRY_PASSWORD variable).
    #[arg(long, env = "FERRY_PASSWORD_FILE")]
    password_file: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "auto")]
    progress: ProgressMode,
    #[command(subcommand)]
    command: RepoCommand,
}

#[derive(Subcommand)]
enum RepoCommand {
    /// Create a repository.
    Init {
        /// Chunk size for block volumes, in KiB (a power of two).
        #[arg(long, default_value_t = 512)]
        block_chunk_kib: u32,
    },
    /// Back up a directory, or with --block a device or image file.
    Backup {
        path: PathBuf,
        #[arg(long)]
        block: bool,
        /// Name to record as the source (default: the path).
        #[arg(long)]
        source: Option<String>,
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Compare with this snapshot (default: the latest of the same source).
        #[arg(long, conflicts_with = "no_parent")]
        parent: Option<String>,
        /// Read everything, compare with no earlier snapshot.
        #[arg(long)]
        no_parent: bool,
        /// Block mode: file of "offset length" lines that may have changed since the parent;
        /// the rest is taken from the parent without reading.
        #[arg(long, requires = "block")]
        changed_blocks: Option<PathBuf>,
    },
    /// Restore a snapshot into a directory (or a block snapshot into an image or device).
    Restore {
        snapshot: String,
        target: PathBuf,
        /// Only this file or directory of the snapshot.
        #[arg(long)]
        path: Option<String>,
        /// Return only once the restored data is on disk (syncs the target's filesystem).
        #[arg(long)]
        sync: bool,
    },
    /// List snapshots.
    Snapshots {
        #[arg(long)]
        json: bool,
    },
    /// List the files of a snapshot.
    Ls { snapshot: String },
    /// Verify the repository's structure, and with --read-data every byte.
    Check {
        #[arg(long)]
        read_data: bool,
    },
    /// Remove snapshots (prune frees their data).
    Forget {
        #[arg(required = true)]
        snapshots: Vec<String>,
    },
    /// Delete data no snapshot uses.
    Prune {
        #[arg(long)]
        dry_run: bool,
    },
    /// Sizes: logical, unique, stored; dedup and compression ratios.
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// Write a filesystem snapshot as tar, or a block snapshot as a raw image.
    Export {
        snapshot: String,
        /// Output file; `-` for standard output. A block snapshot written to a file is sparse.
        #[arg(long, short = 'o', default_value = "-")]
        output: PathBuf,
    },
    /// Remove stale locks (of crashed processes), or with --all every lock.
    Unlock {
        #[arg(long)]
        all: bool,
    },
    /// Rebuild derived data from what the repository stores.
    Repair {
        #[command(subcommand)]
        what: RepairCommand,
    },
}

#[derive(Subcommand)]
enum RepairCommand {
    /// Rebuild the index from the packs' own headers (after damaged or lost index files).
    Index,
}

pub(crate) fn passphrase(file: &Option<PathBuf>) -> anyhow::Result<Vec<u8>> {
    if let Some(path) = file {
        let text = std::fs::read(path)
            .with_context(|| format!("reading the passphrase file {}", path.display()))?;
        let end = text
            .iter()
            .rposition(|b| *b != b'\n' && *b != b'\r')
            .map_or(0, |i| i + 1);
        return Ok(text[..end].to_vec());
    }
    match std::env::var_os("FERRY_PASSWORD") {
        Some(p) => Ok(p.into_encoded_bytes()),
        None => bail!("no passphrase: give --password-file or set FERRY_PASSWORD"),
    }
}

fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.2} {}", units[u])
    }
}

pub async fn run(args: RepoArgs) -> anyhow::Result<ExitCode> {
    let backend = Backend::open(&args.repo)?;
    let pass = passphrase(&args.password_file)?;
    let progress = sink(args.progress);
    if let RepoCommand::Init { block_chunk_kib } = args.command {
        let options = InitOptions {
            block_chunk_size: block_chunk_kib.saturating_mul(1024),
            ..Default::default()
        };
        let repo = Repository::init(backend, &pass, options).await?;
        println!(
            "created repository {} at {}",
            repo.config().id,
            repo.backend().url()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let repo = Arc::new(Repository::open(backend, &pass).await?);
    match args.command {
        RepoCommand::Init { .. } => unreachable!("handled above"),
        RepoCommand::Backup {
            path,
            block: is_block,
            source,
            tags,
            parent,
            no_parent,
            changed_blocks,
        } => {
            let options = BackupOptions {
                source,
                tags,
                parent: if no_parent {
                    Some(String::new())
                } else {
                    parent
                },
                progress,
                ..Default::default()
            };
            let (name, snap) = if is_block {
                let changed = match changed_blocks {
                    Some(f) => {
                        let text = std::fs::read_to_string(&f)
                            .with_context(|| format!("reading {}", f.display()))?;
                        Some(
                            ChangedRanges::parse(&text)
                                .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?,
                        )
                    }
                    None => None,
                };
                block::backup(repo, &path, options, changed).await?
            } else {
                fs::backup(repo, &path, options).await?
            };
            let s = &snap.summary;
            for skipped in &s.skipped {
                eprintln!("warning: skipped {skipped}");
            }
            println!(
                "snapshot {name} saved: {} files, {} dirs, {} ({} unchanged reused); new {} stored as {} in {:.2}s",
                s.files,
                s.dirs,
                human(s.bytes),
                s.reused,
                human(s.new_bytes),
                human(s.stored_bytes),
                s.duration_ms as f64 / 1000.0
            );
        }
        RepoCommand::Restore {
            snapshot,
            target,
            path,
            sync,
        } => {
            let (name, snap) = repo.find_snapshot(&snapshot, None).await?;
            let options = RestoreOptions {
                path,
                progress,
                sync,
            };
            let summary = match snap.kind {
                SnapshotKind::Filesystem => restore(repo, &snap, &target, options).await?,
                SnapshotKind::Block => restore_block(repo, &snap, &target, options).await?,
            };
            println!(
                "restored snapshot {name} to {}: {} files, {} dirs, {} symlinks, {}",
                target.display(),
                summary.files,
                summary.dirs,
                summary.symlinks,
                human(summary.bytes)
            );
            if summary.ownership_skipped > 0 {
                eprintln!(
                    "warning: ownership of {} entries not restored (needs root)",
                    summary.ownership_skipped
                );
            }
        }
        RepoCommand::Snapshots { json } => {
            let all = repo.snapshots().await?;
            if json {
                let list: Vec<_> = all
                    .iter()
                    .map(|(name, s)| serde_json::json!({"id": name, "snapshot": s}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!(
                    "{:<12}  {:<35}  {:<10}  {:>12}  source",
                    "id", "time", "kind", "size"
                );
                for (name, s) in &all {
                    println!(
                        "{:<12}  {:<35}  {:<10}  {:>12}  {}",
                        &name[..12],
                        s.time,
                        format!("{:?}", s.kind).to_lowercase(),
                        human(s.summary.bytes),
                        s.source
                    );
                }
            }
        }
        RepoCommand::Ls { snapshot } => {
            let (_, snap) = repo.find_snapshot(&snapshot, None).await?;
            if snap.kind == SnapshotKind::Block {
                let map = repo.load_block_map(&snap.tree).await?;
                let stored = map.chunks.iter().filter(|c| c.is_some()).count();
                println!(
                    "block volume {}: {} bytes in {} chunks of {} ({} holes)",
                    snap.source,
                    map.size,
                    map.chunks.len(),
                    map.chunk_size,
                    map.chunks.len() - stored
                );
            } else {
                let mut stack = vec![(String::new(), snap.tree)];
                while let Some((dir, id)) = stack.pop() {
                    let tree = repo.load_tree(&id).await?;
                    let mut subdirs = Vec::new();
                    for n in tree.nodes {
                        let path = format!("{dir}/{}", n.name);
                        let (kind, extra) = match n.kind {
                            NodeKind::Dir => ('d', String::new()),
                            NodeKind::File => ('-', String::new()),
                            NodeKind::Symlink => {
                                ('l', format!(" -> {}", n.target.clone().unwrap_or_default()))
                            }
                        };
                        println!(
                            "{kind}{:04o} {:>6} {:>6} {:>12}  {path}{extra}",
                            n.mode, n.uid, n.gid, n.size
                        );
                        if let Some(sub) = n.subtree {
                            subdirs.push((path, sub));
                        }
                    }
                    stack.extend(subdirs.into_iter().rev());
                }
            }
        }
        RepoCommand::Check { read_data } => {
            let report = check(
                repo,
                CheckOptions {
                    read_data,
                    progress,
                },
            )
            .await?;
            for w in &report.warnings {
                println!("warning: {w}");
            }
            for e in &report.errors {
                println!("error: {e}");
            }
            println!(
                "checked {} snapshots, {} trees, {} packs, {} blobs{}: {}",
                report.snapshots,
                report.trees,
                report.packs,
                report.blobs,
                if read_data {
                    format!(", read {}", human(report.bytes_read))
                } else {
                    String::new()
                },
                match (report.is_ok(), read_data) {
                    (true, true) => "no errors".to_string(),
                    (true, false) => {
                        "no errors in the structure (no pack data was read; --read-data reads and verifies every pack)".to_string()
                    }
                    (false, _) => format!("{} errors", report.errors.len()),
                }
            );
            if !report.is_ok() {
                return Ok(ExitCode::FAILURE);
            }
        }
        RepoCommand::Forget { snapshots } => {
            let mut names = Vec::new();
            for q in &snapshots {
                names.push(repo.find_snapshot(q, None).await?.0);
            }
            repo.forget(&names).await?;
            for n in names {
                println!("forgot snapshot {n}");
            }
        }
        RepoCommand::Prune { dry_run } => {
            let r = prune(
                repo,
                PruneOptions {
                    dry_run,
                    progress,
                    ..Default::default()
                },
            )
            .await?;
            println!(
                "{}{} packs kept, {} deleted, {} repacked, {} unindexed and {} partial uploads removed; {} blobs removed, {} freed",
                if dry_run { "would prune: " } else { "" },
                r.packs_kept,
                r.packs_deleted,
                r.packs_repacked,
                r.packs_unindexed,
                r.partial_uploads,
                r.blobs_removed,
                human(r.bytes_freed)
            );
        }
        RepoCommand::Repair {
            what: RepairCommand::Index,
        } => {
            let r = repair_index(
                repo,
                RepairOptions {
                    progress,
                    ..Default::default()
                },
            )
            .await?;
            for problem in &r.unreadable {
                println!("left out: {problem}");
            }
            println!(
                "index rebuilt from {} packs ({} blobs), replacing {} index files{}",
                r.packs,
                r.blobs,
                r.replaced,
                if r.unreadable.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; {} unreadable packs left out (prune removes them)",
                        r.unreadable.len()
                    )
                }
            );
        }
        RepoCommand::Stats { json } => {
            let s = stats(&repo).await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "snapshots": s.snapshots,
                        "logicalBytes": s.logical_bytes,
                        "uniqueBytes": s.unique_bytes,
                        "storedBytes": s.stored_bytes,
                        "blobs": s.blobs,
                        "packs": s.packs,
                        "dedupRatio": s.dedup_ratio,
                        "compressionRatio": s.compression_ratio,
                    })
                );
            } else {
                println!("snapshots:         {}", s.snapshots);
                println!("logical size:      {}", human(s.logical_bytes));
                println!("unique data:       {}", human(s.unique_bytes));
                println!(
                    "stored:            {} in {} packs",
                    human(s.stored_bytes),
                    s.packs
                );
                println!("blobs:             {}", s.blobs);
                println!("dedup ratio:       {:.2}", s.dedup_ratio);
                println!("compression ratio: {:.2}", s.compression_ratio);
            }
        }
        RepoCommand::Export { snapshot, output } => {
            let (_, snap) = repo.find_snapshot(&snapshot, None).await?;
            let to_stdout = output.as_os_str() == "-";
            if snap.kind == SnapshotKind::Block && !to_stdout {
                restore_block(
                    repo,
                    &snap,
                    &output,
                    RestoreOptions {
                        path: None,
                        progress,
                        sync: false,
                    },
                )
                .await?;
            } else {
                tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                    let out: Box<dyn std::io::Write> = if to_stdout {
                        Box::new(std::io::BufWriter::new(std::io::stdout().lock()))
                    } else {
                        Box::new(std::io::BufWriter::new(
                            std::fs::File::create(&output)
                                .with_context(|| format!("creating {}", output.display()))?,
                        ))
                    };
                    let mut out = match snap.kind {
                        SnapshotKind::Filesystem => {
                            ferry_repository::export::tar(&repo, &snap, out)?
                        }
                        SnapshotKind::Block => ferry_repository::export::raw(&repo, &snap, out)?,
                    };
                    out.flush()?;
                    Ok(())
                })
                .await??;
            }
        }
        RepoCommand::Unlock { all } => {
            let n = ferry_repository::lock::remove_stale(repo.backend(), all).await?;
            println!("removed {n} lock(s)");
        }
    }
    Ok(ExitCode::SUCCESS)
}
