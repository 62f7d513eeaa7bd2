//! The write path shared by every writer: skip known blobs, seal new ones, fill packs, upload
//! them in the background and index them.
//!
//! Order makes interruption safe: a pack is uploaded before an index file names it, and index
//! files are written before the snapshot that needs them. A writer killed at any point leaves at
//! worst packs no index names (check reports them, prune removes them) and never a snapshot
//! pointing at missing data. Index files are written every few packs, so a backup that is
//! interrupted and run again re-uses what already reached the repository.

use crate::backend::ObjectWriter;
use crate::blob::{BlobId, BlobKind};
use crate::index::{Index, IndexFile, IndexPack};
use crate::meta::FORMAT_VERSION;
use crate::pack::{PackEntry, PackWriteError, PackWriter};
use crate::repo::{RepoError, Repository};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

thread_local! {
    /// Each sealing thread's buffer for the blob it seals: kept, so sealing allocates nothing.
    static SEALED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Buffers of packs stored in an object store, kept for the next packs: with the uploads in
/// flight, the one queued and the one filling, one spare is all the pack memory a writer needs.
type PackBuffers = Arc<Mutex<Vec<Vec<u8>>>>;

/// A pack being filled.
type Packer = PackWriter<ObjectWriter>;

/// A new pack: in a local repository straight into its staging file, so that a writer holds no
/// pack in memory (restic stages packs in temporary files for the same reason); for an object
/// store in a buffer that fits a full pack, its largest blob and the header without
/// reallocating (a stored pack's buffer when there is one). Tree packs are rarely full: their
/// buffers grow.
fn new_pack(repo: &Repository, buffers: &PackBuffers, kind: BlobKind) -> Packer {
    let pack_size = repo.config().pack_size as usize;
    let capacity = pack_size + pack_size / 4;
    let out = repo.backend().writer("data", || {
        if kind == BlobKind::Tree {
            return Vec::new();
        }
        match buffers.lock().expect("pack buffers").pop() {
            Some(mut b) if b.capacity() >= capacity => {
                b.clear();
                b
            }
            _ => Vec::with_capacity(capacity),
        }
    });
    PackWriter::to(repo.codec().clone(), out)
}

/// Index files are written after this many packs, or this long after the last one (and at the
/// end): a backup killed mid-way leaves at most this much data that a re-run cannot reuse.
const PACKS_PER_INDEX: usize = 8;
const INDEX_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);
/// Packs uploading at once to an object store; with 16 MiB packs (and one waiting in the
/// channel) that bounds upload memory near 50 MiB. A local repository writes one at a time.
const UPLOADS: usize = 2;

struct FinishedPack {
    id: String,
    object: ObjectWriter,
    entries: Vec<PackEntry>,
}

#[derive(Debug, Default)]
pub(crate) struct SaverStats {
    pub new_blobs: AtomicU64,
    pub new_bytes: AtomicU64,
    pub stored_bytes: AtomicU64,
}

pub(crate) struct Saver {
    repo: Arc<Repository>,
    known: Arc<Index>,
    pending: Mutex<HashSet<BlobId>>,
    packer: Mutex<Packer>,
    /// Trees go to packs of their own, as restic keeps them: walking a snapshot's trees (check,
    /// prune, the next backup) then reads a few packs end to end instead of ranges scattered
    /// among the data.
    tree_packer: Mutex<Packer>,
    pack_size: u64,
    tx: Mutex<Option<mpsc::Sender<FinishedPack>>>,
    uploader: Mutex<Option<JoinHandle<Result<(), RepoError>>>>,
    /// Every pack this saver stored, as indexed.
    written: Arc<Mutex<Vec<IndexPack>>>,
    buffers: PackBuffers,
    pub stats: SaverStats,
}

impl Saver {
    /// Must be called inside a tokio runtime (the uploader runs on it).
    pub fn new(repo: Arc<Repository>) -> Saver {
        let known = repo.index();
        Self::with_known(repo, known)
    }

    /// A saver that writes every blob it is given, even those the index already has (prune
    /// moves live blobs out of packs it is about to delete).
    pub fn for_repack(repo: Arc<Repository>) -> Saver {
        Self::with_known(repo, Arc::new(Index::default()))
    }

    fn with_known(repo: Arc<Repository>, known: Arc<Index>) -> Saver {
        let (tx, rx) = mpsc::channel(1);
        let written = Arc::new(Mutex::new(Vec::new()));
        let buffers = PackBuffers::default();
        let uploader = tokio::spawn(upload(repo.clone(), rx, written.clone(), buffers.clone()));
        Saver {
            known,
            pending: Mutex::new(HashSet::new()),
            packer: Mutex::new(new_pack(&repo, &buffers, BlobKind::Data)),
            tree_packer: Mutex::new(new_pack(&repo, &buffers, BlobKind::Tree)),
            buffers,
            pack_size: repo.config().pack_size as u64,
            tx: Mutex::new(Some(tx)),
            uploader: Mutex::new(Some(uploader)),
            written,
            stats: SaverStats::default(),
            repo,
        }
    }

    /// Stores a blob unless the repository (or this writer) already has it. Blocking: call from
    /// worker threads, not async tasks.
    pub fn save(&self, kind: BlobKind, plaintext: &[u8]) -> Result<BlobId, RepoError> {
        let codec = self.repo.codec();
        let id = codec.id_of(plaintext);
        if self.known.contains(&id) || !self.pending.lock().expect("pending").insert(id) {
            return Ok(id);
        }
        SEALED.with_borrow_mut(|sealed| {
            codec
                .seal_into(kind, &id, plaintext, sealed)
                .map_err(|source| RepoError::Seal {
                    what: format!("blob {id}"),
                    source,
                })?;
            let packed = self.pack_sealed(kind, id, sealed, plaintext.len());
            // A rare huge blob (a very large tree) should not pin its memory in this thread.
            if sealed.capacity() > 32 << 20 {
                *sealed = Vec::new();
            }
            packed
        })?;
        Ok(id)
    }

    /// Adds a sealed blob to its pack; sends the pack off when it is full.
    fn pack_sealed(
        &self,
        kind: BlobKind,
        id: BlobId,
        sealed: &[u8],
        plaintext_len: usize,
    ) -> Result<(), RepoError> {
        self.stats.new_blobs.fetch_add(1, Ordering::Relaxed);
        self.stats
            .new_bytes
            .fetch_add(plaintext_len as u64, Ordering::Relaxed);
        self.stats
            .stored_bytes
            .fetch_add(sealed.len() as u64, Ordering::Relaxed);
        let full = {
            let mut packer = match kind {
                BlobKind::Tree => self.tree_packer.lock().expect("tree packer"),
                _ => self.packer.lock().expect("packer"),
            };
            if let Err(e) = packer.add_sealed(kind, id, sealed, plaintext_len as u32) {
                // Part of the blob may be in the pack: it must never be stored (finish() sends
                // what is left). Dropping it removes its staging file.
                let broken =
                    std::mem::replace(&mut *packer, new_pack(&self.repo, &self.buffers, kind));
                return Err(RepoError::io(broken.out().describe(), e));
            }
            (packer.size() >= self.pack_size)
                .then(|| std::mem::replace(&mut *packer, new_pack(&self.repo, &self.buffers, kind)))
        };
        if let Some(pack) = full {
            self.send(pack)?;
        }
        Ok(())
    }

    fn send(&self, pack: Packer) -> Result<(), RepoError> {
        let place = pack.out().describe();
        let (id, object, entries) = pack.finish().map_err(|e| match e {
            PackWriteError::Header(source) => RepoError::Seal {
                what: "a pack header".into(),
                source,
            },
            PackWriteError::Write(e) => RepoError::io(place, e),
        })?;
        let tx = self.tx.lock().expect("sender").clone();
        let Some(tx) = tx else {
            return Err(RepoError::Interrupted);
        };
        tx.blocking_send(FinishedPack {
            id,
            object,
            entries,
        })
        .map_err(|_| RepoError::Interrupted)
    }

    /// The repository's chunker parameters.
    pub fn chunker(&self) -> crate::chunker::ChunkerParams {
        self.repo.config().chunker
    }

    /// The packs stored so far (all of them, after [`Saver::finish`]).
    pub fn written(&self) -> Vec<IndexPack> {
        self.written.lock().expect("written").clone()
    }

    /// Uploads the last pack and waits until everything is stored and indexed. Blocking.
    pub fn finish(&self) -> Result<(), RepoError> {
        let mut sent = Ok(());
        for packer in [&self.packer, &self.tree_packer] {
            let last = std::mem::replace(
                &mut *packer.lock().expect("packer"),
                PackWriter::to(self.repo.codec().clone(), ObjectWriter::Memory(Vec::new())),
            );
            if !last.is_empty() && sent.is_ok() {
                sent = self.send(last);
            }
        }
        self.tx.lock().expect("sender").take();
        let uploader = self.uploader.lock().expect("uploader").take();
        let uploaded = match uploader {
            Some(handle) => tokio::runtime::Handle::current()
                .block_on(handle)
                .unwrap_or_else(|e| Err(RepoError::Invalid(format!("uploader failed: {e}")))),
            None => Ok(()),
        };
        // The uploader's error explains a failed send better than "interrupted".
        uploaded.and(sent)
    }
}

async fn upload(
    repo: Arc<Repository>,
    mut rx: mpsc::Receiver<FinishedPack>,
    written: Arc<Mutex<Vec<IndexPack>>>,
    buffers: PackBuffers,
) -> Result<(), RepoError> {
    let uploads = if repo.backend().is_local() {
        1
    } else {
        UPLOADS
    };
    let mut in_flight = FuturesUnordered::new();
    let mut unindexed: Vec<IndexPack> = Vec::new();
    let mut open = true;
    let mut last_index = std::time::Instant::now();
    loop {
        tokio::select! {
            pack = rx.recv(), if open && in_flight.len() < uploads => match pack {
                Some(pack) => {
                    let (repo, buffers) = (repo.clone(), buffers.clone());
                    in_flight.push(async move {
                        let size = pack.object.len();
                        let key = format!("data/{}", pack.id);
                        let buffer = repo.backend().put_written(&key, pack.object).await?;
                        tracing::debug!(pack = %pack.id, size, blobs = pack.entries.len(), "pack stored");
                        if let Some(buffer) = buffer {
                            let mut kept = buffers.lock().expect("pack buffers");
                            if kept.is_empty() {
                                kept.push(buffer);
                            }
                        }
                        Ok::<_, RepoError>(IndexPack::new(pack.id, size, &pack.entries))
                    });
                }
                None => open = false,
            },
            Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                let done = done?;
                written.lock().expect("written").push(done.clone());
                unindexed.push(done);
                if unindexed.len() >= PACKS_PER_INDEX || last_index.elapsed() >= INDEX_INTERVAL {
                    write_index(&repo, std::mem::take(&mut unindexed)).await?;
                    last_index = std::time::Instant::now();
                }
            },
            else => break,
        }
    }
    if !unindexed.is_empty() {
        write_index(&repo, unindexed).await?;
    }
    Ok(())
}

async fn write_index(repo: &Repository, packs: Vec<IndexPack>) -> Result<(), RepoError> {
    let file = IndexFile {
        version: FORMAT_VERSION,
        supersedes: Vec::new(),
        packs,
    };
    let name = repo.save_meta("index", &file).await?;
    tracing::debug!(index = %name, packs = file.packs.len(), "index written");
    repo.extend_index(name, &file);
    Ok(())
}
