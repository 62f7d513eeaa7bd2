//! Filesystem backups: a directory tree, with its metadata, into trees and data blobs.

mod assemble;
mod walk;

use super::{blocking, commit, find_parent, pipeline_result, BackupOptions, Draft, BATCH_BYTES};
use crate::blob::BlobId;
use crate::chunker::ChunkerParams;
use crate::lock::Lock;
use crate::progress::Progress;
use crate::repo::{RepoError, Repository};
use crate::saver::Saver;
use crate::tree::{Node, NodeKind, Snapshot, SnapshotKind, Tree};
use assemble::process;
use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::time::{Duration, Instant};
use walk::Walker;

/// File bytes read at once: twice the largest chunk, so that every window but the last ends on
/// a boundary FastCDC chose freely (16 MiB with the default chunk sizes).
fn window(params: ChunkerParams) -> usize {
    (params.max_size as usize * 2).max(1024 * 1024)
}

/// Bytes of a file, cut into chunks.
struct Part {
    buf: Vec<u8>,
    cuts: Vec<(usize, usize)>,
}

enum FileData {
    Whole(Part),
    /// Unchanged since the parent snapshot.
    Reuse(Vec<BlobId>),
    /// Another name of an inode already in this snapshot.
    LinkTo((u64, u64)),
    /// A large file: its parts follow as `MorePart`, then `EndFile`.
    Begin,
}

enum Event {
    EnterDir(Node),
    ExitDir,
    File(Node, FileData),
    MorePart(Part),
    EndFile,
    Leaf(Node),
    Skipped(String),
}

struct Batch {
    events: Vec<Event>,
}

fn node_from(name: &std::ffi::OsStr, kind: NodeKind, meta: &Metadata) -> Node {
    let mut n = Node::empty(kind);
    n.set_name(name);
    n.mode = meta.mode() & 0o7777;
    n.uid = meta.uid();
    n.gid = meta.gid();
    n.mtime = meta.mtime();
    n.mtime_nsec = meta.mtime_nsec() as u32;
    n.ctime = meta.ctime();
    n.ctime_nsec = meta.ctime_nsec() as u32;
    n.inode = meta.ino();
    n.device = meta.dev();
    n.links = meta.nlink();
    if kind == NodeKind::File {
        n.size = meta.size();
    }
    n
}

/// Backs up the directory `path`.
pub async fn backup(
    repo: Arc<Repository>,
    path: &Path,
    options: BackupOptions,
) -> Result<(String, Snapshot), RepoError> {
    let started = Instant::now();
    let meta = std::fs::metadata(path).map_err(|e| RepoError::io(path, e))?;
    if !meta.is_dir() {
        return Err(RepoError::Invalid(format!(
            "{}: not a directory (use block mode for images and devices)",
            path.display()
        )));
    }
    let root = std::fs::canonicalize(path).map_err(|e| RepoError::io(path, e))?;
    let root_meta = std::fs::metadata(&root).map_err(|e| RepoError::io(&root, e))?;
    let root_node = node_from(std::ffi::OsStr::new("root"), NodeKind::Dir, &root_meta);
    let source = options
        .source
        .clone()
        .unwrap_or_else(|| root.display().to_string());
    let lock = Lock::shared(repo.backend(), "backup", options.lock).await?;
    repo.forget_missing_packs().await?;
    let parent = find_parent(&repo, &options, &source, SnapshotKind::Filesystem).await?;
    // The parent's trees, fetched in parallel before the walk (over an object store each is a
    // request). A parent whose root is gone with a lost pack is no parent: everything is read;
    // a lost subtree means its directory is read.
    let mut parent_trees: HashMap<BlobId, Tree> = HashMap::new();
    let mut parent_tree = None;
    if let Some((name, s)) = &parent {
        for (_, id, tree) in repo.load_trees(vec![(String::from("/"), s.tree)]).await {
            match tree {
                Ok(t) => {
                    parent_trees.insert(id, t);
                }
                Err(e) => {
                    tracing::warn!(parent = %name, tree = %id, error = %e, "parent tree unreadable: its directory is read in full")
                }
            }
        }
        parent_tree = parent_trees.remove(&s.tree);
    }
    let parent_trees = Arc::new(parent_trees);
    let progress = Progress::new("backup");
    let reporter = progress.report(options.progress.clone(), Duration::from_millis(500));
    {
        let (root, progress) = (root.clone(), progress.clone());
        std::thread::spawn(move || {
            let (bytes, files) = measure(&root);
            progress.set_total(bytes, files);
        });
    }
    let saver = Arc::new(Saver::new(repo.clone()));
    // A rendezvous: the walker reads the next batch while one is stored, and no batch waits in
    // between (a queued batch was 16 MiB more at the peak and no faster).
    let (tx, rx) = sync_channel::<Batch>(0);
    // Window buffers go back to the walker once their chunks are stored.
    let (recycle, recycled) = sync_channel::<Vec<u8>>(RECYCLED_WINDOWS);
    let walker = {
        let (params, index) = (repo.config().chunker, repo.index());
        blocking(move || {
            let mut w = Walker::new(params, tx, index, parent_trees, recycled);
            w.walk_dir(&root, parent_tree)?;
            w.flush()
        })
    };
    let processor = {
        let (saver, progress) = (saver.clone(), progress.clone());
        blocking(move || {
            let result = process(&saver, rx, &progress, recycle);
            let finished = saver.finish();
            let (tree, summary) = result?;
            finished?;
            Ok((tree, summary))
        })
    };
    let (walked, processed) = tokio::join!(walker, processor);
    let (tree, summary) = pipeline_result(walked, processed)?;
    let draft = Draft {
        source,
        kind: SnapshotKind::Filesystem,
        parent: parent.map(|(n, _)| n),
        tree,
        root: Some(root_node),
        summary,
        started,
    };
    commit(&repo, &saver, &options, draft, (reporter, lock)).await
}

/// Size and file count of a tree, for the progress estimate; errors just end the estimate early.
fn measure(root: &Path) -> (u64, u64) {
    let (mut bytes, mut files) = (0, 0);
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() {
                bytes += m.len();
                files += 1;
            }
        }
    }
    (bytes, files)
}

/// Window buffers waiting for the walker: it takes one per window, so two keep it supplied
/// while a batch is being stored and the walker fills the next.
const RECYCLED_WINDOWS: usize = 2;
