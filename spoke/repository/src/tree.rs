//! What a snapshot records: directory trees of nodes for filesystems, chunk maps for block
//! volumes, and the manifest that names one of them.
//!
//! Trees and chunk maps are stored as blobs of kind Tree (JSON), so unchanged directories
//! deduplicate between snapshots like data does.

use crate::blob::BlobId;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum NodeKind {
    File,
    Dir,
    Symlink,
}

/// What a file on disk is, in words, for messages about files a snapshot cannot hold or a
/// restore will not replace.
pub(crate) fn file_kind(ft: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "directory"
    } else if ft.is_file() {
        "regular file"
    } else if ft.is_symlink() {
        "symbolic link"
    } else if ft.is_fifo() {
        "named pipe"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_block_device() {
        "block device"
    } else {
        "character device"
    }
}

/// One directory entry. Names and link targets that are not UTF-8 are kept byte for byte in
/// `nameBytes` / `targetBytes` (base64); `name` / `target` then hold a lossy rendering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Node {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_bytes: Option<String>,
    #[serde(rename = "type")]
    pub kind: NodeKind,
    /// Permission bits, with setuid/setgid/sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    #[serde(default)]
    pub mtime_nsec: u32,
    /// The inode's change time: it moves on every write and metadata change, and unlike the
    /// mtime it cannot be set back, so it is what tells a rewritten file from an unchanged one.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ctime: i64,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub ctime_nsec: u32,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub inode: u64,
    #[serde(default)]
    pub device: u64,
    #[serde(default)]
    pub links: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<BlobId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<BlobId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_bytes: Option<String>,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

fn encode(os: &OsStr) -> (String, Option<String>) {
    match os.to_str() {
        Some(s) => (s.to_string(), None),
        None => (
            os.to_string_lossy().into_owned(),
            Some(STANDARD.encode(os.as_bytes())),
        ),
    }
}

fn decode(text: &str, bytes: &Option<String>) -> Result<OsString, String> {
    match bytes {
        None => Ok(OsString::from(text)),
        Some(b) => STANDARD
            .decode(b)
            .map(OsString::from_vec)
            .map_err(|e| format!("not base64: {e}")),
    }
}

impl Node {
    pub fn set_name(&mut self, name: &OsStr) {
        (self.name, self.name_bytes) = encode(name);
    }

    pub fn set_target(&mut self, target: &OsStr) {
        let (t, b) = encode(target);
        self.target = Some(t);
        self.target_bytes = b;
    }

    /// The exact name; an error if the stored bytes are damaged or the name could escape its
    /// directory.
    pub fn os_name(&self) -> Result<OsString, String> {
        let name = decode(&self.name, &self.name_bytes)?;
        let b = name.as_bytes();
        if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') || b.contains(&0) {
            return Err(format!("{:?} is not a valid file name", self.name));
        }
        Ok(name)
    }

    pub fn os_target(&self) -> Result<OsString, String> {
        match &self.target {
            Some(t) => decode(t, &self.target_bytes),
            None => Err("symlink without a target".into()),
        }
    }

    pub fn empty(kind: NodeKind) -> Node {
        Node {
            name: String::new(),
            name_bytes: None,
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: 0,
            mtime_nsec: 0,
            ctime: 0,
            ctime_nsec: 0,
            size: 0,
            inode: 0,
            device: 0,
            links: 0,
            content: Vec::new(),
            subtree: None,
            target: None,
            target_bytes: None,
        }
    }
}

/// A directory's entries, sorted by name bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

/// A block volume: fixed-size chunks in order; `None` is a hole (all zeroes, not stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BlockMap {
    pub size: u64,
    pub chunk_size: u32,
    pub chunks: Vec<Option<BlobId>>,
}

impl BlockMap {
    pub fn validate(&self) -> Result<(), String> {
        let expected = self.size.div_ceil(self.chunk_size.max(1) as u64);
        if self.chunk_size == 0 || self.chunks.len() as u64 != expected {
            return Err(format!(
                "{} chunks of {} bytes do not cover {} bytes",
                self.chunks.len(),
                self.chunk_size,
                self.size
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SnapshotKind {
    Filesystem,
    Block,
}

/// What a backup did; kept in the manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Summary {
    pub files: u64,
    pub dirs: u64,
    /// Bytes of data in the snapshot (file sizes, or the volume size less holes).
    pub bytes: u64,
    /// Files (or block chunks) taken from the parent without reading them.
    pub reused: u64,
    pub new_blobs: u64,
    /// Plaintext bytes of new blobs.
    pub new_bytes: u64,
    /// Bytes of new blobs as stored (compressed, encrypted).
    pub stored_bytes: u64,
    pub duration_ms: u64,
    /// Paths left out, with why (special files, files that vanished while read).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
}

/// `snapshots/<name>`: one restore point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Snapshot {
    pub version: u32,
    /// RFC 3339.
    pub time: String,
    pub hostname: String,
    /// What was backed up (a path on the writer's host, or a volume name).
    pub source: String,
    pub kind: SnapshotKind,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// The root directory's tree, or the block map.
    pub tree: BlobId,
    /// The root directory's own metadata (mode, owner, times), which a restore gives its
    /// target directory: PostgreSQL, for one, refuses a data directory that is not 0700 and
    /// its own. Absent in block snapshots and in snapshots of format 1 writers before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<Node>,
    pub summary: Summary,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_utf8_names_survive_and_hostile_names_are_refused() {
        let mut n = Node::empty(NodeKind::File);
        let raw = OsStr::from_bytes(b"caf\xe9.txt");
        n.set_name(raw);
        let json = serde_json::to_string(&n).unwrap();
        let back: Node = serde_json::from_str(&json).unwrap();
        assert_eq!(back.os_name().unwrap(), raw);
        for bad in ["..", ".", "a/b", ""] {
            n.set_name(OsStr::new(bad));
            assert!(n.os_name().is_err(), "{bad:?}");
        }
        let unknown = json.replace("\"mode\"", "\"mood\"");
        assert!(serde_json::from_str::<Node>(&unknown).is_err());
    }

    #[test]
    fn block_maps_must_cover_the_volume() {
        let m = BlockMap {
            size: 10,
            chunk_size: 4,
            chunks: vec![None; 3],
        };
        assert!(m.validate().is_ok());
        let short = BlockMap {
            chunks: vec![None; 2],
            ..m
        };
        assert!(short.validate().is_err());
    }
}
