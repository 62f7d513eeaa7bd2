//! `check`: is every snapshot restorable? Structure always (index against packs, every tree of
//! every snapshot, every blob they name); with `read_data`, every byte of every pack too.
//!
//! Problems are collected, not thrown: one damaged pack should not hide the next. Each names the
//! object (pack, index file, snapshot, tree, path) it is about.

use crate::blob::{BlobId, BlobKind};
use crate::meta;
use crate::pack;
use crate::progress::{Progress, ProgressFn};
use crate::repo::{fetch_all, RepoError, Repository};
use crate::tree::{NodeKind, Snapshot, SnapshotKind};
use futures::StreamExt;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Default)]
pub struct CheckOptions {
    /// Download and verify every pack, not just the structure.
    pub read_data: bool,
    pub progress: Option<ProgressFn>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    pub errors: Vec<String>,
    /// Harmless findings: packs no index names (an interrupted backup's; prune removes them).
    pub warnings: Vec<String>,
    pub snapshots: u64,
    pub trees: u64,
    pub packs: u64,
    pub blobs: u64,
    pub bytes_read: u64,
}

impl CheckReport {
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// The blobs snapshots reference (trees and data), and what could not be read on the way.
pub(crate) struct Referenced {
    pub blobs: HashSet<BlobId>,
    pub trees: u64,
    pub errors: Vec<String>,
}

/// Walks every tree (or block map) of `snapshots`, collecting the blobs they use.
pub(crate) async fn referenced(repo: &Repository, snapshots: &[(String, Snapshot)]) -> Referenced {
    let index = repo.index();
    let mut out = Referenced {
        blobs: HashSet::new(),
        trees: 0,
        errors: Vec::new(),
    };
    let missing = |out: &mut Referenced, snap: &str, what: String, id: &BlobId| {
        if !index.contains(id) {
            out.errors
                .push(format!("snapshot {snap}: {what}: blob {id} is missing"));
        }
    };
    let mut fs_roots = Vec::new();
    for (name, snap) in snapshots {
        let short = &name[..name.len().min(12)];
        match snap.kind {
            SnapshotKind::Block => {
                out.blobs.insert(snap.tree);
                missing(&mut out, short, "block map".into(), &snap.tree);
                match repo.load_block_map(&snap.tree).await {
                    Ok(map) => {
                        out.trees += 1;
                        for (i, id) in map.chunks.iter().enumerate() {
                            if let Some(id) = id {
                                if out.blobs.insert(*id) {
                                    missing(&mut out, short, format!("chunk {i}"), id);
                                }
                            }
                        }
                    }
                    Err(e) => out.errors.push(format!("snapshot {short}: {e}")),
                }
            }
            SnapshotKind::Filesystem => fs_roots.push((format!("snapshot {short}: /"), snap.tree)),
        }
    }
    // Every filesystem snapshot's trees in one parallel walk; a tree shared by snapshots (an
    // unchanged directory) is read once.
    for (label, id, tree) in repo.load_trees(fs_roots).await {
        out.blobs.insert(id);
        let tree = match tree {
            Ok(t) => t,
            Err(e) => {
                out.errors.push(format!("{label}: {e}"));
                continue;
            }
        };
        out.trees += 1;
        for node in tree.nodes {
            match node.kind {
                NodeKind::Dir if node.subtree.is_none() => out.errors.push(format!(
                    "{label}{}: directory without a subtree (tree {id})",
                    node.name
                )),
                NodeKind::File => {
                    for c in &node.content {
                        if out.blobs.insert(*c) && !index.contains(c) {
                            out.errors
                                .push(format!("{label}{}: blob {c} is missing", node.name));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    out
}

pub async fn check(repo: Arc<Repository>, options: CheckOptions) -> Result<CheckReport, RepoError> {
    let mut report = CheckReport::default();
    let backend = repo.backend();
    // Every index file was read (in parallel) when the repository was opened; each that did not
    // open was set aside, named, and is an error here.
    report.errors.extend(repo.damaged_index_files());
    let index = repo.index();
    // The packs are compared with the index while the snapshots and their trees are read: over
    // an object store each listing and each level of trees is a round trip or more.
    let packs = async {
        let stored: HashMap<String, u64> = backend
            .list("data")
            .await?
            .into_iter()
            .map(|l| (l.key.trim_start_matches("data/").to_string(), l.size))
            .collect();
        let mut found = CheckReport::default();
        for (_, id, size) in index.packs() {
            found.packs += 1;
            match stored.get(id) {
                None => found
                    .errors
                    .push(format!("pack {id}: in the index but not in the repository")),
                Some(s) if *s != size => found.errors.push(format!(
                    "pack {id}: {s} bytes stored, the index says {size}"
                )),
                Some(_) => {}
            }
        }
        for key in backend.partial_uploads_everywhere() {
            found.warnings.push(format!(
                "{key}: a partial upload, left by an interrupted write or being written by a running one (prune removes it)"
            ));
        }
        for id in stored.keys() {
            if !index.has_pack(id) {
                found.warnings.push(format!(
                    "pack {id}: not in any index (left by an interrupted backup; prune removes it)"
                ));
            }
        }
        Ok::<_, RepoError>(found)
    };
    let snapshots = async {
        // Several fetched at once; each that does not open is named, the rest checked.
        let fetched = fetch_all(backend, backend.list("snapshots").await?).await?;
        let mut found = CheckReport::default();
        let mut snapshots = Vec::new();
        for (key, bytes) in fetched {
            match meta::open::<Snapshot>(repo.codec(), &key, &bytes, true, "snapshot") {
                Ok(s) => snapshots.push((key.trim_start_matches("snapshots/").to_string(), s)),
                Err(e) => found.errors.push(e.to_string()),
            }
        }
        found.snapshots = snapshots.len() as u64;
        let walked = referenced(&repo, &snapshots).await;
        found.trees = walked.trees;
        found.errors.extend(walked.errors);
        Ok::<_, RepoError>(found)
    };
    let (packs, snapshots) = futures::join!(packs, snapshots);
    let (packs, snapshots) = (packs?, snapshots?);
    report.packs = packs.packs;
    report.errors.extend(packs.errors);
    report.warnings.extend(packs.warnings);
    report.blobs = index.blob_count() as u64;
    report.snapshots = snapshots.snapshots;
    report.trees = snapshots.trees;
    report.errors.extend(snapshots.errors);
    if options.read_data {
        read_all(&repo, &mut report, options.progress).await;
    }
    report.errors.sort();
    report.errors.dedup();
    Ok(report)
}

/// Downloads every indexed pack and opens every blob in it.
async fn read_all(repo: &Arc<Repository>, report: &mut CheckReport, progress: Option<ProgressFn>) {
    let index = repo.index();
    let mut expected: HashMap<u32, Vec<(BlobId, BlobKind, u64, u32)>> = HashMap::new();
    for (id, loc) in index.blobs() {
        expected
            .entry(loc.pack)
            .or_default()
            .push((*id, loc.kind, loc.offset, loc.length));
    }
    let total: u64 = index.packs().map(|(_, _, s)| s).sum();
    let counter = Progress::new("check");
    counter.set_total(total, index.packs().count() as u64);
    let reporter = counter.report(progress, Duration::from_millis(500));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let packs: Vec<(u32, String)> = index
        .packs()
        .map(|(n, id, _)| (n, id.to_string()))
        .collect();
    futures::stream::iter(packs)
        .map(|(number, id)| {
            let (repo, errors, counter) = (repo.clone(), errors.clone(), counter.clone());
            let wanted = expected.remove(&number).unwrap_or_default();
            async move {
                let bytes = match repo.backend().get(&format!("data/{id}")).await {
                    Ok(b) => b,
                    Err(e) => {
                        errors.lock().expect("errors").push(e.to_string());
                        return;
                    }
                };
                counter.add(bytes.len() as u64, 1);
                let found =
                    tokio::task::spawn_blocking(move || verify_pack(&repo, &id, &bytes, &wanted))
                        .await
                        .unwrap_or_else(|e| vec![format!("verifier failed: {e}")]);
                errors.lock().expect("errors").extend(found);
            }
        })
        .buffer_unordered(4)
        .collect::<Vec<()>>()
        .await;
    reporter.finish();
    report.bytes_read = counter.event(true).bytes_done;
    report
        .errors
        .extend(std::mem::take(&mut *errors.lock().expect("errors")));
}

fn verify_pack(
    repo: &Repository,
    id: &str,
    bytes: &[u8],
    wanted: &[(BlobId, BlobKind, u64, u32)],
) -> Vec<String> {
    let mut errors = Vec::new();
    let entries = match pack::read_header(repo.codec(), id, bytes) {
        Ok(e) => e,
        Err(e) => return vec![e.to_string()],
    };
    let by_id: HashMap<BlobId, &pack::PackEntry> = entries.iter().map(|e| (e.id, e)).collect();
    for (blob, kind, offset, length) in wanted {
        match by_id.get(blob) {
            Some(e) if e.kind == *kind && e.offset == *offset && e.length == *length => {}
            _ => errors.push(format!(
                "pack {id}: blob {blob}: the pack's header and the index disagree"
            )),
        }
    }
    for e in &entries {
        if let Err(err) = pack::read_blob(repo.codec(), id, bytes, e) {
            errors.push(err.to_string());
        }
    }
    errors
}
