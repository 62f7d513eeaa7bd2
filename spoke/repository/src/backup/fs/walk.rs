//! The walker: reads the tree in order, cuts file bytes into chunks and hands batches of
//! events to the sealing side; unchanged files come from the parent snapshot unread.

use super::{node_from, window, Batch, Event, FileData, Part, BATCH_BYTES};
use crate::blob::BlobId;
use crate::chunker::{chunk, ChunkerParams};
use crate::index::Index;
use crate::repo::RepoError;
use crate::tree::{Node, NodeKind, Tree};
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;

pub(super) struct Walker {
    params: ChunkerParams,
    tx: SyncSender<Batch>,
    batch: Vec<Event>,
    batch_bytes: usize,
    seen_inodes: HashSet<(u64, u64)>,
    /// The index as the backup started, less lost packs: reused content must be in it.
    index: Arc<Index>,
    /// The parent snapshot's trees, by id.
    parent_trees: Arc<HashMap<BlobId, Tree>>,
    /// Window buffers whose chunks are stored, for the next windows of large files.
    recycled: Receiver<Vec<u8>>,
}

impl Walker {
    pub(super) fn new(
        params: ChunkerParams,
        tx: SyncSender<Batch>,
        index: Arc<Index>,
        parent_trees: Arc<HashMap<BlobId, Tree>>,
        recycled: Receiver<Vec<u8>>,
    ) -> Walker {
        Walker {
            params,
            tx,
            batch: Vec::new(),
            batch_bytes: 0,
            seen_inodes: HashSet::new(),
            index,
            parent_trees,
            recycled,
        }
    }

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

    pub(super) fn flush(&mut self) -> Result<(), RepoError> {
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

    pub(super) fn walk_dir(&mut self, dir: &Path, parent: Option<Tree>) -> Result<(), RepoError> {
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
                let what = crate::tree::file_kind(ft);
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
