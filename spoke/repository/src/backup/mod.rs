//! Backups: a filesystem tree ([`fs`]) or a block volume ([`block`]) into a snapshot.
//!
//! Both are pipelines: one thread reads (in order), a pool hashes and seals what is new (in
//! parallel), the saver's uploader stores packs (concurrently), and the snapshot manifest is
//! written last.

pub mod archive;
pub mod block;
pub mod fs;

use crate::lock::{Lock, LockOptions};
use crate::progress::{ProgressFn, Reporter};
use crate::repo::{RepoError, Repository};
use crate::saver::Saver;
use crate::tree::{Snapshot, SnapshotKind, Summary};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Bytes read before a batch goes to the sealing pool. Two batches are sealed while a third is
/// read, so this is most of a backup's memory: 6 MiB kept the speed and the peak of 8 MiB with
/// one batch sealed at a time; 4 MiB slowed small files.
pub(crate) const BATCH_BYTES: usize = 6 * 1024 * 1024;

#[derive(Clone, Default)]
pub struct BackupOptions {
    /// Name recorded as the snapshot's source; defaults to the path backed up.
    pub source: Option<String>,
    pub tags: Vec<String>,
    /// The snapshot to compare with: unchanged files (block chunks, with a change list) are
    /// taken from it without reading. `None` uses the latest snapshot of the same source;
    /// `Some("")` uses none.
    pub parent: Option<String>,
    pub lock: LockOptions,
    pub progress: Option<ProgressFn>,
}

impl std::fmt::Debug for BackupOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupOptions")
            .field("source", &self.source)
            .field("tags", &self.tags)
            .field("parent", &self.parent)
            .finish()
    }
}

pub(crate) async fn find_parent(
    repo: &Repository,
    options: &BackupOptions,
    source: &str,
    kind: SnapshotKind,
) -> Result<Option<(String, Snapshot)>, RepoError> {
    match options.parent.as_deref() {
        Some("") => Ok(None),
        Some(query) => {
            let found = repo.find_snapshot(query, None).await?;
            if found.1.kind != kind {
                return Err(RepoError::Snapshot {
                    query: query.into(),
                    message: format!("is a {:?} snapshot, not {kind:?}", found.1.kind),
                });
            }
            Ok(Some(found))
        }
        None => Ok(repo
            .snapshots()
            .await?
            .into_iter()
            .rev()
            .find(|(_, s)| s.source == source && s.kind == kind)),
    }
}

/// What a finished pipeline knows of its snapshot.
pub(crate) struct Draft {
    pub source: String,
    pub kind: SnapshotKind,
    pub parent: Option<String>,
    pub tree: crate::blob::BlobId,
    pub root: Option<crate::tree::Node>,
    pub summary: Summary,
    pub started: Instant,
}

/// Writes the manifest once the data it names is stored and indexed, then ends the progress
/// reports and releases the backup's lock.
pub(crate) async fn commit(
    repo: &Repository,
    saver: &Saver,
    options: &BackupOptions,
    draft: Draft,
    (reporter, lock): (Reporter, Lock),
) -> Result<(String, Snapshot), RepoError> {
    let result = save_manifest(repo, saver, options, draft).await;
    reporter.finish();
    lock.release().await?;
    result
}

async fn save_manifest(
    repo: &Repository,
    saver: &Saver,
    options: &BackupOptions,
    draft: Draft,
) -> Result<(String, Snapshot), RepoError> {
    let Draft {
        source,
        kind,
        parent,
        tree,
        root,
        mut summary,
        started,
    } = draft;
    summary.new_blobs = saver.stats.new_blobs.load(Ordering::Relaxed);
    summary.new_bytes = saver.stats.new_bytes.load(Ordering::Relaxed);
    summary.stored_bytes = saver.stats.stored_bytes.load(Ordering::Relaxed);
    summary.duration_ms = started.elapsed().as_millis() as u64;
    let snapshot = Snapshot {
        version: crate::meta::FORMAT_VERSION,
        time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        hostname: crate::lock::hostname(),
        source,
        kind,
        tags: options.tags.clone(),
        parent,
        tree,
        root,
        summary,
    };
    let name = repo.save_snapshot(&snapshot).await?;
    tracing::info!(
        snapshot = %name,
        files = snapshot.summary.files,
        bytes = snapshot.summary.bytes,
        new_bytes = snapshot.summary.new_bytes,
        stored_bytes = snapshot.summary.stored_bytes,
        "snapshot saved"
    );
    Ok((name, snapshot))
}

/// Runs blocking pipeline work on the blocking pool, keeping the runtime's context so it can
/// reach the uploader.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RepoError> + Send + 'static,
) -> Result<T, RepoError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RepoError::Invalid(format!("worker failed: {e}")))?
}

/// The outcome of a reader and a processor run side by side: the first real error wins over
/// the "interrupted" the other side sees when its channel closes.
pub(crate) fn pipeline_result<T>(
    reader: Result<(), RepoError>,
    processor: Result<T, RepoError>,
) -> Result<T, RepoError> {
    match (reader, processor) {
        (Ok(()), p) => p,
        (Err(RepoError::Interrupted), Err(e)) => Err(e),
        (Err(e), _) => Err(e),
    }
}
