//! The stand-in's controllers next to clients writing the same objects: no client write is
//! lost, and deletion state only moves forward — as on a real cluster, where controllers
//! update with a resourceVersion and retry on conflict.

mod common;

use common::eventually;
use ferry_e2e::apiserver::{StandIn, StandInConfig};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

async fn start() -> (StandIn, kube::Client, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = StandInConfig::new("controllers", dir.path().join("cluster"));
    let server = StandIn::start(config).await.unwrap();
    let client = common::client(&server.kubeconfig_path).await;
    (server, client, dir)
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
    }))
    .unwrap()
}

/// A few thousand objects make each controller pass take a while, as a real cluster's informer
/// resyncs do: that is the window in which a stale controller write would revert a client's.
async fn fill(client: &kube::Client, count: usize) {
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    futures::stream::iter(0..count)
        .for_each_concurrent(16, |i| {
            let config_maps = config_maps.clone();
            async move {
                let cm = json!({"metadata": {"name": format!("filler-{i}")}, "data": {"k": "v"}});
                config_maps
                    .create(&PostParams::default(), &serde_json::from_value(cm).unwrap())
                    .await
                    .unwrap();
            }
        })
        .await;
}

#[tokio::test]
async fn client_patches_are_never_reverted_by_controllers() {
    let (_server, client, _dir) = start().await;
    fill(&client, 3000).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deployments
        .create(&PostParams::default(), &deployment("web", 2))
        .await
        .unwrap();
    // Each patch also changes the spec, so the controllers have work after every one.
    for i in 0..200 {
        let patch = json!({"metadata": {"annotations": {format!("n{i}"): "x"}},
                           "spec": {"replicas": 1 + i % 3}});
        deployments
            .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }
    // Let the controllers settle, then every patch must still be there.
    eventually("the deployment's status to catch up", || async {
        let d = deployments.get("web").await.ok()?;
        let status = d.status.as_ref()?;
        (status.observed_generation == d.metadata.generation).then_some(())
    })
    .await;
    let d = deployments.get("web").await.unwrap();
    let annotations = d.metadata.annotations.unwrap_or_default();
    let missing: Vec<String> = (0..200)
        .map(|i| format!("n{i}"))
        .filter(|k| !annotations.contains_key(k))
        .collect();
    assert!(missing.is_empty(), "lost client writes: {missing:?}");
    assert_eq!(d.spec.unwrap().replicas, Some(1 + 199 % 3));
}

#[tokio::test]
async fn foreground_deletion_always_finishes_and_never_undeletes() {
    let (_server, client, _dir) = start().await;
    fill(&client, 3000).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    for round in 0..8 {
        let name = format!("fg-{round}");
        deployments
            .create(&PostParams::default(), &deployment(&name, 3))
            .await
            .unwrap();
        // Delete while the controllers are still creating the replica set and pods.
        tokio::time::sleep(std::time::Duration::from_millis(round * 15)).await;
        deployments
            .delete(&name, &DeleteParams::foreground())
            .await
            .unwrap();
        eventually(&format!("{name} to be gone"), || async {
            match deployments.get_opt(&name).await.unwrap() {
                None => Some(()),
                Some(d) => {
                    assert!(
                        d.metadata.deletion_timestamp.is_some(),
                        "{name} lost its deletionTimestamp: {:?}",
                        d.metadata
                    );
                    None
                }
            }
        })
        .await;
    }
}
