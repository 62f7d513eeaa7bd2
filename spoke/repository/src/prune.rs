//! `prune` (mark and sweep) and `stats`.
//!
//! Prune holds the exclusive lock, so no backup is writing while it decides what is unused (a
//! backup's uploaded-but-unindexed packs would otherwise look like garbage). It marks every blob
//! the snapshots reach, then plans: packs with nothing used are deleted, packs mostly unused are
//! repacked (their live blobs written to new packs), the rest stay. It executes in the order that
//! keeps every snapshot readable at every moment: new packs, then a new index superseding all
//! old index files, then deletions. If a tree cannot be read, nothing is deleted.

use crate::backup::blocking;
use crate::blob::BlobKind;
use crate::check::referenced;
use crate::index::{IndexFile, IndexPack};
use crate::lock::{Lock, LockOptions};
use crate::meta::FORMAT_VERSION;
use crate::progress::ProgressFn;
use crate::repo::{RepoError, Repository};
use crate::saver::Saver;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

#[derive(Clone)]
pub struct PruneOptions {
    /// Plan and report, change nothing.
    pub dry_run: bool,
    /// Repack a pack when more than this fraction of its bytes is unused.
    pub repack_threshold: f64,
    pub lock: LockOptions,
    pub progress: Option<ProgressFn>,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            dry_run: false,
            repack_threshold: 0.25,
            lock: LockOptions::default(),
            progress: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub packs_kept: u64,
    pub packs_deleted: u64,
    pub packs_repacked: u64,
    /// Packs no index named (interrupted backups).
    pub packs_unindexed: u64,
    /// Partial uploads of interrupted backups (local repositories), removed.
    pub partial_uploads: u64,
    pub blobs_removed: u64,
    pub bytes_freed: u64,
}

pub async fn prune(repo: Arc<Repository>, options: PruneOptions) -> Result<PruneReport, RepoError> {
    let lock = Lock::exclusive(repo.backend(), "prune", options.lock).await?;
    let result = run(&repo, &options).await;
    lock.release().await?;
    result
}

async fn run(repo: &Arc<Repository>, options: &PruneOptions) -> Result<PruneReport, RepoError> {
    repo.reload_index().await?;
    // Packs named only by a damaged index file would look unused and be deleted.
    let damaged = repo.damaged_index_files();
    if let Some(first) = damaged.first() {
        return Err(RepoError::Invalid(format!(
            "prune stopped, nothing deleted: {} index file(s) cannot be read (run `repair index` first), first: {first}",
            damaged.len()
        )));
    }
    let snapshots = repo.snapshots().await?;
    let used = referenced(repo, &snapshots).await;
    if !used.errors.is_empty() {
        return Err(RepoError::Invalid(format!(
            "prune stopped, nothing deleted: {} problem(s) reading snapshots, first: {}",
            used.errors.len(),
            used.errors[0]
        )));
    }
    let index = repo.index();
    let mut report = PruneReport::default();
    let partial = repo.backend().partial_uploads_everywhere();
    report.partial_uploads = partial.len() as u64;
    if !options.dry_run {
        for key in &partial {
            repo.backend().remove_partial_upload(key)?;
        }
    }
    // Per pack: used bytes, and which blobs the index serves from it (a duplicate elsewhere is
    // unused here).
    let mut live: HashMap<u32, Vec<(crate::blob::BlobId, BlobKind)>> = HashMap::new();
    let mut used_bytes: HashMap<u32, u64> = HashMap::new();
    for (id, loc) in index.blobs() {
        if used.blobs.contains(id) {
            live.entry(loc.pack).or_default().push((*id, loc.kind));
            *used_bytes.entry(loc.pack).or_default() += loc.length as u64;
        } else {
            report.blobs_removed += 1;
        }
    }
    let mut keep = Vec::new();
    let mut delete = Vec::new();
    let mut repack = Vec::new();
    for (number, id, size) in index.packs() {
        let used = used_bytes.get(&number).copied().unwrap_or(0);
        if used == 0 {
            delete.push(id.to_string());
            report.bytes_freed += size;
        } else if (size - used.min(size)) as f64 > options.repack_threshold * size as f64 {
            repack.push(number);
            report.bytes_freed += size - used.min(size);
        } else {
            keep.push(number);
        }
    }
    let unindexed: Vec<String> = repo
        .backend()
        .list("data")
        .await?
        .into_iter()
        .filter(|l| !index.has_pack(l.key.trim_start_matches("data/")))
        .map(|l| {
            report.bytes_freed += l.size;
            l.key.trim_start_matches("data/").to_string()
        })
        .collect();
    report.packs_kept = keep.len() as u64;
    report.packs_deleted = delete.len() as u64;
    report.packs_repacked = repack.len() as u64;
    report.packs_unindexed = unindexed.len() as u64;
    if options.dry_run {
        return Ok(report);
    }
    // Repack: live blobs of the chosen packs into new packs.
    let mut packs: Vec<IndexPack> = Vec::new();
    if !repack.is_empty() {
        let saver = Arc::new(Saver::for_repack(repo.clone()));
        for number in &repack {
            for (id, kind) in live.remove(number).unwrap_or_default() {
                let plain = repo.read_blob(kind, &id).await?;
                let saver = saver.clone();
                blocking(move || saver.save(kind, &plain).map(|_| ())).await?;
            }
        }
        let finishing = saver.clone();
        blocking(move || finishing.finish()).await?;
        packs = saver.written();
    }
    // One index for everything kept, superseding every older index file (including those the
    // repack just wrote, which the new one repeats).
    let kept: HashSet<u32> = keep.iter().copied().collect();
    let mut kept_packs: HashMap<u32, IndexPack> = HashMap::new();
    for (id, loc) in index.blobs() {
        if !kept.contains(&loc.pack) || !used.blobs.contains(id) {
            continue;
        }
        kept_packs
            .entry(loc.pack)
            .or_insert_with(|| IndexPack {
                id: index.pack_id(loc.pack).to_string(),
                size: index.pack_size(loc.pack),
                blobs: Vec::new(),
            })
            .blobs
            .push(crate::index::IndexBlob {
                id: *id,
                kind: loc.kind,
                offset: loc.offset,
                length: loc.length,
                raw_length: loc.raw_length,
            });
    }
    packs.extend(kept_packs.into_values());
    packs.sort_by(|a, b| a.id.cmp(&b.id));
    for p in &mut packs {
        p.blobs.sort_by_key(|b| b.offset);
    }
    let now = repo.index();
    let gone: Vec<&str> = delete
        .iter()
        .map(String::as_str)
        .chain(repack.iter().map(|n| index.pack_id(*n)))
        .collect();
    let superseded: Vec<String> = now.files.clone();
    let name = write_index(repo, packs, superseded.clone()).await?;
    for old in &superseded {
        repo.backend().delete(&format!("index/{old}")).await?;
    }
    for id in gone
        .iter()
        .copied()
        .chain(unindexed.iter().map(String::as_str))
    {
        repo.backend().delete(&format!("data/{id}")).await?;
    }
    repo.reload_index().await?;
    tracing::info!(index = %name, ?report, "pruned");
    Ok(report)
}

/// Blobs per index file, so that no file grows with the repository (about 20 MB of JSON).
const BLOBS_PER_INDEX: usize = 100_000;

/// Groups packs into index files of at most `limit` blobs (a pack larger than that alone).
fn split(packs: Vec<IndexPack>, limit: usize) -> Vec<Vec<IndexPack>> {
    let mut parts: Vec<Vec<IndexPack>> = vec![Vec::new()];
    let mut blobs = 0;
    for pack in packs {
        let current = parts.last_mut().expect("never empty");
        if blobs + pack.blobs.len() > limit && !current.is_empty() {
            parts.push(Vec::new());
            blobs = 0;
        }
        blobs += pack.blobs.len();
        parts.last_mut().expect("never empty").push(pack);
    }
    parts
}

/// Writes the new index in parts; only the last names the files it supersedes, so until it lands
/// the old files still count (duplicates are harmless, gaps would not be). Returns its name.
pub(crate) async fn write_index(
    repo: &Repository,
    packs: Vec<IndexPack>,
    supersedes: Vec<String>,
) -> Result<String, RepoError> {
    let mut parts = split(packs, BLOBS_PER_INDEX);
    let last = parts.pop().unwrap_or_default();
    for packs in parts {
        let file = IndexFile {
            version: FORMAT_VERSION,
            supersedes: Vec::new(),
            packs,
        };
        repo.save_meta("index", &file).await?;
    }
    let file = IndexFile {
        version: FORMAT_VERSION,
        supersedes,
        packs: last,
    };
    repo.save_meta("index", &file).await
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub snapshots: u64,
    /// Sum of the snapshots' sizes: what restoring every one of them would write.
    pub logical_bytes: u64,
    /// Plaintext bytes of distinct blobs.
    pub unique_bytes: u64,
    /// Bytes of the packs.
    pub stored_bytes: u64,
    pub blobs: u64,
    pub packs: u64,
    /// logical / unique: what deduplication saves.
    pub dedup_ratio: f64,
    /// unique / stored: what compression saves (encryption adds a little back).
    pub compression_ratio: f64,
}

pub async fn stats(repo: &Repository) -> Result<Stats, RepoError> {
    let snapshots = repo.snapshots().await?;
    let index = repo.index();
    let logical: u64 = snapshots.iter().map(|(_, s)| s.summary.bytes).sum();
    let unique: u64 = index.blobs().map(|(_, l)| l.raw_length as u64).sum();
    let stored: u64 = index.packs().map(|(_, _, s)| s).sum();
    Ok(Stats {
        snapshots: snapshots.len() as u64,
        logical_bytes: logical,
        unique_bytes: unique,
        stored_bytes: stored,
        blobs: index.blob_count() as u64,
        packs: index.packs().count() as u64,
        dedup_ratio: if unique == 0 {
            1.0
        } else {
            logical as f64 / unique as f64
        },
        compression_ratio: if stored == 0 {
            1.0
        } else {
            unique as f64 / stored as f64
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_parts_stay_under_the_limit() {
        let pack = |n: usize| IndexPack {
            id: format!("p{n}"),
            size: 1,
            blobs: (0..n)
                .map(|i| crate::index::IndexBlob {
                    id: crate::blob::BlobId([i as u8; 32]),
                    kind: BlobKind::Data,
                    offset: 0,
                    length: 1,
                    raw_length: 1,
                })
                .collect(),
        };
        let sizes = |parts: &[Vec<IndexPack>]| -> Vec<Vec<usize>> {
            parts
                .iter()
                .map(|p| p.iter().map(|x| x.blobs.len()).collect())
                .collect()
        };
        let parts = split(vec![pack(3), pack(4), pack(2), pack(9), pack(1)], 6);
        assert_eq!(sizes(&parts), vec![vec![3], vec![4, 2], vec![9], vec![1]]);
        assert_eq!(sizes(&split(Vec::new(), 6)), vec![Vec::<usize>::new()]);
    }
}
