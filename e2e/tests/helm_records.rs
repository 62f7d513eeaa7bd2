//! Helm release records written by real Helm (the Go library from the PyPI package helm-sdkpy,
//! installed by `./dev install`) are rewritten by Ferry's transform rules, restored into another
//! stand-in cluster, and read back by real Helm there: status, values, history and an upgrade
//! that starts from the rewritten record.

mod common;

use common::helm;

use ferry_e2e::apiserver::{StandIn, StandInConfig};
use ferry_transform::order::restore_order;
use ferry_transform::sanitize::SanitizeOptions;
use ferry_transform::{compile, parse_spec, Transformer};
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::discovery::{Discovery, Scope};
use serde_json::Value;

async fn capture(client: &kube::Client, namespace: &str) -> Vec<Value> {
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let mut objects = Vec::new();
    let ns: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &discovery
            .resolve_gvk(&kube::core::GroupVersionKind::gvk("", "v1", "Namespace"))
            .unwrap()
            .0,
    );
    objects.push(serde_json::to_value(ns.get(namespace).await.unwrap()).unwrap());
    for (gvk, plural) in [
        (("", "v1", "Secret"), "secrets"),
        (("", "v1", "ConfigMap"), "configmaps"),
        (
            ("", "v1", "PersistentVolumeClaim"),
            "persistentvolumeclaims",
        ),
        (("apps", "v1", "Deployment"), "deployments"),
        (("apps", "v1", "ReplicaSet"), "replicasets"),
        (("", "v1", "Pod"), "pods"),
    ] {
        let ar = kube::core::ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk(gvk.0, gvk.1, gvk.2),
            plural,
        );
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &ar);
        for mut o in api.list(&ListParams::default()).await.unwrap().items {
            o.types = Some(kube::core::TypeMeta {
                api_version: ar.api_version.clone(),
                kind: ar.kind.clone(),
            });
            objects.push(serde_json::to_value(o).unwrap());
        }
    }
    objects
}

async fn restore(client: &kube::Client, objects: &[Value]) {
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    for (i, step) in restore_order(objects).steps {
        let obj: DynamicObject = serde_json::from_value(objects[i].clone()).unwrap();
        let gvk = kube::core::GroupVersionKind::gvk(
            &step.object.group,
            &step.object.version,
            &step.object.kind,
        );
        let (ar, caps) = discovery.resolve_gvk(&gvk).unwrap();
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Namespaced => Api::namespaced_with(
                client.clone(),
                step.object.namespace.as_deref().unwrap(),
                &ar,
            ),
            Scope::Cluster => Api::all_with(client.clone(), &ar),
        };
        match api.create(&PostParams::default(), &obj).await {
            Ok(_) => {}
            // The target makes some objects itself (default ServiceAccount, root CA).
            Err(kube::Error::Api(e)) if e.reason == "AlreadyExists" => {}
            Err(e) => panic!("restoring {}: {e}", step.object),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_reads_rewritten_release_records() {
    let dir = tempfile::tempdir().unwrap();
    let source = StandIn::start(StandInConfig::new("source", dir.path().join("source")))
        .await
        .unwrap();
    let target = StandIn::start(StandInConfig::new("target", dir.path().join("target")))
        .await
        .unwrap();
    let chart: &'static str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/helm-chart");

    // Real Helm installs the chart (with a user value, so the record has `config`).
    let src_kc = source.kubeconfig_path.clone();
    let installed = tokio::task::spawn_blocking(move || {
        helm(
            &src_kc,
            "shop",
            &["install", "web", chart, r#"{"image": {"tag": "1.5"}}"#],
        )
    })
    .await
    .unwrap();
    assert_eq!(installed["info"]["status"], "deployed");

    let src_client = common::client(&source.kubeconfig_path).await;
    let captured = capture(&src_client, "shop").await;
    assert!(
        captured.iter().any(|o| o["type"] == "helm.sh/release.v1"),
        "Helm wrote its record"
    );

    let rules = compile(
        &parse_spec(
            "transforms:\n  - storageClass: { from: gp2, to: standard }\n  - namespace: { from: shop, to: shop-dr }\n  - imageRegistry: { from: registry.eu.example.com, to: registry.us.example.com }\n",
        )
        .unwrap(),
    )
    .unwrap();
    let outcome = Transformer::new(rules, SanitizeOptions::default())
        .transform(&captured)
        .unwrap();
    let record = outcome
        .objects
        .iter()
        .find(|o| o.object["type"] == "helm.sh/release.v1")
        .unwrap();
    assert!(
        record
            .changes
            .iter()
            .any(|c| c.description == "release.namespace: shop → shop-dr"),
        "{:?}",
        record.changes
    );
    let objects: Vec<Value> = outcome.objects.iter().map(|o| o.object.clone()).collect();

    let tgt_client = common::client(&target.kubeconfig_path).await;
    restore(&tgt_client, &objects).await;

    // Real Helm, in the target, reads the rewritten release.
    let tgt_kc = target.kubeconfig_path.clone();
    let chart_owned = chart.to_string();
    let (status, values, upgraded, history) = tokio::task::spawn_blocking(move || {
        let status = helm(&tgt_kc, "shop-dr", &["status", "web"]);
        let values = helm(&tgt_kc, "shop-dr", &["get-values", "web"]);
        let upgraded = helm(
            &tgt_kc,
            "shop-dr",
            &["upgrade", "web", &chart_owned, r#"{"replicas": 3}"#],
        );
        let history = helm(&tgt_kc, "shop-dr", &["history", "web"]);
        (status, values, upgraded, history)
    })
    .await
    .unwrap();
    assert_eq!(status["namespace"], "shop-dr");
    assert_eq!(status["info"]["status"], "deployed");
    assert!(
        status["manifest"]
            .as_str()
            .unwrap()
            .contains("image: registry.us.example.com/shop/web:1.5")
            || status["manifest"]
                .as_str()
                .unwrap()
                .contains("image: \"registry.us.example.com/shop/web:1.5\""),
        "{}",
        status["manifest"]
    );
    assert_eq!(
        values["image"]["repository"], "registry.us.example.com/shop/web",
        "{values}"
    );
    assert_eq!(values["image"]["tag"], "1.5");
    assert_eq!(values["storageClass"], "standard");
    assert_eq!(upgraded["version"], 2, "{upgraded}");
    assert_eq!(history.as_array().map(Vec::len), Some(2), "{history}");

    // The upgrade, rendered by Helm from the rewritten values, reached the target's objects.
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(tgt_client.clone(), "shop-dr");
    let web = deployments.get("web").await.unwrap();
    let spec = web.spec.unwrap();
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(
        spec.template.spec.unwrap().containers[0].image.as_deref(),
        Some("registry.us.example.com/shop/web:1.5")
    );
}
