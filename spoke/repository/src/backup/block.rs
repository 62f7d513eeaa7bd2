//! Block backups: a raw device or an image file as fixed-size chunks.
//!
//! Fixed-size chunks, not content-defined ones: a block volume changes by overwriting blocks in
//! place, never by inserting bytes, so fixed boundaries keep every untouched chunk identical and
//! a write dirties exactly the chunks it overlaps. Holes (found with `SEEK_DATA`/`SEEK_HOLE`)
//! are skipped without reading, and chunks of zeroes are recorded as holes too.
//!
//! The hook for changed-block tracking is [`ChangedRanges`]: given the ranges that may differ
//! from the parent snapshot (CSI SnapshotMetadata's `GetMetadataDelta` gives exactly that), the
//! chunks outside them are taken from the parent without being read.

use super::{blocking, commit, find_parent, pipeline_result, BackupOptions, Draft, BATCH_BYTES};
use crate::blob::{BlobId, BlobKind};
use crate::lock::Lock;
use crate::progress::Progress;
use crate::repo::{RepoError, Repository};
use crate::saver::Saver;
use crate::tree::{BlockMap, Snapshot, SnapshotKind, Summary};
use rayon::prelude::*;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Byte ranges of a volume that may have changed since the parent snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangedRanges(pub Vec<Range<u64>>);

impl ChangedRanges {
    /// Reads a change list: one `offset length` pair (decimal bytes) per line; `#` comments.
    pub fn parse(text: &str) -> Result<ChangedRanges, String> {
        let mut ranges = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (Some(off), Some(len), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(format!("line {}: expected \"offset length\"", n + 1));
            };
            let off: u64 = off
                .parse()
                .map_err(|e| format!("line {}: offset {off:?}: {e}", n + 1))?;
            let len: u64 = len
                .parse()
                .map_err(|e| format!("line {}: length {len:?}: {e}", n + 1))?;
            let end = off
                .checked_add(len)
                .ok_or_else(|| format!("line {}: range overflows", n + 1))?;
            ranges.push(off..end);
        }
        Ok(ChangedRanges(ranges))
    }

    /// Chunk numbers the ranges touch.
    fn chunks(&self, chunk_size: u64, count: usize) -> Vec<bool> {
        let mut touched = vec![false; count];
        for r in &self.0 {
            if r.is_empty() {
                continue;
            }
            let first = (r.start / chunk_size) as usize;
            let last = ((r.end - 1) / chunk_size) as usize;
            for t in touched.iter_mut().take(last + 1).skip(first) {
                *t = true;
            }
        }
        touched
    }
}

/// The data extents of a file, from `SEEK_DATA`/`SEEK_HOLE`; the whole range when the file
/// system (or device) cannot tell.
fn data_extents(file: &File, size: u64) -> Vec<Range<u64>> {
    let fd = file.as_raw_fd();
    let mut out = Vec::new();
    let mut pos: i64 = 0;
    while (pos as u64) < size {
        // SAFETY: lseek on an open descriptor we own; it only moves the file offset.
        let data = unsafe { libc::lseek(fd, pos, libc::SEEK_DATA) };
        if data < 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ENXIO) {
                break; // only a hole remains
            }
            return std::iter::once(0..size).collect();
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        let end = if hole < 0 { size as i64 } else { hole };
        out.push(data as u64..(end as u64).min(size));
        pos = end;
    }
    out
}

fn overlaps(extents: &[Range<u64>], r: &Range<u64>) -> bool {
    let i = extents.partition_point(|e| e.end <= r.start);
    extents.get(i).is_some_and(|e| e.start < r.end)
}

pub(crate) fn is_zero(data: &[u8]) -> bool {
    let (head, body, tail) = unsafe { data.align_to::<u128>() };
    head.iter().all(|&b| b == 0) && body.iter().all(|&w| w == 0) && tail.iter().all(|&b| b == 0)
}

/// Chunks read for sealing: numbers and where each lies in `buf`.
struct Batch {
    buf: Vec<u8>,
    chunks: Vec<(usize, Range<usize>)>,
}

/// Backs up a block device or image file.
pub async fn backup(
    repo: Arc<Repository>,
    path: &Path,
    options: BackupOptions,
    changed: Option<ChangedRanges>,
) -> Result<(String, Snapshot), RepoError> {
    let started = Instant::now();
    let mut file = File::open(path).map_err(|e| RepoError::io(path, e))?;
    let size = file
        .seek(SeekFrom::End(0))
        .map_err(|e| RepoError::io(path, e))?;
    let source = options
        .source
        .clone()
        .unwrap_or_else(|| path.display().to_string());
    let chunk_size = repo.config().block_chunk_size as u64;
    let count = size.div_ceil(chunk_size) as usize;
    let lock = Lock::shared(repo.backend(), "backup", options.lock).await?;
    repo.forget_missing_packs().await?;
    let parent = find_parent(&repo, &options, &source, SnapshotKind::Block).await?;
    let mut map = BlockMap {
        size,
        chunk_size: chunk_size as u32,
        chunks: vec![None; count],
    };
    let mut reuse = vec![false; count];
    if let Some(changed) = &changed {
        let Some((name, parent)) = &parent else {
            return Err(RepoError::Invalid(format!(
                "{}: a changed-block list needs a parent snapshot of the same volume",
                path.display()
            )));
        };
        let old = repo.load_block_map(&parent.tree).await?;
        if old.size != size || old.chunk_size != map.chunk_size {
            return Err(RepoError::Invalid(format!(
                "{}: parent snapshot {name} is of a {}-byte volume in {}-byte chunks, this one is {size} bytes; a changed-block list only applies to the same volume",
                path.display(),
                old.size,
                old.chunk_size
            )));
        }
        // Untouched chunks are taken from the parent without reading them, so only while
        // the repository still has them: otherwise they are read like the rest.
        let index = repo.index();
        let touched = changed.chunks(chunk_size, count);
        for (i, touched) in touched.into_iter().enumerate() {
            let stored = old.chunks[i].is_none_or(|id| index.contains(&id));
            if !touched && stored {
                map.chunks[i] = old.chunks[i];
                reuse[i] = true;
            }
        }
    }
    let extents = data_extents(&file, size);
    let progress = Progress::new("backup");
    progress.set_total(size, 1);
    let reporter = progress.report(options.progress.clone(), Duration::from_millis(500));
    let saver = Arc::new(Saver::new(repo.clone()));
    let (tx, rx) = sync_channel::<Batch>(1);
    let reader = {
        let (path, progress, reuse) = (path.to_path_buf(), progress.clone(), reuse.clone());
        blocking(move || {
            let per_batch = (BATCH_BYTES as u64 / chunk_size).max(1) as usize;
            let mut batch = Batch {
                buf: Vec::with_capacity(BATCH_BYTES),
                chunks: Vec::new(),
            };
            for (i, reused) in reuse.iter().enumerate() {
                let start = i as u64 * chunk_size;
                let range = start..(start + chunk_size).min(size);
                let len = (range.end - range.start) as usize;
                if *reused || !overlaps(&extents, &range) {
                    progress.add(len as u64, 0);
                    continue;
                }
                let at = batch.buf.len();
                batch.buf.resize(at + len, 0);
                file.read_exact_at(&mut batch.buf[at..], range.start)
                    .map_err(|e| RepoError::io(&path, e))?;
                batch.chunks.push((i, at..at + len));
                if batch.chunks.len() >= per_batch {
                    let full = std::mem::replace(
                        &mut batch,
                        Batch {
                            buf: Vec::with_capacity(BATCH_BYTES),
                            chunks: Vec::new(),
                        },
                    );
                    tx.send(full).map_err(|_| RepoError::Interrupted)?;
                }
            }
            if !batch.chunks.is_empty() {
                tx.send(batch).map_err(|_| RepoError::Interrupted)?;
            }
            Ok(())
        })
    };
    let processor = {
        let (saver, progress) = (saver.clone(), progress.clone());
        blocking(move || process(&saver, rx, &progress))
    };
    let (read, processed) = tokio::join!(reader, processor);
    let found = pipeline_result(read, processed)?;
    for (i, id) in found {
        map.chunks[i] = id;
    }
    let summary = Summary {
        files: 1,
        bytes: map
            .chunks
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_some())
            .map(|(i, _)| chunk_size.min(size - i as u64 * chunk_size))
            .sum(),
        reused: reuse.iter().filter(|r| **r).count() as u64,
        ..Default::default()
    };
    let map_id = {
        let saver = saver.clone();
        let json = serde_json::to_vec(&map).expect("block map serializes");
        blocking(move || {
            let id = saver.save(BlobKind::Tree, &json);
            let finished = saver.finish();
            let id = id?;
            finished?;
            Ok(id)
        })
        .await?
    };
    let draft = Draft {
        source,
        kind: SnapshotKind::Block,
        parent: parent.map(|(n, _)| n),
        tree: map_id,
        root: None,
        summary,
        started,
    };
    commit(&repo, &saver, &options, draft, (reporter, lock)).await
}

fn process(
    saver: &Saver,
    rx: Receiver<Batch>,
    progress: &Progress,
) -> Result<Vec<(usize, Option<BlobId>)>, RepoError> {
    let mut found = Vec::new();
    for batch in rx {
        let ids = batch
            .chunks
            .par_iter()
            .map(|(i, r)| {
                let data = &batch.buf[r.clone()];
                let id = if is_zero(data) {
                    None
                } else {
                    Some(saver.save(BlobKind::Data, data)?)
                };
                progress.add(data.len() as u64, 0);
                Ok((*i, id))
            })
            .collect::<Result<Vec<_>, RepoError>>()?;
        found.extend(ids);
    }
    progress.add(0, 1);
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_lists_parse_and_map_to_chunks() {
        let c = ChangedRanges::parse("# from CSI\n0 10\n\n4096 1  # one byte\n8191 2\n").unwrap();
        assert_eq!(c.0, vec![0..10, 4096..4097, 8191..8193]);
        assert_eq!(c.chunks(4096, 4), vec![true, true, true, false]);
        let err = ChangedRanges::parse("1 2\nx 3").unwrap_err();
        assert!(err.starts_with("line 2: offset \"x\""), "{err}");
        assert!(ChangedRanges::parse("1").is_err());
        assert!(ChangedRanges::parse(&format!("{} 2", u64::MAX)).is_err());
    }

    #[test]
    fn holes_are_found_and_zero_is_zero() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img");
        let f = File::create(&path).unwrap();
        f.set_len(64 << 20).unwrap();
        f.write_all_at(&[1u8; 4096], 8 << 20).unwrap();
        f.sync_all().unwrap();
        let extents = data_extents(&f, 64 << 20);
        assert!(overlaps(&extents, &((8 << 20)..(8 << 20) + 1)));
        let total: u64 = extents.iter().map(|e| e.end - e.start).sum();
        assert!(total < 64 << 20, "a sparse file has holes: {extents:?}");
        assert!(is_zero(&[0u8; 1000]));
        let mut v = vec![0u8; 1000];
        v[999] = 1;
        assert!(!is_zero(&v));
        v[999] = 0;
        v[3] = 1;
        assert!(!is_zero(&v[1..]));
    }
}
