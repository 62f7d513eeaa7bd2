//! A small but real operator for the stand-in's process kubelet and for Ferry's scenarios: it
//! reconciles `caches.example.com` objects into ConfigMaps, as an Operator Ferry restores must
//! do in the target cluster. It finds its cluster the way in-cluster programs do (kube-rs's
//! `Config::infer`: `KUBECONFIG`, then the service-account environment).
//!
//! For each Cache `<name>` it keeps, owned by the Cache (a controller reference, as real
//! operators set them), a ConfigMap `<name>-cache` with `size` from `spec.size`, a headless
//! Service and a StatefulSet `<name>-cache` running `spec.image` with a 1Gi claim per replica
//! (of `spec.storageClassName`, if given);
//! then it sets `status.ready`, and appends the name to `$FERRY_SANDBOX/data/reconciled` when a
//! volume is mounted at `/data`. A Cache named `crash` makes it exit with status 1 (for restart
//! tests).

use anyhow::Context;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;
use std::io::Write;
use std::time::Duration;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sandbox = std::env::var("FERRY_SANDBOX").unwrap_or_else(|_| ".".into());
    std::fs::write(
        format!("{sandbox}/operator.pid"),
        std::process::id().to_string(),
    )
    .context("writing pid file")?;
    let client = kube::Client::try_default()
        .await
        .context("finding the cluster")?;
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Cache"),
        "caches",
    );
    let caches: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    println!("cache-operator started in {sandbox}");
    loop {
        let list = match caches.list(&ListParams::default()).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("listing caches: {e}");
                tokio::time::sleep(Duration::from_millis(300)).await;
                continue;
            }
        };
        for cache in list.items {
            let name = cache.metadata.name.clone().unwrap_or_default();
            let ns = cache.metadata.namespace.clone().unwrap_or_default();
            if name == "crash" {
                eprintln!("found cache 'crash': exiting as asked");
                std::process::exit(1);
            }
            if cache.data.pointer("/status/ready") == Some(&json!(true)) {
                continue;
            }
            let size = cache
                .data
                .pointer("/spec/size")
                .cloned()
                .unwrap_or(json!(0))
                .to_string();
            let owner = json!([{"apiVersion": "example.com/v1", "kind": "Cache", "name": name,
                                "uid": cache.metadata.uid.clone().unwrap_or_default(),
                                "controller": true, "blockOwnerDeletion": true}]);
            let labels = json!({"app.kubernetes.io/managed-by": "cache-operator", "cache": name});
            let child = format!("{name}-cache");
            // The claims use `spec.storageClassName` when the Cache names one, else the default.
            let mut claim_spec = json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}});
            if let Some(class) = cache.data.pointer("/spec/storageClassName") {
                claim_spec["storageClassName"] = class.clone();
            }
            let image = cache
                .data
                .pointer("/spec/image")
                .and_then(|v| v.as_str())
                .unwrap_or("cache:latest")
                .to_string();
            let children = [
                (
                    ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&()),
                    json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": child, "labels": labels, "ownerReferences": owner},
                        "data": {"size": size}}),
                ),
                (
                    ApiResource::erase::<k8s_openapi::api::core::v1::Service>(&()),
                    json!({"apiVersion": "v1", "kind": "Service",
                        "metadata": {"name": child, "labels": labels, "ownerReferences": owner},
                        "spec": {"clusterIP": "None", "selector": {"cache": name}, "ports": [{"port": 6379}]}}),
                ),
                (
                    ApiResource::erase::<k8s_openapi::api::apps::v1::StatefulSet>(&()),
                    json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
                        "metadata": {"name": child, "labels": labels, "ownerReferences": owner},
                        "spec": {"replicas": 1, "serviceName": child, "selector": {"matchLabels": {"cache": name}},
                                 "template": {"metadata": {"labels": labels},
                                              "spec": {"containers": [{"name": "cache", "image": image,
                                                                       "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}},
                                 "volumeClaimTemplates": [{"metadata": {"name": "data"},
                                                           "spec": claim_spec}]}}),
                ),
            ];
            for (resource, object) in children {
                let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &resource);
                api.patch(
                    &child,
                    &PatchParams::apply("cache-operator").force(),
                    &Patch::Apply(&object),
                )
                .await
                .with_context(|| format!("writing {} {ns}/{child}", resource.kind))?;
            }
            let namespaced: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
            namespaced
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {"ready": true}})),
                )
                .await
                .with_context(|| format!("updating status of cache {ns}/{name}"))?;
            let data = std::path::Path::new(&sandbox).join("data");
            if data.exists() {
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(data.join("reconciled"))?;
                writeln!(f, "{ns}/{name}")?;
            }
            println!("reconciled {ns}/{name}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
