//! Exports that need nothing of Ferry to read: a filesystem snapshot as a tar stream, a block
//! snapshot as a raw image stream. (A block snapshot into a sparse image file is
//! [`crate::restore::restore_block`].)

use crate::blob::{BlobId, BlobKind};
use crate::repo::{RepoError, Repository};
use crate::tree::{Node, NodeKind, Snapshot, SnapshotKind};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::runtime::Handle;

/// Reads a file's blobs in order, one at a time, as a byte stream.
struct ContentReader<'a> {
    repo: &'a Repository,
    runtime: &'a Handle,
    blobs: std::slice::Iter<'a, BlobId>,
    current: Vec<u8>,
    pos: usize,
}

impl Read for ContentReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.current.len() {
            let Some(id) = self.blobs.next() else {
                return Ok(0);
            };
            self.current = self
                .runtime
                .block_on(self.repo.read_blob(BlobKind::Data, id))
                .map_err(std::io::Error::other)?;
            self.pos = 0;
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn header(node: &Node, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(node.mode);
    h.set_uid(node.uid as u64);
    h.set_gid(node.gid as u64);
    h.set_mtime(node.mtime.max(0) as u64);
    h.set_size(size);
    h
}

/// Writes a filesystem snapshot as a tar stream (GNU format: long names, hard links, symlinks,
/// modes, owners, mtimes). Blocking; call from a blocking thread inside a tokio runtime.
pub fn tar<W: Write>(repo: &Arc<Repository>, snapshot: &Snapshot, out: W) -> Result<W, RepoError> {
    if snapshot.kind != SnapshotKind::Filesystem {
        return Err(RepoError::Invalid(
            "a block snapshot exports as a raw image, not a tar stream".into(),
        ));
    }
    let runtime = Handle::current();
    let mut builder = tar::Builder::new(out);
    let io = |e: std::io::Error| RepoError::io("tar stream", e);
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    // Depth first, in tree order, so directories precede their entries.
    let mut stack = vec![(PathBuf::new(), snapshot.tree)];
    while let Some((dir, id)) = stack.pop() {
        let tree = runtime.block_on(repo.load_tree(&id))?;
        let mut subdirs = Vec::new();
        for node in &tree.nodes {
            let name = node
                .os_name()
                .map_err(|message| RepoError::Tree { id, message })?;
            let path = dir.join(name);
            match node.kind {
                NodeKind::Dir => {
                    let mut h = header(node, tar::EntryType::Directory, 0);
                    builder
                        .append_data(&mut h, &path, std::io::empty())
                        .map_err(io)?;
                    let sub = node.subtree.ok_or_else(|| RepoError::Tree {
                        id,
                        message: format!("directory {:?} has no subtree", node.name),
                    })?;
                    subdirs.push((path, sub));
                }
                NodeKind::Symlink => {
                    let target = node
                        .os_target()
                        .map_err(|message| RepoError::Tree { id, message })?;
                    let mut h = header(node, tar::EntryType::Symlink, 0);
                    builder.append_link(&mut h, &path, target).map_err(io)?;
                }
                NodeKind::File => {
                    if node.links > 1 {
                        if let Some(first) = links.get(&(node.device, node.inode)) {
                            let mut h = header(node, tar::EntryType::Link, 0);
                            builder.append_link(&mut h, &path, first).map_err(io)?;
                            continue;
                        }
                        links.insert((node.device, node.inode), path.clone());
                    }
                    let mut h = header(node, tar::EntryType::Regular, node.size);
                    let reader = ContentReader {
                        repo,
                        runtime: &runtime,
                        blobs: node.content.iter(),
                        current: Vec::new(),
                        pos: 0,
                    };
                    builder
                        .append_data(&mut h, &path, reader.take(node.size))
                        .map_err(io)?;
                }
            }
        }
        stack.extend(subdirs.into_iter().rev());
    }
    builder.into_inner().map_err(io)
}

/// Writes a block snapshot as a raw image stream (holes as zeroes). Blocking, like [`tar()`].
pub fn raw<W: Write>(
    repo: &Arc<Repository>,
    snapshot: &Snapshot,
    mut out: W,
) -> Result<W, RepoError> {
    if snapshot.kind != SnapshotKind::Block {
        return Err(RepoError::Invalid(
            "a filesystem snapshot exports as a tar stream, not a raw image".into(),
        ));
    }
    let runtime = Handle::current();
    let map = runtime.block_on(repo.load_block_map(&snapshot.tree))?;
    let zeros = vec![0u8; map.chunk_size as usize];
    for (i, chunk) in map.chunks.iter().enumerate() {
        let len = (map.size - i as u64 * map.chunk_size as u64).min(map.chunk_size as u64) as usize;
        let blob;
        let data: &[u8] = match chunk {
            Some(id) => {
                blob = runtime.block_on(repo.read_blob(BlobKind::Data, id))?;
                &blob
            }
            None => &zeros[..len],
        };
        if data.len() != len {
            return Err(RepoError::Tree {
                id: snapshot.tree,
                message: format!("chunk {i} holds {} bytes, expected {len}", data.len()),
            });
        }
        crate::pieces::write_all(&mut out, data)
            .map_err(|e| RepoError::io("raw image stream", e))?;
    }
    out.flush()
        .map_err(|e| RepoError::io("raw image stream", e))?;
    Ok(out)
}
