//! Restores: a snapshot (or a part of it) into a directory, or a block snapshot into an image
//! file or a block device.
//!
//! Plan, then execute: the trees are read first into a list of what goes where; then packs are
//! fetched in parallel (neighbouring blobs in one range read), every blob is verified as it is
//! opened, and each is written to every place that needs it. Chunks of zeroes are not written,
//! so files and images come back sparse; a file of several blobs none of which can be zeroes
//! is allocated whole when it is created (less kernel work per write). Files are created with
//! their mode; a file of one blob gets its modification time from the writer that fills it;
//! what else is missing is applied last, directories deepest first, so writing into them does
//! not disturb their times. A restore asked to `sync` starts each written range's writeback as
//! it goes and syncs the target's filesystem before it returns.

mod write;

use crate::blob::{BlobId, BlobKind};
use crate::progress::{Progress, ProgressFn};
use crate::repo::{RepoError, Repository};
use crate::tree::{file_kind, Node, NodeKind, Snapshot, SnapshotKind};
use rayon::prelude::*;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use write::{apply_metadata, clear_path, create_file, create_sized, Pending, Target};
pub(crate) use write::{execute, WritePlan};

#[derive(Clone, Default)]
pub struct RestoreOptions {
    /// Restore only this path of the snapshot (a file or a directory, `/`-separated).
    pub path: Option<String>,
    pub progress: Option<ProgressFn>,
    /// Return only once what was restored is on disk, names included (the target's whole
    /// filesystem is synced). Off, a restore returns as `cp`, `tar` and restic do, with
    /// writeback still under way; a mover restoring a volume for a workload turns it on.
    pub sync: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreSummary {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub bytes: u64,
    /// Ownership that could not be applied (not running as root), counted, not fatal.
    pub ownership_skipped: u64,
}

/// Finds the node at `path` below a snapshot's root tree.
async fn resolve(repo: &Repository, root: &BlobId, path: &str) -> Result<Option<Node>, RepoError> {
    let mut tree = repo.load_tree(root).await?;
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        let node = tree
            .nodes
            .iter()
            .find(|n| n.os_name().ok().as_deref() == Some(std::ffi::OsStr::new(part)))
            .cloned()
            .ok_or_else(|| RepoError::Invalid(format!("{path}: not in the snapshot")))?;
        if i + 1 == parts.len() {
            return Ok(Some(node));
        }
        match node.subtree {
            Some(id) if node.kind == NodeKind::Dir => tree = repo.load_tree(&id).await?,
            _ => {
                return Err(RepoError::Invalid(format!(
                    "{path}: {part} is not a directory"
                )))
            }
        }
    }
    Ok(None)
}

struct Planned {
    dirs: Vec<(PathBuf, Node)>,
    files: Vec<(PathBuf, Node)>,
    symlinks: Vec<(PathBuf, Node)>,
    hardlinks: Vec<(PathBuf, PathBuf)>,
}

/// Reads the trees under `root` into a plan for `target`; trees load in parallel, level by level.
async fn plan_tree(repo: &Repository, root: BlobId, target: &Path) -> Result<Planned, RepoError> {
    let mut planned = Planned {
        dirs: Vec::new(),
        files: Vec::new(),
        symlinks: Vec::new(),
        hardlinks: Vec::new(),
    };
    let mut inodes: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut level = vec![(target.to_path_buf(), root)];
    while !level.is_empty() {
        // One level's trees at once, nearby ones in one read (trees share packs).
        // Identical directories share a tree: each is read and parsed once.
        let ids: Vec<BlobId> = level.iter().map(|(_, id)| *id).collect();
        let mut parsed: HashMap<BlobId, Result<crate::tree::Tree, RepoError>> = repo
            .read_blobs(BlobKind::Tree, &ids, 16)
            .await
            .into_iter()
            .map(|(id, bytes)| {
                let tree = bytes.and_then(|b| {
                    serde_json::from_slice(&b).map_err(|e| RepoError::Tree {
                        id,
                        message: format!("not a valid directory tree: {e}"),
                    })
                });
                (id, tree)
            })
            .collect();
        let mut trees = Vec::with_capacity(level.len());
        for (dir, id) in level.drain(..) {
            let tree = match parsed.get(&id) {
                Some(Ok(tree)) => tree.clone(),
                _ => {
                    return Err(parsed.remove(&id).and_then(Result::err).unwrap_or(
                        RepoError::MissingBlob {
                            id,
                            context: "tree".into(),
                        },
                    ))
                }
            };
            trees.push((dir, id, tree));
        }
        for (dir, id, tree) in trees {
            for node in tree.nodes {
                let name = node
                    .os_name()
                    .map_err(|message| RepoError::Tree { id, message })?;
                let path = dir.join(&name);
                match node.kind {
                    NodeKind::Dir => {
                        let sub = node.subtree.ok_or_else(|| RepoError::Tree {
                            id,
                            message: format!("directory {:?} has no subtree", node.name),
                        })?;
                        level.push((path.clone(), sub));
                        planned.dirs.push((path, node));
                    }
                    NodeKind::File => {
                        if node.links > 1 {
                            let key = (node.device, node.inode);
                            if let Some(first) = inodes.get(&key) {
                                planned.hardlinks.push((first.clone(), path));
                                continue;
                            }
                            inodes.insert(key, path.clone());
                        }
                        planned.files.push((path, node));
                    }
                    NodeKind::Symlink => planned.symlinks.push((path, node)),
                }
            }
        }
    }
    Ok(planned)
}

/// The target a restore writes: a link named as the target is followed, whatever it points at.
/// Volumes are often reached by links (a device at `/dev/disk/by-id/…`, a pod's `devicePath`, a
/// mount point linked into place); replacing the link with an image file, or giving the link
/// the snapshot root's owner and times, would leave the volume it names without them.
fn followed(target: &Path) -> Result<PathBuf, RepoError> {
    match std::fs::symlink_metadata(target) {
        Ok(m) if m.file_type().is_symlink() => {
            std::fs::canonicalize(target).map_err(|e| RepoError::io(target, e))
        }
        _ => Ok(target.to_path_buf()),
    }
}

/// Restores a filesystem snapshot into `target` (created if missing; existing files of the same
/// names are replaced).
pub async fn restore(
    repo: Arc<Repository>,
    snapshot: &Snapshot,
    target: &Path,
    options: RestoreOptions,
) -> Result<RestoreSummary, RepoError> {
    if snapshot.kind != SnapshotKind::Filesystem {
        return Err(RepoError::Invalid(
            "a block snapshot restores to an image file or a device (restore_block)".into(),
        ));
    }
    let target = &followed(target)?;
    // Into a new or empty directory, nothing is in the way of what is restored: no path needs
    // to be looked at before it is written.
    let fresh = std::fs::read_dir(target).map_or(true, |mut entries| entries.next().is_none());
    if let Some(m) = std::fs::metadata(target).ok().filter(|m| !m.is_dir()) {
        return Err(RepoError::Invalid(format!(
            "{}: is a {}; a filesystem snapshot restores into a directory",
            target.display(),
            file_kind(m.file_type())
        )));
    }
    std::fs::create_dir_all(target).map_err(|e| RepoError::io(target, e))?;
    // The target directory takes the metadata of what is restored into it: the snapshot's
    // root, or the directory a `path` selects.
    let mut target_node = snapshot.root.clone();
    let mut planned = match &options.path {
        Some(p) if !p.trim_matches('/').is_empty() => {
            match resolve(&repo, &snapshot.tree, p).await? {
                Some(node) if node.kind == NodeKind::Dir => {
                    let sub = node.subtree.ok_or_else(|| {
                        RepoError::Invalid(format!("{p}: directory without a subtree"))
                    })?;
                    target_node = Some(node.clone());
                    plan_tree(&repo, sub, target).await?
                }
                Some(node) => {
                    target_node = None;
                    let name = node.os_name().map_err(RepoError::Invalid)?;
                    let path = target.join(name);
                    let mut planned = Planned {
                        dirs: vec![],
                        files: vec![],
                        symlinks: vec![],
                        hardlinks: vec![],
                    };
                    if node.kind == NodeKind::File {
                        planned.files.push((path, node));
                    } else {
                        planned.symlinks.push((path, node));
                    }
                    planned
                }
                None => plan_tree(&repo, snapshot.tree, target).await?,
            }
        }
        _ => plan_tree(&repo, snapshot.tree, target).await?,
    };
    let mut summary = RestoreSummary::default();
    for (path, _) in &planned.dirs {
        std::fs::create_dir_all(path).map_err(|e| RepoError::io(path, e))?;
    }
    // The whole plan is checked against the index before the first file is touched.
    let index = repo.index();
    let mut plan = WritePlan::default();
    if options.sync {
        plan.start_writeback();
    }
    let files = planned
        .files
        .iter()
        .map(|(path, node)| Ok((path, node, plan.add_file_content(&index, path, node)?)))
        .collect::<Result<Vec<_>, RepoError>>()?;
    // Directories in parallel, each one's files by one thread: creating files in one
    // directory from several threads only contends for the filesystem's inode allocator.
    // (Creating files as their data arrives, in pack order from every thread, was slower.)
    let pending = files
        .par_chunk_by(|a, b| a.0.parent() == b.0.parent())
        .map(|files| {
            files
                .iter()
                .map(|(path, node, sizing)| {
                    if !fresh {
                        clear_path(path)?;
                    }
                    create_file(path, node, *sizing)
                })
                .collect::<Result<Vec<Pending>, RepoError>>()
        })
        .collect::<Result<Vec<Vec<Pending>>, RepoError>>()?
        .concat();
    let progress = Progress::new("restore");
    progress.set_total(plan.bytes, planned.files.len() as u64);
    let reporter = progress.report(options.progress.clone(), Duration::from_millis(500));
    execute(&repo, plan, &progress).await?;
    for (path, node) in planned.symlinks.drain(..) {
        let target = node
            .os_target()
            .map_err(|m| RepoError::Invalid(format!("{}: {m}", path.display())))?;
        let _ = std::fs::remove_file(&path);
        std::os::unix::fs::symlink(&target, &path).map_err(|e| RepoError::io(&path, e))?;
        summary.ownership_skipped += u64::from(!apply_metadata(&path, &node, Pending::SYMLINK)?);
        summary.symlinks += 1;
    }
    for (first, other) in &planned.hardlinks {
        let _ = std::fs::remove_file(other);
        std::fs::hard_link(first, other).map_err(|e| RepoError::io(other, e))?;
        summary.files += 1;
    }
    let owned = planned
        .files
        .par_iter()
        .zip(pending)
        .map(|((path, node), pending)| apply_metadata(path, node, pending))
        .collect::<Result<Vec<bool>, RepoError>>()?;
    summary.ownership_skipped += owned.iter().filter(|o| !**o).count() as u64;
    summary.files += planned.files.len() as u64;
    summary.bytes += planned.files.iter().map(|(_, n)| n.size).sum::<u64>();
    planned
        .dirs
        .sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    for (path, node) in &planned.dirs {
        summary.ownership_skipped += u64::from(!apply_metadata(path, node, Pending::ALL)?);
        summary.dirs += 1;
    }
    if let Some(node) = &target_node {
        summary.ownership_skipped += u64::from(!apply_metadata(target, node, Pending::ALL)?);
    }
    if options.sync {
        let started = std::time::Instant::now();
        crate::durable::sync_filesystem(target).map_err(|e| RepoError::io(target, e))?;
        tracing::debug!(target = %target.display(), elapsed = ?started.elapsed(), "restore synced");
    }
    reporter.finish();
    Ok(summary)
}

/// Restores a block snapshot into an image file (created sparse) or onto a block device (holes
/// written as zeroes, since a device keeps old data).
pub async fn restore_block(
    repo: Arc<Repository>,
    snapshot: &Snapshot,
    target: &Path,
    options: RestoreOptions,
) -> Result<RestoreSummary, RepoError> {
    if snapshot.kind != SnapshotKind::Block {
        return Err(RepoError::Invalid(
            "a filesystem snapshot restores to a directory".into(),
        ));
    }
    let map = repo.load_block_map(&snapshot.tree).await?;
    let target = &followed(target)?;
    let existing = match std::fs::metadata(target) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(RepoError::io(target, e)),
    };
    let device = existing
        .as_ref()
        .is_some_and(|m| m.file_type().is_block_device());
    if let Some(m) = existing.as_ref().filter(|m| !m.is_file() && !device) {
        // Anything else there is the user's: a directory is not replaced by an image.
        return Err(RepoError::Invalid(format!(
            "{}: is a {}; a block snapshot restores to an image file or a block device",
            target.display(),
            file_kind(m.file_type())
        )));
    }
    if device {
        let mut f = File::open(target).map_err(|e| RepoError::io(target, e))?;
        let size = std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0))
            .map_err(|e| RepoError::io(target, e))?;
        if size < map.size {
            return Err(RepoError::Invalid(format!(
                "{}: device of {size} bytes is smaller than the {}-byte volume",
                target.display(),
                map.size
            )));
        }
    } else {
        // An image that is there already is a volume, and keeps its size when larger than the
        // snapshot, as a device does (a claim restored into a larger one); its old bytes go.
        let volume = existing.map_or(0, |m| m.len());
        create_sized(target, map.size.max(volume))?;
    }
    let mut plan = WritePlan::for_image(target, map.size);
    let mut holes = Vec::new();
    for (i, chunk) in map.chunks.iter().enumerate() {
        let offset = i as u64 * map.chunk_size as u64;
        match chunk {
            Some(id) => plan.add_target(
                *id,
                Target {
                    file: 0,
                    offset,
                    whole: false,
                },
            ),
            None => holes.push(offset),
        }
    }
    let progress = Progress::new("restore");
    progress.set_total(map.size, 1);
    let reporter = progress.report(options.progress.clone(), Duration::from_millis(500));
    execute(&repo, plan, &progress).await?;
    let f = OpenOptions::new()
        .write(true)
        .open(target)
        .map_err(|e| RepoError::io(target, e))?;
    let zeros = vec![0u8; map.chunk_size as usize];
    for offset in holes {
        let len = (map.size - offset).min(map.chunk_size as u64) as usize;
        if device {
            crate::pieces::write_all_at(&f, &zeros[..len], offset)
                .map_err(|e| RepoError::io(target, e))?;
        }
        progress.add(len as u64, 0);
    }
    f.sync_all().map_err(|e| RepoError::io(target, e))?;
    if options.sync && !device {
        // The image's data is on disk; its name is in its directory.
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        // The error names the directory; the restore is named by its target.
        crate::durable::sync_dir(dir).map_err(|e| RepoError::io(target, e))?;
    }
    progress.add(0, 1);
    reporter.finish();
    Ok(RestoreSummary {
        files: 1,
        bytes: map.size,
        ..Default::default()
    })
}
