//! The local-path provisioner and snapshotter: a PVC of a `ferry.dev/local-path` StorageClass is
//! bound to a new PV whose data is a directory (Filesystem mode) or a sparse image file (Block
//! mode) under the cluster's data root; a VolumeSnapshot copies that data at a point in time,
//! and a PVC whose dataSource is a snapshot starts from the copy. A claim made from a snapshot
//! that asks only for `ReadOnlyMany` is a shallow clone, as CephFS's CSI driver makes one: it
//! shares the snapshot's files (hard links) instead of copying them, and pods must mount it
//! read-only (the kubelet refuses them otherwise).

use super::{claim_names, name, ns_of, uid, Ctl, PROVISIONER};
use crate::apiserver::core::now;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Parses a Kubernetes quantity (`10Gi`, `500M`, `1024`) into bytes.
pub fn parse_quantity(q: &str) -> Option<u64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (num, unit) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0f64.powi(4),
        _ => return None,
    };
    Some((n * mult) as u64)
}

fn volume_path(ctl: &Ctl, pv_name: &str, block: bool) -> PathBuf {
    let base = ctl.config.data_root.join("volumes");
    if block {
        base.join(format!("{pv_name}.img"))
    } else {
        base.join(pv_name)
    }
}

/// A snapshot's copy keeps what a block-level snapshot keeps: owners, modes and times (a
/// PostgreSQL data directory restored from it must still belong to PostgreSQL's user). Files are
/// copied on every core: a CSI driver's snapshot or clone costs next to nothing, and this copy
/// should cost as little as a copy can.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    fill_tree(from, to, Fill::Copy)
}

/// How [`fill_tree`] makes each regular file.
#[derive(Clone, Copy)]
enum Fill {
    Copy,
    /// A hard link: the new tree shares the file (a shallow clone of an immutable snapshot).
    Link,
}

fn fill_tree(from: &Path, to: &Path, fill: Fill) -> std::io::Result<()> {
    let mut dirs = Vec::new();
    let mut files = Vec::new();
    plan_copy(from, to, &mut dirs, &mut files)?;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(8));
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| -> std::io::Result<()> {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((from, to)) = files.get(i) else {
                            return Ok(());
                        };
                        match fill {
                            Fill::Copy => {
                                std::fs::copy(from, to)?;
                                copy_metadata(from, to)?;
                            }
                            Fill::Link => std::fs::hard_link(from, to)?,
                        }
                    }
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join()
                .unwrap_or_else(|_| Err(std::io::Error::other("copy worker panicked")))
        })
    })?;
    // Directories last, deepest first: creating their entries changed their times.
    for (from, to) in dirs.iter().rev() {
        std::fs::set_permissions(to, std::fs::symlink_metadata(from)?.permissions())?;
        copy_metadata(from, to)?;
    }
    Ok(())
}

/// Creates the directories and symbolic links of `from` under `to`; lists the directories (in
/// creation order) and the files to copy.
fn plan_copy(
    from: &Path,
    to: &Path,
    dirs: &mut Vec<(PathBuf, PathBuf)>,
    files: &mut Vec<(PathBuf, PathBuf)>,
) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(from)?;
    if meta.is_dir() {
        std::fs::create_dir_all(to)?;
        dirs.push((from.to_path_buf(), to.to_path_buf()));
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            plan_copy(&entry.path(), &to.join(entry.file_name()), dirs, files)?;
        }
    } else if meta.file_type().is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(from)?, to)?;
        copy_metadata(from, to)?;
    } else {
        files.push((from.to_path_buf(), to.to_path_buf()));
    }
    Ok(())
}

/// Owner (when this process may give files away) and times of `from`, onto `to`.
fn copy_metadata(from: &Path, to: &Path) -> std::io::Result<()> {
    use crate::apiserver::kubelet::{current_gid, current_uid};
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(from)?;
    if meta.uid() != current_uid() || meta.gid() != current_gid() {
        // Only root may give files away; anyone else keeps its own copies.
        if current_uid() == 0 {
            std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid()))?;
        }
    }
    if !meta.file_type().is_symlink() {
        let times = std::fs::FileTimes::new()
            .set_accessed(meta.accessed()?)
            .set_modified(meta.modified()?);
        std::fs::File::open(to)?.set_times(times)?;
    }
    Ok(())
}

fn make_volume(
    path: &Path,
    block: bool,
    size: u64,
    source: Option<(&Path, Fill)>,
) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match (source, block) {
        (Some((src, fill)), _) => fill_tree(src, path, fill)?,
        (None, true) => std::fs::File::create(path)?.set_len(size)?,
        (None, false) => std::fs::create_dir_all(path)?,
    }
    if block {
        let f = std::fs::OpenOptions::new().write(true).open(path)?;
        if f.metadata()?.len() < size {
            f.set_len(size)?;
        }
    }
    Ok(())
}

/// On a PV that shares its snapshot's files: the snapshot's data directory (or image).
pub const SHALLOW_CLONE_OF: &str = "ferry.dev/shallow-clone-of";

/// A block image can be shared only when the claim asks for no more than it holds: growing a
/// shared image would grow the snapshot's.
fn shares_whole(source: &Path, block: bool, size: u64) -> bool {
    !block || std::fs::metadata(source).is_ok_and(|m| m.len() >= size)
}

pub fn claims(ctl: &Ctl) -> bool {
    let mut changed = false;
    for pvc in ctl.of("", "persistentvolumeclaims") {
        if pvc.pointer("/status/phase") != Some(&json!("Pending"))
            || pvc.pointer("/metadata/deletionTimestamp").is_some()
        {
            continue;
        }
        let ns = ns_of(pvc).unwrap_or("default");
        // Pre-bound claims (a restore creates the PV first) bind to their volume.
        if let Some(vol) = pvc.pointer("/spec/volumeName").and_then(Value::as_str) {
            if let Some(pv) = ctl.find("", "persistentvolumes", "", vol) {
                changed |= bind(ctl, pvc, pv);
            }
            continue;
        }
        let class_name = pvc
            .pointer("/spec/storageClassName")
            .and_then(Value::as_str)
            .unwrap_or("");
        let Some(class) = ctl.find("storage.k8s.io", "storageclasses", "", class_name) else {
            continue;
        };
        if class.get("provisioner").and_then(Value::as_str) != Some(PROVISIONER) {
            continue;
        }
        let size_text = pvc
            .pointer("/spec/resources/requests/storage")
            .and_then(Value::as_str)
            .unwrap_or("1Gi")
            .to_string();
        let size = parse_quantity(&size_text).unwrap_or(1 << 30);
        let block = pvc.pointer("/spec/volumeMode") == Some(&json!("Block"));
        let pv_name = format!("pvc-{}", uid(pvc));
        if ctl.find("", "persistentvolumes", "", &pv_name).is_some() {
            // Made by an earlier pass, which this pass's view of the claim predates; the
            // binding loop below binds it. Provisioning again would copy the data again.
            continue;
        }
        let path = volume_path(ctl, &pv_name, block);
        let source = match pvc.pointer("/spec/dataSource") {
            Some(ds) if ds["kind"] == "VolumeSnapshot" => {
                let snap_name = ds["name"].as_str().unwrap_or("");
                let Some(snap) =
                    ctl.find("snapshot.storage.k8s.io", "volumesnapshots", ns, snap_name)
                else {
                    continue;
                };
                if snap.pointer("/status/readyToUse") != Some(&json!(true)) {
                    continue;
                }
                let content = snap
                    .pointer("/status/boundVolumeSnapshotContentName")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                Some(ctl.config.data_root.join("snapshots").join(content))
            }
            _ => None,
        };
        let modes = pvc
            .pointer("/spec/accessModes")
            .cloned()
            .unwrap_or(json!(["ReadWriteOnce"]));
        let shallow = source
            .as_deref()
            .filter(|src| modes == json!(["ReadOnlyMany"]) && shares_whole(src, block, size));
        let fill = if shallow.is_some() {
            Fill::Link
        } else {
            Fill::Copy
        };
        if let Err(e) = make_volume(&path, block, size, source.as_deref().map(|s| (s, fill))) {
            tracing::warn!(pvc = name(pvc), namespace = ns, error = %e, "provisioning failed");
            continue;
        }
        let mut annotations = json!({"pv.kubernetes.io/provisioned-by": PROVISIONER});
        if let Some(src) = shallow {
            annotations[SHALLOW_CLONE_OF] = json!(src.display().to_string());
        }
        let pv = json!({
            "metadata": {"name": pv_name, "annotations": annotations,
                         "finalizers": ["kubernetes.io/pv-protection"]},
            "spec": {
                "capacity": {"storage": size_text},
                "accessModes": modes,
                "persistentVolumeReclaimPolicy": class.get("reclaimPolicy").cloned().unwrap_or(json!("Delete")),
                "storageClassName": class_name,
                "volumeMode": if block { "Block" } else { "Filesystem" },
                "hostPath": {"path": path.display().to_string(), "type": if block { "File" } else { "DirectoryOrCreate" }},
                "claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": ns,
                             "name": name(pvc), "uid": uid(pvc)},
            },
        });
        changed |= ctl.create("", "persistentvolumes", None, pv);
    }
    // Volumes made in an earlier pass (or pre-created with a claimRef) bind their claims.
    for pv in ctl.of("", "persistentvolumes") {
        let Some(claim) = pv.pointer("/spec/claimRef") else {
            continue;
        };
        let ns = claim["namespace"].as_str().unwrap_or("");
        let Some(pvc) = ctl.find(
            "",
            "persistentvolumeclaims",
            ns,
            claim["name"].as_str().unwrap_or(""),
        ) else {
            continue;
        };
        let uid_matches = claim
            .get("uid")
            .is_none_or(|u| u.as_str() == Some(uid(pvc)) || u.as_str() == Some(""));
        if pvc.pointer("/status/phase") == Some(&json!("Pending")) && uid_matches {
            changed |= bind(ctl, pvc, pv);
        }
    }
    changed
}

fn bind(ctl: &Ctl, pvc: &Value, pv: &Value) -> bool {
    let mut changed = ctl.mutate("", "persistentvolumes", pv, |o| {
        o["spec"]["claimRef"] = json!({"kind": "PersistentVolumeClaim", "apiVersion": "v1",
            "namespace": ns_of(pvc), "name": name(pvc), "uid": uid(pvc),
            "resourceVersion": pvc.pointer("/metadata/resourceVersion")});
        o["status"] = json!({"phase": "Bound", "lastPhaseTransitionTime": now()});
    });
    let capacity = pv.pointer("/spec/capacity").cloned().unwrap_or(json!({}));
    let modes = pv
        .pointer("/spec/accessModes")
        .cloned()
        .unwrap_or(json!([]));
    changed |= ctl.mutate("", "persistentvolumeclaims", pvc, |o| {
        o["spec"]["volumeName"] = json!(name(pv));
        let ann = &mut o["metadata"]["annotations"];
        ann["pv.kubernetes.io/bind-completed"] = json!("yes");
        ann["pv.kubernetes.io/bound-by-controller"] = json!("yes");
        ann["volume.kubernetes.io/storage-provisioner"] = json!(PROVISIONER);
        o["status"] = json!({"phase": "Bound", "capacity": capacity, "accessModes": modes});
        if o["metadata"]["finalizers"]
            .as_array()
            .is_none_or(|f| f.is_empty())
        {
            o["metadata"]["finalizers"] = json!(["kubernetes.io/pvc-protection"]);
        }
    });
    changed
}

/// Bound volumes whose claim is gone are released, and deleted with their data when their
/// reclaim policy says so. Claims being deleted lose their protection once no pod uses them.
pub fn released_volumes(ctl: &Ctl) -> bool {
    let mut changed = false;
    for pvc in ctl.of("", "persistentvolumeclaims") {
        if pvc.pointer("/metadata/deletionTimestamp").is_none() {
            continue;
        }
        let ns = ns_of(pvc).unwrap_or("");
        let in_use = ctl
            .of("", "pods")
            .any(|p| ns_of(p) == Some(ns) && claim_names(p).any(|c| c == name(pvc)));
        if !in_use {
            changed |= ctl.mutate("", "persistentvolumeclaims", pvc, |o| {
                if let Some(f) = o
                    .pointer_mut("/metadata/finalizers")
                    .and_then(Value::as_array_mut)
                {
                    f.retain(|x| x != "kubernetes.io/pvc-protection");
                }
            });
        }
    }
    for pv in ctl.of("", "persistentvolumes") {
        let Some(claim) = pv.pointer("/spec/claimRef") else {
            continue;
        };
        if pv.pointer("/status/phase") != Some(&json!("Bound"))
            && pv.pointer("/metadata/deletionTimestamp").is_none()
        {
            continue;
        }
        let ns = claim["namespace"].as_str().unwrap_or("");
        let claim_alive = ctl
            .find(
                "",
                "persistentvolumeclaims",
                ns,
                claim["name"].as_str().unwrap_or(""),
            )
            .is_some_and(|c| claim.get("uid").is_none_or(|u| u.as_str() == Some(uid(c))));
        let deleting = pv.pointer("/metadata/deletionTimestamp").is_some();
        if claim_alive && !deleting {
            continue;
        }
        let policy = pv
            .pointer("/spec/persistentVolumeReclaimPolicy")
            .and_then(Value::as_str)
            .unwrap_or("Retain");
        if policy == "Delete" || deleting {
            if policy == "Delete" {
                if let Some(path) = pv.pointer("/spec/hostPath/path").and_then(Value::as_str) {
                    let p = Path::new(path);
                    if p.starts_with(&ctl.config.data_root) {
                        let _ = std::fs::remove_dir_all(p).or_else(|_| std::fs::remove_file(p));
                    }
                }
            }
            changed |= ctl.mutate("", "persistentvolumes", pv, |o| {
                if let Some(f) = o
                    .pointer_mut("/metadata/finalizers")
                    .and_then(Value::as_array_mut)
                {
                    f.retain(|x| x != "kubernetes.io/pv-protection");
                }
            });
            if !deleting {
                changed |= ctl.delete("", "persistentvolumes", pv);
            }
        } else {
            changed |= ctl.mutate("", "persistentvolumes", pv, |o| {
                o["status"]["phase"] = json!("Released")
            });
        }
    }
    changed
}

pub fn snapshots(ctl: &Ctl) -> bool {
    let mut changed = false;
    for snap in ctl.of("snapshot.storage.k8s.io", "volumesnapshots") {
        if snap.pointer("/status/readyToUse") == Some(&json!(true))
            || snap.pointer("/metadata/deletionTimestamp").is_some()
        {
            continue;
        }
        let ns = ns_of(snap).unwrap_or("default");
        let Some(claim_name) = snap
            .pointer("/spec/source/persistentVolumeClaimName")
            .and_then(Value::as_str)
        else {
            continue;
        };
        let Some(pvc) = ctl.find("", "persistentvolumeclaims", ns, claim_name) else {
            continue;
        };
        let Some(pv) = pvc
            .pointer("/spec/volumeName")
            .and_then(Value::as_str)
            .and_then(|v| ctl.find("", "persistentvolumes", "", v))
        else {
            continue;
        };
        let Some(src) = pv.pointer("/spec/hostPath/path").and_then(Value::as_str) else {
            continue;
        };
        let content_name = format!("snapcontent-{}", uid(snap));
        let dest = ctl.config.data_root.join("snapshots").join(&content_name);
        if !dest.exists() {
            if let Err(e) = std::fs::create_dir_all(dest.parent().unwrap_or(Path::new("/")))
                .and_then(|_| copy_tree(Path::new(src), &dest))
            {
                tracing::warn!(snapshot = name(snap), namespace = ns, error = %e, "snapshot copy failed");
                continue;
            }
        }
        let class_name = snap
            .pointer("/spec/volumeSnapshotClassName")
            .and_then(Value::as_str)
            .unwrap_or("standard-snapshots");
        let policy = ctl
            .find(
                "snapshot.storage.k8s.io",
                "volumesnapshotclasses",
                "",
                class_name,
            )
            .and_then(|c| c.get("deletionPolicy").cloned())
            .unwrap_or(json!("Delete"));
        let size = pv
            .pointer("/spec/capacity/storage")
            .cloned()
            .unwrap_or(json!("0"));
        let t = now();
        if ctl
            .find(
                "snapshot.storage.k8s.io",
                "volumesnapshotcontents",
                "",
                &content_name,
            )
            .is_none()
        {
            changed |= ctl.create("snapshot.storage.k8s.io", "volumesnapshotcontents", None, json!({
                "metadata": {"name": content_name},
                "spec": {"deletionPolicy": policy, "driver": PROVISIONER, "volumeSnapshotClassName": class_name,
                         "source": {"volumeHandle": src},
                         "volumeSnapshotRef": {"kind": "VolumeSnapshot", "apiVersion": "snapshot.storage.k8s.io/v1",
                                               "namespace": ns, "name": name(snap), "uid": uid(snap)}},
                "status": {"readyToUse": true, "snapshotHandle": dest.display().to_string(), "creationTime": chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)},
            }));
        }
        changed |= ctl.mutate("snapshot.storage.k8s.io", "volumesnapshots", snap, |o| {
            o["spec"]["volumeSnapshotClassName"] = json!(class_name);
            o["status"] = json!({"boundVolumeSnapshotContentName": content_name, "readyToUse": true,
                                 "creationTime": t, "restoreSize": size});
        });
    }
    // Contents whose snapshot is gone go too, with their data, under the Delete policy.
    for content in ctl.of("snapshot.storage.k8s.io", "volumesnapshotcontents") {
        let r = content
            .pointer("/spec/volumeSnapshotRef")
            .cloned()
            .unwrap_or(json!({}));
        let gone = ctl
            .find(
                "snapshot.storage.k8s.io",
                "volumesnapshots",
                r["namespace"].as_str().unwrap_or(""),
                r["name"].as_str().unwrap_or(""),
            )
            .is_none_or(|s| Some(uid(s)) != r["uid"].as_str());
        if gone
            && content.pointer("/spec/deletionPolicy") == Some(&json!("Delete"))
            && content.pointer("/metadata/deletionTimestamp").is_none()
        {
            let _ =
                std::fs::remove_dir_all(ctl.config.data_root.join("snapshots").join(name(content)))
                    .or_else(|_| {
                        std::fs::remove_file(
                            ctl.config.data_root.join("snapshots").join(name(content)),
                        )
                    });
            changed |= ctl.delete("snapshot.storage.k8s.io", "volumesnapshotcontents", content);
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("1Gi"), Some(1 << 30));
        assert_eq!(parse_quantity("500M"), Some(500_000_000));
        assert_eq!(parse_quantity("1.5Ki"), Some(1536));
        assert_eq!(parse_quantity("12"), Some(12));
        assert_eq!(parse_quantity("1Xi"), None);
    }
}
