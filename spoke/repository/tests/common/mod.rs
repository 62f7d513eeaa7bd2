//! Shared fixtures: fast keys, small chunks, trees of files to back up, and comparison of
//! restored trees with their sources.
#![allow(dead_code)]

use ferry_repository::backend::Backend;
use ferry_repository::chunker::ChunkerParams;
use ferry_repository::keys::KdfParams;
use ferry_repository::repo::{InitOptions, Repository};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

pub const PASS: &[u8] = b"correct horse battery staple";

/// Small chunks and packs so that a few hundred KiB make many blobs and packs.
pub fn small() -> InitOptions {
    InitOptions {
        chunker: ChunkerParams {
            min_size: 4096,
            avg_size: 16384,
            max_size: 65536,
        },
        block_chunk_size: 16384,
        pack_size: 1024 * 1024,
        kdf: KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        },
    }
}

pub async fn init(url: &str) -> Arc<Repository> {
    Arc::new(
        Repository::init(Backend::open(url).unwrap(), PASS, small())
            .await
            .unwrap(),
    )
}

pub async fn reopen(url: &str) -> Arc<Repository> {
    Arc::new(
        Repository::open(Backend::open(url).unwrap(), PASS)
            .await
            .unwrap(),
    )
}

pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// Everything a restore must bring back, per relative path: kind, mode, mtime, content or
/// target, and which paths share an inode.
pub fn describe(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, String> = BTreeMap::new();
    walk(root, root, &mut out, &mut inodes);
    out
}

fn walk(
    root: &Path,
    dir: &Path,
    out: &mut BTreeMap<String, String>,
    inodes: &mut BTreeMap<u64, String>,
) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let rel = path.strip_prefix(root).unwrap().display().to_string();
        let m = std::fs::symlink_metadata(&path).unwrap();
        let desc = if m.file_type().is_symlink() {
            format!("link -> {}", std::fs::read_link(&path).unwrap().display())
        } else if m.is_dir() {
            walk(root, &path, out, inodes);
            format!("dir {:o} {}", m.mode() & 0o7777, m.mtime())
        } else {
            let content = std::fs::read(&path).unwrap();
            let shared = if m.nlink() > 1 {
                let first = inodes.entry(m.ino()).or_insert(rel.clone());
                format!(" same-inode-as {first}")
            } else {
                String::new()
            };
            format!(
                "file {:o} {}.{} {} {}{shared}",
                m.mode() & 0o7777,
                m.mtime(),
                m.mtime_nsec(),
                content.len(),
                blake3::hash(&content).to_hex()
            )
        };
        out.insert(rel, desc);
    }
}

/// A check that reads every byte.
pub async fn read_everything(repo: &Arc<Repository>) -> ferry_repository::check::CheckReport {
    let options = ferry_repository::check::CheckOptions {
        read_data: true,
        progress: None,
    };
    ferry_repository::check::check(repo.clone(), options)
        .await
        .unwrap()
}

/// Asserts that some error of `report` contains every one of `parts`.
pub fn assert_error(report: &ferry_repository::check::CheckReport, parts: &[&str]) {
    assert!(
        report
            .errors
            .iter()
            .any(|e| parts.iter().all(|p| e.contains(p))),
        "no error mentions {parts:?}: {:?}",
        report.errors
    );
}
