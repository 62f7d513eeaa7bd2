//! Broken repositories: every flipped byte, truncation, wrong key and missing object is found,
//! and the error names the object.

mod common;

use common::*;
use ferry_repository::backend::Backend;
use ferry_repository::backup::{fs, BackupOptions};
use ferry_repository::check::{check, CheckOptions};
use ferry_repository::repo::{RepoError, Repository};
use ferry_repository::restore::{restore, RestoreOptions};
use std::path::{Path, PathBuf};

async fn repo_with_data(dir: &Path) -> (String, PathBuf) {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("a"), noise(300_000, 1)).unwrap();
    std::fs::write(src.join("d/b"), b"text ".repeat(40_000)).unwrap();
    let root = dir.join("repo");
    let url = format!("file://{}", root.display());
    let repo = init(&url).await;
    fs::backup(repo, &src, BackupOptions::default())
        .await
        .unwrap();
    (url, root)
}

fn files_under(root: &Path, folder: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(root.join(folder))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    out.sort();
    out
}

fn flip(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = at % bytes.len();
    bytes[at] ^= 0x10;
    std::fs::write(path, bytes).unwrap();
}

/// `check --read-data` finds nothing wrong.
async fn assert_reads_clean(repo: &std::sync::Arc<Repository>) {
    let report = check(
        repo.clone(),
        CheckOptions {
            read_data: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(report.is_ok(), "{report:?}");
}

fn name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_anywhere_in_a_pack_is_found_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let (url, root) = repo_with_data(dir.path()).await;
    let packs = files_under(&root, "data");
    assert!(!packs.is_empty());
    let pack = &packs[0];
    let len = std::fs::metadata(pack).unwrap().len() as usize;
    // Structure alone does not read packs; --read-data does.
    for at in [0, 1, 17, len / 3, len / 2, len - 40, len - 5, len - 1] {
        flip(pack, at);
        let repo = reopen(&url).await;
        let report = read_everything(&repo).await;
        assert!(!report.is_ok(), "flip at {at} went unnoticed");
        assert!(
            report.errors.iter().any(|e| e.contains(&name(pack))),
            "flip at {at}: {:?}",
            report.errors
        );
        flip(pack, at);
    }
    let report = read_everything(&reopen(&url).await).await;
    assert!(report.is_ok(), "{:?}", report.errors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_blob_fails_the_restore_by_name_and_writes_no_wrong_data() {
    let dir = tempfile::tempdir().unwrap();
    let (url, root) = repo_with_data(dir.path()).await;
    let pack = &files_under(&root, "data")[0];
    flip(pack, 100);
    let repo = reopen(&url).await;
    let (_, snap) = repo.find_snapshot("latest", None).await.unwrap();
    let err = restore(
        repo,
        &snap,
        &dir.path().join("out"),
        RestoreOptions::default(),
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&name(pack)) && msg.contains("authentication failed"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_index_files_are_skipped_reported_and_rebuilt_from_the_packs() {
    let dir = tempfile::tempdir().unwrap();
    let (url, root) = repo_with_data(dir.path()).await;
    let file = files_under(&root, "index")[0].clone();
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    // Opening and listing still work; the damage is named.
    let repo = reopen(&url).await;
    assert_eq!(repo.snapshots().await.unwrap().len(), 1);
    let damaged = repo.damaged_index_files();
    assert_eq!(damaged.len(), 1);
    assert!(
        damaged[0].contains(&name(&file)) && damaged[0].contains("corrupt or truncated"),
        "{damaged:?}"
    );
    let report = check(repo.clone(), CheckOptions::default()).await.unwrap();
    assert!(
        report.errors.iter().any(|e| e.contains(&name(&file))),
        "{report:?}"
    );
    // Prune must not take the packs only the damaged file named for garbage.
    let err = ferry_repository::prune::prune(repo.clone(), Default::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("repair index"), "{err}");
    // The packs carry their own table of contents: the index comes back from them.
    let report = ferry_repository::repair::repair_index(repo.clone(), Default::default())
        .await
        .unwrap();
    assert!(
        report.packs > 0 && report.unreadable.is_empty(),
        "{report:?}"
    );
    assert!(repo.damaged_index_files().is_empty());
    assert!(!file.exists(), "the damaged file is replaced");
    let repo = reopen(&url).await;
    assert_reads_clean(&repo).await;
    let (_, snap) = repo.find_snapshot("latest", None).await.unwrap();
    let out = dir.path().join("out");
    restore(repo, &snap, &out, RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(describe(&out), describe(&dir.path().join("src")));
}

/// A pack whose header verifies but one of whose blobs does not: `repair index` keeps the
/// pack's good blobs, leaves the damaged one out and names it, and the next backup of the same
/// data stores that blob again — after which the old snapshot reads clean too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_leaves_a_damaged_blob_out_and_the_next_backup_stores_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let (url, root) = repo_with_data(dir.path()).await;
    let pack = files_under(&root, "data")
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    flip(&pack, 100);
    let repo = reopen(&url).await;
    let report = ferry_repository::repair::repair_index(repo.clone(), Default::default())
        .await
        .unwrap();
    assert_eq!(report.unreadable.len(), 1, "{report:?}");
    assert!(
        report.unreadable[0].contains(&name(&pack))
            && report.unreadable[0].contains("authentication failed"),
        "{report:?}"
    );
    assert!(report.blobs > 0, "the pack's other blobs stay indexed");
    let repo = reopen(&url).await;
    fs::backup(repo, &dir.path().join("src"), BackupOptions::default())
        .await
        .unwrap();
    // The damaged copy is still in its pack (prune would rewrite it): the index now points
    // every blob at a copy that verifies, so a restore of the first snapshot is whole.
    let repo = reopen(&url).await;
    let snapshots = repo.snapshots().await.unwrap();
    let (first, _) = &snapshots[0];
    let (_, snap) = repo.find_snapshot(first, None).await.unwrap();
    let out = dir.path().join("out");
    restore(repo, &snap, &out, RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(describe(&out), describe(&dir.path().join("src")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_pack_is_stored_again_by_the_next_backup() {
    let dir = tempfile::tempdir().unwrap();
    let (url, root) = repo_with_data(dir.path()).await;
    for pack in files_under(&root, "data") {
        std::fs::remove_file(pack).unwrap();
    }
    let repo = reopen(&url).await;
    let (_, second) = fs::backup(
        repo.clone(),
        &dir.path().join("src"),
        BackupOptions::default(),
    )
    .await
    .unwrap();
    assert!(second.summary.new_bytes > 0, "{:?}", second.summary);
    assert_eq!(second.summary.reused, 0, "{:?}", second.summary);
    let out = dir.path().join("out");
    restore(repo.clone(), &second, &out, RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(describe(&out), describe(&dir.path().join("src")));
    // Content addressing: the blobs stored again have the ids the first snapshot names, so it
    // is whole again too.
    let repo = reopen(&url).await;
    assert_reads_clean(&repo).await;
    let first = repo
        .snapshots()
        .await
        .unwrap()
        .into_iter()
        .find(|(_, s)| s.parent.is_none())
        .unwrap()
        .1;
    let again = dir.path().join("first");
    restore(repo, &first, &again, RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(describe(&again), describe(&dir.path().join("src")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_snapshot_and_config_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (url, root) = repo_with_data(dir.path()).await;
    for folder in ["snapshots"] {
        let file = files_under(&root, folder)[0].clone();
        for at in [0, 40, 1000] {
            flip(&file, at);
            let msg = match Repository::open(Backend::open(&url).unwrap(), PASS).await {
                Err(e) => e.to_string(),
                Ok(repo) => repo.snapshots().await.unwrap_err().to_string(),
            };
            assert!(
                msg.contains(&format!("{folder}/{}", name(&file))),
                "{folder} flip at {at}: {msg}"
            );
            flip(&file, at);
        }
        // Truncated.
        let bytes = std::fs::read(&file).unwrap();
        std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
        let msg = match Repository::open(Backend::open(&url).unwrap(), PASS).await {
            Err(e) => e.to_string(),
            Ok(repo) => repo.snapshots().await.unwrap_err().to_string(),
        };
        assert!(
            msg.contains(&name(&file)) && msg.contains("corrupt or truncated"),
            "{msg}"
        );
        std::fs::write(&file, &bytes).unwrap();
    }
    let config = root.join("config");
    flip(&config, 50);
    let err = Repository::open(Backend::open(&url).unwrap(), PASS)
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("config: "), "{err}");
    flip(&config, 50);
    // A truncated pack is named by check without --read-data (size against the index).
    let pack = &files_under(&root, "data")[0];
    let bytes = std::fs::read(pack).unwrap();
    std::fs::write(pack, &bytes[..bytes.len() - 10]).unwrap();
    let report = check(reopen(&url).await, CheckOptions::default())
        .await
        .unwrap();
    assert_error(&report, &[&name(pack), "bytes stored"]);
    std::fs::remove_file(pack).unwrap();
    let report = check(reopen(&url).await, CheckOptions::default())
        .await
        .unwrap();
    assert_error(&report, &[&name(pack), "not in the repository"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passphrase_and_missing_repository_are_told_apart() {
    let dir = tempfile::tempdir().unwrap();
    let (url, root) = repo_with_data(dir.path()).await;
    let err = Repository::open(Backend::open(&url).unwrap(), b"not it")
        .await
        .unwrap_err();
    assert!(
        matches!(err, RepoError::WrongPassphrase { tried: 1, .. }),
        "{err}"
    );
    let elsewhere = format!("file://{}", dir.path().join("nothing").display());
    let err = Repository::open(Backend::open(&elsewhere).unwrap(), PASS)
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::NotARepository { .. }), "{err}");
    let err = Repository::init(Backend::open(&url).unwrap(), PASS, small())
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::AlreadyInitialized { .. }), "{err}");
    // A mangled key file is named.
    let key = files_under(&root, "keys")[0].clone();
    std::fs::write(&key, b"{not json").unwrap();
    let err = Repository::open(Backend::open(&url).unwrap(), PASS)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(&format!("keys/{}", name(&key))),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_uploads_are_reported_and_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let (url, root) = repo_with_data(dir.path()).await;
    // What a writer killed during a local multipart upload leaves beside the packs.
    let partial = root.join("data").join(format!("{}#2", "ab".repeat(32)));
    std::fs::write(&partial, vec![7u8; 1000]).unwrap();
    // ... and beside the index files and the config, from a killed index write or init.
    let partial_index = root.join("index").join(format!("{}#31", "cd".repeat(32)));
    std::fs::write(&partial_index, b"half an index").unwrap();
    let partial_config = root.join("config#4000001");
    std::fs::write(&partial_config, b"half a config").unwrap();
    let repo = reopen(&url).await;
    let report = check(repo.clone(), CheckOptions::default()).await.unwrap();
    assert!(report.is_ok());
    for key in ["data/abab", "index/cdcd", "config#4000001"] {
        assert!(
            report
                .warnings
                .iter()
                .any(|w| w.starts_with(key) && w.contains("partial upload")),
            "{key}: {report:?}"
        );
    }
    let pruned = ferry_repository::prune::prune(repo.clone(), Default::default())
        .await
        .unwrap();
    assert_eq!(pruned.partial_uploads, 3);
    assert!(!partial.exists() && !partial_index.exists() && !partial_config.exists());
    let report = check(repo, CheckOptions::default()).await.unwrap();
    assert!(report.warnings.is_empty(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_tree_pack_is_named_whether_read_whole_or_by_range() {
    let dir = tempfile::tempdir().unwrap();
    let (url, root) = repo_with_data(dir.path()).await;
    let structure = |repo| check(repo, CheckOptions::default());
    // Structure alone reads trees only, so of all packs only a tree pack's damage shows.
    let mut tree_packs = Vec::new();
    for pack in files_under(&root, "data") {
        let len = std::fs::metadata(&pack).unwrap().len() as usize;
        flip(&pack, len / 2);
        let report = structure(reopen(&url).await).await.unwrap();
        flip(&pack, len / 2);
        if !report.is_ok() {
            assert_error(&report, &["snapshot", &name(&pack)]);
            tree_packs.push(pack);
        }
    }
    assert_eq!(tree_packs.len(), 1, "one tree pack for two directories");
    // Cut short, the pack is not read whole (its size is not the index's): the ranged reads
    // name each tree past the end.
    let pack = &tree_packs[0];
    let bytes = std::fs::read(pack).unwrap();
    std::fs::write(pack, &bytes[..bytes.len() / 2]).unwrap();
    let report = structure(reopen(&url).await).await.unwrap();
    assert_error(&report, &["snapshot", &name(pack), "past the end"]);
    std::fs::write(pack, &bytes).unwrap();
    assert_reads_clean(&reopen(&url).await).await;
}
