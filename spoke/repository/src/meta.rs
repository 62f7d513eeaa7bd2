//! Repository files outside packs — the config, index files and snapshot manifests — and the
//! one sealed envelope they share.
//!
//! A file is `id (32 bytes) | sealed blob of kind Meta` whose plaintext is JSON. Index files and
//! manifests are named by the unkeyed BLAKE3 of their stored bytes, so a name verifies its file
//! before the key is even used; the config has the fixed name `config`.

use crate::blob::{BlobCodec, BlobError, BlobId, BlobKind};
use crate::chunker::ChunkerParams;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("{key}: content does not match its name (corrupt or truncated)")]
    NameMismatch { key: String },
    #[error("{key}: {len} bytes is too short")]
    Truncated { key: String, len: usize },
    #[error("{key}: {source}")]
    Blob {
        key: String,
        #[source]
        source: BlobError,
    },
    #[error("{key}: not a valid {what}: {source}")]
    Json {
        key: String,
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("{key}: format version {version} is not supported (this Ferry reads version 1)")]
    Version { key: String, version: u32 },
}

/// Seals a JSON value; returns the stored bytes and the name they verify under.
pub fn seal<T: Serialize>(codec: &BlobCodec, value: &T) -> Result<(String, Vec<u8>), BlobError> {
    let json = serde_json::to_vec(value).expect("repository metadata serializes");
    let (id, sealed) = codec.seal(BlobKind::Meta, &json)?;
    let mut out = Vec::with_capacity(32 + sealed.len());
    out.extend_from_slice(&id.0);
    out.extend_from_slice(&sealed);
    Ok((blake3::hash(&out).to_hex().to_string(), out))
}

/// Opens a sealed file. `verify_name` is false only for `config`, whose name is fixed.
pub fn open<T: DeserializeOwned>(
    codec: &BlobCodec,
    key: &str,
    bytes: &[u8],
    verify_name: bool,
    what: &'static str,
) -> Result<T, MetaError> {
    if verify_name {
        let name = key.rsplit('/').next().unwrap_or(key);
        if blake3::hash(bytes).to_hex().as_str() != name {
            return Err(MetaError::NameMismatch { key: key.into() });
        }
    }
    if bytes.len() < 32 {
        return Err(MetaError::Truncated {
            key: key.into(),
            len: bytes.len(),
        });
    }
    let id = BlobId(bytes[..32].try_into().expect("32 bytes"));
    let plain = codec
        .open(BlobKind::Meta, &id, &bytes[32..])
        .map_err(|source| MetaError::Blob {
            key: key.into(),
            source,
        })?;
    serde_json::from_slice(&plain).map_err(|source| MetaError::Json {
        key: key.into(),
        what,
        source,
    })
}

/// `config`: what every reader and writer of the repository must agree on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    pub version: u32,
    /// Random, hex; tells repositories apart in caches and logs.
    pub id: String,
    pub chunker: ChunkerParams,
    /// Fixed chunk size for block volumes, so an in-place write changes only the chunks it
    /// touches.
    pub block_chunk_size: u32,
    /// Packs are closed once they reach this many bytes.
    pub pack_size: u32,
}

pub const FORMAT_VERSION: u32 = 1;

impl Config {
    pub fn validate(&self, key: &str) -> Result<(), String> {
        if self.version != FORMAT_VERSION {
            return Err(format!(
                "{key}: version {} is not supported (this Ferry reads version {FORMAT_VERSION})",
                self.version
            ));
        }
        self.chunker
            .validate()
            .map_err(|e| format!("{key}: chunker: {e}"))?;
        if !(4096..=16 * 1024 * 1024).contains(&self.block_chunk_size)
            || !self.block_chunk_size.is_power_of_two()
        {
            return Err(format!(
                "{key}: blockChunkSize {} must be a power of two between 4 KiB and 16 MiB",
                self.block_chunk_size
            ));
        }
        if !(1024 * 1024..=1024 * 1024 * 1024).contains(&self.pack_size) {
            return Err(format!(
                "{key}: packSize {} must be between 1 MiB and 1 GiB",
                self.pack_size
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::MasterKey;

    #[test]
    fn sealed_files_verify_name_and_content() {
        let codec = BlobCodec::new(&MasterKey::generate().unwrap());
        let value = serde_json::json!({"hello": [1, 2, 3]});
        let (name, bytes) = seal(&codec, &value).unwrap();
        let key = format!("snapshots/{name}");
        let back: serde_json::Value = open(&codec, &key, &bytes, true, "manifest").unwrap();
        assert_eq!(back, value);
        for i in [0, 31, 32, 40, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            let err = open::<serde_json::Value>(&codec, &key, &bad, true, "manifest")
                .unwrap_err()
                .to_string();
            assert!(err.contains(&key), "{err}");
            let err = open::<serde_json::Value>(&codec, "config", &bad, false, "config")
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("config: "), "{err}");
        }
        let err =
            open::<serde_json::Value>(&codec, "config", &bytes[..20], false, "config").unwrap_err();
        assert!(matches!(err, MetaError::Truncated { len: 20, .. }));
    }
}
