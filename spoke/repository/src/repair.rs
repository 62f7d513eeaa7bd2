//! `repair index`: the index rebuilt from the packs themselves. Every pack carries an
//! encrypted table of its blobs (`docs/format.md`), so the index is derived data: when index
//! files are damaged or lost, reading every pack's header recovers it.
//!
//! Under the exclusive lock: every pack is downloaded and its header read (a pack that does not
//! verify is reported and left out), a new index superseding every old file is written, and only
//! then are the old files deleted.

use crate::index::IndexPack;
use crate::lock::{Lock, LockOptions};
use crate::pack;
use crate::progress::{Progress, ProgressFn};
use crate::repo::{RepoError, Repository};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Default)]
pub struct RepairOptions {
    pub lock: LockOptions,
    pub progress: Option<ProgressFn>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// Packs indexed from their headers.
    pub packs: u64,
    pub blobs: u64,
    /// Packs left out (they cannot be read; `prune` removes them) and blobs that did not
    /// verify (left out of the index so the next backup stores them again), each with why.
    pub unreadable: Vec<String>,
    /// Index files replaced by the new index.
    pub replaced: u64,
}

pub async fn repair_index(
    repo: Arc<Repository>,
    options: RepairOptions,
) -> Result<RepairReport, RepoError> {
    let lock = Lock::exclusive(repo.backend(), "repair-index", options.lock).await?;
    let result = run(&repo, options.progress).await;
    lock.release().await?;
    result
}

async fn run(
    repo: &Arc<Repository>,
    progress: Option<ProgressFn>,
) -> Result<RepairReport, RepoError> {
    let old_files: Vec<String> = repo
        .backend()
        .list("index")
        .await?
        .into_iter()
        .map(|l| l.key.trim_start_matches("index/").to_string())
        .collect();
    let listed = repo.backend().list("data").await?;
    let counter = Progress::new("repair");
    counter.set_total(listed.iter().map(|l| l.size).sum(), listed.len() as u64);
    let reporter = counter.report(progress, Duration::from_millis(500));
    let results: Vec<Result<(IndexPack, Vec<String>), String>> = futures::stream::iter(listed)
        .map(|l| {
            let (repo, counter) = (repo.clone(), counter.clone());
            async move {
                let id = l.key.trim_start_matches("data/").to_string();
                let bytes = repo
                    .backend()
                    .get(&l.key)
                    .await
                    .map_err(|e| format!("pack {id}: {e}"))?;
                counter.add(bytes.len() as u64, 1);
                let size = bytes.len() as u64;
                let codec = repo.codec().clone();
                // Every blob is opened: one that does not verify is left out of the index (and
                // reported), so the next backup stores it again instead of trusting it.
                let (id, entries, damaged) = tokio::task::spawn_blocking(move || {
                    let listed = pack::read_header(&codec, &id, &bytes)?;
                    let (mut good, mut damaged) = (Vec::new(), Vec::new());
                    for e in listed {
                        match pack::read_blob(&codec, &id, &bytes, &e) {
                            Ok(_) => good.push(e),
                            Err(err) => damaged.push(err.to_string()),
                        }
                    }
                    Ok::<_, pack::PackError>((id, good, damaged))
                })
                .await
                .map_err(|e| format!("reading a pack: {e}"))?
                .map_err(|e| e.to_string())?;
                Ok((IndexPack::new(id, size, &entries), damaged))
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    reporter.finish();
    let mut report = RepairReport::default();
    let mut packs = Vec::new();
    for r in results {
        match r {
            Ok((p, damaged)) => {
                report.packs += 1;
                report.blobs += p.blobs.len() as u64;
                report.unreadable.extend(damaged);
                packs.push(p);
            }
            Err(e) => report.unreadable.push(e),
        }
    }
    report.unreadable.sort();
    packs.sort_by(|a, b| a.id.cmp(&b.id));
    crate::prune::write_index(repo, packs, old_files.clone()).await?;
    for name in &old_files {
        repo.backend().delete(&format!("index/{name}")).await?;
    }
    report.replaced = old_files.len() as u64;
    repo.reload_index().await?;
    Ok(report)
}
