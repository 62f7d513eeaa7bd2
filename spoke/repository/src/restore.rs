//! Restores: a snapshot (or a part of it) into a directory, or a block snapshot into an image
//! file or a block device.
//!
//! Plan, then execute: the trees are read first into a list of what goes where; then packs are
//! fetched in parallel (neighbouring blobs in one range read), every blob is verified as it is
//! opened, and each is written to every place that needs it. Chunks of zeroes are not written,
//! so files and images come back sparse. Metadata is applied last, directories deepest first,
//! so writing into them does not disturb their times.

use crate::backup::block::is_zero;
use crate::blob::{BlobId, BlobKind};
use crate::index::Index;
use crate::progress::{Progress, ProgressFn};
use crate::repo::{RepoError, Repository};
use crate::tree::{Node, NodeKind, Snapshot, SnapshotKind};
use futures::{StreamExt, TryStreamExt};
use rayon::prelude::*;
use std::collections::HashMap;
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Blobs closer than this in a pack are fetched in one read...
const COALESCE_GAP: u64 = 256 * 1024;
/// ...of at most this many bytes (bounding memory: reads in flight × this).
const MAX_READ: u64 = 8 * 1024 * 1024;
/// Reads in flight at once from an object store...
const PARALLEL_READS: usize = 6;
/// ...and from local files: enough to keep every core decoding, and the disk busy once packs
/// are no longer in the page cache (backups drop what they write).
const LOCAL_READS: usize = 4;

#[derive(Clone, Default)]
pub struct RestoreOptions {
    /// Restore only this path of the snapshot (a file or a directory, `/`-separated).
    pub path: Option<String>,
    pub progress: Option<ProgressFn>,
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

/// Where one blob goes: a file (by position in the plan) and an offset in it.
#[derive(Debug, Clone, Copy)]
struct Target {
    file: usize,
    offset: u64,
}

/// What to write: files and the blobs that fill them.
#[derive(Default)]
pub(crate) struct WritePlan {
    files: Vec<PathBuf>,
    blobs: HashMap<BlobId, Vec<Target>>,
    pub bytes: u64,
    /// Written ranges go to disk and leave the page cache as they are written (one large file,
    /// such as a volume image).
    write_through: bool,
}

impl WritePlan {
    fn add_file(&mut self, path: PathBuf) -> usize {
        self.files.push(path);
        self.files.len() - 1
    }

    /// Adds a file and places its blobs end to end by their plaintext lengths in the index;
    /// they must add up to the size the snapshot records.
    fn add_file_content(
        &mut self,
        index: &Index,
        path: &Path,
        node: &Node,
    ) -> Result<(), RepoError> {
        let file = self.add_file(path.to_path_buf());
        let mut offset = 0u64;
        for id in &node.content {
            let loc = index.get(id).ok_or_else(|| RepoError::MissingBlob {
                id: *id,
                context: format!("content of {}", path.display()),
            })?;
            self.blobs
                .entry(*id)
                .or_default()
                .push(Target { file, offset });
            offset += loc.raw_length as u64;
        }
        if offset != node.size {
            return Err(RepoError::Invalid(format!(
                "{}: content adds up to {offset} bytes but the snapshot records {}",
                path.display(),
                node.size
            )));
        }
        self.bytes += node.size;
        Ok(())
    }
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
    for (path, node) in &planned.files {
        plan.add_file_content(&index, path, node)?;
    }
    // Directories in parallel, each one's files by one thread: creating files in one
    // directory from several threads only contends for the filesystem's inode allocator.
    planned
        .files
        .par_chunk_by(|a, b| a.0.parent() == b.0.parent())
        .try_for_each(|files| {
            files
                .iter()
                .try_for_each(|(path, node)| create_sized(path, node.size))
        })?;
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
        summary.ownership_skipped += u64::from(!apply_metadata(&path, &node, false)?);
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
        .map(|(path, node)| apply_metadata(path, node, true))
        .collect::<Result<Vec<bool>, RepoError>>()?;
    summary.ownership_skipped += owned.iter().filter(|o| !**o).count() as u64;
    summary.files += planned.files.len() as u64;
    summary.bytes += planned.files.iter().map(|(_, n)| n.size).sum::<u64>();
    planned
        .dirs
        .sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    for (path, node) in &planned.dirs {
        summary.ownership_skipped += u64::from(!apply_metadata(path, node, true)?);
        summary.dirs += 1;
    }
    if let Some(node) = &target_node {
        summary.ownership_skipped += u64::from(!apply_metadata(target, node, true)?);
    }
    reporter.finish();
    Ok(summary)
}

fn create_sized(path: &Path, size: u64) -> Result<(), RepoError> {
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if !m.is_file() {
            if m.is_dir() {
                std::fs::remove_dir_all(path).map_err(|e| RepoError::io(path, e))?;
            } else {
                std::fs::remove_file(path).map_err(|e| RepoError::io(path, e))?;
            }
        }
    }
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| RepoError::io(path, e))?;
    f.set_len(size).map_err(|e| RepoError::io(path, e))
}

/// Fetches and writes every blob of a plan: packs in parallel, nearby blobs in one read.
pub(crate) async fn execute(
    repo: &Arc<Repository>,
    plan: WritePlan,
    progress: &Arc<Progress>,
) -> Result<(), RepoError> {
    let index = repo.index();
    // pack -> [(offset, length, id)]
    let mut by_pack: HashMap<u32, Vec<(u64, u32, BlobId)>> = HashMap::new();
    for id in plan.blobs.keys() {
        let loc = index.get(id).ok_or_else(|| RepoError::MissingBlob {
            id: *id,
            context: "restore".into(),
        })?;
        by_pack
            .entry(loc.pack)
            .or_default()
            .push((loc.offset, loc.length, *id));
    }
    let mut reads = Vec::new();
    for (pack, mut blobs) in by_pack {
        blobs.sort();
        let mut group: Vec<(u64, u32, BlobId)> = Vec::new();
        for b in blobs {
            if let (Some(first), Some(last)) = (group.first(), group.last()) {
                let gap = b.0.saturating_sub(last.0 + last.1 as u64);
                if gap > COALESCE_GAP || b.0 + b.1 as u64 - first.0 > MAX_READ {
                    reads.push((pack, std::mem::take(&mut group)));
                }
            }
            group.push(b);
        }
        reads.push((pack, group));
    }
    let plan = Arc::new(plan);
    futures::stream::iter(reads)
        .map(|(pack, group)| {
            let (repo, index, plan, progress) =
                (repo.clone(), index.clone(), plan.clone(), progress.clone());
            async move {
                let pack_id = index.pack_id(pack).to_string();
                let start = group[0].0;
                let end = group.last().map(|b| b.0 + b.1 as u64).unwrap_or(start);
                let bytes = repo
                    .backend()
                    .get_range(&format!("data/{pack_id}"), start..end)
                    .await?;
                // Reads overlap (an object store answers slowly); decoding and writing run on
                // the compute pool, one per core, so only those threads hold decoding buffers
                // and no more writers than cores contend for the same files.
                let (tx, rx) = tokio::sync::oneshot::channel();
                rayon::spawn(move || {
                    let _ = tx.send(write_group(
                        &repo, &plan, &pack_id, start, &bytes, &group, &progress,
                    ));
                });
                rx.await
                    .map_err(|_| RepoError::Invalid("restore worker failed".into()))?
            }
        })
        .buffer_unordered(if repo.backend().is_local() {
            LOCAL_READS
        } else {
            PARALLEL_READS
        })
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

fn write_group(
    repo: &Repository,
    plan: &WritePlan,
    pack_id: &str,
    start: u64,
    bytes: &[u8],
    group: &[(u64, u32, BlobId)],
    progress: &Progress,
) -> Result<(), RepoError> {
    let mut open: HashMap<usize, File> = HashMap::new();
    let mut written: Vec<(usize, u64, usize)> = Vec::new();
    for (offset, length, id) in group {
        let at = (offset - start) as usize;
        let sealed = bytes
            .get(at..at + *length as usize)
            .ok_or_else(|| RepoError::Invalid(format!("pack {pack_id}: short read")))?;
        // The plaintext is written from the codec's per-thread buffer: no copy of our own.
        repo.codec()
            .open_with(BlobKind::Data, id, sealed, |plain| {
                let zero = is_zero(plain);
                for t in &plan.blobs[id] {
                    progress.add(plain.len() as u64, 0);
                    if zero {
                        continue;
                    }
                    // Small files come many to a read: keep few descriptors open, whatever the
                    // group.
                    if open.len() >= 16 && !open.contains_key(&t.file) {
                        open.clear();
                    }
                    let file = match open.entry(t.file) {
                        std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                        std::collections::hash_map::Entry::Vacant(v) => {
                            let path = &plan.files[t.file];
                            v.insert(
                                OpenOptions::new()
                                    .write(true)
                                    .open(path)
                                    .map_err(|e| RepoError::io(path, e))?,
                            )
                        }
                    };
                    crate::pieces::write_all_at(file, plain, t.offset)
                        .map_err(|e| RepoError::io(&plan.files[t.file], e))?;
                    if plan.write_through {
                        written.push((t.file, t.offset, plain.len()));
                    }
                }
                Ok::<(), RepoError>(())
            })
            .map_err(|source| RepoError::Blob {
                id: *id,
                pack: pack_id.into(),
                source,
            })??;
    }
    for (file, offset, len) in written {
        if let Some(f) = open.get(&file) {
            write_through(f, offset, len).map_err(|e| RepoError::io(&plan.files[file], e))?;
        }
    }
    Ok(())
}

/// Waits until a written range is on disk, then drops it from the page cache.
fn write_through(file: &File, offset: u64, len: usize) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
        | libc::SYNC_FILE_RANGE_WRITE
        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    // SAFETY: the descriptor is open for the duration of both calls; neither touches memory.
    let rc = unsafe { libc::sync_file_range(fd, offset as i64, len as i64, flags) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    unsafe { libc::posix_fadvise(fd, offset as i64, len as i64, libc::POSIX_FADV_DONTNEED) };
    Ok(())
}

/// Sets mode (when `chmod`), owner and modification time, without following symlinks; says
/// whether the owner could be set (not running as root, it cannot: counted, not fatal).
fn apply_metadata(path: &Path, node: &Node, chmod: bool) -> Result<bool, RepoError> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| RepoError::Invalid(format!("{}: path contains NUL", path.display())))?;
    // SAFETY: c is a valid NUL-terminated path; the calls only read it.
    let owned = unsafe { libc::lchown(c.as_ptr(), node.uid, node.gid) } == 0;
    if chmod {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(node.mode))
            .map_err(|e| RepoError::io(path, e))?;
    }
    let times = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: node.mtime as libc::time_t,
            tv_nsec: node.mtime_nsec as libc::c_long,
        },
    ];
    // SAFETY: as above; times points at two timespecs as utimensat requires.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(RepoError::io(path, std::io::Error::last_os_error()));
    }
    Ok(owned)
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
    let device = std::fs::metadata(target)
        .map(|m| m.file_type().is_block_device())
        .unwrap_or(false);
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
        create_sized(target, 0)?;
        create_sized(target, map.size)?;
    }
    let mut plan = WritePlan {
        write_through: true,
        ..Default::default()
    };
    let file = plan.add_file(target.to_path_buf());
    plan.bytes = map.size;
    let mut holes = Vec::new();
    for (i, chunk) in map.chunks.iter().enumerate() {
        let offset = i as u64 * map.chunk_size as u64;
        match chunk {
            Some(id) => plan
                .blobs
                .entry(*id)
                .or_default()
                .push(Target { file, offset }),
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
    progress.add(0, 1);
    reporter.finish();
    Ok(RestoreSummary {
        files: 1,
        bytes: map.size,
        ..Default::default()
    })
}
