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

#[tokio::test]
async fn operator_pods_run_as_processes() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StandInConfig::new("kubelet", dir.path().join("cluster"));
    config.image_programs = vec![ImageProgram {
        image: "*/cache-operator:*".into(),
        program: env!("CARGO_BIN_EXE_standin-cache-operator").into(),
    }];
    let server = StandIn::start(config).await.unwrap();
    let client = common::client(&server.kubeconfig_path).await;
    let pp = PostParams::default();

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&pp, &create(json!({
        "metadata": {"name": "caches.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced", "names": {"plural": "caches", "kind": "Cache"},
                 "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                               "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}})))
        .await
        .unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&pp, &create(json!({"metadata": {"name": "ops"}})))
        .await
        .unwrap();
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "ops");
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
