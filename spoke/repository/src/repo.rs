//! A repository opened with its key: config, index, blobs, trees and snapshots.

use crate::backend::{Backend, BackendError};
use crate::blob::{BlobCodec, BlobError, BlobId, BlobKind};
use crate::chunker::ChunkerParams;
use crate::index::{Index, IndexFile};
use crate::keys::{KdfParams, KeyError, KeyFile, MasterKey};
use crate::meta::{self, Config, MetaError, FORMAT_VERSION};
use crate::pack::PackError;
use crate::tree::{BlockMap, Snapshot, Tree};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::de::DeserializeOwned;
use std::sync::{Arc, RwLock};

/// Errors of the engine. Each names the object it is about: a key, a pack, a blob, a snapshot
/// or a path.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error(transparent)]
    Pack(#[from] PackError),
    #[error("blob {id} in pack {pack}: {source}")]
    Blob {
        id: BlobId,
        pack: String,
        #[source]
        source: BlobError,
    },
    #[error("sealing {what}: {source}")]
    Seal {
        what: String,
        #[source]
        source: BlobError,
    },
    #[error("{key}: {source}")]
    Key {
        key: String,
        #[source]
        source: KeyError,
    },
    #[error("{url}: no key file opens with this passphrase ({tried} tried)")]
    WrongPassphrase { url: String, tried: usize },
    #[error("{url}: a repository already exists here")]
    AlreadyInitialized { url: String },
    #[error("{url}: not a Ferry repository (no config)")]
    NotARepository { url: String },
    #[error("{0}")]
    Config(String),
    #[error("blob {id} ({context}) is not in the index")]
    MissingBlob { id: BlobId, context: String },
    #[error("tree {id}: {message}")]
    Tree { id: BlobId, message: String },
    #[error("snapshot {query:?}: {message}")]
    Snapshot { query: String, message: String },
    #[error("{0}")]
    Locked(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("interrupted")]
    Interrupted,
}

impl RepoError {
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> RepoError {
        RepoError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

/// Choices fixed when a repository is created.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub chunker: ChunkerParams,
    pub block_chunk_size: u32,
    pub pack_size: u32,
    pub kdf: KdfParams,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            chunker: ChunkerParams::default(),
            block_chunk_size: 512 * 1024,
            pack_size: 16 * 1024 * 1024,
            kdf: KdfParams::default(),
        }
    }
}

pub struct Repository {
    backend: Backend,
    codec: BlobCodec,
    config: Config,
    index: RwLock<Arc<Index>>,
    /// Index files that could not be read at the last load, each with why: skipped, so one
    /// damaged file does not stop every command (`check` reports them, `repair index` replaces
    /// them).
    damaged_index: RwLock<Vec<String>>,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Repository({})", self.backend.url())
    }
}

/// Random bytes in hex, for repository ids and lock names.
pub(crate) fn random_hex(bytes: usize) -> Result<String, RepoError> {
    use ring::rand::SecureRandom;
    let mut b = vec![0u8; bytes];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| RepoError::Seal {
            what: "a random name".into(),
            source: BlobError::Random,
        })?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

impl Repository {
    /// Creates a repository: a new master key wrapped by `passphrase`, and the config.
    pub async fn init(
        backend: Backend,
        passphrase: &[u8],
        options: InitOptions,
    ) -> Result<Repository, RepoError> {
        if backend.exists("config").await? {
            return Err(RepoError::AlreadyInitialized {
                url: backend.url().into(),
            });
        }
        let config = Config {
            version: FORMAT_VERSION,
            id: random_hex(16)?,
            chunker: options.chunker,
            block_chunk_size: options.block_chunk_size,
            pack_size: options.pack_size,
        };
        config.validate("config").map_err(RepoError::Config)?;
        let master = MasterKey::generate().map_err(|source| RepoError::Key {
            key: "new key".into(),
            source,
        })?;
        let key_file = master
            .wrap(passphrase, options.kdf)
            .map_err(|source| RepoError::Key {
                key: "new key".into(),
                source,
            })?;
        let key_json = serde_json::to_vec_pretty(&key_file).expect("key file serializes");
        let key_name = blake3::hash(&key_json).to_hex().to_string();
        backend
            .put(&format!("keys/{key_name}"), key_json.into())
            .await?;
        let codec = BlobCodec::new(&master);
        let (_, sealed) = meta::seal(&codec, &config).map_err(|source| RepoError::Seal {
            what: "config".into(),
            source,
        })?;
        match backend.put_new("config", sealed.into()).await {
            Ok(()) => {}
            // Another writer initialised it first: its config stands, and this key, which
            // would unlock nothing, goes.
            Err(BackendError::AlreadyExists { .. }) => {
                let _ = backend.delete(&format!("keys/{key_name}")).await;
                return Err(RepoError::AlreadyInitialized {
                    url: backend.url().into(),
                });
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(url = backend.url(), id = %config.id, "repository created");
        Ok(Repository {
            backend,
            codec,
            config,
            index: RwLock::new(Arc::new(Index::default())),
            damaged_index: RwLock::new(Vec::new()),
        })
    }

    /// Opens a repository with a passphrase and loads its index.
    pub async fn open(backend: Backend, passphrase: &[u8]) -> Result<Repository, RepoError> {
        // The config, the key files and the index files are fetched at once: none is needed to
        // fetch another, only to open them, and over an object store each fetch is a round trip.
        // The index goes on in the background while the passphrase is tried, and is dropped
        // (its requests cancelled) when the repository does not open: a wrong passphrase is
        // reported without waiting for a large repository's whole index.
        let index = IndexFetch(tokio::spawn({
            let backend = backend.clone();
            async move { fetch_index_files(&backend).await }
        }));
        let keys = async {
            let listed = backend.list("keys").await?;
            fetch_all(&backend, listed).await
        };
        let (config, keys) = futures::join!(backend.get("config"), keys);
        let config_bytes = match config {
            Ok(bytes) => bytes,
            Err(e) if e.is_not_found() => {
                return Err(RepoError::NotARepository {
                    url: backend.url().into(),
                })
            }
            Err(e) => return Err(e.into()),
        };
        let keys = keys?;
        let mut found = None;
        let mut unlocked_other = None;
        for (key, bytes) in &keys {
            let file: KeyFile = serde_json::from_slice(bytes).map_err(|e| RepoError::Key {
                key: key.clone(),
                source: KeyError::Malformed {
                    field: "(file)",
                    message: e.to_string(),
                },
            })?;
            match MasterKey::unwrap(&file, passphrase) {
                Ok(m) => {
                    // A key the passphrase opens but that does not open the config belongs to
                    // an init that lost a race (or another repository's leftovers): try on.
                    let codec = BlobCodec::new(&m);
                    match meta::open::<Config>(&codec, "config", &config_bytes, false, "config") {
                        Ok(config) => {
                            found = Some((codec, config));
                            break;
                        }
                        Err(e) => unlocked_other = Some(e),
                    }
                }
                Err(KeyError::WrongPassphrase) => continue,
                Err(source) => {
                    return Err(RepoError::Key {
                        key: key.clone(),
                        source,
                    })
                }
            }
        }
        let (codec, config) = match (found, unlocked_other) {
            (Some(found), _) => found,
            (None, Some(e)) => return Err(e.into()),
            (None, None) => {
                return Err(RepoError::WrongPassphrase {
                    url: backend.url().into(),
                    tried: keys.len(),
                })
            }
        };
        config.validate("config").map_err(RepoError::Config)?;
        let repo = Repository {
            backend,
            codec,
            config,
            index: RwLock::new(Arc::new(Index::default())),
            damaged_index: RwLock::new(Vec::new()),
        };
        let index = index.finish().await?;
        repo.install_index(repo.open_index_files(index));
        Ok(repo)
    }

    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    pub fn codec(&self) -> &BlobCodec {
        &self.codec
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A snapshot of the current index (cheap: shared).
    pub fn index(&self) -> Arc<Index> {
        self.index.read().expect("index lock").clone()
    }

    pub(crate) fn set_index(&self, index: Index) {
        *self.index.write().expect("index lock") = Arc::new(index);
    }

    /// Adds packs a writer has just indexed.
    pub(crate) fn extend_index(&self, file_name: String, file: &IndexFile) {
        let mut guard = self.index.write().expect("index lock");
        let index = Arc::make_mut(&mut guard);
        index.files.push(file_name);
        for p in &file.packs {
            index.add_pack(p);
        }
    }

    /// Reads every index file again (after other writers added theirs). A file that cannot be
    /// opened (damaged, truncated, of another format version) is skipped and remembered; only
    /// storage errors fail the load.
    pub async fn reload_index(&self) -> Result<(), RepoError> {
        let fetched = fetch_index_files(&self.backend).await?;
        self.install_index(self.open_index_files(fetched));
        Ok(())
    }

    fn install_index(&self, (files, damaged): (Vec<(String, IndexFile)>, Vec<String>)) {
        for problem in &damaged {
            tracing::warn!(problem = %problem, "index file skipped: run `repair index`");
        }
        self.set_index(Index::from_files(files));
        *self.damaged_index.write().expect("damaged index lock") = damaged;
    }

    /// Every index file that opens, by name, and why each other one does not.
    pub(crate) async fn load_index_files(
        &self,
    ) -> Result<(Vec<(String, IndexFile)>, Vec<String>), RepoError> {
        let fetched = fetch_index_files(&self.backend).await?;
        Ok(self.open_index_files(fetched))
    }

    /// Opens fetched index files: those that open, by name, sorted, and why each other does not.
    fn open_index_files(
        &self,
        fetched: Vec<(String, Bytes)>,
    ) -> (Vec<(String, IndexFile)>, Vec<String>) {
        let mut files = Vec::new();
        let mut damaged = Vec::new();
        for (key, bytes) in fetched {
            let opened = meta::open::<IndexFile>(&self.codec, &key, &bytes, true, "index file")
                .map_err(RepoError::from)
                .and_then(|f| {
                    if f.version == FORMAT_VERSION {
                        Ok(f)
                    } else {
                        Err(MetaError::Version {
                            key: key.clone(),
                            version: f.version,
                        }
                        .into())
                    }
                });
            match opened {
                Ok(f) => {
                    let name = key.rsplit('/').next().unwrap_or(&key).to_string();
                    files.push((name, f))
                }
                Err(e) => damaged.push(e.to_string()),
            }
        }
        files.sort_by(|a, b| a.0.cmp(&b.0));
        damaged.sort();
        (files, damaged)
    }

    /// Index files skipped at the last load, each with why.
    pub fn damaged_index_files(&self) -> Vec<String> {
        self.damaged_index
            .read()
            .expect("damaged index lock")
            .clone()
    }

    /// Takes out of the index the packs the storage no longer has, so that a writer stores
    /// their blobs again rather than pointing a new snapshot at lost data. Each index file that
    /// names such a pack is replaced by one without it (superseding it) and then deleted.
    /// Returns the lost packs; the snapshots that used them stay broken until restored from
    /// elsewhere, and `check` names them.
    pub async fn forget_missing_packs(&self) -> Result<Vec<String>, RepoError> {
        let stored: std::collections::HashSet<String> = self
            .backend
            .list("data")
            .await?
            .into_iter()
            .map(|l| l.key.trim_start_matches("data/").to_string())
            .collect();
        let missing: Vec<String> = self
            .index()
            .packs()
            .filter(|(_, id, _)| !stored.contains(*id))
            .map(|(_, id, _)| id.to_string())
            .collect();
        if missing.is_empty() {
            return Ok(missing);
        }
        for id in &missing {
            tracing::warn!(pack = %id, "pack in the index is missing from the repository: its blobs will be stored again");
        }
        let gone: std::collections::HashSet<&str> = missing.iter().map(String::as_str).collect();
        let (files, _) = self.load_index_files().await?;
        let superseded: std::collections::HashSet<&String> =
            files.iter().flat_map(|(_, f)| &f.supersedes).collect();
        for (name, file) in &files {
            if superseded.contains(name) || !file.packs.iter().any(|p| gone.contains(p.id.as_str()))
            {
                continue;
            }
            let replacement = IndexFile {
                version: FORMAT_VERSION,
                supersedes: vec![name.clone()],
                packs: file
                    .packs
                    .iter()
                    .filter(|p| !gone.contains(p.id.as_str()))
                    .cloned()
                    .collect(),
            };
            self.save_meta("index", &replacement).await?;
            self.backend.delete(&format!("index/{name}")).await?;
        }
        self.reload_index().await?;
        Ok(missing)
    }

    /// Loads and opens every sealed file in a folder, eight at a time; returns (name, value).
    pub(crate) async fn load_all<T: DeserializeOwned + Send + 'static>(
        &self,
        folder: &str,
        what: &'static str,
    ) -> Result<Vec<(String, T)>, RepoError> {
        // In listing order, which is by name.
        let fetched = fetch_all(&self.backend, self.backend.list(folder).await?).await?;
        fetched
            .into_iter()
            .map(|(key, bytes)| {
                let value: T = meta::open(&self.codec, &key, &bytes, true, what)?;
                let name = key.rsplit('/').next().unwrap_or(&key).to_string();
                Ok((name, value))
            })
            .collect()
    }

    /// Seals and stores a metadata file under `folder/`; returns its name.
    pub(crate) async fn save_meta<T: serde::Serialize>(
        &self,
        folder: &str,
        value: &T,
    ) -> Result<String, RepoError> {
        let (name, bytes) = meta::seal(&self.codec, value).map_err(|source| RepoError::Seal {
            what: format!("a new file in {folder}/"),
            source,
        })?;
        self.backend
            .put(&format!("{folder}/{name}"), Bytes::from(bytes))
            .await?;
        Ok(name)
    }

    /// Reads one blob, verifying it.
    pub async fn read_blob(&self, kind: BlobKind, id: &BlobId) -> Result<Vec<u8>, RepoError> {
        let index = self.index();
        let loc = *index.get(id).ok_or_else(|| RepoError::MissingBlob {
            id: *id,
            context: format!("{kind:?}").to_lowercase(),
        })?;
        let pack = index.pack_id(loc.pack).to_string();
        let sealed = self
            .backend
            .get_range(
                &format!("data/{pack}"),
                loc.offset..loc.offset + loc.length as u64,
            )
            .await?;
        self.codec
            .open(kind, id, &sealed)
            .map_err(|source| RepoError::Blob {
                id: *id,
                pack,
                source,
            })
    }

    pub async fn load_tree(&self, id: &BlobId) -> Result<Tree, RepoError> {
        let bytes = self.read_blob(BlobKind::Tree, id).await?;
        serde_json::from_slice(&bytes).map_err(|e| RepoError::Tree {
            id: *id,
            message: format!("not a valid directory tree: {e}"),
        })
    }

    pub async fn load_block_map(&self, id: &BlobId) -> Result<BlockMap, RepoError> {
        let bytes = self.read_blob(BlobKind::Tree, id).await?;
        let map: BlockMap = serde_json::from_slice(&bytes).map_err(|e| RepoError::Tree {
            id: *id,
            message: format!("not a valid block map: {e}"),
        })?;
        map.validate()
            .map_err(|message| RepoError::Tree { id: *id, message })?;
        Ok(map)
    }

    /// Every snapshot, oldest first.
    pub async fn snapshots(&self) -> Result<Vec<(String, Snapshot)>, RepoError> {
        let mut all = self.load_all::<Snapshot>("snapshots", "snapshot").await?;
        all.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        Ok(all)
    }

    /// Finds a snapshot by its name, a unique prefix of it, or `latest` (optionally the latest
    /// of a source).
    pub async fn find_snapshot(
        &self,
        query: &str,
        source: Option<&str>,
    ) -> Result<(String, Snapshot), RepoError> {
        let all = self.snapshots().await?;
        let not_found = |message: &str| RepoError::Snapshot {
            query: query.into(),
            message: message.into(),
        };
        if query == "latest" {
            return all
                .into_iter()
                .rev()
                .find(|(_, s)| source.is_none_or(|src| s.source == src))
                .ok_or_else(|| not_found("the repository has no snapshot of this source"));
        }
        let mut matching: Vec<_> = all
            .into_iter()
            .filter(|(name, _)| name.starts_with(query))
            .collect();
        match matching.len() {
            0 => Err(not_found("no such snapshot")),
            1 => Ok(matching.remove(0)),
            n => Err(not_found(&format!(
                "{n} snapshots start with this; give more digits"
            ))),
        }
    }

    pub(crate) async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<String, RepoError> {
        self.save_meta("snapshots", snapshot).await
    }

    /// Removes snapshots (their data stays until `prune`).
    pub async fn forget(&self, names: &[String]) -> Result<(), RepoError> {
        let all = self.snapshots().await?;
        for name in names {
            if !all.iter().any(|(n, _)| n == name) {
                return Err(RepoError::Snapshot {
                    query: name.clone(),
                    message: "no such snapshot".into(),
                });
            }
        }
        for name in names {
            self.backend.delete(&format!("snapshots/{name}")).await?;
            tracing::info!(snapshot = %name, "forgotten");
        }
        Ok(())
    }
}

/// The index files being fetched while a repository is opened; dropped unfinished, the fetch
/// stops.
struct IndexFetch(tokio::task::JoinHandle<Result<Vec<(String, Bytes)>, RepoError>>);

impl IndexFetch {
    async fn finish(mut self) -> Result<Vec<(String, Bytes)>, RepoError> {
        (&mut self.0)
            .await
            .map_err(|e| RepoError::Invalid(format!("fetching the index files: {e}")))?
    }
}

impl Drop for IndexFetch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Every index file's bytes, fetched eight at a time.
async fn fetch_index_files(backend: &Backend) -> Result<Vec<(String, Bytes)>, RepoError> {
    let listed = backend.list("index").await?;
    fetch_all(backend, listed).await
}

/// The listed objects' bytes, by key, in listing order, fetched eight at a time.
pub(crate) async fn fetch_all(
    backend: &Backend,
    listed: Vec<crate::backend::Listed>,
) -> Result<Vec<(String, Bytes)>, RepoError> {
    futures::stream::iter(listed)
        .map(|l| async move {
            let bytes = backend.get(&l.key).await?;
            Ok::<_, RepoError>((l.key, bytes))
        })
        .buffered(8)
        .try_collect()
        .await
}
