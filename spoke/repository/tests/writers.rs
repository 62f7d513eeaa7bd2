//! Several writers, prune beside them, and what prune keeps and frees.

mod common;

use common::*;
use ferry_repository::backup::{fs, BackupOptions};
use ferry_repository::lock::{Lock, LockOptions};
use ferry_repository::prune::{prune, stats, PruneOptions};
use ferry_repository::restore::{restore, RestoreOptions};
use std::path::Path;

fn tree(root: &Path, seed: u64, files: usize) {
    std::fs::create_dir_all(root).unwrap();
    for i in 0..files {
        std::fs::write(
            root.join(format!("f{i}")),
            noise(40_000 + i * 1000, seed * 1000 + i as u64),
        )
        .unwrap();
    }
    // Shared by every tree: deduplicates across writers.
    std::fs::write(root.join("common"), noise(200_000, 424242)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_share_a_repository() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("repo").display());
    let first = init(&url).await;
    let second = reopen(&url).await;
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    tree(&a, 1, 30);
    tree(&b, 2, 30);
    let (ra, rb) = tokio::join!(
        fs::backup(first, &a, BackupOptions::default()),
        fs::backup(second, &b, BackupOptions::default())
    );
    let ((na, _), (nb, _)) = (ra.unwrap(), rb.unwrap());
    let repo = reopen(&url).await;
    let report = read_everything(&repo).await;
    assert!(report.is_ok(), "{:?}", report.errors);
    for (name, src) in [(na, &a), (nb, &b)] {
        let (_, snap) = repo.find_snapshot(&name, None).await.unwrap();
        let out = dir.path().join(format!("out-{name}"));
        restore(repo.clone(), &snap, &out, RestoreOptions::default())
            .await
            .unwrap();
        assert_eq!(describe(&out), describe(src));
    }
    // Prune folds the duplicate copies of `common` (both writers stored it) into one.
    let before = stats(&repo).await.unwrap();
    prune(
        repo.clone(),
        PruneOptions {
            repack_threshold: 0.0,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let after = stats(&repo).await.unwrap();
    assert!(after.stored_bytes <= before.stored_bytes);
    let report = read_everything(&repo).await;
    assert!(report.is_ok(), "{:?}", report.errors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_waits_for_no_one_and_breaks_nothing_while_a_backup_runs() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("repo").display());
    let repo = init(&url).await;
    // A backup in progress holds a shared lock: prune refuses, naming it, and deletes nothing.
    let running = Lock::shared(repo.backend(), "backup", LockOptions::default())
        .await
        .unwrap();
    let err = prune(repo.clone(), PruneOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("held by backup"), "{err}");
    running.release().await.unwrap();
    // And a backup cannot start while prune holds the repository.
    let pruning = Lock::exclusive(repo.backend(), "prune", LockOptions::default())
        .await
        .unwrap();
    let src = dir.path().join("src");
    tree(&src, 3, 5);
    let err = fs::backup(repo.clone(), &src, BackupOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("held by prune"), "{err}");
    pruning.release().await.unwrap();
    fs::backup(repo.clone(), &src, BackupOptions::default())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_and_prune_free_space_and_keep_the_rest_restorable() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("repo").display());
    let repo = init(&url).await;
    let src = dir.path().join("src");
    tree(&src, 4, 40);
    let (old, _) = fs::backup(repo.clone(), &src, BackupOptions::default())
        .await
        .unwrap();
    // Replace most files: the old snapshot alone holds their old content.
    for i in 0..30 {
        std::fs::write(src.join(format!("f{i}")), noise(50_000, 9_000 + i)).unwrap();
    }
    let (new, _) = fs::backup(repo.clone(), &src, BackupOptions::default())
        .await
        .unwrap();
    let before = stats(&repo).await.unwrap();
    let dry = prune(
        repo.clone(),
        PruneOptions {
            dry_run: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(dry.blobs_removed, 0, "both snapshots still use everything");
    repo.forget(std::slice::from_ref(&old)).await.unwrap();
    let report = prune(repo.clone(), PruneOptions::default()).await.unwrap();
    assert!(report.blobs_removed >= 30, "{report:?}");
    let after = stats(&repo).await.unwrap();
    assert!(
        after.stored_bytes < before.stored_bytes * 3 / 4,
        "{before:?} -> {after:?}"
    );
    let repo = reopen(&url).await;
    let report = read_everything(&repo).await;
    assert!(report.is_ok() && report.warnings.is_empty(), "{report:?}");
    let (_, snap) = repo.find_snapshot(&new, None).await.unwrap();
    let out = dir.path().join("out");
    restore(repo.clone(), &snap, &out, RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(describe(&out), describe(&src));
    let err = repo.find_snapshot(&old, None).await.unwrap_err();
    assert!(err.to_string().contains("no such snapshot"), "{err}");
}

/// Spokes that start together may all try to create the shared repository: one wins, the
/// others are told it exists, and every one of them can open it afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_inits_leave_one_repository_everyone_can_open() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("repo").display());
    let tries: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                ferry_repository::repo::Repository::init(
                    ferry_repository::backend::Backend::open(&url).unwrap(),
                    common::PASS,
                    common::small(),
                )
                .await
                .map(|r| r.config().id.clone())
            })
        })
        .collect();
    let mut created = Vec::new();
    for t in tries {
        match t.await.unwrap() {
            Ok(id) => created.push(id),
            Err(ferry_repository::repo::RepoError::AlreadyInitialized { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(created.len(), 1, "{created:?}");
    let repo = common::reopen(&url).await;
    assert_eq!(repo.config().id, created[0]);
}
