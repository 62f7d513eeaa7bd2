//! The process kubelet runs a real operator (the `standin-cache-operator` binary, a kube-rs
//! program) as the pod of a Deployment: it finds the cluster through its in-cluster
//! configuration, reconciles custom resources, writes to its PVC, is restarted when it crashes
//! and stopped when its pod goes.

mod common;

use common::eventually;
use ferry_e2e::apiserver::kubelet::ImageProgram;
use ferry_e2e::apiserver::{StandIn, StandInConfig};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolume, PersistentVolumeClaim, Pod,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, LogParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;

fn create<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).unwrap()
}

/// The pod's status once it has ended (Succeeded or Failed).
async fn finished(pods: &Api<Pod>, name: &str) -> k8s_openapi::api::core::v1::PodStatus {
    eventually(name, || async {
        let status = pods.get(name).await.ok()?.status?;
        matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")).then_some(status)
    })
    .await
}

/// The volume a claim is bound to, once it is.
async fn bound_volume(
    pvcs: &Api<PersistentVolumeClaim>,
    pvs: &Api<PersistentVolume>,
    name: &str,
) -> PersistentVolume {
    eventually(name, || async {
        let pvc = pvcs.get(name).await.ok()?;
        pvs.get(pvc.spec?.volume_name.as_deref()?).await.ok()
    })
    .await
}

/// A stand-in whose process kubelet runs `program` for images matching `image`; the directory
/// it lives in goes with the last of the returned values.
async fn stand_in(
    name: &str,
    image: &str,
    program: &str,
) -> (StandIn, kube::Client, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StandInConfig::new(name, dir.path().join("cluster"));
    config.image_programs = vec![ImageProgram {
        image: image.into(),
        program: program.into(),
    }];
    let server = StandIn::start(config).await.unwrap();
    let client = common::client(&server.kubeconfig_path).await;
    (server, client, dir)
}

/// Creates namespace `ns` and returns its claims.
async fn claims_in_new_namespace(client: &kube::Client, ns: &str) -> Api<PersistentVolumeClaim> {
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &create(json!({"metadata": {"name": ns}})),
        )
        .await
        .unwrap();
    Api::namespaced(client.clone(), ns)
}

#[tokio::test]
async fn operator_pods_run_as_processes() {
    let (server, client, _dir) = stand_in(
        "kubelet",
        "*/cache-operator:*",
        env!("CARGO_BIN_EXE_standin-cache-operator"),
    )
    .await;
    let pp = PostParams::default();

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&pp, &create(json!({
        "metadata": {"name": "caches.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced", "names": {"plural": "caches", "kind": "Cache"},
                 "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                               "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}})))
        .await
        .unwrap();
    let pvcs = claims_in_new_namespace(&client, "ops").await;
    pvcs.create(&pp, &create(json!({"metadata": {"name": "operator-data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Mi"}}}})))
        .await
        .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "ops");
    deployments.create(&pp, &create(json!({
        "metadata": {"name": "cache-operator"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "cache-operator"}},
                 "template": {"metadata": {"labels": {"app": "cache-operator"}},
                              "spec": {"containers": [{"name": "manager", "image": "registry.example.com/acme/cache-operator:1.0",
                                                       "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                                       "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "operator-data"}}]}}}})))
        .await
        .unwrap();

    let pods: Api<Pod> = Api::namespaced(client.clone(), "ops");
    let pod = eventually("the operator pod to run", || async {
        let l = pods
            .list(&ListParams::default().labels("app=cache-operator"))
            .await
            .ok()?;
        let p = l.items.into_iter().next()?;
        (p.status.as_ref()?.phase.as_deref() == Some("Running")).then_some(p)
    })
    .await;
    let pod_name = pod.metadata.name.clone().unwrap();

    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Cache"),
        "caches",
    );
    let caches: Api<DynamicObject> = Api::namespaced_with(client.clone(), "ops", &ar);
    let mut hot = DynamicObject::new("hot", &ar);
    hot.data = json!({"spec": {"size": 3}});
    caches.create(&pp, &hot).await.unwrap();

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "ops");
    let cm = eventually("the operator to reconcile", || async {
        cms.get("hot-cache").await.ok()
    })
    .await;
    assert_eq!(cm.data.unwrap()["size"], "3");
    eventually("the status to be set", || async {
        (caches.get("hot").await.ok()?.data["status"]["ready"] == true).then_some(())
    })
    .await;

    // The operator wrote into its claim's volume through the mount.
    let pvc = pvcs.get("operator-data").await.unwrap();
    let pv = Api::<PersistentVolume>::all(client.clone())
        .get(pvc.spec.unwrap().volume_name.as_deref().unwrap())
        .await
        .unwrap();
    let volume = std::path::PathBuf::from(pv.spec.unwrap().host_path.unwrap().path);
    assert_eq!(
        std::fs::read_to_string(volume.join("reconciled"))
            .unwrap()
            .trim(),
        "ops/hot"
    );

    let logs = pods.logs(&pod_name, &LogParams::default()).await.unwrap();
    assert!(logs.contains("reconciled ops/hot"), "{logs}");

    // A crash restarts the process and counts it.
    let sandbox = server.config().data_root.join("pods/ops").join(&pod_name);
    let first_pid = std::fs::read_to_string(sandbox.join("operator.pid")).unwrap();
    let mut crash = DynamicObject::new("crash", &ar);
    crash.data = json!({"spec": {}});
    caches.create(&pp, &crash).await.unwrap();
    eventually("a restart to be counted", || async {
        let p = pods.get(&pod_name).await.ok()?;
        (p.status?.container_statuses?[0].restart_count >= 1).then_some(())
    })
    .await;
    caches
        .delete("crash", &DeleteParams::default())
        .await
        .unwrap();
    let pid = eventually("the restarted process", || async {
        let pid = std::fs::read_to_string(sandbox.join("operator.pid")).ok()?;
        (pid != first_pid && std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(pid)
    })
    .await;

    // Deleting the Deployment removes the pod and stops its process.
    deployments
        .delete("cache-operator", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the process to stop", || async {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Gone, or a zombie awaiting its parent's reaping.
        (stat.is_empty() || stat.split(' ').nth(2) == Some("Z")).then_some(())
    })
    .await;
}

/// A read-only claim made from a snapshot is a shallow clone: it shares the snapshot's files
/// (nothing is copied), a pod may mount it only read-only, and deleting it leaves the snapshot
/// whole. A read-write claim from the same snapshot is still a copy of its own.
#[tokio::test]
async fn a_read_only_clone_shares_its_snapshot_and_mounts_only_read_only() {
    use std::os::unix::fs::MetadataExt;
    let (server, client, _dir) = stand_in("shallow", "*/shell:*", "/bin/sh").await;
    let pp = PostParams::default();
    let pvcs = claims_in_new_namespace(&client, "data").await;
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let claim = |name: &str, mode: &str, from_snapshot: bool| {
        let mut spec =
            json!({"accessModes": [mode], "resources": {"requests": {"storage": "10Mi"}}});
        if from_snapshot {
            spec["dataSource"] = json!({"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "snap"});
        }
        create::<PersistentVolumeClaim>(json!({"metadata": {"name": name}, "spec": spec}))
    };
    let path_of = |pv: &PersistentVolume| {
        std::path::PathBuf::from(&pv.spec.as_ref().unwrap().host_path.as_ref().unwrap().path)
    };
    pvcs.create(&pp, &claim("source", "ReadWriteOnce", false))
        .await
        .unwrap();
    let source = path_of(&bound_volume(&pvcs, &pvs, "source").await);
    std::fs::write(source.join("f"), b"at the snapshot").unwrap();

    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("snapshot.storage.k8s.io", "v1", "VolumeSnapshot"),
        "volumesnapshots",
    );
    let snaps: Api<DynamicObject> = Api::namespaced_with(client.clone(), "data", &ar);
    let mut snap = DynamicObject::new("snap", &ar);
    snap.data = json!({"spec": {"source": {"persistentVolumeClaimName": "source"}}});
    snaps.create(&pp, &snap).await.unwrap();
    let content = eventually("the snapshot", || async {
        let s = snaps.get("snap").await.ok()?;
        (s.data["status"]["readyToUse"] == true)
            .then(|| s.data["status"]["boundVolumeSnapshotContentName"].clone())
    })
    .await;
    let snapshot_file = server
        .config()
        .data_root
        .join("snapshots")
        .join(content.as_str().unwrap())
        .join("f");

    pvcs.create(&pp, &claim("shallow", "ReadOnlyMany", true))
        .await
        .unwrap();
    pvcs.create(&pp, &claim("deep", "ReadWriteOnce", true))
        .await
        .unwrap();
    let shallow_pv = bound_volume(&pvcs, &pvs, "shallow").await;
    let deep_pv = bound_volume(&pvcs, &pvs, "deep").await;
    let inode = |p: std::path::PathBuf| std::fs::metadata(p).unwrap().ino();
    assert_eq!(
        inode(path_of(&shallow_pv).join("f")),
        inode(snapshot_file.clone()),
        "the read-only clone shares the snapshot's file"
    );
    assert!(shallow_pv
        .metadata
        .annotations
        .as_ref()
        .unwrap()
        .contains_key("ferry.dev/shallow-clone-of"));
    assert_ne!(
        inode(path_of(&deep_pv).join("f")),
        inode(snapshot_file.clone()),
        "a read-write clone is a copy"
    );

    let pods: Api<Pod> = Api::namespaced(client.clone(), "data");
    let pod = |name: &str, read_only: bool| {
        create::<Pod>(json!({"metadata": {"name": name},
            "spec": {"restartPolicy": "Never",
                     "containers": [{"name": "c", "image": "example.com/shell:1",
                                     "args": ["-c", "cat $FERRY_SANDBOX/data/f > $FERRY_SANDBOX/out"],
                                     "volumeMounts": [{"name": "v", "mountPath": "/data"}]}],
                     "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "shallow", "readOnly": read_only}}]}}))
    };
    pods.create(&pp, &pod("writer", false)).await.unwrap();
    let refused = finished(&pods, "writer").await;
    assert_eq!(refused.phase.as_deref(), Some("Failed"));
    assert!(
        refused
            .message
            .as_deref()
            .unwrap_or("")
            .contains("persistentVolumeClaim.readOnly"),
        "{refused:?}"
    );
    pods.create(&pp, &pod("reader", true)).await.unwrap();
    assert_eq!(
        finished(&pods, "reader").await.phase.as_deref(),
        Some("Succeeded")
    );
    let sandbox = server.config().data_root.join("pods/data/reader");
    assert_eq!(
        std::fs::read(sandbox.join("out")).unwrap(),
        b"at the snapshot"
    );

    // Deleting the clone removes its links, not the snapshot's data.
    pods.delete("reader", &DeleteParams::default())
        .await
        .unwrap();
    pods.delete("writer", &DeleteParams::default())
        .await
        .unwrap();
    pvcs.delete("shallow", &DeleteParams::default())
        .await
        .unwrap();
    let shallow_dir = path_of(&shallow_pv);
    eventually("the clone reclaimed", || async {
        (!shallow_dir.exists()).then_some(())
    })
    .await;
    assert_eq!(std::fs::read(&snapshot_file).unwrap(), b"at the snapshot");
}

#[tokio::test]
async fn a_block_claim_is_a_device_not_a_mount() {
    let (server, client, _dir) = stand_in("devices", "*/shell:*", "/bin/sh").await;
    let pp = PostParams::default();
    let pvcs = claims_in_new_namespace(&client, "disks").await;
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    pvcs.create(
        &pp,
        &create(json!({"metadata": {"name": "disk"},
            "spec": {"accessModes": ["ReadWriteOnce"], "volumeMode": "Block",
                     "resources": {"requests": {"storage": "1Mi"}}}})),
    )
    .await
    .unwrap();
    let pv = bound_volume(&pvcs, &pvs, "disk").await;
    let image = std::path::PathBuf::from(&pv.spec.unwrap().host_path.unwrap().path);
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&image)
            .unwrap();
        f.write_all_at(b"DISK", 4096).unwrap();
    }

    let pods: Api<Pod> = Api::namespaced(client.clone(), "disks");
    let pod = |name: &str, as_device: bool| {
        let mut container = json!({"name": "c", "image": "example.com/shell:1",
            "args": ["-c", "tail -c +4097 $FERRY_SANDBOX/dev/xvda | head -c 4 > $FERRY_SANDBOX/out"]});
        if as_device {
            container["volumeDevices"] = json!([{"name": "v", "devicePath": "/dev/xvda"}]);
        } else {
            container["volumeMounts"] = json!([{"name": "v", "mountPath": "/dev/xvda"}]);
        }
        create::<Pod>(json!({"metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "containers": [container],
                     "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "disk"}}]}}))
    };
    pods.create(&pp, &pod("reader", true)).await.unwrap();
    let read = finished(&pods, "reader").await;
    assert_eq!(read.phase.as_deref(), Some("Succeeded"), "{read:?}");
    let sandbox = server.config().data_root.join("pods/disks/reader");
    assert_eq!(std::fs::read(sandbox.join("out")).unwrap(), b"DISK");

    // As the kubelet refuses it: a Block claim in volumeMounts.
    pods.create(&pp, &pod("mounted", false)).await.unwrap();
    let refused = finished(&pods, "mounted").await;
    assert_eq!(refused.phase.as_deref(), Some("Failed"));
    assert!(
        refused
            .message
            .as_deref()
            .unwrap_or("")
            .contains("volume v has volumeMode Block, but is specified in volumeMounts"),
        "{refused:?}"
    );
}
