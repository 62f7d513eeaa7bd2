//! `ferry-spoke repo` end to end: the real binary on a real file repository.

mod common;

use common::noise;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_ferry-spoke");

fn ferry(repo: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("repo")
        .args(args)
        .env("FERRY_REPOSITORY", repo)
        .env("FERRY_PASSWORD", "cli test passphrase")
        .output()
        .unwrap()
}

fn ok(repo: &Path, args: &[&str]) -> String {
    let out = ferry(repo, args);
    assert!(
        out.status.success(),
        "ferry-spoke repo {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn tree_digest(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p);
                out.push((rel, b"dir".to_vec()));
            } else if m.file_type().is_symlink() {
                let target = std::fs::read_link(&p).unwrap();
                out.push((rel, target.as_os_str().as_encoded_bytes().to_vec()));
            } else {
                let digest = blake3::hash(&std::fs::read(&p).unwrap());
                out.push((rel, digest.as_bytes().to_vec()));
            }
        }
    }
    out.sort();
    out
}

fn source(dir: &Path) -> std::path::PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("data/nested")).unwrap();
    std::fs::write(src.join("data/random.bin"), noise(3_000_000, 5)).unwrap();
    std::fs::write(
        src.join("data/nested/log.txt"),
        b"GET /index.html 200\n".repeat(100_000),
    )
    .unwrap();
    std::os::unix::fs::symlink("data/random.bin", src.join("link")).unwrap();
    for i in 0..50 {
        std::fs::write(
            src.join(format!("data/small-{i}")),
            format!("small file {i}\n"),
        )
        .unwrap();
    }
    src
}

#[test]
fn init_backup_restore_export_check_prune() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let src = source(dir.path());
    assert!(ok(&repo, &["init"]).starts_with("created repository"));
    let src_arg = src.to_str().unwrap();
    let out = ferry(
        &repo,
        &["--progress", "json", "backup", src_arg, "--tag", "first"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("snapshot ") && stdout.contains("52 files"),
        "{stdout}"
    );
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let last = events.last().expect("progress events");
    assert_eq!(last["finished"], true);
    assert_eq!(last["operation"], "backup");
    assert!(last["bytesDone"].as_u64().unwrap() >= 5_000_000, "{last}");

    std::fs::write(src.join("data/added"), b"new").unwrap();
    let second = ok(&repo, &["backup", src_arg]);
    assert!(second.contains("(52 unchanged reused)"), "{second}");

    let list: Vec<serde_json::Value> =
        serde_json::from_str(&ok(&repo, &["snapshots", "--json"])).unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["snapshot"]["tags"][0], "first");
    let first_id = list[0]["id"].as_str().unwrap().to_string();

    let target = dir.path().join("restored");
    ok(&repo, &["restore", "latest", target.to_str().unwrap()]);
    assert_eq!(tree_digest(&target), tree_digest(&src));
    let one = dir.path().join("one");
    ok(
        &repo,
        &[
            "restore",
            "latest",
            one.to_str().unwrap(),
            "--path",
            "data/nested/log.txt",
        ],
    );
    assert_eq!(
        std::fs::read(one.join("log.txt")).unwrap(),
        std::fs::read(src.join("data/nested/log.txt")).unwrap()
    );

    // tar export, read back by the system's tar.
    let tar = dir.path().join("snap.tar");
    ok(&repo, &["export", "latest", "-o", tar.to_str().unwrap()]);
    let untar = dir.path().join("untar");
    std::fs::create_dir(&untar).unwrap();
    let status = Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(&untar)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(tree_digest(&untar), tree_digest(&src));

    let ls = ok(&repo, &["ls", "latest"]);
    assert!(
        ls.contains("/link -> data/random.bin") && ls.contains("/data/nested/log.txt"),
        "{ls}"
    );
    let stats: serde_json::Value = serde_json::from_str(&ok(&repo, &["stats", "--json"])).unwrap();
    assert!(stats["dedupRatio"].as_f64().unwrap() > 1.9, "{stats}");
    assert!(stats["compressionRatio"].as_f64().unwrap() > 1.2, "{stats}");
    assert!(ok(&repo, &["check", "--read-data"]).contains("no errors"));
    ok(&repo, &["forget", &first_id[..10]]);
    let pruned = ok(&repo, &["prune"]);
    assert!(pruned.contains("packs kept"), "{pruned}");
    assert!(ok(&repo, &["check", "--read-data"]).contains("no errors"));
    // Plain check says what it did not do.
    let plain = ok(&repo, &["check"]);
    assert!(plain.contains("no pack data was read"), "{plain}");

    // A truncated index file: commands still run, check names it, repair rebuilds the index.
    let index_file = std::fs::read_dir(repo.join("index"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let bytes = std::fs::read(&index_file).unwrap();
    std::fs::write(&index_file, &bytes[..bytes.len() / 2]).unwrap();
    let listed = ok(&repo, &["snapshots"]);
    assert!(!listed.trim().is_empty(), "snapshots still list: {listed}");
    let repaired = ok(&repo, &["repair", "index"]);
    assert!(repaired.contains("index rebuilt from"), "{repaired}");
    assert!(ok(&repo, &["check", "--read-data"]).contains("no errors"));
    let restored = dir.path().join("after-repair");
    ok(&repo, &["restore", "latest", restored.to_str().unwrap()]);
    assert_eq!(tree_digest(&restored), tree_digest(&src));
}

#[test]
fn wrong_passphrase_and_bad_input_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    ok(&repo, &["init"]);
    let out = Command::new(BIN)
        .args(["repo", "snapshots"])
        .env("FERRY_REPOSITORY", &repo)
        .env("FERRY_PASSWORD", "hunter2-not-it")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no key file opens with this passphrase"),
        "{err}"
    );
    assert!(
        !err.contains("hunter2"),
        "the passphrase is never printed: {err}"
    );
    let out = ferry(&repo, &["restore", "deadbeef", "/tmp/x"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("snapshot \"deadbeef\": no such snapshot"),
        "{err}"
    );
    let changes = dir.path().join("changes");
    std::fs::write(&changes, "0 4096\nten 20\n").unwrap();
    let img = dir.path().join("img");
    std::fs::write(&img, vec![1u8; 10000]).unwrap();
    let out = ferry(
        &repo,
        &[
            "backup",
            "--block",
            img.to_str().unwrap(),
            "--changed-blocks",
            changes.to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("changes: line 2: offset \"ten\""), "{err}");
    let out = ferry(&repo, &["backup", img.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a directory (use block mode"), "{err}");
}

#[test]
fn block_snapshots_export_as_raw_images() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    ok(&repo, &["init", "--block-chunk-kib", "64"]);
    let img = dir.path().join("disk.img");
    let f = std::fs::File::create(&img).unwrap();
    f.set_len(20 << 20).unwrap();
    f.write_all_at(&noise(1 << 20, 3), 7 << 20).unwrap();
    let out = ok(&repo, &["backup", "--block", img.to_str().unwrap()]);
    assert!(out.contains("new 1.00 MiB"), "{out}");
    let raw = Command::new(BIN)
        .args(["repo", "export", "latest"])
        .env("FERRY_REPOSITORY", &repo)
        .env("FERRY_PASSWORD", "cli test passphrase")
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(raw.status.success());
    assert!(raw.stdout == std::fs::read(&img).unwrap());
    let copy = dir.path().join("copy.img");
    ok(&repo, &["export", "latest", "-o", copy.to_str().unwrap()]);
    assert!(std::fs::read(&copy).unwrap() == std::fs::read(&img).unwrap());
}

#[test]
fn backups_killed_at_any_point_leave_a_repository_that_heals() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    ok(&repo, &["init"]);
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..12 {
        std::fs::write(src.join(format!("f{i}")), noise(6_000_000, i)).unwrap();
    }
    // Kill at several points: early (locking), while packs upload, near the end.
    for delay_ms in [5u64, 60, 150, 300, 600] {
        let mut child = Command::new(BIN)
            .args(["repo", "backup", src.to_str().unwrap()])
            .env("FERRY_REPOSITORY", &repo)
            .env("FERRY_PASSWORD", "cli test passphrase")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        let check = ferry(&repo, &["check"]);
        assert!(
            check.status.success(),
            "after a kill at {delay_ms} ms: {}",
            String::from_utf8_lossy(&check.stdout)
        );
    }
    ok(&repo, &["backup", src.to_str().unwrap()]);
    // The killed processes' locks are recognised as stale: prune runs, and tidies their packs.
    ok(&repo, &["prune"]);
    let check = ok(&repo, &["check", "--read-data"]);
    assert!(
        check.contains("no errors") && !check.contains("warning"),
        "{check}"
    );
    let target = dir.path().join("out");
    ok(&repo, &["restore", "latest", target.to_str().unwrap()]);
    assert_eq!(tree_digest(&target), tree_digest(&src));
}
