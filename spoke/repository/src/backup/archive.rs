//! Archives: a snapshot of files written by a program rather than read from a disk — Ferry's
//! restore points (a manifest and the captured objects) are one. Each file is streamed in and
//! cut into chunks as it comes, so a file of any size is held one window at a time, and
//! unchanged content (objects that did not change since the last capture) deduplicates like any
//! other. The result is an ordinary filesystem snapshot: `ferry-spoke repo restore` reads it.

use super::{blocking, commit, BackupOptions, Draft};
use crate::blob::{BlobId, BlobKind};
use crate::chunker::{chunk, ChunkerParams};
use crate::lock::Lock;
use crate::progress::Progress;
use crate::repo::{RepoError, Repository};
use crate::saver::Saver;
use crate::tree::{Node, NodeKind, Snapshot, SnapshotKind, Summary, Tree};
use rayon::prelude::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A snapshot being written file by file. Files appear in the snapshot's root directory in the
/// order they are finished; names must be unique.
pub struct ArchiveWriter {
    repo: Arc<Repository>,
    saver: Arc<Saver>,
    options: BackupOptions,
    lock: Option<Lock>,
    reporter: Option<crate::progress::Reporter>,
    progress: Arc<Progress>,
    params: ChunkerParams,
    source: String,
    files: Vec<Node>,
    open: Option<OpenFile>,
    summary: Summary,
    started: Instant,
    now: (i64, u32),
}

struct OpenFile {
    node: Node,
    buf: Vec<u8>,
}

/// Bytes gathered before chunking: twice the largest chunk, as file backups read.
fn window(params: ChunkerParams) -> usize {
    (params.max_size as usize * 2).max(1024 * 1024)
}

impl ArchiveWriter {
    /// Starts a snapshot named `source` under a shared lock (other writers may run alongside;
    /// prune may not).
    pub async fn begin(
        repo: Arc<Repository>,
        source: &str,
        options: BackupOptions,
    ) -> Result<ArchiveWriter, RepoError> {
        let lock = Lock::shared(repo.backend(), "backup", options.lock).await?;
        repo.forget_missing_packs().await?;
        let progress = Progress::new("backup");
        let reporter = progress.report(options.progress.clone(), Duration::from_millis(500));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Ok(ArchiveWriter {
            saver: Arc::new(Saver::new(repo.clone())),
            params: repo.config().chunker,
            repo,
            options,
            lock: Some(lock),
            reporter: Some(reporter),
            progress,
            source: source.to_string(),
            files: Vec::new(),
            open: None,
            summary: Summary::default(),
            started: Instant::now(),
            now: (now.as_secs() as i64, now.subsec_nanos()),
        })
    }

    /// Begins the next file (ending the one before).
    pub async fn start_file(&mut self, name: &str) -> Result<(), RepoError> {
        self.end_file().await?;
        let mut node = Node::empty(NodeKind::File);
        node.set_name(std::ffi::OsStr::new(name));
        node.os_name()
            .map_err(|e| RepoError::Invalid(format!("archive file name {name:?}: {e}")))?;
        if self.files.iter().any(|f| f.name == node.name) {
            return Err(RepoError::Invalid(format!(
                "archive file {name:?} written twice"
            )));
        }
        node.mode = 0o644;
        (node.mtime, node.mtime_nsec) = self.now;
        (node.ctime, node.ctime_nsec) = self.now;
        // SAFETY: getuid and getgid cannot fail and touch no memory.
        (node.uid, node.gid) = unsafe { (libc::getuid(), libc::getgid()) };
        self.open = Some(OpenFile {
            node,
            buf: Vec::new(),
        });
        Ok(())
    }

    /// Appends to the open file; stores whole chunks as the window fills.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), RepoError> {
        let window = window(self.params);
        let Some(open) = self.open.as_mut() else {
            return Err(RepoError::Invalid("archive write with no file open".into()));
        };
        open.buf.extend_from_slice(data);
        open.node.size += data.len() as u64;
        if open.buf.len() >= window {
            self.store_chunks(false).await?;
        }
        Ok(())
    }

    /// Chunks the open file's buffer and stores the chunks; unless `last`, the final cut stays
    /// buffered, since where it ends depends on bytes not yet written.
    async fn store_chunks(&mut self, last: bool) -> Result<(), RepoError> {
        let open = self.open.as_mut().expect("a file is open");
        let buf = std::mem::take(&mut open.buf);
        let (saver, params) = (self.saver.clone(), self.params);
        let (ids, tail) = blocking(move || {
            let mut cuts = chunk(&buf, params);
            let tail = match (last, cuts.pop()) {
                (true, Some(c)) => {
                    cuts.push(c);
                    Vec::new()
                }
                (false, Some((off, _))) => buf[off..].to_vec(),
                (_, None) => Vec::new(),
            };
            let ids = cuts
                .par_iter()
                .map(|&(o, l)| saver.save(BlobKind::Data, &buf[o..o + l]))
                .collect::<Result<Vec<BlobId>, _>>()?;
            let stored: usize = cuts.iter().map(|c| c.1).sum();
            Ok((ids, (tail, stored)))
        })
        .await?;
        let (tail, stored) = tail;
        self.progress.add(stored as u64, 0);
        let open = self.open.as_mut().expect("a file is open");
        open.node.content.extend(ids);
        open.buf = tail;
        Ok(())
    }

    async fn end_file(&mut self) -> Result<(), RepoError> {
        if self.open.is_none() {
            return Ok(());
        }
        self.store_chunks(true).await?;
        let open = self.open.take().expect("a file is open");
        self.summary.files += 1;
        self.summary.bytes += open.node.size;
        self.progress.add(0, 1);
        self.files.push(open.node);
        Ok(())
    }

    /// Gives up without writing a snapshot: what was stored so far is indexed (a second attempt
    /// reuses it; prune removes it if none comes) and the lock is released now rather than when
    /// it expires.
    pub async fn abandon(mut self) -> Result<(), RepoError> {
        self.open = None;
        let saver = self.saver.clone();
        let flushed = blocking(move || saver.finish()).await;
        if let Some(reporter) = self.reporter.take() {
            reporter.finish();
        }
        if let Some(lock) = self.lock.take() {
            lock.release().await?;
        }
        flushed
    }

    /// Ends the last file and writes the snapshot.
    pub async fn finish(mut self) -> Result<(String, Snapshot), RepoError> {
        let result = self.end_file().await;
        let saver = self.saver.clone();
        let mut files = std::mem::take(&mut self.files);
        files.sort_by(|a, b| a.name.cmp(&b.name));
        let stored = blocking(move || {
            let tree = result.and_then(|()| {
                let json = serde_json::to_vec(&Tree { nodes: files }).expect("tree serializes");
                saver.save(BlobKind::Tree, &json)
            });
            let finished = saver.finish();
            let tree = tree?;
            finished?;
            Ok(tree)
        })
        .await;
        let (reporter, lock) = (
            self.reporter.take().expect("reporter"),
            self.lock.take().expect("lock"),
        );
        let tree = match stored {
            Ok(tree) => tree,
            Err(e) => {
                reporter.finish();
                lock.release().await?;
                return Err(e);
            }
        };
        let mut root = Node::empty(NodeKind::Dir);
        root.set_name(std::ffi::OsStr::new("root"));
        root.mode = 0o755;
        (root.mtime, root.mtime_nsec) = self.now;
        let draft = Draft {
            source: self.source.clone(),
            kind: SnapshotKind::Filesystem,
            parent: None,
            tree,
            root: Some(root),
            summary: std::mem::take(&mut self.summary),
            started: self.started,
        };
        commit(
            &self.repo,
            &self.saver,
            &self.options,
            draft,
            (reporter, lock),
        )
        .await
    }
}

/// Reads one file of a filesystem snapshot's root directory, a chunk at a time, each chunk
/// authenticated as it is read.
pub struct ArchiveFile {
    repo: Arc<Repository>,
    chunks: std::vec::IntoIter<BlobId>,
    pub size: u64,
}

impl ArchiveFile {
    pub async fn open(
        repo: Arc<Repository>,
        snapshot: &Snapshot,
        name: &str,
    ) -> Result<ArchiveFile, RepoError> {
        let tree = repo.load_tree(&snapshot.tree).await?;
        let node = tree
            .nodes
            .into_iter()
            .find(|n| n.kind == NodeKind::File && n.os_name().is_ok_and(|n| n == name))
            .ok_or_else(|| RepoError::Snapshot {
                query: snapshot.source.clone(),
                message: format!("has no file {name:?}"),
            })?;
        Ok(ArchiveFile {
            repo,
            size: node.size,
            chunks: node.content.into_iter(),
        })
    }

    /// The next chunk, or `None` at the end.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, RepoError> {
        match self.chunks.next() {
            Some(id) => Ok(Some(self.repo.read_blob(BlobKind::Data, &id).await?)),
            None => Ok(None),
        }
    }

    /// The whole file (for small files such as a manifest).
    pub async fn read_all(mut self) -> Result<Vec<u8>, RepoError> {
        let mut out = Vec::with_capacity(self.size as usize);
        while let Some(c) = self.next_chunk().await? {
            out.extend_from_slice(&c);
        }
        Ok(out)
    }
}
