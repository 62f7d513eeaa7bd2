//! Ferry's portable volume repository: the format volumes travel in between clusters, and the
//! engine that writes and reads it. No Kubernetes here, so the hub, the spoke and standalone
//! tools share it; `ferry-spoke repo` is its command. `docs/format.md` specifies the format.
//!
//! The data path, bottom up:
//! - [`keys`]: a random master key (an encryption key and an id key), wrapped by a key derived
//!   from a passphrase with Argon2id;
//! - [`chunker`]: content-defined chunking (FastCDC) for files; block volumes use fixed chunks;
//! - [`blob`]: one chunk sealed — named by its keyed BLAKE3 hash, zstd-compressed unless it does
//!   not shrink, encrypted and authenticated with AES-256-GCM bound to its id and kind;
//! - [`pack`]: blobs gathered into pack objects with an encrypted table of contents;
//! - [`backend`]: any `object_store` store (file, S3, GCS, Azure, memory) with retries and
//!   multipart uploads;
//! - [`meta`], [`index`], [`tree`]: the sealed config, index files, snapshot manifests,
//!   directory trees and block maps.
//!
//! Operations, each plan-then-execute: [`backup`] (filesystem and block, incremental against a
//! parent, with a changed-block hook), [`restore`] (parallel, verified, sparse), [`export`] (tar,
//! raw), [`check`], [`prune`] (with `stats`), [`repair`] (the index rebuilt from the packs), all
//! under [`lock`]s, reporting [`progress`]. Reads over object stores batch nearby blobs and walk
//! trees breadth first, many requests in flight (`read`).
//! Errors are [`repo::RepoError`]; each names the object (pack, blob, index file, snapshot,
//! path) it is about.

pub mod backend;
pub mod backup;
pub mod blob;
pub mod check;
pub mod chunker;
mod durable;
pub mod export;
pub mod index;
pub mod keys;
pub mod lock;
pub mod meta;
pub mod pack;
mod pieces;
mod pool;
pub mod progress;
pub mod prune;
mod read;
pub mod repair;
pub mod repo;
pub mod restore;
mod saver;
pub mod tree;
