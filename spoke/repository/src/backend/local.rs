//! What a `file://` repository does beside object_store's local store: objects are written to a
//! staging file in their folder, synced, dropped from the page cache and renamed to their name;
//! the directories holding new names are synced before anything that may name them is stored;
//! ranges are read into pooled buffers.

use super::BackendError;
use crate::durable::sync_dir;
use crate::pieces::WRITE_PIECE;
use bytes::Bytes;
use std::collections::BTreeSet;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A local object being written, in a staging file beside its final name: a reader never sees
/// half an object, and a writer killed mid-way leaves `<stem>#<pid><n>`, the partial file
/// `check` reports and `prune` removes. The file is created at the first write and removed when
/// the writer is dropped before `StagedFile::store_as`.
pub struct StagedFile {
    dir: PathBuf,
    staging: PathBuf,
    file: Option<std::io::BufWriter<std::fs::File>>,
    len: u64,
    /// Whether this writer created its folder: the folder's own name is then new too.
    created_dir: bool,
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
            created_dir: false,
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
                if !self.dir.is_dir() {
                    std::fs::create_dir_all(&self.dir)?;
                    self.created_dir = true;
                }
                let file = std::fs::File::create(&self.staging)?;
                std::io::BufWriter::with_capacity(WRITE_PIECE, file)
            }
        };
        Ok(self.file.insert(file))
    }

    /// Gives the staged bytes the name `path`, once they are on disk (an index written later
    /// may point into them), and drops them from the page cache. Returns the directories whose
    /// entries changed, for [`UnsyncedDirs`]. Blocking.
    pub(super) fn store_as(self, path: &Path) -> std::io::Result<Vec<PathBuf>> {
        self.name(path, Naming::Replace)
    }

    fn name(mut self, path: &Path, naming: Naming) -> std::io::Result<Vec<PathBuf>> {
        let file = self.file()?;
        file.flush()?;
        file.get_ref().sync_data()?;
        release_cached(file.get_ref());
        match naming {
            Naming::Replace => {
                std::fs::rename(&self.staging, path)?;
                self.file = None;
            }
            // A second name, never replacing one; the staging name goes when `self` is dropped.
            Naming::New => std::fs::hard_link(&self.staging, path)?,
        }
        let mut changed = vec![self.dir.clone()];
        if self.created_dir {
            changed.extend(self.dir.parent().map(Path::to_path_buf));
        }
        Ok(changed)
    }
}

/// How a stored object takes its name.
pub(super) enum Naming {
    /// Replacing an object of that name (objects named by their content have the same bytes).
    Replace,
    /// Failing with `AlreadyExists` if the name is taken.
    New,
}

impl Write for StagedFile {
    /// Writes at most a megabyte at once (`crate::pieces`: larger writes cost more system time).
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

/// Stores a whole local object under `path`, through a staging file; with `Naming::New`, only
/// if no object has that name (config, locks). Whole objects are the repository's records
/// (index, snapshots, keys, config, locks), which may name packs stored before them: those
/// names are made durable first, and the object's own name before this returns.
pub(super) async fn put(
    path: PathBuf,
    data: Bytes,
    naming: Naming,
    unsynced: UnsyncedDirs,
) -> Result<(), BackendError> {
    blocking_write(path, move |path| {
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let stem = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let mut staged = StagedFile::new(dir, stem.as_deref().unwrap_or("object"));
        staged.write_all(&data)?;
        unsynced.commit(|| staged.name(path, naming))
    })
    .await
}

/// Removes a local object (gone already is fine).
pub(super) async fn delete(path: PathBuf, unsynced: UnsyncedDirs) -> Result<(), BackendError> {
    blocking_write(path, move |path| {
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        unsynced.remove_in(&dir, || match std::fs::remove_file(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        })
    })
    .await
}

/// Stores a staged object under `path`; its name is made durable with the next record.
pub(super) async fn store(
    staged: StagedFile,
    path: PathBuf,
    unsynced: UnsyncedDirs,
) -> Result<(), BackendError> {
    blocking_write(path, move |path| {
        let changed = staged.store_as(path)?;
        unsynced.add(changed);
        Ok(())
    })
    .await
}

/// Directories of a local repository holding names (new, renamed or removed) not yet known to
/// be on disk: a file's `fsync` makes its bytes durable, not its name; its directory's `fsync`
/// does. Packs are named in bulk, so their directory is synced once, before the next record
/// that may name them is stored, not once per pack: a crash cannot then leave an index naming
/// a pack whose name was lost.
#[derive(Clone, Default)]
pub(super) struct UnsyncedDirs(Arc<Mutex<BTreeSet<PathBuf>>>);

impl UnsyncedDirs {
    pub(super) fn add(&self, dirs: impl IntoIterator<Item = PathBuf>) {
        self.lock().extend(dirs);
    }

    /// Runs a record's `change` (which returns the directories it changed) once every name
    /// before it is durable, then makes its own names durable. The lock is held throughout: a
    /// record stored by another task meanwhile must not reach the disk before the names it may
    /// point at. Blocking.
    pub(super) fn commit(
        &self,
        change: impl FnOnce() -> std::io::Result<Vec<PathBuf>>,
    ) -> std::io::Result<()> {
        let mut unsynced = self.lock();
        sync_all_but(&mut unsynced, None)?;
        for dir in change()? {
            sync_dir(&dir)?;
            unsynced.remove(&dir);
        }
        Ok(())
    }

    /// Runs a removal in `dir` once names in other directories are durable (an index is removed
    /// only after its replacement is on disk, a pack only after no durable index names it); the
    /// removal itself becomes durable with the next record. Blocking.
    pub(super) fn remove_in(
        &self,
        dir: &Path,
        change: impl FnOnce() -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let mut unsynced = self.lock();
        sync_all_but(&mut unsynced, Some(dir))?;
        change()?;
        unsynced.insert(dir.to_path_buf());
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<PathBuf>> {
        // The set stays valid when a holder panicked: at worst a directory is synced twice.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    #[cfg(test)]
    pub(super) fn pending(&self) -> Vec<PathBuf> {
        self.lock().iter().cloned().collect()
    }
}

/// Syncs every directory in `unsynced` but `keep`, taking each out once it is synced.
fn sync_all_but(unsynced: &mut BTreeSet<PathBuf>, keep: Option<&Path>) -> std::io::Result<()> {
    let due: Vec<PathBuf> = unsynced
        .iter()
        .filter(|d| Some(d.as_path()) != keep)
        .cloned()
        .collect();
    for dir in due {
        sync_dir(&dir)?;
        unsynced.remove(&dir);
    }
    Ok(())
}

/// Runs a blocking write of the object at `path`; errors name it.
async fn blocking_write(
    path: PathBuf,
    write: impl FnOnce(&Path) -> std::io::Result<()> + Send + 'static,
) -> Result<(), BackendError> {
    let key = path.display().to_string();
    match tokio::task::spawn_blocking(move || write(&path)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(BackendError::AlreadyExists { key })
        }
        Ok(Err(e)) => Err(BackendError::Io {
            key,
            message: e.to_string(),
        }),
        Err(e) => Err(BackendError::Io {
            key,
            message: format!("writer failed: {e}"),
        }),
    }
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
