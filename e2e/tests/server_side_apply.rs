//! Server-side apply through kube-rs: field ownership in managedFields, fields an applier stops
//! applying are removed (unless another manager owns them), keyed list items go by key, and
//! an apply must name its manager.

mod common;

use ferry_e2e::apiserver::{StandIn, StandInConfig};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

/// A stand-in of its own (kept alive by the returned server and directory) and a client of it.
async fn stand_in() -> (StandIn, kube::Client, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let server = StandIn::start(StandInConfig::new("ssa", dir.path().join("cluster")))
        .await
        .unwrap();
    let client = common::client(&server.kubeconfig_path).await;
    (server, client, dir)
}

#[tokio::test]
async fn applies_own_fields_and_remove_what_they_drop() {
    let (_server, client, _dir) = stand_in().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let apply = PatchParams::apply("ferry");
    let first = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings", "labels": {"a": "1", "b": "2"}}, "data": {"x": "1", "y": "2"}});
    cms.patch("settings", &apply, &Patch::Apply(&first))
        .await
        .unwrap();
    // Another manager adds a key of its own.
    let edit = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..PatchParams::default()
    };
    cms.patch(
        "settings",
        &edit,
        &Patch::Merge(json!({"data": {"z": "3"}})),
    )
    .await
    .unwrap();
    let second = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings", "labels": {"a": "1"}}, "data": {"x": "1"}});
    let cm = cms
        .patch("settings", &apply, &Patch::Apply(&second))
        .await
        .unwrap();
    let data = cm.data.clone().unwrap();
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        ["x", "z"],
        "y dropped, z kept: {data:?}"
    );
    assert_eq!(cm.metadata.labels.clone().unwrap().len(), 1);
    let managers: Vec<(String, String)> = cm
        .metadata
        .managed_fields
        .clone()
        .unwrap()
        .into_iter()
        .map(|m| (m.manager.unwrap(), m.operation.unwrap()))
        .collect();
    assert_eq!(
        managers,
        [
            ("ferry".to_string(), "Apply".to_string()),
            ("kubectl-edit".to_string(), "Update".to_string())
        ]
    );
    // The same apply again changes nothing, not even the resourceVersion.
    let again = cms
        .patch("settings", &apply, &Patch::Apply(&second))
        .await
        .unwrap();
    assert_eq!(
        again.metadata.resource_version,
        cm.metadata.resource_version
    );

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let deployment = |containers: serde_json::Value| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
               "spec": {"selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers}}}})
    };
    let two = deployment(
        json!([{"name": "web", "image": "nginx:1"}, {"name": "sidecar", "image": "envoy:1"}]),
    );
    deployments
        .patch("web", &apply, &Patch::Apply(&two))
        .await
        .unwrap();
    let one = deployment(json!([{"name": "web", "image": "nginx:2"}]));
    let d = deployments
        .patch("web", &apply, &Patch::Apply(&one))
        .await
        .unwrap();
    let containers = d.spec.unwrap().template.spec.unwrap().containers;
    assert_eq!(containers.len(), 1);
    assert_eq!(containers[0].image.as_deref(), Some("nginx:2"));

    let anonymous = PatchParams {
        field_manager: None,
        ..PatchParams::apply("x")
    };
    let e = cms
        .patch("settings", &anonymous, &Patch::Apply(&second))
        .await
        .unwrap_err();
    match e {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 400);
            assert!(
                s.message.contains("fieldManager: Required value"),
                "{}",
                s.message
            );
        }
        other => panic!("expected an API error, got {other}"),
    }
}

/// An operator applies its StatefulSet on every reconcile: applying it unchanged changes nothing,
/// and the claim templates (a list without a merge key) are replaced whole, never appended to
/// (a second "data" template made every re-apply a forbidden change of the spec), and the
/// defaults the server gives them are given again, not taken for a change.
#[tokio::test]
async fn a_statefulset_applied_again_is_unchanged() {
    let (_server, client, _dir) = stand_in().await;
    let sets: Api<StatefulSet> = Api::namespaced(client, "default");
    let apply = PatchParams::apply("cache-operator").force();
    let set = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "cache"},
        "spec": {"serviceName": "cache", "selector": {"matchLabels": {"app": "cache"}},
                 "template": {"metadata": {"labels": {"app": "cache"}},
                              "spec": {"containers": [{"name": "cache", "image": "cache:1",
                                                       "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}},
                 "volumeClaimTemplates": [{"metadata": {"name": "data"},
                     "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}});
    let first = sets
        .patch("cache", &apply, &Patch::Apply(&set))
        .await
        .unwrap();
    let again = sets
        .patch("cache", &apply, &Patch::Apply(&set))
        .await
        .unwrap();
    let spec = again.spec.as_ref().unwrap();
    let templates = spec.volume_claim_templates.as_deref().unwrap();
    assert_eq!(templates.len(), 1);
    // Served as a real API server serves them: whole claims with a claim's defaults.
    let claim = &templates[0];
    assert_eq!(
        claim.spec.as_ref().unwrap().volume_mode.as_deref(),
        Some("Filesystem")
    );
    assert_eq!(
        claim.status.as_ref().unwrap().phase.as_deref(),
        Some("Pending")
    );
    let retention = spec
        .persistent_volume_claim_retention_policy
        .as_ref()
        .unwrap();
    assert_eq!(retention.when_deleted.as_deref(), Some("Retain"));
    assert_eq!(first.spec, again.spec);
}
