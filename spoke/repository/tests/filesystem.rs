//! Filesystem snapshots through the library API: round trips, incremental backups, partial
//! restores.

mod common;

use common::*;
use ferry_repository::backup::{fs, BackupOptions};
use ferry_repository::restore::{restore, RestoreOptions};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn set_mtime(path: &Path, secs: i64) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64))
        .unwrap();
}

/// A tree with every kind of entry the format keeps.
fn build_tree(root: &Path) {
    std::fs::create_dir_all(root.join("etc/conf.d")).unwrap();
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::fs::write(root.join("etc/hosts"), b"127.0.0.1 localhost\n").unwrap();
    std::fs::write(
        root.join("etc/conf.d/app.conf"),
        b"key = value\n".repeat(300),
    )
    .unwrap();
    std::fs::write(root.join("zero"), b"").unwrap();
    std::fs::write(root.join("big.bin"), noise(3 * 1024 * 1024 + 17, 7)).unwrap();
    let mut sparse = vec![0u8; 512 * 1024];
    sparse[100_000..100_100].copy_from_slice(&[9u8; 100]);
    std::fs::write(root.join("mostly-zero"), &sparse).unwrap();
    std::fs::write(root.join(OsStr::from_bytes(b"caf\xe9")), b"latin-1 name").unwrap();
    std::os::unix::fs::symlink("etc/hosts", root.join("hosts-link")).unwrap();
    std::os::unix::fs::symlink("/nowhere/at/all", root.join("dangling")).unwrap();
    std::fs::hard_link(root.join("etc/hosts"), root.join("hosts-hard")).unwrap();
    std::fs::set_permissions(
        root.join("etc/conf.d/app.conf"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    std::fs::set_permissions(
        root.join("big.bin"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    let fifo = std::ffi::CString::new(root.join("pipe").as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    set_mtime(&root.join("etc/hosts"), 1_000_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_keeps_content_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    build_tree(&src);
    let url = format!("file://{}", dir.path().join("repo").display());
    let repo = init(&url).await;
    let (name, snap) = fs::backup(repo.clone(), &src, BackupOptions::default())
        .await
        .unwrap();
    assert_eq!(snap.summary.skipped.len(), 1, "{:?}", snap.summary.skipped);
    assert!(snap.summary.skipped[0].contains("named pipe"));
    assert_eq!(snap.summary.files, 7);

    let repo = reopen(&url).await;
    let (found, snap) = repo.find_snapshot(&name[..8], None).await.unwrap();
    assert_eq!(found, name);
    let out = dir.path().join("out");
    // Synced to disk before it returns, as a mover's restore is; the holes stay holes.
    let synced = RestoreOptions {
        sync: true,
        ..Default::default()
    };
    restore(repo.clone(), &snap, &out, synced).await.unwrap();
    std::fs::remove_file(src.join("pipe")).unwrap();
    assert_eq!(describe(&out), describe(&src));
    // Restored sparse: the zero chunks of `mostly-zero` were not written.
    use std::os::unix::fs::MetadataExt;
    let blocks = std::fs::metadata(out.join("mostly-zero")).unwrap().blocks();
    assert!(blocks * 512 < 512 * 1024, "{blocks} blocks allocated");

    // A single file and a subtree.
    let one = dir.path().join("one");
    restore(
        repo.clone(),
        &snap,
        &one,
        RestoreOptions {
            path: Some("etc/conf.d/app.conf".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        std::fs::read(one.join("app.conf")).unwrap(),
        b"key = value\n".repeat(300)
    );
    let sub = dir.path().join("sub");
    restore(
        repo.clone(),
        &snap,
        &sub,
        RestoreOptions {
            path: Some("/etc".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // `hosts` has a second name outside the subtree: it comes back as a single file.
    let mut expected = describe(&src.join("etc"));
    let hosts = expected.get_mut("hosts").unwrap();
    *hosts = hosts.replace(" same-inode-as hosts", "");
    assert_eq!(describe(&sub), expected);
    let err = restore(
        repo,
        &snap,
        &sub,
        RestoreOptions {
            path: Some("etc/nope".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("etc/nope: not in the snapshot"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_backup_reads_only_what_changed_and_stores_only_new_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    build_tree(&src);
    std::fs::remove_file(src.join("pipe")).unwrap();
    let repo = init("memory://").await;
    let (first, s1) = fs::backup(repo.clone(), &src, BackupOptions::default())
        .await
        .unwrap();
    assert_eq!(s1.summary.reused, 0);
    let (_, again) = fs::backup(repo.clone(), &src, BackupOptions::default())
        .await
        .unwrap();
    assert_eq!(again.parent.as_deref(), Some(first.as_str()));
    assert_eq!(
        again.summary.reused,
        again.summary.files - 1,
        "all but the hard link's second name"
    );
    assert_eq!(again.summary.new_bytes, 0);
    assert_eq!(again.tree, s1.tree, "same tree, same id");

    // Change 100 bytes in the middle of the big file: one or two chunks are new.
    let mut big = std::fs::read(src.join("big.bin")).unwrap();
    big[1_500_000..1_500_100].copy_from_slice(&[0xAB; 100]);
    std::fs::write(src.join("big.bin"), &big).unwrap();
    std::fs::write(src.join("etc/new"), b"new file").unwrap();
    let (_, third) = fs::backup(repo.clone(), &src, BackupOptions::default())
        .await
        .unwrap();
    assert!(
        third.summary.new_bytes < 3 * 65536 + 1000,
        "{:?}",
        third.summary
    );
    assert!(third.summary.new_bytes > 0);
    let out = dir.path().join("out");
    restore(repo, &third, &out, RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(describe(&out), describe(&src));
}

#[tokio::test]
async fn a_rewrite_with_its_mtime_set_back_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let file = src.join("table.dat");
    std::fs::write(&file, noise(100_000, 1)).unwrap();
    set_mtime(&file, 1_600_000_000);
    let repo = init("memory://").await;
    fs::backup(repo.clone(), &src, BackupOptions::default())
        .await
        .unwrap();
    // Same size, same mtime, new content: only the ctime says it changed.
    std::fs::write(&file, noise(100_000, 2)).unwrap();
    set_mtime(&file, 1_600_000_000);
    let (_, second) = fs::backup(repo.clone(), &src, BackupOptions::default())
        .await
        .unwrap();
    assert_eq!(second.summary.reused, 0, "{:?}", second.summary);
    let out = dir.path().join("out");
    restore(repo, &second, &out, RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(out.join("table.dat")).unwrap(),
        noise(100_000, 2)
    );
}

#[tokio::test]
async fn the_target_directory_takes_the_roots_mode_owner_and_mtime() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    // A database's data directory: 0700, owned by its own user.
    let src = dir.path().join("pgdata");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("PG_VERSION"), b"16\n").unwrap();
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o700)).unwrap();
    let as_root = nix_is_root();
    if as_root {
        std::os::unix::fs::chown(&src, Some(999), Some(999)).unwrap();
    }
    set_mtime_dir(&src, 1_650_000_000);
    let repo = init("memory://").await;
    let (_, snapshot) = fs::backup(repo.clone(), &src, BackupOptions::default())
        .await
        .unwrap();
    let out = dir.path().join("restored");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755)).unwrap();
    restore(repo.clone(), &snapshot, &out, RestoreOptions::default())
        .await
        .unwrap();
    let is_the_root = |meta: std::fs::Metadata| {
        assert_eq!(meta.mode() & 0o7777, 0o700);
        assert_eq!(meta.mtime(), 1_650_000_000);
        if as_root {
            assert_eq!((meta.uid(), meta.gid()), (999, 999));
        }
    };
    is_the_root(std::fs::metadata(&out).unwrap());

    // Through a link to the volume (how a pod's mount path can reach it): the volume takes
    // the root's metadata, not the link.
    let volume = dir.path().join("volume");
    std::fs::create_dir_all(&volume).unwrap();
    let mount = dir.path().join("mount");
    std::os::unix::fs::symlink(&volume, &mount).unwrap();
    restore(repo.clone(), &snapshot, &mount, RestoreOptions::default())
        .await
        .unwrap();
    is_the_root(std::fs::metadata(&volume).unwrap());
    assert_eq!(std::fs::read(volume.join("PG_VERSION")).unwrap(), b"16\n");
    assert!(std::fs::symlink_metadata(&mount)
        .unwrap()
        .file_type()
        .is_symlink());

    // A file where the directory should be is the user's: told, not touched.
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"mine").unwrap();
    let err = restore(repo, &snapshot, &file, RestoreOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with("a-file: is a regular file; a filesystem snapshot restores into a directory"),
        "{err}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"mine");
}

/// A restore creates files with their mode and sets owner and mode only where the created file
/// does not already have them: each case where it does not must still end right.
#[tokio::test]
async fn every_restored_file_gets_its_mode_and_owner_whatever_it_was_created_with() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let as_root = nix_is_root();
    // (name, mode, owner): the usual case, wider than the umask, narrower, setgid, another
    // user's (root only), and one already present in the target with another mode.
    let mut cases = vec![
        ("plain", 0o644, None),
        ("wide", 0o666, None),
        ("private", 0o600, None),
        ("setgid", 0o2755, None),
        ("existing", 0o644, None),
    ];
    if as_root {
        cases.push(("theirs", 0o640, Some(999)));
        cases.push(("theirs-setuid", 0o4755, Some(998)));
    }
    for (name, mode, owner) in &cases {
        let path = src.join(name);
        std::fs::write(&path, name.as_bytes()).unwrap();
        if let Some(id) = owner {
            std::os::unix::fs::chown(&path, Some(*id), Some(*id)).unwrap();
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode)).unwrap();
    }
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("existing"), b"old").unwrap();
    std::fs::set_permissions(out.join("existing"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let summary = backup_and_restore(&src, &out).await;
    assert_eq!(summary.ownership_skipped, 0);
    let me = std::fs::metadata(&src).unwrap();
    for (name, mode, owner) in &cases {
        let meta = std::fs::metadata(out.join(name)).unwrap();
        assert_eq!(meta.mode() & 0o7777, *mode, "{name}: mode");
        let want = owner.map_or((me.uid(), me.gid()), |id| (id, id));
        assert_eq!((meta.uid(), meta.gid()), want, "{name}: owner");
        assert_eq!(std::fs::read(out.join(name)).unwrap(), name.as_bytes());
    }
}

/// Files of one blob get their modification time from their writer, the others after all
/// writes: files sharing one blob, an all-zero one, and a file of several blobs each keep
/// their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_sharing_content_keep_their_own_modification_times() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("b")).unwrap();
    let files = [
        ("a/same", b"shared content\n".to_vec(), 1_100_000_000),
        ("b/same", b"shared content\n".to_vec(), 1_300_000_000),
        ("zeros", vec![0u8; 4096], 1_400_000_000),
        ("big", noise(2 * 1024 * 1024 + 5, 11), 1_500_000_000),
    ];
    std::fs::create_dir_all(src.join("a")).unwrap();
    for (name, content, mtime) in &files {
        std::fs::write(src.join(name), content).unwrap();
        set_mtime(&src.join(name), *mtime);
    }
    let out = dir.path().join("out");
    backup_and_restore(&src, &out).await;
    for (name, content, mtime) in &files {
        let meta = std::fs::metadata(out.join(name)).unwrap();
        assert_eq!(meta.mtime(), *mtime, "{name}: mtime");
        assert_eq!(&std::fs::read(out.join(name)).unwrap(), content, "{name}");
    }
    assert_eq!(describe(&out), describe(&src));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_over_existing_entries_replaces_them_without_following_links() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    // One chunk each: these are created by the write that fills them.
    std::fs::write(src.join("config"), b"restored config\n").unwrap();
    std::fs::write(src.join("was-a-dir"), b"a file now").unwrap();
    std::fs::write(src.join("zeros"), vec![0u8; 300 * 1024]).unwrap();
    std::fs::set_permissions(src.join("config"), std::fs::Permissions::from_mode(0o600)).unwrap();
    set_mtime(&src.join("config"), 1_200_000_000);
    // Several chunks: created first, written, given metadata last.
    std::fs::write(src.join("big"), noise(3 * 1024 * 1024, 3)).unwrap();
    let repo = init("memory://").await;
    let (_, snapshot) = fs::backup(repo.clone(), &src, BackupOptions::default())
        .await
        .unwrap();

    let out = dir.path().join("out");
    std::fs::create_dir_all(out.join("was-a-dir/inner")).unwrap();
    let outside = dir.path().join("outside");
    std::fs::write(&outside, b"must not change").unwrap();
    std::os::unix::fs::symlink(&outside, out.join("config")).unwrap();
    std::os::unix::fs::symlink(&outside, out.join("big")).unwrap();
    std::fs::write(out.join("zeros"), b"old content, longer than nothing").unwrap();
    restore(repo, &snapshot, &out, RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(std::fs::read(&outside).unwrap(), b"must not change");
    assert_eq!(describe(&out), describe(&src));
    let config = std::fs::symlink_metadata(out.join("config")).unwrap();
    assert!(config.is_file());
    assert_eq!(config.mode() & 0o7777, 0o600);
    assert_eq!(config.mtime(), 1_200_000_000);
    let zeros = std::fs::metadata(out.join("zeros")).unwrap();
    assert_eq!(zeros.len(), 300 * 1024);
    assert!(
        zeros.blocks() * 512 < 300 * 1024,
        "zeros written: {zeros:?}"
    );
}

#[tokio::test]
async fn identical_directories_share_a_tree_and_both_restore() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    // Empty directories have identical trees (nodes carry inodes, so little else does).
    for twin in ["a", "b", "c/d"] {
        std::fs::create_dir_all(src.join(twin).join("empty")).unwrap();
    }
    let out = dir.path().join("out");
    backup_and_restore(&src, &out).await;
    assert_eq!(describe(&out), describe(&src));
}

/// Files of several blobs are allocated whole before their writes, unless a blob may be all
/// zeros: a long run of zeros inside a file stays a hole, and every file reads back the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_of_zeros_stay_holes_in_files_allocated_ahead() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut holey = noise(2 << 20, 1);
    holey.extend(vec![0u8; 20 << 20]);
    holey.extend(noise(2 << 20, 2));
    std::fs::write(src.join("holey"), &holey).unwrap();
    std::fs::write(src.join("dense"), noise(5 << 20, 3)).unwrap();
    std::fs::write(src.join("text"), b"line of text\n".repeat(400_000)).unwrap();
    let out = dir.path().join("out");
    backup_and_restore(&src, &out).await;
    assert_eq!(describe(&out), describe(&src));
    let holey = std::fs::metadata(out.join("holey")).unwrap();
    assert!(
        holey.blocks() * 512 <= 16 << 20,
        "zeros written or allocated: {} of {} bytes",
        holey.blocks() * 512,
        holey.len()
    );
    let dense = std::fs::metadata(out.join("dense")).unwrap();
    assert!(dense.blocks() * 512 >= dense.len());
}

/// Backs `src` up into a memory repository and restores that snapshot into `out`.
async fn backup_and_restore(src: &Path, out: &Path) -> ferry_repository::restore::RestoreSummary {
    let repo = init("memory://").await;
    let (_, snapshot) = fs::backup(repo.clone(), src, BackupOptions::default())
        .await
        .unwrap();
    restore(repo, &snapshot, out, RestoreOptions::default())
        .await
        .unwrap()
}

fn nix_is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

fn set_mtime_dir(path: &Path, secs: i64) {
    let f = std::fs::File::open(path).unwrap();
    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64))
        .unwrap();
}

mod random_trees {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Entry {
        File {
            size: usize,
            seed: u64,
            text: bool,
            mode: u32,
        },
        Dir(Vec<(String, Entry)>),
        Link(String),
    }

    fn entry() -> impl Strategy<Value = Entry> {
        let leaf = prop_oneof![
            (
                0usize..70_000,
                any::<u64>(),
                any::<bool>(),
                prop::sample::select(vec![0o600u32, 0o644, 0o755, 0o400])
            )
                .prop_map(|(size, seed, text, mode)| Entry::File {
                    size,
                    seed,
                    text,
                    mode
                }),
            "[a-z]{1,8}".prop_map(Entry::Link),
        ];
        leaf.prop_recursive(3, 24, 5, |inner| {
            prop::collection::vec(("[a-zA-Z0-9_.-]{1,10}", inner), 0..5).prop_map(Entry::Dir)
        })
    }

    fn write(path: &Path, e: &Entry) {
        match e {
            Entry::File {
                size,
                seed,
                text,
                mode,
            } => {
                let data = if *text {
                    b"line of text\n".repeat(size / 13 + 1)[..*size].to_vec()
                } else {
                    noise(*size, *seed)
                };
                std::fs::write(path, data).unwrap();
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mode)).unwrap();
            }
            Entry::Link(t) => std::os::unix::fs::symlink(t, path).unwrap(),
            Entry::Dir(children) => {
                std::fs::create_dir(path).unwrap();
                for (name, child) in children {
                    if name == "." || name == ".." || path.join(name).symlink_metadata().is_ok() {
                        continue;
                    }
                    write(&path.join(name), child);
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

        #[test]
        fn any_tree_round_trips(children in prop::collection::vec(("[a-z]{1,6}", entry()), 0..6)) {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let src = dir.path().join("src");
                write(&src, &Entry::Dir(children));
                let repo = init("memory://").await;
                let (_, snap) = fs::backup(repo.clone(), &src, BackupOptions::default()).await.unwrap();
                let out = dir.path().join("out");
                restore(repo, &snap, &out, RestoreOptions::default()).await.unwrap();
                assert_eq!(describe(&out), describe(&src));
            });
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_small_files_restore_within_the_descriptor_limit() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    for d in 0..5 {
        std::fs::create_dir_all(src.join(format!("d{d}"))).unwrap();
        for i in 0..500 {
            std::fs::write(
                src.join(format!("d{d}/f{i}")),
                format!("file {d}/{i}\n").repeat(50),
            )
            .unwrap();
        }
    }
    let repo = init("memory://").await;
    let (_, snap) = fs::backup(repo.clone(), &src, BackupOptions::default())
        .await
        .unwrap();
    // Well under the usual limit of 1024, so that a leak of one descriptor per file shows.
    let limit = libc::rlimit {
        rlim_cur: 256,
        rlim_max: 256,
    };
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut old);
        libc::setrlimit(
            libc::RLIMIT_NOFILE,
            &libc::rlimit {
                rlim_max: old.rlim_max,
                ..limit
            },
        );
    }
    let out = dir.path().join("out");
    let restored = restore(repo, &snap, &out, RestoreOptions::default()).await;
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &old) };
    restored.unwrap();
    assert_eq!(describe(&out), describe(&src));
}
