//! What a `file://` repository does beside object_store's local store: objects are written to a
//! staging file in their folder, synced, dropped from the page cache and renamed to their name;
//! ranges are read into pooled buffers.

use super::BackendError;
use crate::pieces::WRITE_PIECE;
use bytes::Bytes;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A local object being written, in a staging file beside its final name: a reader never sees
/// half an object, and a writer killed mid-way leaves `<stem>#<pid><n>`, the partial file
/// `check` reports and `prune` removes. The file is created at the first write and removed when
/// the writer is dropped before [`StagedFile::store_as`].
pub struct StagedFile {
    dir: PathBuf,
    staging: PathBuf,
    file: Option<std::io::BufWriter<std::fs::File>>,
    len: u64,
}

impl StagedFile {
    pub(super) fn new(dir: PathBuf, stem: &str) -> StagedFile {
        static STAGED: AtomicU64 = AtomicU64::new(0);
        // Digits only, unique to this process and this write: what `partial_uploads` looks for.
        let n = STAGED.fetch_add(1, Ordering::Relaxed);
        let staging = dir.join(format!("{stem}#{}{n:06}", std::process::id()));
        StagedFile {
            dir,
            staging,
            file: None,
            len: 0,
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn path(&self) -> &Path {
        &self.staging
    }

    fn file(&mut self) -> std::io::Result<&mut std::io::BufWriter<std::fs::File>> {
        let file = match self.file.take() {
            Some(file) => file,
            None => {
                std::fs::create_dir_all(&self.dir)?;
                let file = std::fs::File::create(&self.staging)?;
                std::io::BufWriter::with_capacity(WRITE_PIECE, file)
            }
        };
        Ok(self.file.insert(file))
    }

    /// Gives the staged bytes the name `path`, once they are on disk (an index written later
    /// may point into them), and drops them from the page cache. Blocking.
    pub(super) fn store_as(mut self, path: &Path) -> std::io::Result<()> {
        let file = self.file()?;
        file.flush()?;
        file.get_ref().sync_data()?;
        release_cached(file.get_ref());
        std::fs::rename(&self.staging, path)?;
        self.file = None;
        Ok(())
    }
}

impl Write for StagedFile {
    /// Writes at most a megabyte at once ([`crate::pieces`]: larger writes cost more system time).
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let piece = &buf[..buf.len().min(WRITE_PIECE)];
        let n = self.file()?.write(piece)?;
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.staging);
        }
    }
}

/// Stores a whole local object under `path`, through a staging file.
pub(super) async fn put(path: PathBuf, data: Bytes) -> Result<(), BackendError> {
    blocking_write(path, move |path| {
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let stem = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let mut staged = StagedFile::new(dir, stem.as_deref().unwrap_or("object"));
        staged.write_all(&data)?;
        staged.store_as(path)
    })
    .await
}

/// Stores a staged object under `path`.
pub(super) async fn store(staged: StagedFile, path: PathBuf) -> Result<(), BackendError> {
    blocking_write(path, move |path| staged.store_as(path)).await
}

/// Runs a blocking write of the object at `path`; errors name it.
async fn blocking_write(
    path: PathBuf,
    write: impl FnOnce(&Path) -> std::io::Result<()> + Send + 'static,
) -> Result<(), BackendError> {
    let key = path.display().to_string();
    tokio::task::spawn_blocking(move || write(&path))
        .await
        .map_err(|e| format!("writer failed: {e}"))
        .and_then(|r| r.map_err(|e| e.to_string()))
        .map_err(|message| BackendError::Io { key, message })
}

/// Drops a written (and synced) file's pages from the page cache: repository files are
/// rarely read soon after they are written, and a backup of gigabytes should not push the
/// applications' own cached data out (what `rsync --drop-cache` and `dd oflag=nocache` do).
fn release_cached(file: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open for the duration of the call; advice has no memory effects.
    unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
}

/// Buffers of local reads, back in the pool when the last `Bytes` of a read is dropped. A
/// restore reads one pack range after another; fresh memory for each costs page faults (and the
/// object store's own local reader zero-fills every buffer before reading into it).
#[derive(Clone, Default)]
pub(super) struct ReadBuffers(Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

/// Buffers kept: the reads a restore has in flight.
const KEPT_READ_BUFFERS: usize = 8;
/// Larger buffers (a rare large read) are not kept.
const KEPT_READ_SIZE: usize = 16 << 20;

impl ReadBuffers {
    fn take(&self) -> Vec<u8> {
        let mut b = self
            .0
            .lock()
            .map(|mut kept| kept.pop())
            .ok()
            .flatten()
            .unwrap_or_default();
        b.clear();
        b
    }
}

/// A read's bytes, lent out as `Bytes`; they return to the pool when dropped.
struct PooledRead {
    buf: Vec<u8>,
    pool: ReadBuffers,
}

impl AsRef<[u8]> for PooledRead {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for PooledRead {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        if buf.capacity() <= KEPT_READ_SIZE {
            if let Ok(mut kept) = self.pool.0.lock() {
                if kept.len() < KEPT_READ_BUFFERS {
                    kept.push(buf);
                }
            }
        }
    }
}

/// Reads `range` of a local object into a pooled buffer, without zero-filling it first.
pub(super) async fn get_range(
    path: PathBuf,
    key: &str,
    range: Range<u64>,
    pool: ReadBuffers,
) -> Result<Bytes, BackendError> {
    let key = key.to_string();
    let read_key = key.clone();
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Seek, SeekFrom};
        let failed = |message: String| BackendError::Io {
            key: read_key.clone(),
            message,
        };
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BackendError::NotFound { key: read_key })
            }
            Err(e) => return Err(failed(e.to_string())),
        };
        let wanted = range.end.saturating_sub(range.start);
        let mut buf = pool.take();
        buf.reserve(wanted as usize);
        file.seek(SeekFrom::Start(range.start))
            .and_then(|_| file.take(wanted).read_to_end(&mut buf))
            .map_err(|e| failed(e.to_string()))?;
        if buf.len() as u64 != wanted {
            return Err(failed(format!(
                "range {}..{} reaches past the end of the object ({} bytes read)",
                range.start,
                range.end,
                buf.len()
            )));
        }
        Ok(Bytes::from_owner(PooledRead { buf, pool }))
    })
    .await
    .map_err(|e| BackendError::Io {
        key,
        message: format!("reader failed: {e}"),
    })?
}
