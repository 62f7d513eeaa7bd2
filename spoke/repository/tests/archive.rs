//! Archives: snapshots written file by file from memory (restore points' manifests and
//! objects), read back chunk by chunk and by an ordinary restore.

mod common;

use ferry_repository::backup::archive::{ArchiveFile, ArchiveWriter};
use ferry_repository::backup::BackupOptions;
use ferry_repository::restore::{restore, RestoreOptions};

#[tokio::test]
async fn streamed_files_read_back_and_deduplicate() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("repo").display());
    let repo = common::init(&url).await;
    // Larger than the chunking window (2 × 64 KiB here), written in uneven pieces.
    let big = common::noise(700_000, 7);
    let mut w = ArchiveWriter::begin(repo.clone(), "restore-point/a", BackupOptions::default())
        .await
        .unwrap();
    w.start_file("objects.jsonl").await.unwrap();
    for piece in big.chunks(9_999) {
        w.write(piece).await.unwrap();
    }
    w.start_file("manifest.json").await.unwrap();
    w.write(b"{\"id\": \"a\"}").await.unwrap();
    w.start_file("empty").await.unwrap();
    let err = w.start_file("manifest.json").await.unwrap_err();
    assert!(err.to_string().contains("written twice"), "{err}");
    let (name, snapshot) = w.finish().await.unwrap();
    assert_eq!(snapshot.summary.files, 3);
    assert_eq!(snapshot.summary.bytes, 700_000 + 11);
    let first_new = snapshot.summary.new_bytes;

    // Chunk by chunk.
    let mut f = ArchiveFile::open(repo.clone(), &snapshot, "objects.jsonl")
        .await
        .unwrap();
    assert_eq!(f.size, 700_000);
    let mut back = Vec::new();
    let mut chunks = 0;
    while let Some(c) = f.next_chunk().await.unwrap() {
        back.extend_from_slice(&c);
        chunks += 1;
    }
    assert!(chunks > 5, "{chunks} chunks");
    assert!(back == big, "objects differ");
    let manifest = ArchiveFile::open(repo.clone(), &snapshot, "manifest.json")
        .await
        .unwrap()
        .read_all()
        .await
        .unwrap();
    assert_eq!(manifest, b"{\"id\": \"a\"}");
    let Err(missing) = ArchiveFile::open(repo.clone(), &snapshot, "nope").await else {
        panic!("a file that is not there opened")
    };
    assert!(
        missing.to_string().contains("has no file \"nope\""),
        "{missing}"
    );

    // An ordinary restore reads it.
    let out = dir.path().join("out");
    restore(repo.clone(), &snapshot, &out, RestoreOptions::default())
        .await
        .unwrap();
    assert!(std::fs::read(out.join("objects.jsonl")).unwrap() == big);
    assert_eq!(std::fs::metadata(out.join("empty")).unwrap().len(), 0);

    // The same objects with a change near the start: most chunks are known already.
    let mut changed = big.clone();
    changed[1000] ^= 0xff;
    let mut w = ArchiveWriter::begin(repo.clone(), "restore-point/b", BackupOptions::default())
        .await
        .unwrap();
    w.start_file("objects.jsonl").await.unwrap();
    w.write(&changed).await.unwrap();
    let (_, second) = w.finish().await.unwrap();
    assert!(
        second.summary.new_bytes < first_new / 4,
        "{} new of {first_new}",
        second.summary.new_bytes
    );
    let report = common::read_everything(&repo).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(!name.is_empty());
}
