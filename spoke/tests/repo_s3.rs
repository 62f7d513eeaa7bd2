//! The repository on a real S3 server (Garage, started by the harness): the library with
//! multipart uploads, and the command on the same bucket.

mod common;

use common::noise;
use ferry_e2e::harness::{Environment, EnvironmentOptions, StoreKind};
use ferry_repository::backend::{Backend, BackendOptions};
use ferry_repository::backup::{fs, BackupOptions};
use ferry_repository::check::{check, CheckOptions};
use ferry_repository::keys::KdfParams;
use ferry_repository::repo::{InitOptions, Repository};
use ferry_repository::restore::{restore, RestoreOptions};
use std::process::Command;
use std::sync::Arc;

#[test]
fn repository_on_garage_s3() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = EnvironmentOptions::new(dir.path());
    opts.store = StoreKind::Garage;
    opts.clusters.clear();
    let env = Environment::up(&opts).unwrap();
    // The only test in this binary: the process environment is its own.
    for (k, v) in env.store.env() {
        std::env::set_var(k, v);
    }
    let url = format!("{}/ferry-repo", env.store.url);
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("big"), noise(40 << 20, 1)).unwrap();
    std::fs::write(src.join("text"), b"some text\n".repeat(50_000)).unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // Packs of 12 MiB sent in 5 MiB parts: the multipart path, against a real server.
        let backend = Backend::open_with(
            &url,
            BackendOptions {
                multipart_threshold: 8 << 20,
                part_size: 5 << 20,
                ..Default::default()
            },
        )
        .unwrap();
        let options = InitOptions {
            pack_size: 12 << 20,
            kdf: KdfParams {
                memory_kib: 64,
                iterations: 1,
                parallelism: 1,
            },
            ..Default::default()
        };
        let repo = Arc::new(
            Repository::init(backend.clone(), b"s3 pass", options)
                .await
                .unwrap(),
        );
        let (_, snap) = fs::backup(repo.clone(), &src, BackupOptions::default())
            .await
            .unwrap();
        let listed = backend.list("data").await.unwrap();
        assert!(listed.iter().any(|l| l.size > 8 << 20), "{listed:?}");
        let repo = Arc::new(Repository::open(backend, b"s3 pass").await.unwrap());
        let report = check(
            repo.clone(),
            CheckOptions {
                read_data: true,
                progress: None,
            },
        )
        .await
        .unwrap();
        assert!(report.is_ok(), "{:?}", report.errors);
        let out = dir.path().join("out");
        restore(repo, &snap, &out, RestoreOptions::default())
            .await
            .unwrap();
        assert!(std::fs::read(out.join("big")).unwrap() == std::fs::read(src.join("big")).unwrap());
    });

    // The standalone command reads the same repository with only the URL and passphrase.
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_ferry-spoke"))
            .arg("repo")
            .args(args)
            .env("FERRY_REPOSITORY", &url)
            .env("FERRY_PASSWORD", "s3 pass")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    std::fs::write(src.join("text"), b"changed\n").unwrap();
    let backup = run(&["backup", src.to_str().unwrap()]);
    assert!(backup.contains("(1 unchanged reused)"), "{backup}");
    let target = dir.path().join("cli-out");
    run(&["restore", "latest", target.to_str().unwrap()]);
    assert_eq!(std::fs::read(target.join("text")).unwrap(), b"changed\n");
    assert!(run(&["check", "--read-data"]).contains("no errors"));

    // Without credentials, object_store asks the instance metadata service (here an address
    // that refuses); the error says that is what happened and what to set.
    let out = Command::new(env!("CARGO_BIN_EXE_ferry-spoke"))
        .args(["repo", "snapshots"])
        .env("FERRY_REPOSITORY", &url)
        .env("FERRY_PASSWORD", "s3 pass")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_METADATA_ENDPOINT", "http://127.0.0.1:1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("error: get config (no S3 credentials in AWS_* variables, so they were asked from the instance metadata service; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY): "),
        "{stderr}"
    );
}
