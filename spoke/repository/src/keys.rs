//! Repository keys: a random master key, wrapped by a key derived from the user's passphrase.
//!
//! The master key never changes for a repository (blobs are encrypted and named with it);
//! passphrases can be added or changed by writing another key file wrapping the same master key.

use argon2::{Algorithm, Argon2, Params, Version};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

/// The repository's secrets: one key encrypts blobs, the other names them (keyed BLAKE3), so
/// that chunk ids reveal nothing about content to someone without the key.
#[derive(Clone)]
pub struct MasterKey {
    pub(crate) encryption: [u8; 32],
    pub(crate) id: [u8; 32],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("wrong passphrase (or the key file was altered)")]
    WrongPassphrase,
    #[error("key file: {field}: {message}")]
    Malformed {
        field: &'static str,
        message: String,
    },
    #[error("key derivation: {0}")]
    Kdf(String),
    #[error("the system random number generator failed")]
    Random,
}

/// Argon2id cost parameters, stored with each key file so they can be raised over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// OWASP's recommended Argon2id setting (19 MiB, 2 iterations, 1 lane).
    fn default() -> Self {
        KdfParams {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// The stored form of a key: `keys/<id>` in the repository, JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyFile {
    pub version: u32,
    pub kdf: String,
    pub params: KdfParams,
    /// Base64, 32 bytes.
    pub salt: String,
    /// Base64, 12 bytes.
    pub nonce: String,
    /// Base64: AES-256-GCM of the 64-byte master key (encryption key, then id key).
    pub wrapped: String,
}

fn random<const N: usize>() -> Result<[u8; N], KeyError> {
    let mut b = [0u8; N];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| KeyError::Random)?;
    Ok(b)
}

fn derive(passphrase: &[u8], salt: &[u8], p: KdfParams) -> Result<LessSafeKey, KeyError> {
    let params = Params::new(p.memory_kib, p.iterations, p.parallelism, Some(32))
        .map_err(|e| KeyError::Kdf(e.to_string()))?;
    let mut out = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase, salt, &mut out)
        .map_err(|e| KeyError::Kdf(e.to_string()))?;
    let key =
        UnboundKey::new(&AES_256_GCM, &out).map_err(|_| KeyError::Kdf("key length".into()))?;
    Ok(LessSafeKey::new(key))
}

fn b64(field: &'static str, s: &str) -> Result<Vec<u8>, KeyError> {
    STANDARD.decode(s).map_err(|e| KeyError::Malformed {
        field,
        message: e.to_string(),
    })
}

impl MasterKey {
    pub fn generate() -> Result<MasterKey, KeyError> {
        Ok(MasterKey {
            encryption: random()?,
            id: random()?,
        })
    }

    /// Wraps the key with a passphrase.
    pub fn wrap(&self, passphrase: &[u8], params: KdfParams) -> Result<KeyFile, KeyError> {
        let salt: [u8; 32] = random()?;
        let nonce: [u8; NONCE_LEN] = random()?;
        let kek = derive(passphrase, &salt, params)?;
        let mut data = Vec::with_capacity(64 + 16);
        data.extend_from_slice(&self.encryption);
        data.extend_from_slice(&self.id);
        kek.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(b"ferry-key-v1"),
            &mut data,
        )
        .map_err(|_| KeyError::Kdf("sealing failed".into()))?;
        Ok(KeyFile {
            version: 1,
            kdf: "argon2id".into(),
            params,
            salt: STANDARD.encode(salt),
            nonce: STANDARD.encode(nonce),
            wrapped: STANDARD.encode(data),
        })
    }

    /// Unwraps a key file; a wrong passphrase and a tampered file are indistinguishable.
    pub fn unwrap(file: &KeyFile, passphrase: &[u8]) -> Result<MasterKey, KeyError> {
        if file.version != 1 {
            return Err(KeyError::Malformed {
                field: "version",
                message: format!("{} is not supported (1 is)", file.version),
            });
        }
        if file.kdf != "argon2id" {
            return Err(KeyError::Malformed {
                field: "kdf",
                message: format!("{:?} is not supported (argon2id is)", file.kdf),
            });
        }
        let salt = b64("salt", &file.salt)?;
        let nonce: [u8; NONCE_LEN] =
            b64("nonce", &file.nonce)?
                .try_into()
                .map_err(|_| KeyError::Malformed {
                    field: "nonce",
                    message: "must be 12 bytes".into(),
                })?;
        let mut data = b64("wrapped", &file.wrapped)?;
        let kek = derive(passphrase, &salt, file.params)?;
        let plain = kek
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(b"ferry-key-v1"),
                &mut data,
            )
            .map_err(|_| KeyError::WrongPassphrase)?;
        if plain.len() != 64 {
            return Err(KeyError::Malformed {
                field: "wrapped",
                message: "master key must be 64 bytes".into(),
            });
        }
        let mut key = MasterKey {
            encryption: [0; 32],
            id: [0; 32],
        };
        key.encryption.copy_from_slice(&plain[..32]);
        key.id.copy_from_slice(&plain[32..]);
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap parameters so tests stay fast; the format is the same.
    const FAST: KdfParams = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    #[test]
    fn wraps_and_unwraps() {
        let key = MasterKey::generate().unwrap();
        let file = key.wrap(b"correct horse", FAST).unwrap();
        let json = serde_json::to_string(&file).unwrap();
        let back: KeyFile = serde_json::from_str(&json).unwrap();
        let unwrapped = MasterKey::unwrap(&back, b"correct horse").unwrap();
        assert_eq!(unwrapped.encryption, key.encryption);
        assert_eq!(unwrapped.id, key.id);
        assert!(
            !json.contains(&STANDARD.encode(key.encryption)),
            "the key is not stored in the clear"
        );
    }

    #[test]
    fn wrong_passphrase_and_tampering_are_refused() {
        let key = MasterKey::generate().unwrap();
        let file = key.wrap(b"right", FAST).unwrap();
        assert_eq!(
            MasterKey::unwrap(&file, b"wrong").unwrap_err(),
            KeyError::WrongPassphrase
        );
        let mut tampered = file.clone();
        let mut bytes = STANDARD.decode(&tampered.wrapped).unwrap();
        bytes[3] ^= 1;
        tampered.wrapped = STANDARD.encode(bytes);
        assert_eq!(
            MasterKey::unwrap(&tampered, b"right").unwrap_err(),
            KeyError::WrongPassphrase
        );
        let mut bad = file.clone();
        bad.nonce = "AAAA".into();
        assert!(matches!(
            MasterKey::unwrap(&bad, b"right").unwrap_err(),
            KeyError::Malformed { field: "nonce", .. }
        ));
        assert!(
            format!("{key:?}") == "MasterKey(..)",
            "debug output never shows key material"
        );
    }
}
