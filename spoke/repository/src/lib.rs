//! Ferry's portable volume repository: the format volumes travel in between clusters.
//!
//! Kept free of Kubernetes so that the hub and standalone tools can read a repository with only
//! its key. The data path, bottom up:
//! - [`keys`]: a random master key (an encryption key and an id key), stored wrapped by a key
//!   derived from the user's passphrase with Argon2id;
//! - [`chunker`]: content-defined chunking (FastCDC), so an insertion moves only nearby chunk
//!   boundaries and unchanged data deduplicates;
//! - [`blob`]: one chunk sealed — named by its keyed BLAKE3 hash, compressed with zstd unless it
//!   does not shrink, encrypted and authenticated with AES-256-GCM bound to its id.
//!
//! - [`pack`]: blobs gathered into multi-MiB pack objects with an encrypted table of contents.
//!
//! The index, snapshots, backends and commands build on these (issue 4, in progress);
//! `docs/format.md` documents each layer as it lands.

pub mod backend;
pub mod backup;
pub mod blob;
pub mod check;
pub mod chunker;
pub mod export;
pub mod index;
pub mod keys;
pub mod lock;
pub mod meta;
pub mod pack;
pub mod progress;
pub mod prune;
pub mod repo;
pub mod restore;
mod saver;
pub mod tree;
