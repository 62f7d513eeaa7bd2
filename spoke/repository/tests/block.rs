//! Block volumes: sparse round trips, incremental backups by deduplication and by change list.

mod common;

use common::*;
use ferry_repository::backup::block::{self, ChangedRanges};
use ferry_repository::backup::BackupOptions;
use ferry_repository::restore::{restore_block, RestoreOptions};
use proptest::prelude::*;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

const CHUNK: u64 = 16384; // common::small()

fn image(path: &Path, size: u64, writes: &[(u64, Vec<u8>)]) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(size).unwrap();
    for (at, data) in writes {
        f.write_all_at(data, *at).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sparse_images_round_trip_sparse_and_changes_store_only_their_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    let size = 8 * 1024 * 1024 + 1000; // not a whole number of chunks
    image(
        &img,
        size,
        &[
            (0, noise(100_000, 1)),
            (5_000_000, noise(300_000, 2)),
            (size - 500, vec![7; 500]),
        ],
    );
    let repo = init("memory://").await;
    let (first, s1) = block::backup(repo.clone(), &img, BackupOptions::default(), None)
        .await
        .unwrap();
    assert!(
        s1.summary.new_bytes < 500_000,
        "holes are not stored: {:?}",
        s1.summary
    );

    let out = dir.path().join("restored.img");
    restore_block(repo.clone(), &s1, &out, RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&img).unwrap());
    let allocated = std::fs::metadata(&out).unwrap().blocks() * 512;
    assert!(
        allocated < 1_000_000,
        "restored sparse: {allocated} bytes allocated"
    );

    // Through a link (how a pod reaches its device): the volume it names gets the data, and
    // the link stays a link.
    let volume = dir.path().join("volume.img");
    image(&volume, size, &[]);
    let device = dir.path().join("ferry-volume");
    std::os::unix::fs::symlink(&volume, &device).unwrap();
    let synced = RestoreOptions {
        sync: true,
        ..Default::default()
    };
    restore_block(repo.clone(), &s1, &device, synced)
        .await
        .unwrap();
    assert!(std::fs::symlink_metadata(&device)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        std::fs::read(&volume).unwrap(),
        std::fs::read(&img).unwrap()
    );

    // Scattered writes: only the chunks they touch are new.
    let f = std::fs::File::options().write(true).open(&img).unwrap();
    let changes = [
        (1_000_000u64, 5000usize),
        (3 * CHUNK - 10, 20),
        (7_000_000, 4096),
    ];
    for (at, len) in changes {
        f.write_all_at(&noise(len, at), at).unwrap();
    }
    let (_, s2) = block::backup(repo.clone(), &img, BackupOptions::default(), None)
        .await
        .unwrap();
    assert_eq!(s2.parent.as_deref(), Some(first.as_str()));
    assert!(s2.summary.new_bytes <= 5 * CHUNK, "{:?}", s2.summary);
    assert!(s2.summary.new_bytes >= 3 * CHUNK);

    // With a change list, only the listed ranges are read; a wrong list is the caller's
    // promise, so leaving a change out leaves it out (that is what "skip unchanged" means).
    let more = [(2_000_000u64, 100usize), (6_000_000, 100)];
    for (at, len) in more {
        f.write_all_at(&noise(len, at + 1), at).unwrap();
    }
    let listed = ChangedRanges(more.iter().map(|(a, l)| *a..*a + *l as u64).collect());
    let (_, s3) = block::backup(repo.clone(), &img, BackupOptions::default(), Some(listed))
        .await
        .unwrap();
    let chunks = size.div_ceil(CHUNK);
    assert_eq!(
        s3.summary.reused,
        chunks - 2,
        "all but the two listed chunks come from the parent"
    );
    let out3 = dir.path().join("third.img");
    restore_block(repo.clone(), &s3, &out3, RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(std::fs::read(&out3).unwrap(), std::fs::read(&img).unwrap());

    // A change list needs a parent of the same size.
    let other = dir.path().join("other.img");
    image(&other, size * 2, &[]);
    let err = block::backup(
        repo,
        &other,
        BackupOptions::default(),
        Some(ChangedRanges::default()),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("needs a parent snapshot"), "{err}");
}

/// A volume restored into an existing image (a claim's, perhaps larger than the snapshot)
/// keeps the image's size, as a device would, with nothing of its old bytes left; a smaller
/// image grows to the snapshot. What is not an image or a device is refused, not replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_images_keep_their_size_and_other_targets_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    let size = 3 * CHUNK + 100;
    image(&img, size, &[(0, noise(size as usize, 9))]);
    let repo = init("memory://").await;
    let (_, snap) = block::backup(repo.clone(), &img, BackupOptions::default(), None)
        .await
        .unwrap();
    let snapshot = std::fs::read(&img).unwrap();

    let larger = dir.path().join("larger.img");
    std::fs::write(&larger, vec![0xAA; 8 * CHUNK as usize]).unwrap();
    restore_block(repo.clone(), &snap, &larger, RestoreOptions::default())
        .await
        .unwrap();
    let restored = std::fs::read(&larger).unwrap();
    assert_eq!(
        restored.len() as u64,
        8 * CHUNK,
        "the volume keeps its size"
    );
    assert_eq!(&restored[..snapshot.len()], &snapshot[..]);
    assert!(
        restored[snapshot.len()..].iter().all(|b| *b == 0),
        "the old bytes beyond the snapshot are gone"
    );

    let smaller = dir.path().join("smaller.img");
    std::fs::write(&smaller, vec![0xAA; 100]).unwrap();
    restore_block(repo.clone(), &snap, &smaller, RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(std::fs::read(&smaller).unwrap(), snapshot);

    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::write(home.join("notes"), b"keep me").unwrap();
    let err = restore_block(repo, &snap, &home, RestoreOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("home: is a directory") && err.contains("image file or a block device"),
        "{err}"
    );
    assert_eq!(std::fs::read(home.join("notes")).unwrap(), b"keep me");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn any_image_round_trips(
        size in 1u64..200_000,
        writes in prop::collection::vec((0u64..200_000, 1usize..40_000, any::<u64>(), any::<bool>()), 0..6),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let img = dir.path().join("img");
            let writes: Vec<(u64, Vec<u8>)> = writes
                .into_iter()
                .filter(|(at, _, _, _)| *at < size)
                .map(|(at, len, seed, text)| {
                    let len = len.min((size - at) as usize);
                    let data = if text { b"abc ".repeat(len / 4 + 1)[..len].to_vec() } else { noise(len, seed) };
                    (at, data)
                })
                .collect();
            image(&img, size, &writes);
            let repo = init("memory://").await;
            let (_, snap) = block::backup(repo.clone(), &img, BackupOptions::default(), None).await.unwrap();
            let out = dir.path().join("out");
            restore_block(repo, &snap, &out, RestoreOptions::default()).await.unwrap();
            assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&img).unwrap());
        });
    }
}
