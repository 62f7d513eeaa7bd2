//! Filesystem backups: a directory tree, with its metadata, into trees and data blobs.

use super::{blocking, commit, find_parent, pipeline_result, BackupOptions, Draft, BATCH_BYTES};
use crate::blob::{BlobId, BlobKind};
use crate::chunker::{chunk, ChunkerParams};
use crate::lock::Lock;
use crate::progress::Progress;
use crate::repo::{RepoError, Repository};
use crate::saver::Saver;
use crate::tree::{Node, NodeKind, Snapshot, SnapshotKind, Summary, Tree};
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
            let mut w = Walker {
                params,
                tx,
                batch: Vec::new(),
                batch_bytes: 0,
                seen_inodes: HashSet::new(),
                index,
                parent_trees,
                recycled,
            };
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

struct Walker {
    params: ChunkerParams,
    tx: SyncSender<Batch>,
    batch: Vec<Event>,
    batch_bytes: usize,
    seen_inodes: HashSet<(u64, u64)>,
    /// The index as the backup started, less lost packs: reused content must be in it.
    index: Arc<crate::index::Index>,
    /// The parent snapshot's trees, by id.
    parent_trees: Arc<HashMap<BlobId, Tree>>,
    /// Window buffers whose chunks are stored, for the next windows of large files.
    recycled: Receiver<Vec<u8>>,
}

impl Walker {
    /// An empty buffer for a window of a large file: a stored window's, or a new one.
    fn window_buffer(&self) -> Vec<u8> {
        match self.recycled.try_recv() {
            Ok(mut b) => {
                b.clear();
                b
            }
            Err(_) => Vec::with_capacity(window(self.params)),
        }
    }

    fn push(&mut self, event: Event, bytes: usize) -> Result<(), RepoError> {
        // Hand over before a batch outgrows its budget, so batches stay near BATCH_BYTES.
        if self.batch_bytes + bytes > BATCH_BYTES {
            self.flush()?;
        }
        self.batch.push(event);
        self.batch_bytes += bytes;
        if self.batch_bytes >= BATCH_BYTES || self.batch.len() >= 4096 {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), RepoError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.batch_bytes = 0;
        let events = std::mem::take(&mut self.batch);
        // A closed channel means the processor failed; its error is the one to report.
        self.tx
            .send(Batch { events })
            .map_err(|_| RepoError::Interrupted)
    }

    fn walk_dir(&mut self, dir: &Path, parent: Option<Tree>) -> Result<(), RepoError> {
        let mut entries: Vec<(OsString, PathBuf)> = std::fs::read_dir(dir)
            .map_err(|e| RepoError::io(dir, e))?
            .map(|e| e.map(|e| (e.file_name(), e.path())))
            .collect::<Result<_, _>>()
            .map_err(|e| RepoError::io(dir, e))?;
        entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let parent_nodes: HashMap<Vec<u8>, &Node> = parent
            .as_ref()
            .map(|t| {
                t.nodes
                    .iter()
                    .filter_map(|n| n.os_name().ok().map(|name| (name.into_vec(), n)))
                    .collect()
            })
            .unwrap_or_default();
        for (name, path) in entries {
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    self.push(Event::Skipped(format!("{}: vanished", path.display())), 0)?;
                    continue;
                }
                Err(e) => return Err(RepoError::io(&path, e)),
            };
            let old = parent_nodes.get(name.as_bytes()).copied();
            let ft = meta.file_type();
            if ft.is_dir() {
                self.push(Event::EnterDir(node_from(&name, NodeKind::Dir, &meta)), 0)?;
                let sub = match old {
                    Some(Node {
                        kind: NodeKind::Dir,
                        subtree: Some(id),
                        ..
                    }) => self.parent_trees.get(id).cloned(),
                    _ => None,
                };
                self.walk_dir(&path, sub)?;
                self.push(Event::ExitDir, 0)?;
            } else if ft.is_file() {
                self.file(&name, &path, &meta, old)?;
            } else if ft.is_symlink() {
                let target = std::fs::read_link(&path).map_err(|e| RepoError::io(&path, e))?;
                let mut node = node_from(&name, NodeKind::Symlink, &meta);
                node.set_target(target.as_os_str());
                self.push(Event::Leaf(node), 0)?;
            } else {
                let what = if ft.is_fifo() {
                    "named pipe"
                } else if ft.is_socket() {
                    "socket"
                } else if ft.is_block_device() {
                    "block device"
                } else {
                    "character device"
                };
                tracing::warn!(path = %path.display(), "skipped: {what}");
                self.push(
                    Event::Skipped(format!("{}: {what} (not backed up)", path.display())),
                    0,
                )?;
            }
        }
        Ok(())
    }

    fn file(
        &mut self,
        name: &std::ffi::OsStr,
        path: &Path,
        meta: &Metadata,
        old: Option<&Node>,
    ) -> Result<(), RepoError> {
        let node = node_from(name, NodeKind::File, meta);
        if node.links > 1 {
            let key = (node.device, node.inode);
            if !self.seen_inodes.insert(key) {
                return self.push(Event::File(node, FileData::LinkTo(key)), 0);
            }
        }
        if let Some(old) = old {
            // Unchanged: same size, mtime, ctime and inode. The mtime alone can be set back
            // (`touch -d`, `cp -p`, `rsync -t`) over new content; the ctime cannot.
            let unchanged = old.kind == NodeKind::File
                && old.size == node.size
                && old.mtime == node.mtime
                && old.mtime_nsec == node.mtime_nsec
                && old.ctime == node.ctime
                && old.ctime_nsec == node.ctime_nsec
                && old.inode == node.inode
                && (old.size == 0 || !old.content.is_empty())
                && old.content.iter().all(|b| self.index.contains(b));
            if unchanged {
                let content = old.content.clone();
                return self.push(Event::File(node, FileData::Reuse(content)), 0);
            }
        }
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return self.push(Event::Skipped(format!("{}: vanished", path.display())), 0);
            }
            Err(e) => return Err(RepoError::io(path, e)),
        };
        let window = window(self.params);
        let mut buf = if node.size as usize >= window {
            self.window_buffer()
        } else {
            Vec::new()
        };
        let mut left = node.size;
        let mut first = Some(node);
        loop {
            let before = buf.len();
            let eof =
                fill(&mut file, &mut buf, window, left).map_err(|e| RepoError::io(path, e))?;
            left = left.saturating_sub((buf.len() - before) as u64);
            let mut cuts = chunk(&buf, self.params);
            let tail = if eof {
                Vec::new()
            } else {
                // The last cut may only end where the window does; read it again with more.
                let (off, _) = cuts.pop().expect("a full window has chunks");
                let mut next = self.window_buffer();
                next.extend_from_slice(&buf[off..]);
                buf.truncate(off);
                next
            };
            let part = Part {
                buf: std::mem::replace(&mut buf, tail),
                cuts,
            };
            let bytes = part.buf.len();
            match (first.take(), eof) {
                (Some(node), true) => {
                    return self.push(Event::File(node, FileData::Whole(part)), bytes)
                }
                (Some(node), false) => {
                    self.push(Event::File(node, FileData::Begin), 0)?;
                    self.push(Event::MorePart(part), bytes)?;
                }
                (None, eof) => {
                    self.push(Event::MorePart(part), bytes)?;
                    if eof {
                        return self.push(Event::EndFile, 0);
                    }
                }
            }
        }
    }
}

/// Reads until `buf` holds `want` bytes or the file ends; true at end of file.
/// `expected` is what the file's size says is left to read: buffers are sized by it (plus one
/// byte to see the end), not by the window, or ten thousand small files would each hold one.
fn fill(file: &mut File, buf: &mut Vec<u8>, want: usize, expected: u64) -> std::io::Result<bool> {
    let room = (want.saturating_sub(buf.len()) as u64).min(expected.saturating_add(1));
    buf.reserve_exact(room as usize);
    while buf.len() < want {
        let n = file
            .by_ref()
            .take((want - buf.len()) as u64)
            .read_to_end(buf)?;
        if n == 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

struct DirBuilder {
    node: Option<Node>,
    children: Vec<Node>,
}

/// Window buffers waiting for the walker: it takes one per window, so two keep it supplied
/// while a batch is being stored and the walker fills the next.
const RECYCLED_WINDOWS: usize = 2;

/// Batches queued for sealing before the oldest is waited for (one more is being filled by the
/// walker): 1 took 12 % off a mixed backup, 2 was no faster and held 15 MB more.
const SEALING_BATCHES: usize = 1;

/// A batch whose chunks are queued on the compute pool.
struct Sealing {
    events: Vec<Event>,
    /// The batch's file bytes, shared with the tasks that seal them.
    buffers: Vec<Arc<Vec<u8>>>,
    /// Each chunk's id (by its position in the batch), as its task finishes.
    results: Receiver<(usize, Result<BlobId, RepoError>)>,
    chunks: usize,
}

/// Finished batch: its events, its chunks' ids in order, and its buffers for reuse.
type Sealed = (Vec<Event>, Vec<BlobId>, Vec<Vec<u8>>);

#[derive(Default)]
struct SealingQueue {
    batches: std::collections::VecDeque<Sealing>,
}

impl SealingQueue {
    fn start(&mut self, saver: &Arc<Saver>, mut batch: Batch) {
        let (tx, results) = std::sync::mpsc::channel();
        let mut buffers = Vec::new();
        let mut chunks = 0;
        for event in &mut batch.events {
            let (Event::File(_, FileData::Whole(part)) | Event::MorePart(part)) = event else {
                continue;
            };
            let buf = Arc::new(std::mem::take(&mut part.buf));
            for &(offset, len) in &part.cuts {
                let (saver, buf, tx, at) = (saver.clone(), buf.clone(), tx.clone(), chunks);
                crate::pool::spawn(move || {
                    let id = saver.save(BlobKind::Data, &buf[offset..offset + len]);
                    // Released before the id is sent, so that the batch's buffers are free
                    // once every id has arrived.
                    drop(buf);
                    let _ = tx.send((at, id));
                });
                chunks += 1;
            }
            buffers.push(buf);
        }
        self.batches.push_back(Sealing {
            events: batch.events,
            buffers,
            results,
            chunks,
        });
    }

    /// Waits for the oldest batch.
    fn finish_oldest(&mut self) -> Result<Option<Sealed>, RepoError> {
        self.batches.pop_front().map(Sealing::wait).transpose()
    }
}

impl Sealing {
    fn wait(self) -> Result<Sealed, RepoError> {
        let mut ids = vec![None; self.chunks];
        let mut failed = None;
        for _ in 0..self.chunks {
            // Every task sends once; a closed channel means one panicked (the log says where).
            let (at, id) = self.results.recv().map_err(|_| {
                RepoError::Invalid("a task sealing this backup's blobs failed".into())
            })?;
            match id {
                Ok(id) => ids[at] = Some(id),
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        let ids = ids.into_iter().flatten().collect();
        let buffers = self
            .buffers
            .into_iter()
            .filter_map(|b| Arc::try_unwrap(b).ok())
            .collect();
        Ok((self.events, ids, buffers))
    }
}

fn process(
    saver: &Arc<Saver>,
    rx: Receiver<Batch>,
    progress: &Progress,
    recycle: SyncSender<Vec<u8>>,
) -> Result<(BlobId, Summary), RepoError> {
    let mut sealing = SealingQueue::default();
    let result = process_batches(saver, rx, progress, recycle, &mut sealing);
    // A failure leaves no task storing behind it: the saver is finished next.
    for rest in sealing.batches.drain(..) {
        let _ = rest.wait();
    }
    result
}

fn process_batches(
    saver: &Arc<Saver>,
    rx: Receiver<Batch>,
    progress: &Progress,
    recycle: SyncSender<Vec<u8>>,
    sealing: &mut SealingQueue,
) -> Result<(BlobId, Summary), RepoError> {
    // Only full-size windows are worth keeping (small files' buffers are their size).
    let give_back = |buf: Vec<u8>, window: usize| {
        if buf.capacity() >= window {
            let _ = recycle.try_send(buf);
        }
    };
    let window = window(saver.chunker());
    let mut summary = Summary::default();
    let mut stack = vec![DirBuilder {
        node: None,
        children: Vec::new(),
    }];
    let mut open_file: Option<Node> = None;
    let mut links: HashMap<(u64, u64), Vec<BlobId>> = HashMap::new();
    let save_tree = |children: Vec<Node>| -> Result<BlobId, RepoError> {
        let json = serde_json::to_vec(&Tree { nodes: children }).expect("tree serializes");
        saver.save(BlobKind::Tree, &json)
    };
    // Batches are sealed back to back: the next one's chunks are queued on the pool before the
    // one before is done, so no thread idles at the end of a batch waiting for the last chunk.
    loop {
        // Once the walker is done, the batches still sealing are finished one by one.
        let walking = match rx.recv() {
            Ok(batch) => {
                sealing.start(saver, batch);
                true
            }
            Err(_) => false,
        };
        if walking && sealing.batches.len() <= SEALING_BATCHES {
            continue;
        }
        let Some((events, ids, buffers)) = sealing.finish_oldest()? else {
            break;
        };
        for buf in buffers {
            give_back(buf, window);
        }
        let mut ids = ids.into_iter();
        for event in events {
            match event {
                Event::EnterDir(node) => stack.push(DirBuilder {
                    node: Some(node),
                    children: Vec::new(),
                }),
                Event::ExitDir => {
                    let dir = stack.pop().expect("walker balances directories");
                    let mut node = dir.node.expect("only the root has no node");
                    node.subtree = Some(save_tree(dir.children)?);
                    summary.dirs += 1;
                    stack.last_mut().expect("root").children.push(node);
                }
                Event::File(mut node, data) => {
                    match data {
                        FileData::Whole(p) => {
                            node.content = ids.by_ref().take(p.cuts.len()).collect();
                            progress.add(node.size, 1);
                        }
                        FileData::Reuse(content) => {
                            node.content = content;
                            summary.reused += 1;
                            progress.add(node.size, 1);
                        }
                        FileData::LinkTo(key) => {
                            node.content = links.get(&key).cloned().unwrap_or_default();
                            progress.add(node.size, 1);
                        }
                        FileData::Begin => {
                            open_file = Some(node);
                            continue;
                        }
                    }
                    finish_file(node, &mut links, &mut stack, &mut summary);
                }
                Event::MorePart(p) => {
                    let node = open_file.as_mut().expect("part of an open file");
                    node.content.extend(ids.by_ref().take(p.cuts.len()));
                    progress.add(p.cuts.iter().map(|c| c.1 as u64).sum(), 0);
                }
                Event::EndFile => {
                    let node = open_file.take().expect("an open file ends");
                    progress.add(0, 1);
                    finish_file(node, &mut links, &mut stack, &mut summary);
                }
                Event::Leaf(node) => stack.last_mut().expect("root").children.push(node),
                Event::Skipped(why) => summary.skipped.push(why),
            }
        }
    }
    let root = stack.pop().expect("root");
    if !stack.is_empty() {
        return Err(RepoError::Interrupted);
    }
    Ok((save_tree(root.children)?, summary))
}

fn finish_file(
    node: Node,
    links: &mut HashMap<(u64, u64), Vec<BlobId>>,
    stack: &mut [DirBuilder],
    summary: &mut Summary,
) {
    if node.links > 1 {
        links
            .entry((node.device, node.inode))
            .or_insert_with(|| node.content.clone());
    }
    summary.files += 1;
    summary.bytes += node.size;
    stack.last_mut().expect("root").children.push(node);
}
