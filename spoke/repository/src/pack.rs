//! Packs: many sealed blobs in one object, so an object store holds a few multi-MiB objects
//! instead of millions of tiny ones.
//!
//! ```text
//! pack    = blob_1 | blob_2 | ... | header | header id (32) | header length (4, LE)
//! header  = a sealed blob of kind "pack header" whose plaintext is, per blob,
//!           kind (1) | id (32) | offset (8, LE) | sealed length (4, LE) | plain length (4, LE)
//! pack id = BLAKE3 (unkeyed) of the pack's length (8, LE) and its tail (sealed header, header
//!           id, header length); the object's name is its hex form (older packs: BLAKE3 of
//!           every byte, still accepted)
//! ```
//!
//! A reader needs only the pack and the key to list and open every blob in it, so an index can
//! always be rebuilt from the packs alone.

use crate::blob::{BlobCodec, BlobError, BlobId, BlobKind};

const ENTRY: usize = 1 + 32 + 8 + 4 + 4;
const TRAILER: usize = 32 + 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackEntry {
    pub kind: BlobKind,
    pub id: BlobId,
    pub offset: u64,
    /// Sealed length in the pack.
    pub length: u32,
    /// Plaintext length (restores place chunks by it without opening them first).
    pub raw_length: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PackError {
    #[error("pack {pack}: {message}")]
    Malformed { pack: String, message: String },
    #[error("pack {pack}: {source}")]
    Blob { pack: String, source: BlobError },
}

#[derive(Debug, thiserror::Error)]
pub enum PackWriteError {
    #[error("sealing the pack header: {0}")]
    Header(#[from] BlobError),
    #[error("writing the pack: {0}")]
    Write(#[from] std::io::Error),
}

/// Appends sealed blobs to `out` until the pack is big enough, then its header. Only the table
/// of contents stays in memory: `out` may be a file.
pub struct PackWriter<W = Vec<u8>> {
    codec: BlobCodec,
    out: W,
    len: u64,
    entries: Vec<PackEntry>,
}

impl PackWriter {
    /// A pack in memory.
    pub fn new(codec: BlobCodec) -> PackWriter {
        Self::to(codec, Vec::new())
    }
}

impl<W: std::io::Write> PackWriter<W> {
    /// A pack written to `out`, which must be empty.
    pub fn to(codec: BlobCodec, out: W) -> PackWriter<W> {
        PackWriter {
            codec,
            out,
            len: 0,
            entries: Vec::new(),
        }
    }

    /// Seals and appends a blob; returns its id and how many bytes it added.
    pub fn add(
        &mut self,
        kind: BlobKind,
        plaintext: &[u8],
    ) -> Result<(BlobId, usize), PackWriteError> {
        let (id, sealed) = self.codec.seal(kind, plaintext)?;
        self.add_sealed(kind, id, &sealed, plaintext.len() as u32)?;
        Ok((id, sealed.len()))
    }

    /// Appends an already sealed blob (sealing can happen on other threads). After an error the
    /// pack is unusable.
    pub fn add_sealed(
        &mut self,
        kind: BlobKind,
        id: BlobId,
        sealed: &[u8],
        raw_length: u32,
    ) -> std::io::Result<()> {
        self.out.write_all(sealed)?;
        self.entries.push(PackEntry {
            kind,
            id,
            offset: self.len,
            length: sealed.len() as u32,
            raw_length,
        });
        self.len += sealed.len() as u64;
        Ok(())
    }

    /// Bytes of blobs so far.
    pub fn size(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Where the pack goes.
    pub fn out(&self) -> &W {
        &self.out
    }

    /// Finishes the pack: its id (hex), where it was written and its table of contents.
    pub fn finish(mut self) -> Result<(String, W, Vec<PackEntry>), PackWriteError> {
        let mut header = Vec::with_capacity(self.entries.len() * ENTRY);
        for e in &self.entries {
            header.push(e.kind as u8);
            header.extend_from_slice(&e.id.0);
            header.extend_from_slice(&e.offset.to_le_bytes());
            header.extend_from_slice(&e.length.to_le_bytes());
            header.extend_from_slice(&e.raw_length.to_le_bytes());
        }
        let (header_id, mut tail) = self.codec.seal(BlobKind::PackHeader, &header)?;
        let sealed_len = tail.len() as u32;
        tail.extend_from_slice(&header_id.0);
        tail.extend_from_slice(&sealed_len.to_le_bytes());
        self.out.write_all(&tail)?;
        let id = pack_name(self.len + tail.len() as u64, &tail);
        Ok((id, self.out, self.entries))
    }
}

fn kind_from(b: u8) -> Option<BlobKind> {
    match b {
        1 => Some(BlobKind::Data),
        2 => Some(BlobKind::Tree),
        _ => None,
    }
}

/// A pack's name: the BLAKE3 hash (unkeyed, hex) of its length and its tail (sealed header,
/// header id, header length). The header names every blob with its offset and length, and each
/// blob is authenticated when it is opened, so the name pins the whole pack while a writer
/// hashes a few hundred bytes per pack instead of every byte a second time.
fn pack_name(pack_len: u64, tail: &[u8]) -> String {
    let mut h = blake3::Hasher::new();
    h.update(&pack_len.to_le_bytes());
    h.update(tail);
    h.finalize().to_hex().to_string()
}

/// Lists a pack's blobs from its header, checking the pack's name and every bound.
pub fn read_header(
    codec: &BlobCodec,
    pack_id: &str,
    pack: &[u8],
) -> Result<Vec<PackEntry>, PackError> {
    let malformed = |message: String| PackError::Malformed {
        pack: pack_id.to_string(),
        message,
    };
    if pack.len() < TRAILER {
        return Err(malformed(format!(
            "{} bytes is too short for a pack",
            pack.len()
        )));
    }
    let trailer = &pack[pack.len() - TRAILER..];
    let header_id = BlobId(trailer[..32].try_into().expect("32 bytes"));
    let header_len = u32::from_le_bytes(trailer[32..].try_into().expect("4 bytes")) as usize;
    let header_start = pack
        .len()
        .checked_sub(TRAILER + header_len)
        .ok_or_else(|| malformed(format!("header length {header_len} exceeds the pack")))?;
    // Packs written before names covered only the tail were named by the hash of every byte.
    if pack_name(pack.len() as u64, &pack[header_start..]) != pack_id
        && blake3::hash(pack).to_hex().as_str() != pack_id
    {
        return Err(malformed(
            "content does not match its name (corrupt or truncated)".into(),
        ));
    }
    let header = codec
        .open(
            BlobKind::PackHeader,
            &header_id,
            &pack[header_start..pack.len() - TRAILER],
        )
        .map_err(|source| PackError::Blob {
            pack: pack_id.to_string(),
            source,
        })?;
    if header.len() % ENTRY != 0 {
        return Err(malformed(format!(
            "header of {} bytes is not a whole number of entries",
            header.len()
        )));
    }
    let mut entries = Vec::with_capacity(header.len() / ENTRY);
    for (i, e) in header.chunks_exact(ENTRY).enumerate() {
        let kind = kind_from(e[0])
            .ok_or_else(|| malformed(format!("entry {i}: unknown blob kind {}", e[0])))?;
        let offset = u64::from_le_bytes(e[33..41].try_into().expect("8 bytes"));
        let length = u32::from_le_bytes(e[41..45].try_into().expect("4 bytes"));
        let raw_length = u32::from_le_bytes(e[45..49].try_into().expect("4 bytes"));
        if offset
            .checked_add(length as u64)
            .is_none_or(|end| end > header_start as u64)
        {
            return Err(malformed(format!(
                "entry {i}: blob at {offset}+{length} lies outside the data"
            )));
        }
        entries.push(PackEntry {
            kind,
            id: BlobId(e[1..33].try_into().expect("32 bytes")),
            offset,
            length,
            raw_length,
        });
    }
    Ok(entries)
}

/// Opens one blob of a pack.
pub fn read_blob(
    codec: &BlobCodec,
    pack_id: &str,
    pack: &[u8],
    entry: &PackEntry,
) -> Result<Vec<u8>, PackError> {
    let start = entry.offset as usize;
    let end = start
        .checked_add(entry.length as usize)
        .filter(|e| *e <= pack.len())
        .ok_or_else(|| PackError::Malformed {
            pack: pack_id.to_string(),
            message: format!(
                "blob {} at {}+{} lies outside the pack",
                entry.id, entry.offset, entry.length
            ),
        })?;
    codec
        .open(entry.kind, &entry.id, &pack[start..end])
        .map_err(|source| PackError::Blob {
            pack: pack_id.to_string(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::MasterKey;

    fn codec() -> BlobCodec {
        BlobCodec::new(&MasterKey::generate().unwrap())
    }

    #[test]
    fn writes_and_reads_back() {
        let c = codec();
        let mut w = PackWriter::new(c.clone());
        let blobs: Vec<Vec<u8>> = (0..20)
            .map(|i| format!("blob number {i} ").repeat(i * 10 + 1).into_bytes())
            .collect();
        let ids: Vec<BlobId> = blobs
            .iter()
            .map(|b| w.add(BlobKind::Data, b).unwrap().0)
            .collect();
        w.add(BlobKind::Tree, b"{\"tree\": []}").unwrap();
        let (id, bytes, entries) = w.finish().unwrap();
        let listed = read_header(&c, &id, &bytes).unwrap();
        assert_eq!(listed, entries);
        assert_eq!(listed.len(), 21);
        for (i, e) in listed.iter().take(20).enumerate() {
            assert_eq!(e.id, ids[i]);
            assert_eq!(read_blob(&c, &id, &bytes, e).unwrap(), blobs[i]);
        }
        assert_eq!(listed[20].kind, BlobKind::Tree);
    }

    #[test]
    fn corruption_is_detected_and_names_the_pack() {
        let c = codec();
        let mut w = PackWriter::new(c.clone());
        w.add(BlobKind::Data, b"some data that is long enough to matter")
            .unwrap();
        let (id, bytes, entries) = w.finish().unwrap();
        // A flip in the tail fails the name or the header; one among the blobs fails that
        // blob's authentication. Either way reading the pack fails, naming it.
        let header_start = entries[0].offset as usize + entries[0].length as usize;
        for i in (0..bytes.len()).step_by(7) {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            let read = read_header(&c, &id, &bad).and_then(|listed| {
                listed
                    .iter()
                    .try_for_each(|e| read_blob(&c, &id, &bad, e).map(|_| ()))
            });
            let err = read.unwrap_err();
            assert!(err.to_string().starts_with(&format!("pack {id}:")), "{err}");
            if i >= header_start {
                assert!(
                    read_header(&c, &id, &bad).is_err(),
                    "flip at {i} in the tail"
                );
            }
        }
        // A flipped byte inside a blob, read through a stale (still valid) table of contents.
        let mut bad = bytes.clone();
        bad[entries[0].offset as usize + 20] ^= 1;
        let err = read_blob(&c, &id, &bad, &entries[0]).unwrap_err();
        assert!(
            matches!(
                err,
                PackError::Blob {
                    source: BlobError::Authentication { .. },
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            read_header(&c, &id, &bytes[..bytes.len() - 1]).is_err(),
            "truncated"
        );
        assert!(read_header(&codec(), &id, &bytes).is_err(), "wrong key");
    }
}
