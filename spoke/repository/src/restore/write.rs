//! Writing a restore: fetching packs in parallel, verifying each blob, writing it where the plan
//! says, and the files' metadata.

use crate::backup::block::is_zero;
use crate::blob::{BlobId, BlobKind};
use crate::index::Index;
use crate::progress::Progress;
use crate::repo::{RepoError, Repository};
use crate::tree::Node;
use futures::{StreamExt, TryStreamExt};
use std::collections::HashMap;
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Blobs closer than this in a pack are fetched in one read...
const COALESCE_GAP: u64 = 256 * 1024;
/// ...of at most this many bytes from an object store (bounding memory: reads in flight × this;
/// fewer, larger requests cost less there)...
const MAX_READ: u64 = 8 * 1024 * 1024;
/// ...and from a local file, where a read costs little more than its bytes.
const MAX_LOCAL_READ: u64 = 2 * 1024 * 1024;
/// Reads in flight at once from an object store...
const PARALLEL_READS: usize = 6;
/// ...and from local files: enough to keep every core decoding, and the disk busy once packs
/// are no longer in the page cache (backups drop what they write).
const LOCAL_READS: usize = 4;

/// Where one blob goes: a file (by position in the plan) and an offset in it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Target {
    pub file: usize,
    pub offset: u64,
    /// The blob is the file's whole content: the file was created empty (see
    /// [`sized_by_write`]) and gets its size here, by a length change when the blob is all zeros.
    pub whole: bool,
}

/// What to write: files and the blobs that fill them.
#[derive(Default)]
pub(crate) struct WritePlan {
    files: Vec<PathBuf>,
    /// Per file, the modification time its writer sets once the file's one blob is written
    /// (files [`sized_by_write`]); the others get theirs after every write.
    mtimes: Vec<Option<libc::timespec>>,
    blobs: HashMap<BlobId, Vec<Target>>,
    pub bytes: u64,
    /// What happens to written ranges.
    writeback: Writeback,
    /// Written ranges whose writeback has started, oldest first (file, offset, length): each is
    /// waited for and dropped once [`WRITEBACK_LAG`] newer ones follow, so a writer seldom
    /// waits for the disk to finish what it has just written.
    in_writeback: std::sync::Mutex<std::collections::VecDeque<(usize, u64, usize)>>,
}

/// Ranges (blobs: 512 KiB for volume images) in writeback before the oldest is waited for.
const WRITEBACK_LAG: usize = 64;

/// What a restore does with the ranges it has written.
#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum Writeback {
    /// Left to the kernel.
    #[default]
    Later,
    /// Their writeback starts at once, so a restore that syncs at the end waits for little.
    /// Waiting for each range as `Through` does was slower for many files: mixed 1 GiB durable
    /// in 0.63-0.69 s against 0.69-0.79 (nine alternated pairs).
    Started,
    /// Started at once, waited for [`WRITEBACK_LAG`] ranges later and dropped from the page
    /// cache: one large file, such as a volume image, does not fill memory.
    Through,
}

impl WritePlan {
    /// A plan for one large file, `path` (an image or a device), written through to disk.
    pub(super) fn for_image(path: &Path, bytes: u64) -> WritePlan {
        WritePlan {
            files: vec![path.to_path_buf()],
            mtimes: vec![None],
            blobs: HashMap::new(),
            bytes,
            writeback: Writeback::Through,
            in_writeback: Default::default(),
        }
    }

    /// Files of several blobs start going to disk range by range as they are written, not all
    /// at the end: for a restore that must be on disk when it returns.
    pub(super) fn start_writeback(&mut self) {
        self.writeback = Writeback::Started;
    }

    pub(super) fn add_target(&mut self, id: BlobId, target: Target) {
        self.blobs.entry(id).or_default().push(target);
    }

    /// Adds a file and places its blobs end to end by their plaintext lengths in the index;
    /// they must add up to the size the snapshot records. Says how the file is to be sized
    /// when it is created.
    pub(super) fn add_file_content(
        &mut self,
        index: &Index,
        path: &Path,
        node: &Node,
    ) -> Result<Sizing, RepoError> {
        let file = self.files.len();
        self.files.push(path.to_path_buf());
        let mut offset = 0u64;
        let whole = sized_by_write(node);
        self.mtimes.push(whole.then(|| mtime(node)));
        let mut may_have_holes = false;
        for id in &node.content {
            let loc = index.get(id).ok_or_else(|| RepoError::MissingBlob {
                id: *id,
                context: format!("content of {}", path.display()),
            })?;
            self.add_target(
                *id,
                Target {
                    file,
                    offset,
                    whole,
                },
            );
            offset += loc.raw_length as u64;
            may_have_holes |= u64::from(loc.length) * HOLE_RATIO < u64::from(loc.raw_length);
        }
        if offset != node.size {
            return Err(RepoError::Invalid(format!(
                "{}: content adds up to {offset} bytes but the snapshot records {}",
                path.display(),
                node.size
            )));
        }
        self.bytes += node.size;
        Ok(match (whole || node.size == 0, may_have_holes) {
            (true, _) => Sizing::ByWrite,
            (false, true) => Sizing::Sparse(node.size),
            (false, false) => Sizing::Allocated(node.size),
        })
    }
}

/// A blob stored this many times smaller than its plaintext may be all zeros, which a restore
/// leaves unwritten (a hole); zstd shrinks a block of zeros thousands of times, text some 3-10.
const HOLE_RATIO: u64 = 64;

/// How a restored file gets its size before its blobs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sizing {
    /// Created empty; its one blob's write (or length change) sizes it ([`sized_by_write`]),
    /// or it has no content.
    ByWrite,
    /// Given its length, unallocated: blobs of zeros stay holes.
    Sparse(u64),
    /// Allocated whole (`fallocate`): it has no blob that could be a hole, and writing into
    /// allocated blocks costs the kernel about a third less CPU than allocating them page by
    /// page as the writes come (measured on ext4, docs/benchmarks.md, session 13).
    Allocated(u64),
}

/// Removes what is at `path` unless it is a regular file (a restore replaces it).
pub(super) fn clear_path(path: &Path) -> Result<(), RepoError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path).map_err(|e| RepoError::io(path, e)),
        Ok(m) if !m.is_file() => std::fs::remove_file(path).map_err(|e| RepoError::io(path, e)),
        _ => Ok(()),
    }
}

/// Whether a restored file is created empty and gets its size from its one blob's write (one
/// call fewer per small file); files of several blobs are sized first, so that blobs of zeros
/// need no write.
pub(super) fn sized_by_write(node: &Node) -> bool {
    node.content.len() == 1
}

/// What of its metadata a restored file still needs after its creation and its writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pending {
    pub owner: bool,
    pub mode: bool,
    pub mtime: bool,
}

impl Pending {
    /// Everything: for what the restore did not create itself (directories, symlinks).
    pub const ALL: Pending = Pending {
        owner: true,
        mode: true,
        mtime: true,
    };
    /// A symlink's: Linux keeps no mode of a link's own.
    pub const SYMLINK: Pending = Pending {
        mode: false,
        ..Pending::ALL
    };
}

/// Creates (or truncates) the file at `path` with the node's mode and gives it its size; the
/// caller has cleared the path. Says what the file will still lack: owner and mode unless it
/// was created with them (the usual case: a restore by the files' owner, or root restoring
/// root's files), and its modification time unless its writer sets it (files of one blob). A
/// small file usually needs nothing more: three path lookups fewer per file.
pub(super) fn create_file(path: &Path, node: &Node, sizing: Sizing) -> Result<Pending, RepoError> {
    use std::os::unix::fs::MetadataExt;
    let f = create_truncated(path, node.mode & 0o777)?;
    match sizing {
        Sizing::ByWrite => {}
        Sizing::Sparse(size) => f.set_len(size).map_err(|e| RepoError::io(path, e))?,
        Sizing::Allocated(size) => {
            // A filesystem that cannot allocate ahead (or is short of space for it, while
            // compressing ones may still fit the data) gets the sparse length instead: never
            // worse than not allocating.
            if allocate(&f, size).is_err() {
                f.set_len(size).map_err(|e| RepoError::io(path, e))?;
            }
        }
    }
    let created = f.metadata().map_err(|e| RepoError::io(path, e))?;
    Ok(Pending {
        owner: created.uid() != node.uid || created.gid() != node.gid,
        mtime: !sized_by_write(node),
        // Setuid, setgid and sticky are always set last: the umask does not cover them, and a
        // write by anyone but root clears the first two.
        mode: created.mode() & 0o7777 != node.mode || node.mode & 0o7000 != 0,
    })
}

/// Allocates the first `size` bytes of `f` and makes that its length.
fn allocate(f: &File, size: u64) -> std::io::Result<()> {
    let size =
        i64::try_from(size).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: fallocate on a descriptor we own; no memory is passed.
    match unsafe { libc::fallocate(std::os::fd::AsRawFd::as_raw_fd(f), 0, 0, size) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

pub(super) fn create_sized(path: &Path, size: u64) -> Result<(), RepoError> {
    clear_path(path)?;
    let f = create_truncated(path, 0o666)?;
    f.set_len(size).map_err(|e| RepoError::io(path, e))
}

/// Opens `path` for writing, created with `mode` (less the umask) or truncated, never through a
/// symlink.
fn create_truncated(path: &Path, mode: u32) -> Result<File, RepoError> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| RepoError::io(path, e))
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
    let local = repo.backend().is_local();
    let max_read = if local { MAX_LOCAL_READ } else { MAX_READ };
    let mut reads = Vec::new();
    for (pack, mut blobs) in by_pack {
        blobs.sort();
        let mut group: Vec<(u64, u32, BlobId)> = Vec::new();
        for b in blobs {
            if let (Some(first), Some(last)) = (group.first(), group.last()) {
                let gap = b.0.saturating_sub(last.0 + last.1 as u64);
                if gap > COALESCE_GAP || b.0 + b.1 as u64 - first.0 > max_read {
                    reads.push((pack, std::mem::take(&mut group)));
                }
            }
            group.push(b);
        }
        reads.push((pack, group));
    }
    let reads = two_lanes(reads, |(_, group)| {
        let first = &plan.blobs[&group[0].2][0];
        (first.file, first.offset)
    });
    let plan = Arc::new(plan);
    futures::stream::iter(reads)
        .map(|(pack, group)| {
            let (repo, index, plan, progress) =
                (repo.clone(), index.clone(), plan.clone(), progress.clone());
            async move {
                let pack_id = index.pack_id(pack).to_string();
                let start = group[0].0;
                let end = group.last().map(|b| b.0 + b.1 as u64).unwrap_or(start);
                let key = format!("data/{pack_id}");
                let bytes = repo.backend().get_range(&key, start..end).await?;
                // Reads overlap (an object store answers slowly); decoding and writing run on
                // the compute pool, one per core, so only those threads hold decoding buffers
                // and no more writers than cores contend for the same files.
                let (tx, rx) = tokio::sync::oneshot::channel();
                crate::pool::spawn(move || {
                    let _ = tx.send(write_group(
                        &repo, &plan, &pack_id, start, &bytes, &group, &progress,
                    ));
                });
                rx.await.map_err(|_| {
                    RepoError::Invalid(format!("{key}: the restore task writing its blobs failed"))
                })?
            }
        })
        .buffer_unordered(if local { LOCAL_READS } else { PARALLEL_READS })
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Orders reads so that those in flight together write different files: sorted by where they
/// write first (the plan's file order, then offset), then alternating between the first half and
/// the second. Two threads writing one file wait for each other — a buffered write holds the
/// file's lock while it copies — and a large file's blobs are spread over consecutive packs.
fn two_lanes<T, K: Ord>(mut reads: Vec<T>, key: impl Fn(&T) -> K) -> Vec<T> {
    reads.sort_by_cached_key(|r| key(r));
    let second = reads.split_off(reads.len().div_ceil(2));
    let mut out = Vec::with_capacity(reads.len() + second.len());
    let mut second = second.into_iter();
    for r in reads {
        out.push(r);
        out.extend(second.next());
    }
    out
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
                    if zero && !t.whole {
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
                    let path = &plan.files[t.file];
                    if zero {
                        // Created empty: it gets its size, its zeros stay unwritten (sparse).
                        file.set_len(plain.len() as u64)
                            .map_err(|e| RepoError::io(path, e))?;
                    } else {
                        crate::pieces::write_all_at(file, plain, t.offset)
                            .map_err(|e| RepoError::io(path, e))?;
                    }
                    if let Some(time) = &plan.mtimes[t.file] {
                        set_mtime_fd(file, time).map_err(|e| RepoError::io(path, e))?;
                        continue;
                    }
                    if plan.writeback != Writeback::Later && !zero {
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
    if written.is_empty() {
        return Ok(());
    }
    for (file, offset, len) in &written {
        if let Some(f) = open.get(file) {
            writeback(f, *offset, *len, false).map_err(|e| RepoError::io(&plan.files[*file], e))?;
        }
    }
    if plan.writeback != Writeback::Through {
        return Ok(());
    }
    let due: Vec<(usize, u64, usize)> = {
        let mut queue = plan.in_writeback.lock().expect("writeback queue");
        queue.extend(written);
        let excess = queue.len().saturating_sub(WRITEBACK_LAG);
        queue.drain(..excess).collect()
    };
    // Any descriptor of a file reaches its pages: the one this group wrote with will do.
    for (file, offset, len) in due {
        let path = &plan.files[file];
        let f = match open.get(&file) {
            Some(f) => f,
            None => &OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| RepoError::io(path, e))?,
        };
        writeback(f, offset, len, true).map_err(|e| RepoError::io(path, e))?;
    }
    Ok(())
}

/// Starts writing a range to disk; with `finish`, waits until it is there and drops it from
/// the page cache (a restored image of gigabytes should not fill memory with dirty pages, and
/// on this kind of machine fresh page cache costs more than reused).
fn writeback(file: &File, offset: u64, len: usize, finish: bool) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    let flags = if finish {
        libc::SYNC_FILE_RANGE_WAIT_BEFORE
            | libc::SYNC_FILE_RANGE_WRITE
            | libc::SYNC_FILE_RANGE_WAIT_AFTER
    } else {
        libc::SYNC_FILE_RANGE_WRITE
    };
    // SAFETY: the descriptor is open for the duration of both calls; neither touches memory.
    let rc = unsafe { libc::sync_file_range(fd, offset as i64, len as i64, flags) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if finish {
        // SAFETY: as above; advice only.
        unsafe { libc::posix_fadvise(fd, offset as i64, len as i64, libc::POSIX_FADV_DONTNEED) };
    }
    Ok(())
}

/// Sets what is `pending` of owner, mode and modification time, without following symlinks;
/// says whether the node's owner is in place (not running as root, it cannot be: counted, not
/// fatal).
pub(super) fn apply_metadata(
    path: &Path,
    node: &Node,
    pending: Pending,
) -> Result<bool, RepoError> {
    if !(pending.owner || pending.mode || pending.mtime) {
        return Ok(true);
    }
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| RepoError::Invalid(format!("{}: path contains NUL", path.display())))?;
    // SAFETY: c is a valid NUL-terminated path; the calls only read it.
    let owned = !pending.owner || unsafe { libc::lchown(c.as_ptr(), node.uid, node.gid) } == 0;
    // After the owner: a change of owner clears setuid and setgid.
    if pending.mode {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(node.mode))
            .map_err(|e| RepoError::io(path, e))?;
    }
    if !pending.mtime {
        return Ok(owned);
    }
    let times = [omit_atime(), mtime(node)];
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

fn mtime(node: &Node) -> libc::timespec {
    libc::timespec {
        tv_sec: node.mtime as libc::time_t,
        tv_nsec: node.mtime_nsec as libc::c_long,
    }
}

fn omit_atime() -> libc::timespec {
    libc::timespec {
        tv_sec: 0,
        tv_nsec: libc::UTIME_OMIT,
    }
}

/// Sets a file's modification time through its descriptor (no path lookup).
fn set_mtime_fd(file: &File, mtime: &libc::timespec) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let times = [omit_atime(), *mtime];
    // SAFETY: the descriptor is open; times points at two timespecs as futimens requires.
    if unsafe { libc::futimens(file.as_raw_fd(), times.as_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::two_lanes;

    #[test]
    fn reads_alternate_between_the_two_halves_of_the_file_order() {
        // (file, offset) of each read's first write, in pack order.
        let reads = vec![(2, 0), (0, 5), (1, 0), (0, 0), (3, 0)];
        let ordered = two_lanes(reads, |r| *r);
        assert_eq!(ordered, vec![(0, 0), (2, 0), (0, 5), (3, 0), (1, 0)]);
        assert!(two_lanes(Vec::<u8>::new(), |r| *r).is_empty());
    }
}
