//! Reading many blobs and trees at once, for object stores where every request costs a round
//! trip: nearby blobs of a pack in one ranged read, several reads in flight, and a snapshot's
//! trees breadth first.

use crate::blob::{BlobId, BlobKind};
use crate::repo::{RepoError, Repository};
use crate::tree::{NodeKind, Tree};
use bytes::Bytes;
use futures::StreamExt;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// A blob's place in its pack: (id, offset, sealed length).
type Located = (BlobId, u64, u32);
/// Nearby blobs of one pack, read with one request: (pack, start, end, blobs).
type Run = (String, u64, u64, Vec<Located>);
/// A blob as read: its plaintext, or why it could not be read.
type Opened = (BlobId, Result<Vec<u8>, RepoError>);
/// A tree reached by a walk: the label it was first reached by, and the tree or why not.
pub type LoadedTree = (String, BlobId, Result<Tree, RepoError>);

/// Reads of trees in flight at once.
const TREE_LOADS: usize = 16;
/// Bytes of tree packs a walk keeps, read whole (a pack is at most 16 MiB).
const TREE_PACK_BUDGET: u64 = 64 * 1024 * 1024;

impl Repository {
    /// Reads many blobs, verifying each: grouped by pack, nearby ones (gaps under 256 KiB, runs
    /// under 8 MiB) in one ranged read, `parallel` reads at a time.
    pub async fn read_blobs(
        &self,
        kind: BlobKind,
        ids: &[BlobId],
        parallel: usize,
    ) -> HashMap<BlobId, Result<Vec<u8>, RepoError>> {
        const GAP: u64 = 256 * 1024;
        const RUN: u64 = 8 * 1024 * 1024;
        let index = self.index();
        let mut out = HashMap::new();
        let mut by_pack: BTreeMap<u32, Vec<Located>> = BTreeMap::new();
        for id in ids {
            match index.get(id) {
                Some(loc) => by_pack
                    .entry(loc.pack)
                    .or_default()
                    .push((*id, loc.offset, loc.length)),
                None => {
                    out.insert(
                        *id,
                        Err(RepoError::MissingBlob {
                            id: *id,
                            context: format!("{kind:?}").to_lowercase(),
                        }),
                    );
                }
            }
        }
        // Runs of nearby blobs: (pack, start, end, blobs).
        let mut runs: Vec<Run> = Vec::new();
        for (pack, mut blobs) in by_pack {
            blobs.sort_by_key(|b| b.1);
            let pack_id = index.pack_id(pack).to_string();
            for b in blobs {
                let end = b.1 + b.2 as u64;
                match runs.last_mut() {
                    Some((p, start, run_end, members))
                        if *p == pack_id && b.1 <= *run_end + GAP && end - *start <= RUN =>
                    {
                        *run_end = (*run_end).max(end);
                        members.push(b);
                    }
                    _ => runs.push((pack_id.clone(), b.1, end, vec![b])),
                }
            }
        }
        let fetched: Vec<Vec<Opened>> = futures::stream::iter(runs)
            .map(|(pack, start, end, members)| async move {
                match self
                    .backend()
                    .get_range(&format!("data/{pack}"), start..end)
                    .await
                {
                    Ok(bytes) => members
                        .into_iter()
                        .map(|blob| (blob.0, self.open_located(kind, &pack, start, &bytes, blob)))
                        .collect(),
                    Err(e) => {
                        let message = e.to_string();
                        members
                            .into_iter()
                            .map(|(id, _, _)| {
                                (
                                    id,
                                    Err(RepoError::Invalid(format!(
                                        "blob {id} in pack {pack}: {message}"
                                    ))),
                                )
                            })
                            .collect()
                    }
                }
            })
            .buffer_unordered(parallel.max(1))
            .collect()
            .await;
        out.extend(fetched.into_iter().flatten());
        out
    }

    /// Opens the blob `located` from `bytes`, the part of `pack` that begins at `start`.
    fn open_located(
        &self,
        kind: BlobKind,
        pack: &str,
        start: u64,
        bytes: &[u8],
        (id, offset, length): Located,
    ) -> Result<Vec<u8>, RepoError> {
        let at = (offset - start) as usize;
        let Some(sealed) = bytes.get(at..at + length as usize) else {
            return Err(RepoError::Invalid(format!(
                "blob {id} in pack {pack}: the pack ends before the blob (truncated)"
            )));
        };
        self.codec()
            .open(kind, &id, sealed)
            .map_err(|source| RepoError::Blob {
                id,
                pack: pack.to_string(),
                source,
            })
    }

    /// Reads trees: from tree packs read whole — and kept for the rest of the walk — while they
    /// fit in `budget`, the rest by ranged reads. Trees are packed apart from data, so a tree
    /// pack holds nothing else, and reading it whole takes one request where a breadth-first
    /// walk takes one per level (over an object store, a round trip each).
    async fn read_trees(
        &self,
        ids: &[BlobId],
        packs: &mut HashMap<u32, Bytes>,
        budget: &mut u64,
    ) -> HashMap<BlobId, Result<Vec<u8>, RepoError>> {
        let index = self.index();
        let wanted: BTreeSet<u32> = ids
            .iter()
            .filter_map(|id| index.get(id))
            .map(|loc| loc.pack)
            .filter(|pack| !packs.contains_key(pack))
            .collect();
        let mut whole = Vec::new();
        for pack in wanted {
            let size = index.pack_size(pack);
            if size <= *budget {
                *budget -= size;
                whole.push((pack, format!("data/{}", index.pack_id(pack)), size));
            }
        }
        let fetched: Vec<(u32, Option<Bytes>)> = futures::stream::iter(whole)
            .map(|(pack, key, size)| async move {
                // A pack that cannot be read whole, or not at the size the index gives, is left
                // to the ranged reads, which say what is wrong with each of its blobs.
                let bytes = self.backend().get(&key).await.ok();
                (pack, bytes.filter(|b| b.len() as u64 == size))
            })
            .buffer_unordered(TREE_LOADS)
            .collect()
            .await;
        packs.extend(fetched.into_iter().filter_map(|(p, b)| Some((p, b?))));
        let mut out = HashMap::new();
        let mut ranged = Vec::new();
        for id in ids {
            let cached = index
                .get(id)
                .and_then(|loc| Some((loc, packs.get(&loc.pack)?)));
            match cached {
                Some((loc, bytes)) => {
                    let pack = index.pack_id(loc.pack);
                    let located = (*id, loc.offset, loc.length);
                    out.insert(
                        *id,
                        self.open_located(BlobKind::Tree, pack, 0, bytes, located),
                    );
                }
                None => ranged.push(*id),
            }
        }
        if !ranged.is_empty() {
            out.extend(self.read_blobs(BlobKind::Tree, &ranged, TREE_LOADS).await);
        }
        out
    }

    /// Every tree under `roots` (each with a label, such as its path), breadth first and
    /// `TREE_LOADS` at a time, each tree once whatever the number of paths to it. Over an
    /// object store every tree is a request: walking them one at a time made an unchanged
    /// re-backup of 29,000 files take minutes on S3. Returns, per tree reached, the label it was
    /// first reached by and the tree or why it could not be read.
    pub async fn load_trees(&self, roots: Vec<(String, BlobId)>) -> Vec<LoadedTree> {
        let mut packs = HashMap::new();
        let mut budget = TREE_PACK_BUDGET;
        let mut seen: HashSet<BlobId> = HashSet::new();
        let mut frontier: Vec<(String, BlobId)> = roots
            .into_iter()
            .filter(|(_, id)| seen.insert(*id))
            .collect();
        let mut out = Vec::new();
        while !frontier.is_empty() {
            let level = std::mem::take(&mut frontier);
            let ids: Vec<BlobId> = level.iter().map(|(_, id)| *id).collect();
            let mut bytes = self.read_trees(&ids, &mut packs, &mut budget).await;
            let loaded: Vec<LoadedTree> = level
                .into_iter()
                .map(|(label, id)| {
                    let tree = bytes
                        .remove(&id)
                        .unwrap_or_else(|| {
                            Err(RepoError::MissingBlob {
                                id,
                                context: "tree".into(),
                            })
                        })
                        .and_then(|b| {
                            serde_json::from_slice(&b).map_err(|e| RepoError::Tree {
                                id,
                                message: format!("not a valid directory tree: {e}"),
                            })
                        });
                    (label, id, tree)
                })
                .collect();
            for (label, _, tree) in &loaded {
                for node in tree.iter().flat_map(|t| &t.nodes) {
                    if let (NodeKind::Dir, Some(sub)) = (node.kind, node.subtree) {
                        if seen.insert(sub) {
                            frontier.push((format!("{label}{}/", node.name), sub));
                        }
                    }
                }
            }
            out.extend(loaded);
        }
        out
    }
}
