//! Making local writes durable beyond a file's own `fsync`: the directory that names a file,
//! and a whole restored filesystem.

use std::path::Path;

/// Syncs a directory's entries: a file's `fsync` makes its bytes durable, not its name.
/// Filesystems that cannot sync a directory (some network and FUSE filesystems answer `EINVAL`)
/// are taken as they are, as restic does; a directory that is gone has nothing to sync.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::File::open(dir).and_then(|d| d.sync_all()) {
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                || e.kind() == std::io::ErrorKind::Unsupported
                || e.raw_os_error() == Some(libc::EINVAL) =>
        {
            Ok(())
        }
        Err(e) => Err(std::io::Error::new(
            e.kind(),
            format!("syncing directory {}: {e}", dir.display()),
        )),
        Ok(()) => Ok(()),
    }
}

/// Flushes the filesystem holding `path`, in one call: every file's data and metadata and the
/// directories naming them. It also reports a write that failed on its way to disk (Linux 5.8
/// and later), which a writer returning before writeback never sees.
pub(crate) fn sync_filesystem(path: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let dir = std::fs::File::open(path)?;
    // SAFETY: `syncfs` takes a descriptor that stays open for the call and touches no memory.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
