//! Content-defined chunking with FastCDC (the 2020 variant, with normalised chunk sizes).
//!
//! Boundaries depend on content, not offsets: inserting bytes in a file moves only the
//! boundaries next to the insertion, so the rest of the file deduplicates against the previous
//! snapshot. The sizes are the repository's; changing them would stop deduplication between
//! old and new snapshots, so they are recorded in the repository config.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChunkerParams {
    pub min_size: u32,
    pub avg_size: u32,
    pub max_size: u32,
}

impl Default for ChunkerParams {
    /// 512 KiB / 1 MiB / 8 MiB: large enough that per-chunk costs (index entries, hashing
    /// set-up, encryption framing) stay small against data, small enough to deduplicate edits.
    fn default() -> Self {
        ChunkerParams {
            min_size: 512 * 1024,
            avg_size: 1024 * 1024,
            max_size: 8 * 1024 * 1024,
        }
    }
}

impl ChunkerParams {
    pub fn validate(&self) -> Result<(), String> {
        // FastCDC's own limits.
        let ok = (64..=1_048_576).contains(&self.min_size)
            && (256..=4_194_304).contains(&self.avg_size)
            && (1024..=16_777_216).contains(&self.max_size)
            && self.min_size <= self.avg_size
            && self.avg_size <= self.max_size;
        if ok {
            Ok(())
        } else {
            Err(format!(
                "chunk sizes {}/{}/{} must satisfy 64 ≤ min ≤ 1 MiB, 256 ≤ avg ≤ 4 MiB, 1 KiB ≤ max ≤ 16 MiB and min ≤ avg ≤ max",
                self.min_size, self.avg_size, self.max_size
            ))
        }
    }
}

/// Splits a buffer into chunks, returning `(offset, length)` pairs that cover it exactly.
pub fn chunk(data: &[u8], p: ChunkerParams) -> Vec<(usize, usize)> {
    if data.is_empty() {
        return Vec::new();
    }
    fastcdc::v2020::FastCDC::new(
        data,
        p.min_size as usize,
        p.avg_size as usize,
        p.max_size as usize,
    )
    .map(|c| (c.offset, c.length))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    const SMALL: ChunkerParams = ChunkerParams {
        min_size: 2048,
        avg_size: 8192,
        max_size: 65536,
    };

    #[test]
    fn chunks_cover_the_input_within_bounds() {
        let data = pseudo_random(1 << 20, 7);
        let chunks = chunk(&data, SMALL);
        let mut offset = 0;
        for (i, (o, l)) in chunks.iter().enumerate() {
            assert_eq!(*o, offset);
            assert!(*l <= SMALL.max_size as usize);
            if i + 1 < chunks.len() {
                assert!(*l >= SMALL.min_size as usize);
            }
            offset += l;
        }
        assert_eq!(offset, data.len());
        assert!(chunk(&[], SMALL).is_empty());
    }

    #[test]
    fn an_insertion_moves_only_nearby_boundaries() {
        let data = pseudo_random(1 << 20, 9);
        let mut edited = data.clone();
        edited.splice(500_000..500_000, b"inserted bytes".iter().copied());
        let before: std::collections::HashSet<&[u8]> = chunk(&data, SMALL)
            .into_iter()
            .map(|(o, l)| &data[o..o + l])
            .collect();
        let after: Vec<&[u8]> = chunk(&edited, SMALL)
            .into_iter()
            .map(|(o, l)| &edited[o..o + l])
            .collect();
        let shared = after.iter().filter(|c| before.contains(*c)).count();
        assert!(
            shared + 3 >= after.len(),
            "only chunks around the edit change: {shared} of {} shared",
            after.len()
        );
    }

    #[test]
    fn parameters_are_checked() {
        assert!(ChunkerParams::default().validate().is_ok());
        assert!(ChunkerParams {
            min_size: 10,
            avg_size: 20,
            max_size: 30
        }
        .validate()
        .is_err());
        assert!(ChunkerParams {
            min_size: 8192,
            avg_size: 4096,
            max_size: 65536
        }
        .validate()
        .is_err());
    }
}
