//! kube-rs against the stand-in: discovery (legacy and aggregated), dynamic objects, the
//! runtime watcher, conflicts, finalizers, garbage collection, selectors, pagination,
//! server-side apply, subresources, storage and exec — the client Ferry's spoke uses.

mod common;

use common::eventually;
use ferry_e2e::apiserver::{StandIn, StandInConfig};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolume, PersistentVolumeClaim, Pod, Secret,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::{Discovery, Scope};
use kube::runtime::watcher;
use kube::Client;
use serde_json::json;
use std::time::Duration;

async fn start(configure: impl FnOnce(&mut StandInConfig)) -> (StandIn, Client, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StandInConfig::new("kube-rs", dir.path().join("cluster"));
    configure(&mut config);
    let server = StandIn::start(config).await.unwrap();
    let client = common::client(&server.kubeconfig_path).await;
    (server, client, dir)
}

fn api_error(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason),
        other => panic!("expected an API error, got {other}"),
    }
}

async fn namespace(client: &Client, name: &str) {
    let ns: Api<Namespace> = Api::all(client.clone());
    ns.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
    )
    .await
    .unwrap();
    // As in a real cluster, the namespace controller adds kube-root-ca.crt shortly after.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), name);
    eventually("the namespace's kube-root-ca.crt", || async {
        cms.get("kube-root-ca.crt").await.ok()
    })
    .await;
}

fn cache_crd() -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "caches.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"plural": "caches", "singular": "cache", "kind": "Cache"},
                 "versions": [
                     {"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                      "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
                     {"name": "v1beta1", "served": true, "storage": false,
                      "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    }))
    .unwrap()
}

#[tokio::test]
async fn discovery_follows_crds() {
    let (_server, client, _dir) = start(|_| {}).await;
    let legacy = Discovery::new(client.clone()).run().await.unwrap();
    let (ar, caps) = legacy
        .resolve_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment"))
        .unwrap();
    assert_eq!(ar.plural, "deployments");
    assert_eq!(caps.scope, Scope::Namespaced);
    assert!(caps
        .subresources
        .iter()
        .any(|(s, _)| s.plural == "deployments/scale" || s.plural == "scale"));
    assert!(legacy
        .resolve_gvk(&GroupVersionKind::gvk("example.com", "v1", "Cache"))
        .is_none());

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let created = crds
        .create(&PostParams::default(), &cache_crd())
        .await
        .unwrap();
    let conditions = created.status.unwrap().conditions.unwrap();
    assert!(conditions
        .iter()
        .any(|c| c.type_ == "Established" && c.status == "True"));

    let aggregated = Discovery::new(client.clone())
        .run_aggregated()
        .await
        .unwrap();
    let (ar, caps) = aggregated
        .resolve_gvk(&GroupVersionKind::gvk("example.com", "v1", "Cache"))
        .expect("aggregated discovery lists the new CRD");
    assert_eq!(ar.plural, "caches");
    assert_eq!(caps.scope, Scope::Namespaced);
    let group = aggregated.get("example.com").unwrap();
    assert_eq!(group.preferred_version_or_latest(), "v1");
    assert!(aggregated
        .resolve_gvk(&GroupVersionKind::gvk(
            "snapshot.storage.k8s.io",
            "v1",
            "VolumeSnapshot"
        ))
        .is_some());

    // Objects written at one version read back at the other (no schema conversion needed).
    namespace(&client, "shop").await;
    let v1 = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Cache"),
        "caches",
    );
    let v1beta1 = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1beta1", "Cache"),
        "caches",
    );
    let caches: Api<DynamicObject> = Api::namespaced_with(client.clone(), "shop", &v1);
    let mut obj = DynamicObject::new("hot", &v1).within("shop");
    obj.data = json!({"spec": {"size": 3}});
    caches.create(&PostParams::default(), &obj).await.unwrap();
    let old: Api<DynamicObject> = Api::namespaced_with(client.clone(), "shop", &v1beta1);
    let read = old.get("hot").await.unwrap();
    assert_eq!(read.types.unwrap().api_version, "example.com/v1beta1");
    assert_eq!(read.data["spec"]["size"], 3);

    // Status subresource: the main resource ignores status, /status changes only status.
    let with_status = caches
        .patch(
            "hot",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 4}, "status": {"ready": true}})),
        )
        .await
        .unwrap();
    assert_eq!(with_status.data["spec"]["size"], 4);
    assert!(with_status.data.get("status").is_none());
    let status = caches
        .patch_status(
            "hot",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"ready": true}})),
        )
        .await
        .unwrap();
    assert_eq!(status.data["status"]["ready"], true);
    assert_eq!(
        status.metadata.generation,
        Some(2),
        "status writes do not bump generation"
    );

    // Deleting the CRD removes its objects and its discovery entry.
    crds.delete("caches.example.com", &DeleteParams::default())
        .await
        .unwrap();
    let (code, reason) = api_error(caches.get("hot").await.unwrap_err());
    assert_eq!((code, reason.as_str()), (404, "NotFound"));
    let after = Discovery::new(client.clone()).run().await.unwrap();
    assert!(after
        .resolve_gvk(&GroupVersionKind::gvk("example.com", "v1", "Cache"))
        .is_none());
}

#[tokio::test]
async fn conflicts_and_errors_carry_kubernetes_reasons() {
    let (_server, client, _dir) = start(|_| {}).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "c"}, "data": {"a": "1"}})).unwrap();
    let first = cms.create(&PostParams::default(), &cm).await.unwrap();
    let (code, reason) = api_error(cms.create(&PostParams::default(), &cm).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (409, "AlreadyExists"));

    let mut stale = first.clone();
    let mut fresh = first.clone();
    fresh.data = Some([("a".to_string(), "2".to_string())].into());
    cms.replace("c", &PostParams::default(), &fresh)
        .await
        .unwrap();
    stale.data = Some([("a".to_string(), "3".to_string())].into());
    let (code, reason) = api_error(
        cms.replace("c", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (409, "Conflict"));

    let (code, reason) = api_error(
        Api::<ConfigMap>::namespaced(client.clone(), "nowhere")
            .create(&PostParams::default(), &cm)
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (404, "NotFound"));

    let bad: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "Not_A_Name"}})).unwrap();
    let (code, reason) = api_error(cms.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (422, "Invalid"));

    // dryRun validates and returns the object without storing it.
    let dry: ConfigMap =
        serde_json::from_value(json!({"metadata": {"generateName": "dry-"}})).unwrap();
    let out = cms
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &dry,
        )
        .await
        .unwrap();
    assert!(out.metadata.name.unwrap().starts_with("dry-"));
    assert_eq!(
        cms.list(&ListParams::default()).await.unwrap().items.len(),
        2,
        "c and kube-root-ca.crt only"
    );
}

#[tokio::test]
async fn selectors_pagination_and_server_side_apply() {
    let (_server, client, _dir) = start(|_| {}).await;
    namespace(&client, "shop").await;
    // Defaulted like Kubernetes does, and selectable by it.
    let nss: Api<Namespace> = Api::all(client.clone());
    let shop = nss
        .list(&ListParams::default().labels("kubernetes.io/metadata.name=shop"))
        .await
        .unwrap();
    assert_eq!(shop.items.len(), 1);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "shop");
    let labelled = |i: usize| -> ConfigMap {
        let tier = if i.is_multiple_of(2) { "web" } else { "db" };
        serde_json::from_value(json!({
            "metadata": {"name": format!("cm-{i}"), "labels": {"tier": tier, "n": i.to_string()}}}))
        .unwrap()
    };
    for i in 0..7 {
        cms.create(&PostParams::default(), &labelled(i))
            .await
            .unwrap();
    }
    let names = |l: kube::core::ObjectList<ConfigMap>| -> Vec<String> {
        l.items
            .into_iter()
            .map(|c| c.metadata.name.unwrap())
            .collect()
    };
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("tier=db"))
                .await
                .unwrap()
        ),
        ["cm-1", "cm-3", "cm-5"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("tier=web,n in (0,6)"))
                .await
                .unwrap()
        ),
        ["cm-0", "cm-6"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("!tier"))
                .await
                .unwrap()
        ),
        ["kube-root-ca.crt"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().fields("metadata.name=cm-4"))
                .await
                .unwrap()
        ),
        ["cm-4"]
    );

    let mut seen = Vec::new();
    let mut lp = ListParams::default().labels("tier").limit(3);
    loop {
        let page = cms.list(&lp).await.unwrap();
        let token = page.metadata.continue_.clone().filter(|c| !c.is_empty());
        // As the real API server: no count of what remains when a selector filters the list.
        assert_eq!(page.metadata.remaining_item_count, None);
        seen.extend(names(page));
        match token {
            Some(t) => lp = lp.continue_token(&t),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7);
    assert_eq!(seen, {
        let mut s = seen.clone();
        s.sort();
        s
    });
    // Unfiltered pages count what remains; each page starts after the last one's end.
    let mut lp = ListParams::default().limit(3);
    let mut all = Vec::new();
    let mut remaining = Vec::new();
    loop {
        let page = cms.list(&lp).await.unwrap();
        let token = page.metadata.continue_.clone().filter(|c| !c.is_empty());
        remaining.push(page.metadata.remaining_item_count);
        all.extend(names(page));
        match token {
            Some(t) => lp = lp.continue_token(&t),
            None => break,
        }
    }
    assert_eq!(all.len(), 8, "{all:?}");
    assert_eq!(remaining, [Some(5), Some(2), None]);

    // deletecollection honours the selector.
    let deleted = cms
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("n in (5,6)"),
        )
        .await
        .unwrap();
    let gone = deleted
        .left()
        .expect("the deleted objects, not a Status")
        .items
        .len();
    assert_eq!(gone, 2);
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("tier"))
                .await
                .unwrap()
        )
        .len(),
        5
    );
    for i in 5..7 {
        cms.create(&PostParams::default(), &labelled(i))
            .await
            .unwrap();
    }

    let all: Api<ConfigMap> = Api::all(client.clone());
    assert_eq!(
        all.list(&ListParams::default().fields("metadata.namespace=shop"))
            .await
            .unwrap()
            .items
            .len(),
        8
    );

    // Server-side apply creates, then updates.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "shop");
    let pp = PatchParams::apply("ferry-test");
    let desired = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "api"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "api"}},
                 "template": {"metadata": {"labels": {"app": "api"}},
                              "spec": {"containers": [{"name": "api", "image": "api:1"}]}}}});
    let created = deployments
        .patch("api", &pp, &Patch::Apply(&desired))
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    let mut changed = desired.clone();
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("api:2");
    let updated = deployments
        .patch("api", &pp, &Patch::Apply(&changed))
        .await
        .unwrap();
    assert_eq!(updated.metadata.generation, Some(2));
    assert_eq!(
        updated.spec.unwrap().template.spec.unwrap().containers[0]
            .image
            .as_deref(),
        Some("api:2")
    );

    // Scale subresource.
    let scale = deployments
        .patch_scale(
            "api",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 2}})),
        )
        .await
        .unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(2));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "shop");
    eventually("two ready pods", || async {
        let l = pods
            .list(&ListParams::default().labels("app=api"))
            .await
            .ok()?;
        let ready = l
            .items
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .count();
        (ready == 2).then_some(())
    })
    .await;
}

#[tokio::test]
async fn finalizers_and_garbage_collection() {
    let (_server, client, _dir) = start(|_| {}).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
        "metadata": {"name": "held", "finalizers": ["ferry.dev/test"]}}))
        .unwrap(),
    )
    .await
    .unwrap();
    cms.delete("held", &DeleteParams::default()).await.unwrap();
    let held = cms.get("held").await.unwrap();
    assert!(
        held.metadata.deletion_timestamp.is_some(),
        "object stays while finalizers remain"
    );
    let (code, reason) = api_error(
        cms.patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["ferry.dev/test", "new"]}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (403, "Forbidden"));
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    let (code, _) = api_error(cms.get("held").await.unwrap_err());
    assert_eq!(code, 404, "removing the last finalizer deletes the object");

    // Background propagation: a dependent goes after its owner.
    let owner = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "owner"}})).unwrap(),
        )
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let owner_ref = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}]);
    for name in ["dep-a", "dep-b"] {
        secrets
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
            "metadata": {"name": name, "ownerReferences": owner_ref}}))
                .unwrap(),
            )
            .await
            .unwrap();
    }
    cms.delete("owner", &DeleteParams::default()).await.unwrap();
    eventually("dependents to be collected", || async {
        secrets
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .is_empty()
            .then_some(())
    })
    .await;

    // Orphan propagation keeps dependents and drops their owner reference.
    let owner = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "owner2"}})).unwrap(),
        )
        .await
        .unwrap();
    secrets.create(&PostParams::default(), &serde_json::from_value(json!({
        "metadata": {"name": "orphan", "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner2", "uid": owner.metadata.uid}]}})).unwrap())
        .await
        .unwrap();
    cms.delete("owner2", &DeleteParams::orphan()).await.unwrap();
    eventually("the owner to go", || async {
        cms.get("owner2").await.is_err().then_some(())
    })
    .await;
    let orphan = secrets.get("orphan").await.unwrap();
    assert!(orphan
        .metadata
        .owner_references
        .unwrap_or_default()
        .is_empty());

    // Foreground propagation: the owner waits for its dependents.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deployments.create(&PostParams::default(), &serde_json::from_value(json!({
        "metadata": {"name": "fg"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "fg"}},
                 "template": {"metadata": {"labels": {"app": "fg"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}})).unwrap())
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    eventually("pods of fg", || async {
        (pods
            .list(&ListParams::default().labels("app=fg"))
            .await
            .ok()?
            .items
            .len()
            == 2)
            .then_some(())
    })
    .await;
    deployments
        .delete("fg", &DeleteParams::foreground())
        .await
        .unwrap();
    eventually("foreground deletion to finish", || async {
        let gone = deployments.get("fg").await.is_err()
            && pods
                .list(&ListParams::default().labels("app=fg"))
                .await
                .ok()?
                .items
                .is_empty();
        gone.then_some(())
    })
    .await;

    // Deleting a namespace deletes its contents, then itself.
    namespace(&client, "doomed").await;
    let doomed: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    doomed
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap(),
        )
        .await
        .unwrap();
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    let (code, reason) = api_error(
        doomed
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "late"}})).unwrap(),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (403, "Forbidden"));
    eventually("namespace removal", || async {
        nss.get("doomed").await.is_err().then_some(())
    })
    .await;
}

#[tokio::test]
async fn runtime_watcher_sees_changes() {
    let (_server, client, _dir) = start(|c| c.bookmark_interval = Duration::from_millis(200)).await;
    namespace(&client, "w").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "w");
    for (config, label) in [
        (watcher::Config::default(), "list-then-watch"),
        (
            watcher::Config::default().streaming_lists(),
            "streaming list",
        ),
    ] {
        let name = format!("seen-{}", label.replace(' ', "-"));
        let mut stream = watcher(cms.clone(), config.labels("watched=yes")).boxed();
        let mut applied = Vec::new();
        let mut init_done = false;
        let creator = {
            let cms = cms.clone();
            let name = name.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                cms.create(
                    &PostParams::default(),
                    &serde_json::from_value(json!({
                    "metadata": {"name": name, "labels": {"watched": "yes"}}}))
                    .unwrap(),
                )
                .await
                .unwrap();
                cms.patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"data": {"k": "v"}})),
                )
                .await
                .unwrap();
                cms.delete(&name, &DeleteParams::default()).await.unwrap();
            })
        };
        let mut deleted = false;
        let deadline = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(ev) = stream.try_next().await.unwrap() {
                match ev {
                    watcher::Event::InitDone => init_done = true,
                    watcher::Event::Apply(cm) => applied.push(cm.data.unwrap_or_default().len()),
                    watcher::Event::Delete(cm) => {
                        assert_eq!(cm.metadata.name.as_deref(), Some(name.as_str()));
                        deleted = true;
                        break;
                    }
                    _ => {}
                }
            }
        });
        deadline
            .await
            .unwrap_or_else(|_| panic!("{label}: watcher did not see the delete"));
        creator.await.unwrap();
        assert!(init_done, "{label}: initial list must complete");
        assert!(deleted);
        assert!(
            applied.contains(&0) && applied.contains(&1),
            "{label}: saw {applied:?}"
        );
    }
}

#[tokio::test]
async fn expired_resource_versions_get_410() {
    let (_server, client, _dir) = start(|c| c.watch_history = 5).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let first = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "a"}})).unwrap(),
        )
        .await
        .unwrap();
    let old_rv = first.metadata.resource_version.unwrap();
    for i in 0..10 {
        cms.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": format!("b{i}")}})).unwrap(),
        )
        .await
        .unwrap();
    }
    let mut stream = cms
        .watch(&WatchParams::default(), &old_rv)
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Error(e)) => {
            assert_eq!(e.code, 410);
            assert_eq!(e.reason, "Expired");
        }
        other => panic!("expected a 410 error event, got {other:?}"),
    }
    // A recent version replays exactly what followed it.
    let list = cms.list(&ListParams::default()).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();
    cms.delete("a", &DeleteParams::default()).await.unwrap();
    let mut stream = cms
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Deleted(cm)) => assert_eq!(cm.metadata.name.as_deref(), Some("a")),
        other => panic!("expected the delete, got {other:?}"),
    }
}

#[tokio::test]
async fn volumes_bind_and_snapshots_copy_data() {
    let (server, client, _dir) = start(|_| {}).await;
    namespace(&client, "data").await;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "data");
    for (name, mode) in [("files", "Filesystem"), ("disk", "Block")] {
        pvcs.create(
            &PostParams::default(),
            &serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "volumeMode": mode,
                     "resources": {"requests": {"storage": "64Mi"}}}}))
            .unwrap(),
        )
        .await
        .unwrap();
    }
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let bound = |name: &'static str| {
        let pvcs = pvcs.clone();
        async move {
            let pvc = pvcs.get(name).await.ok()?;
            (pvc.status.as_ref()?.phase.as_deref() == Some("Bound")).then_some(pvc)
        }
    };
    let files = eventually("files bound", || bound("files")).await;
    let disk = eventually("disk bound", || bound("disk")).await;
    assert_eq!(
        files.spec.as_ref().unwrap().storage_class_name.as_deref(),
        Some("standard")
    );
    let pv = pvs
        .get(files.spec.unwrap().volume_name.as_deref().unwrap())
        .await
        .unwrap();
    let dir = std::path::PathBuf::from(&pv.spec.as_ref().unwrap().host_path.as_ref().unwrap().path);
    assert!(dir.is_dir() && dir.starts_with(&server.config().data_root));
    let disk_pv = pvs
        .get(disk.spec.unwrap().volume_name.as_deref().unwrap())
        .await
        .unwrap();
    let image = std::path::PathBuf::from(
        &disk_pv
            .spec
            .as_ref()
            .unwrap()
            .host_path
            .as_ref()
            .unwrap()
            .path,
    );
    assert_eq!(std::fs::metadata(&image).unwrap().len(), 64 << 20);

    std::fs::write(dir.join("before.txt"), b"point in time").unwrap();
    let snaps: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "data",
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("snapshot.storage.k8s.io", "v1", "VolumeSnapshot"),
            "volumesnapshots",
        ),
    );
    let mut snap = DynamicObject::new(
        "snap",
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("snapshot.storage.k8s.io", "v1", "VolumeSnapshot"),
            "volumesnapshots",
        ),
    );
    snap.data = json!({"spec": {"source": {"persistentVolumeClaimName": "files"}}});
    snaps.create(&PostParams::default(), &snap).await.unwrap();
    let ready = eventually("snapshot ready", || async {
        let s = snaps.get("snap").await.ok()?;
        (s.data["status"]["readyToUse"] == true).then_some(s)
    })
    .await;
    std::fs::write(dir.join("after.txt"), b"later").unwrap();
    let content = ready.data["status"]["boundVolumeSnapshotContentName"]
        .as_str()
        .unwrap();
    let copy = server.config().data_root.join("snapshots").join(content);
    assert_eq!(
        std::fs::read(copy.join("before.txt")).unwrap(),
        b"point in time"
    );
    assert!(
        !copy.join("after.txt").exists(),
        "the snapshot is a point-in-time copy"
    );

    // A claim restored from the snapshot starts with its data.
    pvcs.create(&PostParams::default(), &serde_json::from_value(json!({
        "metadata": {"name": "restored"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "64Mi"}},
                 "dataSource": {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "snap"}}})).unwrap())
        .await
        .unwrap();
    let restored = eventually("restored bound", || bound("restored")).await;
    let rpv = pvs
        .get(restored.spec.unwrap().volume_name.as_deref().unwrap())
        .await
        .unwrap();
    let rdir = std::path::PathBuf::from(&rpv.spec.unwrap().host_path.unwrap().path);
    assert_eq!(
        std::fs::read(rdir.join("before.txt")).unwrap(),
        b"point in time"
    );

    // Deleting a claim under the Delete policy removes its volume and data.
    pvcs.delete("files", &DeleteParams::default())
        .await
        .unwrap();
    eventually("volume reclaimed", || async {
        (!dir.exists() && pvs.get(&pv.metadata.name.clone()?).await.is_err()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn exec_runs_in_the_pod_sandbox() {
    use tokio::io::AsyncReadExt;
    let (server, client, _dir) = start(|_| {}).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &serde_json::from_value(json!({
        "metadata": {"name": "hooked"},
        "spec": {"containers": [{"name": "app", "image": "app:1", "volumeMounts": [{"name": "scratch", "mountPath": "/data"}]}],
                 "volumes": [{"name": "scratch", "emptyDir": {}}]}})).unwrap())
        .await
        .unwrap();
    eventually("pod running", || async {
        let p = pods.get("hooked").await.ok()?;
        (p.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;
    // Runs a shell command in the pod; its stdout and final Status.
    let run = |script: String| {
        let pods = pods.clone();
        async move {
            let mut attached = pods
                .exec(
                    "hooked",
                    ["sh", "-c", script.as_str()],
                    &kube::api::AttachParams::default().stderr(false),
                )
                .await
                .unwrap();
            let mut out = String::new();
            attached
                .stdout()
                .unwrap()
                .read_to_string(&mut out)
                .await
                .unwrap();
            let status = attached.take_status().unwrap().await.unwrap();
            (out, status)
        }
    };
    let (out, status) = run("echo frozen > hook-ran; echo done".into()).await;
    assert_eq!(status.status.as_deref(), Some("Success"));
    assert_eq!(out.trim(), "done");
    // The command ran in the pod's own root, not the host's.
    let sandbox = server.config().data_root.join("pods/default/hooked");
    let marker = sandbox.join("rootfs/hook-ran");
    assert_eq!(std::fs::read_to_string(marker).unwrap().trim(), "frozen");
    let host_tmp = format!("/tmp/ferry-exec-escape-{}", std::process::id());
    let script = format!(
        "echo pod > {host_tmp}; echo vol > /data/f; cat /var/run/secrets/kubernetes.io/serviceaccount/namespace 2>/dev/null; touch /etc/ferry-escape 2>/dev/null && echo wrote-etc; echo end"
    );
    let (out, _) = run(script).await;
    assert!(out.contains("end") && !out.contains("wrote-etc"), "{out}");
    assert!(
        !std::path::Path::new(&host_tmp).exists(),
        "exec wrote to the host's /tmp"
    );
    assert_eq!(
        std::fs::read_to_string(
            sandbox
                .join("rootfs")
                .join(host_tmp.trim_start_matches('/'))
        )
        .unwrap()
        .trim(),
        "pod"
    );
    assert!(!std::path::Path::new("/etc/ferry-escape").exists());
    assert_eq!(
        std::fs::read_to_string(sandbox.join("volumes/scratch/f"))
            .unwrap()
            .trim(),
        "vol"
    );

    let (_, status) = run("exit 7".into()).await;
    assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"));
    let code = status.details.unwrap().causes.unwrap()[0].message.clone();
    assert_eq!(code.as_deref(), Some("7"));
}

#[tokio::test]
async fn malformed_bodies_get_errors_not_panics() {
    let (_server, client, _dir) = start(|_| {}).await;
    let send = |method: &str, path: &str, content_type: &str, body: &str| {
        let client = client.clone();
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", content_type)
            .body(body.as_bytes().to_vec())
            .unwrap();
        async move { client.request::<serde_json::Value>(req).await }
    };
    let deployments = "/apis/apps/v1/namespaces/default/deployments";
    let cases = [
        (
            "POST",
            deployments.to_string(),
            "application/json",
            "[1, 2]",
            400u16,
            "must be a JSON object",
        ),
        (
            "POST",
            deployments.to_string(),
            "application/json",
            r#"{"metadata": "x"}"#,
            422,
            "metadata",
        ),
        (
            "POST",
            deployments.to_string(),
            "application/json",
            r#"{"metadata": {"name": "d"}, "spec": "x"}"#,
            422,
            "spec",
        ),
        (
            "POST",
            deployments.to_string(),
            "application/json",
            r#"{"metadata": {"name": "d", "labels": {"a": 1}}}"#,
            422,
            "metadata.labels",
        ),
        (
            "POST",
            deployments.to_string(),
            "application/json",
            r#"{"metadata": {"name": "d"}, "spec": {"template": {"metadata": "x"}}}"#,
            422,
            "spec.template.metadata",
        ),
    ];
    for (method, path, ct, body, code, field) in cases {
        match send(method, &path, ct, body).await {
            Err(kube::Error::Api(s)) => {
                assert_eq!(s.code, code, "{body}: {s:?}");
                assert!(s.message.contains(field), "{body}: {}", s.message);
            }
            other => panic!("{body}: expected an error, got {other:?}"),
        }
    }
    let cms = Api::<ConfigMap>::namespaced(client.clone(), "default");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "p"}})).unwrap(),
    )
    .await
    .unwrap();
    let item = "/api/v1/namespaces/default/configmaps/p";
    for (ct, body) in [
        (
            "application/json-patch+json",
            r#"[{"op": "replace", "path": "", "value": 5}]"#,
        ),
        ("application/merge-patch+json", r#"{"metadata": 5}"#),
        ("application/strategic-merge-patch+json", "7"),
        ("application/apply-patch+yaml", "[]"),
    ] {
        match send("PATCH", item, ct, body).await {
            Err(kube::Error::Api(s)) => {
                assert!(s.code == 400 || s.code == 422, "{ct} {body}: {s:?}")
            }
            other => panic!("{ct} {body}: expected an error, got {other:?}"),
        }
    }
    // The server is still serving and the object is unchanged.
    assert!(cms.get("p").await.unwrap().data.is_none());
}
