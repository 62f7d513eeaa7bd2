//! Raw block volumes (`volumeMode: Block`, what databases on raw devices and virtual machines'
//! disks use) through the real binaries: the source spoke snapshots the claim, a mover pod reads
//! the snapshot as a device into the repository, and in the target a mover writes it onto the new
//! claim's device.

mod common;

use common::{logs, text};
use ferry_e2e::harness::ferry::{mover_program, Fleet};
use ferry_e2e::harness::{kubectl, Environment, EnvironmentOptions};
use ferry_e2e::reference::{apply, storage_class, volume_path, SOURCE_CLASS, TARGET_CLASS};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

const SIZE: usize = 8 << 20;

/// The claim's volume, once the provisioner has bound it.
fn bound_volume(kubeconfig: &Path, namespace: &str, claim: &str) -> std::path::PathBuf {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match volume_path(kubeconfig, namespace, claim) {
            Ok(p) if p.is_file() => return p,
            _ if Instant::now() > deadline => panic!("{namespace}/{claim} was not bound"),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// What a disk holds: a partition-table-like header, data, a run of zeros (a hole after the
/// restore) and data at the very end.
fn disk_content() -> Vec<u8> {
    let mut disk = vec![0u8; SIZE];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for (i, b) in disk.iter_mut().enumerate() {
        if (2 << 20..5 << 20).contains(&i) {
            continue;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    disk[..8].copy_from_slice(b"FERRYDSK");
    disk
}

#[test]
fn a_block_volume_moves_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = EnvironmentOptions::new(dir.path());
    opts.image_programs = vec![mover_program().unwrap()];
    let env = Environment::up(&opts).unwrap();
    let source = env.cluster("source").unwrap().kubeconfig.clone();
    let target = env.cluster("target").unwrap().kubeconfig.clone();
    apply(
        &target,
        &env.dir,
        "target.yaml",
        &[storage_class(TARGET_CLASS)],
    )
    .unwrap();
    apply(
        &source,
        &env.dir,
        "disks.yaml",
        &[
            storage_class(SOURCE_CLASS),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "disks"}}),
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                   "metadata": {"name": "vm-disk", "namespace": "disks"},
                   "spec": {"accessModes": ["ReadWriteOnce"], "volumeMode": "Block",
                            "storageClassName": SOURCE_CLASS,
                            "resources": {"requests": {"storage": "8Mi"}}}}),
        ],
    )
    .unwrap();
    // What the disk's user wrote to it.
    let disk = disk_content();
    std::fs::write(bound_volume(&source, "disks", "vm-disk"), &disk).unwrap();

    let fleet = Fleet::start(&env).unwrap();
    let rules = env.dir.join("rules.yaml");
    std::fs::write(
        &rules,
        format!("transforms:\n  - storageClass: {{ from: {SOURCE_CLASS}, to: {TARGET_CLASS} }}\n"),
    )
    .unwrap();
    let out = fleet.migrate("disks", &rules, &["-o", "json"]);
    assert!(out.status.success(), "{}\n{}", text(&out), logs(&env.dir));
    let op: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(op["phase"], "succeeded", "{op}");
    assert_eq!(op["steps"][1]["output"]["restored"]["volumes"], 1, "{op}");

    let claim = kubectl(
        &target,
        &["get", "pvc", "vm-disk", "-n", "disks", "-o", "json"],
    )
    .unwrap();
    let claim: Value = serde_json::from_str(&claim).unwrap();
    assert_eq!(claim["spec"]["volumeMode"], "Block", "{claim}");
    assert_eq!(claim["spec"]["storageClassName"], TARGET_CLASS, "{claim}");
    let restored = std::fs::read(bound_volume(&target, "disks", "vm-disk")).unwrap();
    assert_eq!(restored.len(), disk.len());
    assert!(
        restored == disk,
        "the target's disk differs from the source's: {:?} / {} nonzero\n{op}\n{}",
        &restored[..8],
        restored.iter().filter(|b| **b != 0).count(),
        logs(&env.dir)
    );
}
