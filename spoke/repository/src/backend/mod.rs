//! Where a repository's objects live: any `object_store` store, behind one small handle.
//!
//! Every call is retried with exponential backoff (backon) when the failure may be transient;
//! "not found", "already exists" and bad configuration fail at once. Large objects go up in
//! multipart uploads so that a pack never has to be sent as one request.

use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

mod local;
mod location;
use local::Naming;
pub use local::StagedFile;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("repository location {url:?}: {message}")]
    Location { url: String, message: String },
    #[error("{key}: not found in the repository")]
    NotFound { key: String },
    #[error("{key}: already exists")]
    AlreadyExists { key: String },
    #[error("{key}: {message}")]
    Io { key: String, message: String },
    #[error("{op} {key}{}: {source}", credentials.map(|c| format!(" ({c})")).unwrap_or_default())]
    Store {
        op: &'static str,
        key: String,
        /// Where the store's credentials came from, when that is what a user must know to
        /// understand the failure (none configured: the cloud's metadata service was asked).
        credentials: Option<&'static str>,
        /// Boxed: object_store's errors are large, and every result of the backend carries room
        /// for one.
        #[source]
        source: Box<object_store::Error>,
    },
}

impl BackendError {
    fn from_store(
        op: &'static str,
        key: &str,
        credentials: Option<&'static str>,
        source: object_store::Error,
    ) -> BackendError {
        match source {
            object_store::Error::NotFound { .. } => BackendError::NotFound { key: key.into() },
            object_store::Error::AlreadyExists { .. } => {
                BackendError::AlreadyExists { key: key.into() }
            }
            source => BackendError::Store {
                op,
                key: key.into(),
                credentials,
                source: Box::new(source),
            },
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, BackendError::NotFound { .. })
    }
}

fn transient(e: &object_store::Error) -> bool {
    !matches!(
        e,
        object_store::Error::NotFound { .. }
            | object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. }
            | object_store::Error::NotSupported { .. }
            | object_store::Error::InvalidPath { .. }
            | object_store::Error::NotImplemented { .. }
            | object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. }
            | object_store::Error::UnknownConfigurationKey { .. }
    )
}

/// A new object, written piece by piece: see [`Backend::writer`].
pub enum ObjectWriter {
    Memory(Vec<u8>),
    Staged(StagedFile),
}

impl ObjectWriter {
    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        match self {
            ObjectWriter::Memory(v) => v.len() as u64,
            ObjectWriter::Staged(f) => f.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where the bytes go, for errors.
    pub fn describe(&self) -> String {
        match self {
            ObjectWriter::Memory(_) => "a new object in memory".into(),
            ObjectWriter::Staged(f) => f.path().display().to_string(),
        }
    }
}

impl std::io::Write for ObjectWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            ObjectWriter::Memory(v) => v.write(buf),
            ObjectWriter::Staged(f) => f.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            ObjectWriter::Memory(_) => Ok(()),
            ObjectWriter::Staged(f) => f.flush(),
        }
    }
}

/// Tuning of the backend; the defaults suit S3-compatible stores.
#[derive(Debug, Clone)]
pub struct BackendOptions {
    /// Objects at least this large are uploaded in parts.
    pub multipart_threshold: usize,
    pub part_size: usize,
    pub retries: usize,
    pub min_retry_delay: Duration,
}

impl Default for BackendOptions {
    fn default() -> Self {
        BackendOptions {
            multipart_threshold: 32 * 1024 * 1024,
            part_size: 8 * 1024 * 1024,
            retries: 6,
            min_retry_delay: Duration::from_millis(100),
        }
    }
}

/// An object listed by [`Backend::list`]: its key below the repository root, and its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub size: u64,
}

#[derive(Clone)]
pub struct Backend {
    store: Arc<dyn ObjectStore>,
    root: Path,
    url: String,
    options: BackendOptions,
    /// The directory of a `file://` repository, where a killed writer can leave the partial
    /// upload files (`<key>#<n>`) that object_store's listings do not show.
    local_dir: Option<std::path::PathBuf>,
    /// A local repository's directories with names not yet synced.
    unsynced: local::UnsyncedDirs,
    read_buffers: local::ReadBuffers,
    /// Said with the store's errors: where its credentials came from, when that matters.
    credentials: Option<&'static str>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Backend({})", self.url)
    }
}

impl Backend {
    /// Opens a repository location: `file:///path`, a plain path, `memory://`, `s3://bucket/prefix`
    /// (credentials and endpoint from the usual `AWS_*` variables), `gs://bucket/prefix`
    /// (`GOOGLE_*`), or `az://container/prefix` (`AZURE_*`).
    pub fn open(url: &str) -> Result<Backend, BackendError> {
        Self::open_with(url, BackendOptions::default())
    }

    pub fn open_with(url: &str, options: BackendOptions) -> Result<Backend, BackendError> {
        let location::Location {
            store,
            root,
            local_dir,
            credentials,
        } = location::locate(url)?;
        Ok(Backend {
            store,
            root,
            url: url.to_string(),
            options,
            local_dir,
            unsynced: local::UnsyncedDirs::default(),
            read_buffers: local::ReadBuffers::default(),
            credentials,
        })
    }

    /// Whether objects are local files: writes and reads then finish in about the time of a
    /// copy, and fewer in flight keep the same pace with less memory.
    pub fn is_local(&self) -> bool {
        self.local_dir.is_some()
    }

    /// Partial uploads a killed writer left in `folder` (`""`: the repository's top, where
    /// the config is written; local repositories only: object stores discard unfinished
    /// multipart uploads themselves), as keys.
    pub fn partial_uploads(&self, folder: &str) -> Vec<String> {
        let Some(dir) = &self.local_dir else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir(dir.join(folder)) else {
            return Vec::new();
        };
        let mut found: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| {
                name.rsplit_once('#')
                    .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
            .map(|name| match folder {
                "" => name,
                _ => format!("{folder}/{name}"),
            })
            .collect();
        found.sort();
        found
    }

    /// Partial uploads in every folder a writer stages objects in but `locks/` (where a
    /// process taking a lock stages its lock file for a moment, under no lock of its own).
    pub fn partial_uploads_everywhere(&self) -> Vec<String> {
        ["", "data", "index", "snapshots", "keys"]
            .iter()
            .flat_map(|folder| self.partial_uploads(folder))
            .collect()
    }

    /// Removes a partial upload found by `partial_uploads`.
    pub fn remove_partial_upload(&self, key: &str) -> Result<(), BackendError> {
        let Some(dir) = &self.local_dir else {
            return Ok(());
        };
        match std::fs::remove_file(dir.join(key)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(BackendError::Io {
                key: key.to_string(),
                message: e.to_string(),
            }),
            _ => Ok(()),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn path(&self, key: &str) -> Path {
        key.split('/')
            .fold(self.root.clone(), |p, part| p.join(part))
    }

    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.options.min_retry_delay)
            .with_max_delay(Duration::from_secs(10))
            .with_max_times(self.options.retries)
            .with_jitter()
    }

    /// Runs one store call with the backend's retry policy; errors name the operation and key.
    async fn retrying<T, F, Fut>(
        &self,
        op: &'static str,
        key: &str,
        call: F,
    ) -> Result<T, BackendError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, object_store::Error>>,
    {
        call.retry(self.backoff())
            .when(transient)
            .notify(|e, d| tracing::warn!(op, key, error = %e, retry_in = ?d, "retrying"))
            .await
            .map_err(|e| BackendError::from_store(op, key, self.credentials, e))
    }

    pub async fn get(&self, key: &str) -> Result<Bytes, BackendError> {
        let path = self.path(key);
        self.retrying("get", key, || async {
            self.store.get(&path).await?.bytes().await
        })
        .await
    }

    pub async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, BackendError> {
        if let Some(dir) = &self.local_dir {
            return local::get_range(dir.join(key), key, range, self.read_buffers.clone()).await;
        }
        let path = self.path(key);
        self.retrying("get", key, || self.store.get_range(&path, range.clone()))
            .await
    }

    /// Stores an object, replacing any object of that name (names of immutable objects are their
    /// content hash, so a replacement has the same bytes).
    pub async fn put(&self, key: &str, data: Bytes) -> Result<(), BackendError> {
        if let Some(dir) = &self.local_dir {
            return local::put(dir.join(key), data, Naming::Replace, self.unsynced.clone()).await;
        }
        let path = self.path(key);
        if data.len() >= self.options.multipart_threshold {
            return self.put_multipart(key, &path, data).await;
        }
        self.retrying("put", key, || {
            self.store.put(&path, PutPayload::from_bytes(data.clone()))
        })
        .await
        .map(|_| ())
    }

    /// A writer for a new object in `folder`, to be stored by [`Backend::put_written`] once
    /// its name is known. An object store needs the whole body, so it is held in `buffer()`; a
    /// local repository writes it to its staging file as it comes.
    pub fn writer(&self, folder: &str, buffer: impl FnOnce() -> Vec<u8>) -> ObjectWriter {
        match &self.local_dir {
            Some(dir) => ObjectWriter::Staged(StagedFile::new(dir.join(folder), "new")),
            None => ObjectWriter::Memory(buffer()),
        }
    }

    /// Stores what `writer` holds as `key` (in the folder it was made for). Returns the memory
    /// it held when the store keeps no reference to it, for the next object.
    pub async fn put_written(
        &self,
        key: &str,
        writer: ObjectWriter,
    ) -> Result<Option<Vec<u8>>, BackendError> {
        match (writer, &self.local_dir) {
            (ObjectWriter::Staged(staged), Some(dir)) => {
                local::store(staged, dir.join(key), self.unsynced.clone()).await?;
                Ok(None)
            }
            (ObjectWriter::Staged(_), None) => Err(BackendError::Io {
                key: key.to_string(),
                message: "a staged file cannot be stored in an object store".into(),
            }),
            (ObjectWriter::Memory(body), _) => {
                let body = Bytes::from(body);
                self.put(key, body.clone()).await?;
                Ok(body.try_into_mut().ok().map(Vec::from))
            }
        }
    }

    async fn put_multipart(&self, key: &str, path: &Path, data: Bytes) -> Result<(), BackendError> {
        let send = || async {
            let upload = self.store.put_multipart(path).await?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, self.options.part_size);
            for part in data.chunks(self.options.part_size) {
                writer.wait_for_capacity(4).await?;
                writer.put(data.slice_ref(part));
            }
            writer.finish().await
        };
        self.retrying("put", key, send).await.map(|_| ())
    }

    /// Stores an object only if no object of that name exists (used for lock files). Stores that
    /// cannot do conditional writes fall back to a plain write.
    pub async fn put_new(&self, key: &str, data: Bytes) -> Result<(), BackendError> {
        if let Some(dir) = &self.local_dir {
            return local::put(dir.join(key), data, Naming::New, self.unsynced.clone()).await;
        }
        let path = self.path(key);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&path, PutPayload::from_bytes(data.clone()), opts)
            .await
        {
            Err(object_store::Error::NotImplemented { .. })
            | Err(object_store::Error::NotSupported { .. }) => self.put(key, data).await,
            other => other
                .map(|_| ())
                .map_err(|e| BackendError::from_store("put", key, self.credentials, e)),
        }
    }

    pub async fn delete(&self, key: &str) -> Result<(), BackendError> {
        if let Some(dir) = &self.local_dir {
            return local::delete(dir.join(key), self.unsynced.clone()).await;
        }
        let path = self.path(key);
        let remove = || async {
            match self.store.delete(&path).await {
                Err(object_store::Error::NotFound { .. }) => Ok(()),
                other => other,
            }
        };
        self.retrying("delete", key, remove).await
    }

    /// Lists the objects under a folder of the repository (`data`, `index`, `snapshots`, ...),
    /// with keys relative to the repository root, sorted.
    pub async fn list(&self, folder: &str) -> Result<Vec<Listed>, BackendError> {
        let prefix = self.path(folder);
        let root_parts = self.root.parts().count();
        let fetch = || async {
            self.store
                .list(Some(&prefix))
                .map_ok(|meta| Listed {
                    key: meta
                        .location
                        .parts()
                        .skip(root_parts)
                        .map(|p| p.as_ref().to_string())
                        .collect::<Vec<_>>()
                        .join("/"),
                    size: meta.size,
                })
                .try_collect::<Vec<_>>()
                .await
        };
        let mut listed = self.retrying("list", folder, fetch).await?;
        listed.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(listed)
    }

    pub async fn exists(&self, key: &str) -> Result<bool, BackendError> {
        match self.store.head(&self.path(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(BackendError::from_store("head", key, self.credentials, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_backend_round_trips_lists_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let b = Backend::open_with(
            &format!("file://{}", dir.path().join("repo").display()),
            BackendOptions {
                multipart_threshold: 10,
                part_size: 5,
                ..Default::default()
            },
        )
        .unwrap();
        b.put("data/ab", Bytes::from_static(b"small"))
            .await
            .unwrap();
        b.put("data/cd", Bytes::from(vec![7u8; 23])).await.unwrap();
        assert_eq!(&b.get("data/cd").await.unwrap()[..], &[7u8; 23][..]);
        assert_eq!(&b.get_range("data/ab", 1..3).await.unwrap()[..], b"ma");
        let listed = b.list("data").await.unwrap();
        assert_eq!(
            listed,
            vec![
                Listed {
                    key: "data/ab".into(),
                    size: 5
                },
                Listed {
                    key: "data/cd".into(),
                    size: 23
                }
            ]
        );
        assert!(b.get("data/zz").await.unwrap_err().is_not_found());
        b.put_new("locks/x", Bytes::from_static(b"1"))
            .await
            .unwrap();
        assert!(matches!(
            b.put_new("locks/x", Bytes::from_static(b"2")).await,
            Err(BackendError::AlreadyExists { .. })
        ));
        assert!(
            b.partial_uploads("locks").is_empty(),
            "a refused create leaves no staging file"
        );
        assert_eq!(&b.get("locks/x").await.unwrap()[..], b"1");
        b.delete("data/ab").await.unwrap();
        b.delete("data/ab").await.unwrap();
        assert!(!b.exists("data/ab").await.unwrap());
        assert_eq!(b.list("data").await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn written_objects_are_staged_until_stored_and_removed_when_dropped() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let b = Backend::open(&format!("file://{}", dir.path().display())).unwrap();
        let mut w = b.writer("data", || {
            panic!("a local repository holds no object in memory")
        });
        assert!(
            b.partial_uploads("data").is_empty(),
            "nothing staged before a write"
        );
        let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        w.write_all(&body).unwrap();
        assert_eq!(w.len(), body.len() as u64);
        let staged = b.partial_uploads("data");
        assert_eq!(staged.len(), 1, "{staged:?}");
        assert!(staged[0].starts_with("data/new#"), "{staged:?}");
        assert_eq!(b.put_written("data/abc", w).await.unwrap(), None);
        assert!(b.partial_uploads("data").is_empty());
        assert_eq!(&b.get("data/abc").await.unwrap()[..], &body[..]);

        let mut dropped = b.writer("data", Vec::new);
        dropped.write_all(b"abandoned").unwrap();
        assert_eq!(b.partial_uploads("data").len(), 1);
        drop(dropped);
        assert!(
            b.partial_uploads("data").is_empty(),
            "a dropped writer leaves nothing"
        );

        // An object store holds the body; its buffer comes back once the store lets go of it.
        let memory = Backend::open("memory://").unwrap();
        let mut w = memory.writer("data", || Vec::with_capacity(64));
        w.write_all(b"in memory").unwrap();
        memory.put_written("data/m", w).await.unwrap();
        assert_eq!(&memory.get("data/m").await.unwrap()[..], b"in memory");
    }

    /// What makes a crash safe: pack names reach the disk before a record that may name them,
    /// and a removal only after the names elsewhere it may depend on.
    #[tokio::test]
    async fn local_names_are_synced_before_the_records_that_follow_them() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        let b = Backend::open(&format!("file://{}", root.display())).unwrap();
        let pending = || b.unsynced.pending();
        let mut w = b.writer("data", Vec::new);
        w.write_all(b"pack").unwrap();
        b.put_written("data/aa", w).await.unwrap();
        assert_eq!(
            pending(),
            vec![root.clone(), root.join("data")],
            "a new pack's name, and its new folder's, wait for the next record"
        );
        b.put("index/i1", Bytes::from_static(b"names aa"))
            .await
            .unwrap();
        assert_eq!(pending(), Vec::<std::path::PathBuf>::new());

        b.delete("index/i1").await.unwrap();
        assert_eq!(pending(), vec![root.join("index")]);
        b.delete("data/aa").await.unwrap();
        assert_eq!(
            pending(),
            vec![root.join("data")],
            "the index's removal was synced before the pack's"
        );
        b.put_new("locks/l", Bytes::from_static(b"lock"))
            .await
            .unwrap();
        assert_eq!(pending(), Vec::<std::path::PathBuf>::new());
    }

    #[test]
    fn unknown_schemes_are_refused_by_name() {
        let err = Backend::open("ftp://x/y").unwrap_err().to_string();
        assert!(
            err.contains("ftp://x/y") && err.contains("unknown scheme"),
            "{err}"
        );
    }
}
