//! The index: which pack holds each blob, and where in it.
//!
//! Writers add index files (`index/<name>`), never change them; the in-memory [`Index`] is the
//! union of all of them, less those a newer file supersedes (prune writes one index for what it
//! keeps, naming the files it replaces, before deleting them — a crash in between loses nothing).

use crate::blob::{BlobId, BlobKind};
use crate::pack::PackEntry;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IndexFile {
    pub version: u32,
    /// Index files this one replaces; readers ignore them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supersedes: Vec<String>,
    pub packs: Vec<IndexPack>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IndexPack {
    pub id: String,
    pub size: u64,
    pub blobs: Vec<IndexBlob>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IndexBlob {
    pub id: BlobId,
    pub kind: BlobKind,
    pub offset: u64,
    pub length: u32,
    pub raw_length: u32,
}

impl IndexPack {
    pub fn new(id: String, size: u64, entries: &[PackEntry]) -> IndexPack {
        IndexPack {
            id,
            size,
            blobs: entries
                .iter()
                .map(|e| IndexBlob {
                    id: e.id,
                    kind: e.kind,
                    offset: e.offset,
                    length: e.length,
                    raw_length: e.raw_length,
                })
                .collect(),
        }
    }
}

/// Where a blob is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    /// Position in [`Index::packs`].
    pub pack: u32,
    pub kind: BlobKind,
    pub offset: u64,
    pub length: u32,
    pub raw_length: u32,
}

#[derive(Debug, Clone, Default)]
pub struct Index {
    packs: Vec<(String, u64)>,
    pack_numbers: HashMap<String, u32>,
    blobs: HashMap<BlobId, BlobLocation>,
    /// The index files this index was built from.
    pub files: Vec<String>,
}

impl Index {
    /// Builds the index from named index files, dropping superseded ones.
    pub fn from_files(files: Vec<(String, IndexFile)>) -> Index {
        let superseded: HashSet<String> = files
            .iter()
            .flat_map(|(_, f)| f.supersedes.iter().cloned())
            .collect();
        let mut index = Index::default();
        for (name, file) in files {
            if superseded.contains(&name) {
                continue;
            }
            index.files.push(name);
            for pack in &file.packs {
                index.add_pack(pack);
            }
        }
        index
    }

    pub fn add_pack(&mut self, pack: &IndexPack) {
        let number = match self.pack_numbers.get(&pack.id) {
            Some(n) => *n,
            None => {
                let n = self.packs.len() as u32;
                self.packs.push((pack.id.clone(), pack.size));
                self.pack_numbers.insert(pack.id.clone(), n);
                n
            }
        };
        for b in &pack.blobs {
            self.blobs.entry(b.id).or_insert(BlobLocation {
                pack: number,
                kind: b.kind,
                offset: b.offset,
                length: b.length,
                raw_length: b.raw_length,
            });
        }
    }

    pub fn get(&self, id: &BlobId) -> Option<&BlobLocation> {
        self.blobs.get(id)
    }

    pub fn contains(&self, id: &BlobId) -> bool {
        self.blobs.contains_key(id)
    }

    pub fn pack_id(&self, number: u32) -> &str {
        &self.packs[number as usize].0
    }

    pub fn pack_size(&self, number: u32) -> u64 {
        self.packs[number as usize].1
    }

    pub fn has_pack(&self, id: &str) -> bool {
        self.pack_numbers.contains_key(id)
    }

    /// Every pack: its id and size.
    pub fn packs(&self) -> impl Iterator<Item = (u32, &str, u64)> {
        self.packs
            .iter()
            .enumerate()
            .map(|(i, (id, size))| (i as u32, id.as_str(), *size))
    }

    pub fn blobs(&self) -> impl Iterator<Item = (&BlobId, &BlobLocation)> {
        self.blobs.iter()
    }

    pub fn blob_count(&self) -> usize {
        self.blobs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(id: &str, blob: u8) -> IndexPack {
        IndexPack {
            id: id.into(),
            size: 100,
            blobs: vec![IndexBlob {
                id: BlobId([blob; 32]),
                kind: BlobKind::Data,
                offset: 0,
                length: 50,
                raw_length: 20,
            }],
        }
    }

    #[test]
    fn superseded_files_are_ignored_and_duplicates_keep_the_first() {
        let a = IndexFile {
            version: 1,
            supersedes: vec![],
            packs: vec![pack("p1", 1), pack("p2", 2)],
        };
        let b = IndexFile {
            version: 1,
            supersedes: vec!["a".into()],
            packs: vec![pack("p3", 2)],
        };
        let c = IndexFile {
            version: 1,
            supersedes: vec![],
            packs: vec![pack("p4", 2)],
        };
        let index = Index::from_files(vec![("a".into(), a), ("b".into(), b), ("c".into(), c)]);
        assert_eq!(index.files, vec!["b", "c"]);
        assert!(!index.contains(&BlobId([1; 32])));
        let loc = index.get(&BlobId([2; 32])).unwrap();
        assert_eq!(index.pack_id(loc.pack), "p3");
        assert_eq!(index.packs().count(), 2);
        let json = serde_json::to_string(&pack("p", 9)).unwrap();
        assert!(json.contains("\"kind\":\"data\""), "{json}");
        let bad = json.replace("\"data\"", "\"weird\"");
        assert!(serde_json::from_str::<IndexPack>(&bad).is_err());
    }
}
