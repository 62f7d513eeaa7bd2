//! A sealed blob: one chunk (or tree, or other repository datum), named, compressed, encrypted.
//!
//! ```text
//! id     = BLAKE3-keyed(id key, plaintext)                       32 bytes
//! sealed = version (1) | flags (1) | nonce (12) | AES-256-GCM(encryption key, nonce,
//!          aad = "ferry-blob-v1" | version | flags | kind (1) | id, body) | tag (16)
//! kind   = 1 data, 2 tree, 3 pack header
//! body   = zstd(plaintext) when flags & 1, else plaintext
//! ```
//!
//! Binding the header, id and kind into the authenticated data means a blob moved to another
//! id, served as another kind, or with its flags flipped, fails to open — corruption and substitution are both detected, and
//! every opened blob is checked against its id.

use crate::keys::MasterKey;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

const VERSION: u8 = 1;
const FLAG_ZSTD: u8 = 1;
const HEADER: usize = 2 + NONCE_LEN;
const TAG: usize = 16;
/// The largest plaintext a reader accepts: far above any chunk (16 MiB) and above the index
/// files and trees of very large repositories.
const MAX_PLAINTEXT: u64 = 1 << 30;

/// A blob's name: the keyed hash of its plaintext.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobId(pub [u8; 32]);

impl std::fmt::Display for BlobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl BlobId {
    pub fn from_hex(s: &str) -> Option<BlobId> {
        if s.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in s.as_bytes().chunks(2).enumerate() {
            let hex = std::str::from_utf8(pair).ok()?;
            out[i] = u8::from_str_radix(hex, 16).ok()?;
        }
        Some(BlobId(out))
    }
}

impl serde::Serialize for BlobId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for BlobId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<BlobId, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        BlobId::from_hex(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not a 64-digit hex blob id")))
    }
}

impl std::fmt::Debug for BlobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlobId({self})")
    }
}

/// What a blob holds; part of its authenticated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
#[repr(u8)]
pub enum BlobKind {
    Data = 1,
    Tree = 2,
    /// A pack's own table of contents.
    PackHeader = 3,
    /// A repository file outside packs: config, index, snapshot manifest.
    Meta = 4,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BlobError {
    #[error("blob {id}: too short ({len} bytes) to be a sealed blob")]
    Truncated { id: BlobId, len: usize },
    #[error("blob {id}: format version {version} is not supported")]
    Version { id: BlobId, version: u8 },
    #[error("blob {id}: authentication failed: corrupt, altered, stored under another id, or the wrong key")]
    Authentication { id: BlobId },
    #[error("blob {id}: corrupt compressed data: {message}")]
    Decompress { id: BlobId, message: String },
    #[error("blob {id}: content does not match its id")]
    IdMismatch { id: BlobId },
    #[error("the system random number generator failed")]
    Random,
}

/// Seals and opens blobs with one repository key. Cheap to clone; safe to share across threads.
/// Large chunks are first probed: if 32 KiB from their middle do not shrink by a tenth at zstd's
/// fastest level, the chunk is random or already compressed and is stored as is. This halves the
/// CPU spent on volumes of compressed data (media, archives, encrypted files) and costs under 5 %
/// on compressible ones; a chunk that is incompressible only in its middle loses its compression.
fn worth_compressing(plaintext: &[u8], s: &mut Scratch) -> bool {
    const PROBE: usize = 32 * 1024;
    if plaintext.len() < 4 * PROBE {
        return true;
    }
    let mid = plaintext.len() / 2 - PROBE / 2;
    let sample = &plaintext[mid..mid + PROBE];
    s.compressed.clear();
    s.compressed.reserve(zstd::zstd_safe::compress_bound(PROBE));
    compressor(&mut s.compressor, 1)
        .and_then(|c| c.compress_to_buffer(sample, &mut s.compressed).ok())
        .is_none_or(|n| n < PROBE * 9 / 10)
}

/// What each thread keeps between blobs: zstd contexts and buffers. Sealing and opening a blob
/// then allocates nothing, so a backup does not fault in fresh pages for every chunk (on this
/// kind of machine, first-touched memory costs more than the copy into it).
struct Scratch {
    compressor: Option<(i32, zstd::bulk::Compressor<'static>)>,
    decompressor: Option<zstd::bulk::Decompressor<'static>>,
    compressed: Vec<u8>,
    body: Vec<u8>,
    plain: Vec<u8>,
}

impl Scratch {
    const fn new() -> Scratch {
        Scratch {
            compressor: None,
            decompressor: None,
            compressed: Vec::new(),
            body: Vec::new(),
            plain: Vec::new(),
        }
    }
}

/// The thread's compressor at `level` (made, or remade for another level, when needed); `None`
/// if zstd cannot make one, and the blob is then stored uncompressed.
fn compressor<'a>(
    slot: &'a mut Option<(i32, zstd::bulk::Compressor<'static>)>,
    level: i32,
) -> Option<&'a mut zstd::bulk::Compressor<'static>> {
    if slot.as_ref().map(|(l, _)| *l) != Some(level) {
        *slot = Some((level, zstd::bulk::Compressor::new(level).ok()?));
    }
    slot.as_mut().map(|(_, c)| c)
}

/// Buffers kept past this size are given back after use: a rare huge blob (a large tree) should
/// not pin its memory in every thread.
const SCRATCH_KEEP: usize = 32 << 20;

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = const { std::cell::RefCell::new(Scratch::new()) };
}

fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut s) => {
            let r = f(&mut s);
            let Scratch {
                compressed,
                body,
                plain,
                ..
            } = &mut *s;
            for b in [compressed, body, plain] {
                if b.capacity() > SCRATCH_KEEP {
                    *b = Vec::new();
                }
            }
            r
        }
        // Re-entered on this thread (a caller's closure sealing or opening again): use fresh
        // buffers rather than fail.
        Err(_) => f(&mut Scratch::new()),
    })
}

#[derive(Clone)]
pub struct BlobCodec {
    key: std::sync::Arc<LessSafeKey>,
    id_key: [u8; 32],
    /// zstd level; 1 is what keeps two cores busy at disk speed.
    pub level: i32,
}

impl BlobCodec {
    pub fn new(master: &MasterKey) -> BlobCodec {
        let unbound = UnboundKey::new(&AES_256_GCM, &master.encryption)
            .expect("32-byte key is valid for AES-256");
        BlobCodec {
            key: std::sync::Arc::new(LessSafeKey::new(unbound)),
            id_key: master.id,
            level: 1,
        }
    }

    pub fn id_of(&self, plaintext: &[u8]) -> BlobId {
        BlobId(*blake3::keyed_hash(&self.id_key, plaintext).as_bytes())
    }

    fn aad(flags: u8, kind: BlobKind, id: &BlobId) -> [u8; 13 + 3 + 32] {
        let mut aad = [0u8; 48];
        aad[..13].copy_from_slice(b"ferry-blob-v1");
        aad[13] = VERSION;
        aad[14] = flags;
        aad[15] = kind as u8;
        aad[16..].copy_from_slice(&id.0);
        aad
    }

    /// Seals a plaintext; returns its id and the sealed bytes.
    pub fn seal(&self, kind: BlobKind, plaintext: &[u8]) -> Result<(BlobId, Vec<u8>), BlobError> {
        let id = self.id_of(plaintext);
        Ok((id, self.seal_as(kind, &id, plaintext)?))
    }

    /// Seals a plaintext whose id the caller has already computed with [`BlobCodec::id_of`]
    /// (writers hash first to skip known blobs, and must not pay for the hash twice).
    pub fn seal_as(
        &self,
        kind: BlobKind,
        id: &BlobId,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, BlobError> {
        let mut out = Vec::new();
        self.seal_into(kind, id, plaintext, &mut out)?;
        Ok(out)
    }

    /// As [`BlobCodec::seal_as`], into `out` (cleared first), so a caller can keep one buffer.
    pub fn seal_into(
        &self,
        kind: BlobKind,
        id: &BlobId,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), BlobError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| BlobError::Random)?;
        out.clear();
        // Compress unless it does not pay: already-compressed data (images, archives) would only
        // cost CPU on both ends.
        let flags = with_scratch(|s| {
            let compressed = worth_compressing(plaintext, s)
                && {
                    s.compressed.clear();
                    s.compressed
                        .reserve(zstd::zstd_safe::compress_bound(plaintext.len()));
                    compressor(&mut s.compressor, self.level)
                        .is_some_and(|c| c.compress_to_buffer(plaintext, &mut s.compressed).is_ok())
                }
                && s.compressed.len() + s.compressed.len() / 32 < plaintext.len();
            let (flags, body) = match compressed {
                true => (FLAG_ZSTD, s.compressed.as_slice()),
                false => (0, plaintext),
            };
            out.reserve(HEADER + body.len() + TAG);
            out.push(VERSION);
            out.push(flags);
            out.extend_from_slice(&nonce);
            out.extend_from_slice(body);
            flags
        });
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(Self::aad(flags, kind, id)),
                &mut out[HEADER..],
            )
            .map_err(|_| BlobError::Random)?;
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Opens a sealed blob expected to be `id` of `kind`, verifying everything.
    pub fn open(&self, kind: BlobKind, id: &BlobId, sealed: &[u8]) -> Result<Vec<u8>, BlobError> {
        self.open_with(kind, id, sealed, <[u8]>::to_vec)
    }

    /// Opens a sealed blob as [`BlobCodec::open`] does and hands the plaintext to `f` while it
    /// is in this thread's buffers (restores write it straight to the file, with no copy of
    /// their own).
    pub fn open_with<R>(
        &self,
        kind: BlobKind,
        id: &BlobId,
        sealed: &[u8],
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, BlobError> {
        if sealed.len() < HEADER + TAG {
            return Err(BlobError::Truncated {
                id: *id,
                len: sealed.len(),
            });
        }
        if sealed[0] != VERSION {
            return Err(BlobError::Version {
                id: *id,
                version: sealed[0],
            });
        }
        let flags = sealed[1];
        if flags & !FLAG_ZSTD != 0 {
            return Err(BlobError::Authentication { id: *id });
        }
        let nonce: [u8; NONCE_LEN] = sealed[2..HEADER].try_into().expect("header length checked");
        with_scratch(|s| {
            let Scratch {
                decompressor,
                body,
                plain,
                ..
            } = s;
            body.clear();
            body.extend_from_slice(&sealed[HEADER..]);
            let plain_len = self
                .key
                .open_in_place(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(Self::aad(flags, kind, id)),
                    body,
                )
                .map_err(|_| BlobError::Authentication { id: *id })?
                .len();
            body.truncate(plain_len);
            let plaintext: &[u8] = if flags & FLAG_ZSTD != 0 {
                // Writers record the size in the frame header: allocate exactly that, not a
                // worst case per blob. The bound only guards against a header claiming absurd
                // sizes.
                let decompress = |message: String| BlobError::Decompress { id: *id, message };
                let size = zstd::zstd_safe::get_frame_content_size(body)
                    .map_err(|e| decompress(format!("frame header: {e:?}")))?
                    .ok_or_else(|| decompress("frame header has no content size".into()))?;
                if size > MAX_PLAINTEXT {
                    return Err(decompress(format!("claims {size} bytes")));
                }
                plain.clear();
                plain.reserve(size as usize);
                let d = match decompressor {
                    Some(d) => d,
                    None => decompressor.insert(
                        zstd::bulk::Decompressor::new().map_err(|e| decompress(e.to_string()))?,
                    ),
                };
                d.decompress_to_buffer(body.as_slice(), plain)
                    .map_err(|e| decompress(e.to_string()))?;
                if plain.len() as u64 != size {
                    return Err(decompress(format!(
                        "{} bytes where the frame header says {size}",
                        plain.len()
                    )));
                }
                plain
            } else {
                body
            };
            if self.id_of(plaintext) != *id {
                return Err(BlobError::IdMismatch { id: *id });
            }
            Ok(f(plaintext))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn codec() -> BlobCodec {
        BlobCodec::new(&MasterKey::generate().unwrap())
    }

    #[test]
    fn compresses_what_shrinks_and_not_what_does_not() {
        let c = codec();
        let text = b"the same line again\n".repeat(5000);
        let (id, sealed) = c.seal(BlobKind::Data, &text).unwrap();
        assert!(sealed.len() < text.len() / 10);
        assert_eq!(sealed[1], FLAG_ZSTD);
        assert_eq!(c.open(BlobKind::Data, &id, &sealed).unwrap(), text);
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let noise: Vec<u8> = (0..100_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        let (id, sealed) = c.seal(BlobKind::Data, &noise).unwrap();
        assert_eq!(sealed[1], 0, "incompressible data is stored as is");
        assert_eq!(c.open(BlobKind::Data, &id, &sealed).unwrap(), noise);
    }

    #[test]
    fn ids_are_keyed_and_deterministic() {
        let c = codec();
        assert_eq!(c.id_of(b"x"), c.id_of(b"x"));
        assert_ne!(
            c.id_of(b"x"),
            codec().id_of(b"x"),
            "another repository names the same data differently"
        );
        let (id1, s1) = c.seal(BlobKind::Data, b"hello").unwrap();
        let (id2, s2) = c.seal(BlobKind::Data, b"hello").unwrap();
        assert_eq!(id1, id2);
        assert_ne!(s1, s2, "fresh nonce per seal");
    }

    #[test]
    fn every_byte_is_protected() {
        let c = codec();
        let (id, sealed) = c.seal(BlobKind::Tree, &b"tree data ".repeat(50)).unwrap();
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x40;
            let err = c.open(BlobKind::Tree, &id, &bad).unwrap_err();
            assert!(
                err.to_string().contains(&id.to_string()),
                "errors name the blob: {err}"
            );
        }
        assert!(
            matches!(
                c.open(BlobKind::Data, &id, &sealed),
                Err(BlobError::Authentication { .. })
            ),
            "kind is bound"
        );
        let other = c.id_of(b"other");
        assert!(
            matches!(
                c.open(BlobKind::Tree, &other, &sealed),
                Err(BlobError::Authentication { .. })
            ),
            "id is bound"
        );
        assert!(
            matches!(
                codec().open(BlobKind::Tree, &id, &sealed),
                Err(BlobError::Authentication { .. })
            ),
            "wrong key"
        );
        assert!(matches!(
            c.open(BlobKind::Tree, &id, &sealed[..10]),
            Err(BlobError::Truncated { len: 10, .. })
        ));
    }

    proptest! {
        #[test]
        fn round_trips(data in prop::collection::vec(any::<u8>(), 0..4096), repeat in 1usize..8) {
            let c = codec();
            let plain: Vec<u8> = data.iter().copied().cycle().take(data.len() * repeat).collect();
            let (id, sealed) = c.seal(BlobKind::Data, &plain).unwrap();
            prop_assert_eq!(c.open(BlobKind::Data, &id, &sealed).unwrap(), plain);
        }
    }
}
