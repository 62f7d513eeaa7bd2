//! Capture and restore as library calls between two stand-in clusters and a file repository:
//! what a selection reaches, what the restore point holds, and what lands in the target — with
//! transforms, the existing-resource policies, dry runs, redelivery and damage.

use ferry_e2e::apiserver::{StandIn, StandInConfig};
use ferry_protocol::command::{CaptureCommand, ExistingPolicy, RestoreCommand};
use ferry_protocol::event::{ObjectAction, Progress};
use ferry_protocol::selection::Selection;
use ferry_repository::backend::Backend;
use ferry_repository::keys::KdfParams;
use ferry_repository::repo::{InitOptions, Repository};
use ferry_spoke::cancel::Cancellation;
use ferry_spoke::capture::{capture, Source};
use ferry_spoke::cluster::{Cluster, ResourceMap};
use ferry_spoke::error::SpokeError;
use ferry_spoke::restore::{restore, RESTORED_FROM_ANNOTATION};
use serde_json::{json, Value};
use std::sync::Arc;

struct World {
    source: Cluster,
    target: Cluster,
    repo: Arc<Repository>,
    _servers: (StandIn, StandIn),
    _dir: tempfile::TempDir,
}

async fn connect(server: &StandIn) -> Cluster {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kc = kube::config::Kubeconfig::read_from(&server.kubeconfig_path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    Cluster::new(kube::Client::try_from(config).unwrap())
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let source = StandIn::start(StandInConfig::new("source", dir.path().join("source")))
        .await
        .unwrap();
    let target = StandIn::start(StandInConfig::new("target", dir.path().join("target")))
        .await
        .unwrap();
    let options = InitOptions {
        kdf: KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        },
        ..Default::default()
    };
    let url = format!("file://{}", dir.path().join("repo").display());
    let repo = Repository::init(Backend::open(&url).unwrap(), b"pw", options)
        .await
        .unwrap();
    World {
        source: connect(&source).await,
        target: connect(&target).await,
        repo: Arc::new(repo),
        _servers: (source, target),
        _dir: dir,
    }
}

async fn create_all(cluster: &Cluster, objects: &[Value]) {
    let mut map = ResourceMap::new(&cluster.discover().await.unwrap());
    for o in objects {
        let r = ferry_protocol::ObjectRef::from_object(o).unwrap();
        if map.for_object(&r).is_none() {
            // A custom resource right after its CRD: discovery catches up.
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            map = ResourceMap::new(&cluster.discover().await.unwrap());
        }
        let t = map
            .for_object(&r)
            .unwrap_or_else(|| panic!("no type for {r}"));
        cluster.create(&t, o, false).await.unwrap();
    }
}

async fn get(
    cluster: &Cluster,
    api_version: &str,
    kind: &str,
    ns: Option<&str>,
    name: &str,
) -> Option<Value> {
    let map = ResourceMap::new(&cluster.discover().await.unwrap());
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let r = ferry_protocol::ObjectRef {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        namespace: ns.map(str::to_string),
        name: name.into(),
    };
    let t = map.for_object(&r).unwrap();
    cluster.get(&t, ns, name).await.unwrap()
}

fn quiet(_: Progress) {}

/// A capture in the source cluster, objects only.
async fn capture_in_source(
    w: &World,
    id: &str,
    selection: Selection,
    operation: Option<&str>,
) -> Result<ferry_protocol::event::CaptureReport, SpokeError> {
    let source = Source {
        cluster: &w.source,
        name: "source",
        operation,
        mover: None,
        cancel: &Cancellation::default(),
    };
    capture(
        source,
        w.repo.clone(),
        &capture_command(id, selection),
        &quiet,
    )
    .await
}

fn selection(ns: &str) -> Selection {
    Selection {
        namespaces: vec![ns.into()],
        ..Default::default()
    }
}

fn capture_command(id: &str, selection: Selection) -> CaptureCommand {
    CaptureCommand {
        restore_point: id.into(),
        selection,
        hooks: Vec::new(),
        volume_data: false,
    }
}

fn restore_command(id: &str, rules: Value) -> RestoreCommand {
    RestoreCommand {
        restore_point: id.into(),
        transforms: serde_json::from_value(rules).unwrap(),
        existing: ExistingPolicy::Skip,
        dry_run: false,
        volume_data: false,
        wait_timeout_seconds: 20,
    }
}

fn shop() -> Vec<Value> {
    // The reference application, with its web tier as plain objects rather than a Helm release.
    let mut app = vec![ferry_e2e::reference::storage_class(
        ferry_e2e::reference::SOURCE_CLASS,
    )];
    app.extend(ferry_e2e::reference::objects());
    app.push(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web-config", "namespace": "shop"},
        "data": {"DATABASE_HOST": "db.shop.svc.cluster.local"}}));
    app.push(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "registry.eu.example.com/shop/web:1.4",
                                                       "envFrom": [{"configMapRef": {"name": "web-config"}}]}]}}}}));
    app.push(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}));
    app.push(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "web", "namespace": "shop"}}));
    app.push(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "shop-reader"}, "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}));
    app.push(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "shop-reader"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "shop-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "web", "namespace": "shop"}]}));
    app.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "elsewhere"}}));
    app.push(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "unrelated", "namespace": "elsewhere"}, "data": {"a": "b"}}));
    for o in &mut app {
        // No PostgreSQL runs in these clusters (no process kubelet), so its hooks could not.
        if o["kind"] == "StatefulSet" {
            o["spec"]["template"]["metadata"]
                .as_object_mut()
                .unwrap()
                .remove("annotations");
        }
        if o["kind"] == "Deployment" {
            o["spec"]["template"]["spec"]["serviceAccountName"] = json!("web");
        }
    }
    app
}

fn rules() -> Value {
    json!({"transforms": [
        {"namespace": {"from": "shop", "to": "shop-dr"}},
        {"imageRegistry": {"from": "registry.eu.example.com", "to": "registry.us.example.com"}}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_moves_with_its_dependencies_and_transforms() {
    let w = world().await;
    create_all(&w.source, &shop()).await;
    let report = capture_in_source(&w, "rp-1", selection("shop"), Some("op-1"))
        .await
        .unwrap();
    let kinds = &report.kinds;
    // web and the Cache operator (no operator runs here: its pod never reconciles).
    assert_eq!(kinds["Deployment.apps"], 2, "{kinds:?}");
    assert_eq!(kinds["Cache.example.com"], 1, "{kinds:?}");
    // Dependencies outside the namespace: the CRD, the cluster roles and their bindings (the
    // test's shop-reader and the operator's).
    assert_eq!(
        kinds["CustomResourceDefinition.apiextensions.k8s.io"], 1,
        "{kinds:?}"
    );
    assert_eq!(
        kinds["ClusterRoleBinding.rbac.authorization.k8s.io"], 2,
        "{kinds:?}"
    );
    assert_eq!(
        kinds["ClusterRole.rbac.authorization.k8s.io"], 2,
        "{kinds:?}"
    );
    assert!(
        !kinds.contains_key("ConfigMap") || kinds["ConfigMap"] == 3,
        "web-config, db-init and kube-root-ca.crt: {kinds:?}"
    );
    let (manifest, objects) = ferry_spoke::restore_point::read(w.repo.clone(), "rp-1")
        .await
        .unwrap();
    assert_eq!(manifest.source.cluster, "source");
    assert_eq!(manifest.operation.as_deref(), Some("op-1"));
    assert!(
        objects
            .iter()
            .all(|o| o["metadata"]["namespace"] != "elsewhere"
                && o["metadata"]["name"] != "elsewhere")
    );
    assert!(objects
        .iter()
        .all(|o| o["metadata"].get("managedFields").is_none()));
    let crd = manifest
        .objects
        .iter()
        .find(|e| e.object.kind == "CustomResourceDefinition")
        .unwrap();
    assert!(crd.reason.contains("defines"), "{}", crd.reason);

    // A redelivered capture reports the same restore point and writes nothing new.
    let snapshots = w.repo.snapshots().await.unwrap().len();
    let again = capture_in_source(&w, "rp-1", selection("shop"), Some("op-1"))
        .await
        .unwrap();
    assert_eq!(again.restore_point.snapshot, report.restore_point.snapshot);
    assert_eq!(w.repo.snapshots().await.unwrap().len(), snapshots);

    // Dry run: a plan, and nothing in the target.
    let mut dry = restore_command("rp-1", rules());
    dry.dry_run = true;
    let plan = restore(
        &w.target,
        w.repo.clone(),
        &dry,
        None,
        &Cancellation::default(),
        &quiet,
    )
    .await
    .unwrap();
    assert!(plan.dry_run && plan.created > 5, "{plan:?}");
    assert!(get(&w.target, "v1", "Namespace", None, "shop-dr")
        .await
        .is_none());
    let omitted: Vec<_> = plan
        .objects
        .iter()
        .filter(|o| o.action == ObjectAction::Omit)
        .collect();
    assert!(
        omitted.iter().any(|o| o.object.name == "kube-root-ca.crt"),
        "{omitted:?}"
    );

    let done = restore(
        &w.target,
        w.repo.clone(),
        &restore_command("rp-1", rules()),
        None,
        &Cancellation::default(),
        &quiet,
    )
    .await
    .unwrap();
    assert_eq!(done.created, plan.created, "{done:?}");
    let web = get(&w.target, "apps/v1", "Deployment", Some("shop-dr"), "web")
        .await
        .unwrap();
    assert_eq!(
        web["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.us.example.com/shop/web:1.4"
    );
    assert_eq!(
        web["metadata"]["annotations"][RESTORED_FROM_ANNOTATION],
        "rp-1"
    );
    let cache = get(&w.target, "example.com/v1", "Cache", Some("shop-dr"), "hot")
        .await
        .unwrap();
    assert_eq!(cache["spec"]["size"], 3);
    let crb = get(
        &w.target,
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
        None,
        "shop-reader",
    )
    .await
    .unwrap();
    assert_eq!(crb["subjects"][0]["namespace"], "shop-dr");
    assert!(get(&w.target, "v1", "Namespace", None, "shop")
        .await
        .is_none());

    // Redelivered: everything is recognised as already restored.
    let again = restore(
        &w.target,
        w.repo.clone(),
        &restore_command("rp-1", rules()),
        None,
        &Cancellation::default(),
        &quiet,
    )
    .await
    .unwrap();
    assert_eq!((again.created, again.updated), (0, 0), "{again:?}");
    let not_ours: Vec<_> = again
        .objects
        .iter()
        .filter(|o| o.action == ObjectAction::Skip && !o.reason.contains("already restored"))
        .map(|o| format!("{} {}", o.object.kind, o.object.name))
        .collect();
    // The claims' class (fast-eu, no storageClass rule here) came with the first restore.
    assert!(not_ours.is_empty(), "{not_ours:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_objects_follow_the_policy_and_bad_input_is_named() {
    let w = world().await;
    create_all(&w.source, &shop()).await;
    capture_in_source(&w, "rp-2", selection("shop"), None)
        .await
        .unwrap();
    // The target already has the namespace and a different web-config.
    create_all(&w.target, &[
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web-config", "namespace": "shop"}, "data": {"DATABASE_HOST": "local"}}),
    ]).await;
    let mut fail = restore_command("rp-2", json!({}));
    fail.existing = ExistingPolicy::Fail;
    let err = restore(
        &w.target,
        w.repo.clone(),
        &fail,
        None,
        &Cancellation::default(),
        &quiet,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, SpokeError::AlreadyExists { object } if object.kind == "Namespace"),
        "{err}"
    );
    // Failed before writing: the Deployment is not there.
    assert!(get(&w.target, "apps/v1", "Deployment", Some("shop"), "web")
        .await
        .is_none());

    let skip = restore(
        &w.target,
        w.repo.clone(),
        &restore_command("rp-2", json!({})),
        None,
        &Cancellation::default(),
        &quiet,
    )
    .await
    .unwrap();
    assert!(skip.skipped >= 2, "{skip:?}");
    let cm = get(&w.target, "v1", "ConfigMap", Some("shop"), "web-config")
        .await
        .unwrap();
    assert_eq!(cm["data"]["DATABASE_HOST"], "local", "skip leaves it");

    let mut update = restore_command("rp-2", json!({}));
    update.existing = ExistingPolicy::Update;
    restore(
        &w.target,
        w.repo.clone(),
        &update,
        None,
        &Cancellation::default(),
        &quiet,
    )
    .await
    .unwrap();
    let cm = get(&w.target, "v1", "ConfigMap", Some("shop"), "web-config")
        .await
        .unwrap();
    assert_eq!(
        cm["data"]["DATABASE_HOST"], "db.shop.svc.cluster.local",
        "update replaces it"
    );

    // Bad input: each names its field.
    let bad = Selection {
        namespaces: vec!["Not_A_Namespace".into()],
        ..Default::default()
    };
    let err = capture_in_source(&w, "rp-x", bad, None).await.unwrap_err();
    assert!(
        err.to_string().starts_with("selection.namespaces[0]:"),
        "{err}"
    );
    let bad = Selection {
        namespaces: vec!["shop".into()],
        label_selector: Some("app in (web".into()),
        ..Default::default()
    };
    let err = capture_in_source(&w, "rp-x", bad, None).await.unwrap_err();
    assert!(
        err.to_string().starts_with("selection.labelSelector:"),
        "{err}"
    );
    let bad = Selection {
        namespaces: vec!["shop".into()],
        exclude_resources: vec!["deploymentz".into()],
        ..Default::default()
    };
    let err = capture_in_source(&w, "rp-x", bad, None).await.unwrap_err();
    assert!(
        err.to_string().contains("selection.excludeResources[0]"),
        "{err}"
    );
    let err = capture_in_source(&w, "rp-x", selection("nowhere"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, SpokeError::NotFound { .. }) && err.to_string().contains("namespace nowhere"),
        "{err}"
    );
    let err = restore(&w.target, w.repo.clone(), &restore_command("rp-2", json!({"transforms": [{"patch": {"ops": [{"op": "replace", "path": "no-slash", "value": 1}]}}]})), None, &Cancellation::default(), &quiet)
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("transforms:"), "{err}");
    let err = restore(
        &w.target,
        w.repo.clone(),
        &restore_command("rp-none", json!({})),
        None,
        &Cancellation::default(),
        &quiet,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, SpokeError::NotFound { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_selector_takes_matching_objects_and_what_they_need() {
    let w = world().await;
    create_all(&w.source, &shop()).await;
    let sel = Selection {
        namespaces: vec!["shop".into()],
        label_selector: Some("app=web".into()),
        ..Default::default()
    };
    let report = capture_in_source(&w, "rp-3", sel, None).await.unwrap();
    let (manifest, _) = ferry_spoke::restore_point::read(w.repo.clone(), "rp-3")
        .await
        .unwrap();
    let names: Vec<String> = manifest
        .objects
        .iter()
        .map(|e| format!("{} {}", e.object.kind, e.object.name))
        .collect();
    assert!(names.contains(&"Deployment web".to_string()), "{names:?}");
    assert!(
        names.contains(&"ConfigMap web-config".to_string()),
        "envFrom: {names:?}"
    );
    assert!(
        names.contains(&"ServiceAccount web".to_string()),
        "{names:?}"
    );
    assert!(!names.contains(&"StatefulSet db".to_string()), "{names:?}");
    assert!(
        !names.contains(&"Secret db-credentials".to_string()),
        "{names:?}"
    );
    let cm = manifest
        .objects
        .iter()
        .find(|e| e.object.name == "web-config")
        .unwrap();
    assert!(cm.reason.starts_with("needed by"), "{}", cm.reason);
    assert!(report.restore_point.objects as usize == manifest.objects.len());
}

/// A restore point whose objects do not match its manifest is refused, naming the object, before
/// anything is written to the target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_restore_point_is_named_and_nothing_is_written() {
    use ferry_protocol::restore_point::{
        Manifest, ObjectEntry, SourceCluster, MANIFEST_FILE, MANIFEST_TAG, OBJECTS_FILE,
    };
    use ferry_repository::backup::archive::ArchiveWriter;
    use ferry_repository::backup::BackupOptions;
    let w = world().await;
    let objects = [
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tampered"}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "tampered"}, "data": {"a": "1"}}),
    ];
    let mut lines = Vec::new();
    let mut entries = Vec::new();
    for o in &objects {
        let mut line = serde_json::to_vec(o).unwrap();
        line.push(b'\n');
        entries.push(ObjectEntry {
            object: ferry_protocol::ObjectRef::from_object(o).unwrap(),
            reason: "selected".into(),
            bytes: line.len() as u64,
            blake3: blake3::hash(&line).to_hex().to_string(),
        });
        lines.extend_from_slice(&line);
    }
    // The ConfigMap's data was changed after the manifest was written.
    let altered = String::from_utf8(lines)
        .unwrap()
        .replace("\"a\":\"1\"", "\"a\":\"2\"");
    let manifest = Manifest {
        format: 1,
        id: "rp-bad".into(),
        created: "2026-12-04T10:00:00Z".into(),
        consistent_at: None,
        source: SourceCluster {
            cluster: "source".into(),
            kubernetes_version: "v1.33.0".into(),
            ferry_version: "0.1.0".into(),
        },
        selection: selection("tampered"),
        operation: None,
        hooks: vec![],
        objects: entries,
        volumes: vec![],
        skipped: vec![],
    };
    let options = BackupOptions {
        tags: vec![
            ferry_spoke::restore_point::id_tag("rp-bad"),
            MANIFEST_TAG.into(),
        ],
        ..Default::default()
    };
    let mut a = ArchiveWriter::begin(w.repo.clone(), "restore-point/rp-bad", options)
        .await
        .unwrap();
    a.start_file(OBJECTS_FILE).await.unwrap();
    a.write(altered.as_bytes()).await.unwrap();
    a.start_file(MANIFEST_FILE).await.unwrap();
    a.write(&serde_json::to_vec(&manifest).unwrap())
        .await
        .unwrap();
    a.finish().await.unwrap();

    let err = restore(
        &w.target,
        w.repo.clone(),
        &restore_command("rp-bad", json!({})),
        None,
        &Cancellation::default(),
        &quiet,
    )
    .await
    .unwrap_err();
    match &err {
        SpokeError::Damaged {
            object: Some(o), ..
        } => assert_eq!(o.name, "settings", "{err}"),
        other => panic!("not a damage error: {other}"),
    }
    assert!(
        err.to_string()
            .contains("differ from what the manifest recorded"),
        "{err}"
    );
    assert_eq!(
        err.to_failure().reason,
        ferry_protocol::event::FailureReason::Repository
    );
    assert!(
        get(&w.target, "v1", "Namespace", None, "tampered")
            .await
            .is_none(),
        "nothing written"
    );
}

/// Objects go into the restore point as they are read: a namespace larger than several list
/// pages is taken whole and in order, a ServiceAccount reached only as a dependency still brings
/// the cluster role binding that grants to it, and a capture that fails after objects were
/// written leaves no restore point and no lock behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_streams_its_objects_and_a_failed_one_leaves_nothing() {
    use ferry_repository::lock::{Lock, LockOptions};
    let w = world().await;
    let mut objects =
        vec![json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "many"}})];
    for i in 0..1234 {
        objects.push(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("cm-{i:04}"), "namespace": "many", "labels": {"tier": "bulk"}}, "data": {"i": i.to_string()}}));
    }
    objects.push(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "late", "namespace": "many"}}));
    objects.push(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "late-admin"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "late-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "late", "namespace": "many"}]}));
    objects.push(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "late-admin"}, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}));
    // The selector takes the pod, not its account: that account is only a dependency.
    objects.push(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "worker", "namespace": "many", "labels": {"tier": "bulk"}},
        "spec": {"serviceAccountName": "late", "containers": [{"name": "w", "image": "busybox"}]}}));
    create_all(&w.source, &objects).await;

    let bulk = Selection {
        namespaces: vec!["many".into()],
        label_selector: Some("tier=bulk".into()),
        ..Default::default()
    };
    let report = capture_in_source(&w, "rp-many", bulk, None).await.unwrap();
    let (manifest, read) = ferry_spoke::restore_point::read(w.repo.clone(), "rp-many")
        .await
        .unwrap();
    assert_eq!(report.restore_point.objects as usize, read.len());
    assert_eq!(
        report.kinds.get("ConfigMap"),
        Some(&1234),
        "{:?}",
        report.kinds
    );
    let names: Vec<String> = read
        .iter()
        .filter(|o| o["kind"] == "ConfigMap")
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    let expected: Vec<String> = (0..1234).map(|i| format!("cm-{i:04}")).collect();
    assert_eq!(names, expected, "every ConfigMap once, in list order");
    let reason = |kind: &str, name: &str| {
        manifest
            .objects
            .iter()
            .find(|e| e.object.kind == kind && e.object.name == name)
            .map(|e| e.reason.clone())
    };
    assert_eq!(
        reason("ServiceAccount", "late").as_deref(),
        Some("needed by v1 Pod many/worker")
    );
    assert_eq!(
        reason("ClusterRoleBinding", "late-admin").as_deref(),
        Some("grants to a captured ServiceAccount")
    );
    assert!(reason("ClusterRole", "late-admin").is_some());

    // A Helm release that does not exist fails the capture after the namespace was written.
    let missing = Selection {
        namespaces: vec!["many".into()],
        helm_release: Some(ferry_protocol::selection::HelmReleaseSelector {
            name: "absent".into(),
            namespace: "many".into(),
        }),
        ..Default::default()
    };
    let err = capture_in_source(&w, "rp-failed", missing, None)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("Helm release many/absent"),
        "{err}"
    );
    assert!(ferry_spoke::restore_point::find(&w.repo, "rp-failed")
        .await
        .unwrap()
        .is_none());
    // Its shared lock is gone: prune could start now rather than after the lock's lifetime.
    let lock = Lock::exclusive(w.repo.backend(), "prune", LockOptions::default())
        .await
        .expect("no lock left behind");
    lock.release().await.unwrap();
}

/// The spoke waits for snapshots, mover pods and readiness gates with a watch on the one object,
/// and by reading it again when the type cannot be watched: both see a change made while they
/// wait, a missing object, and give up at the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_sees_changes_by_watch_and_by_reads() {
    use std::time::Duration;
    let w = world().await;
    create_all(
        &w.source,
        &[
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "waits"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "w", "namespace": "waits"}, "data": {"state": "before"}}),
        ],
    )
    .await;
    let map = ResourceMap::new(&w.source.discover().await.unwrap());
    let watchable = map.get("", "ConfigMap").unwrap().clone();
    assert!(watchable.supports("watch"));
    let mut unwatchable = watchable.clone();
    unwatchable.verbs.retain(|v| v != "watch");
    let object = ferry_protocol::ObjectRef::from_object(
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "w", "namespace": "waits"}}),
    )
    .unwrap();
    for (r, state) in [(&watchable, "watched"), (&unwatchable, "read")] {
        let changer = {
            let (cluster, r, object) = (w.source.clone(), r.clone(), object.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                cluster
                    .merge_patch(&r, &object, &json!({"data": {"state": state}}))
                    .await
                    .unwrap();
            })
        };
        let seen = w
            .source
            .watch_until(r, Some("waits"), "w", Duration::from_secs(10), |o| {
                let s = o?.pointer("/data/state")?.as_str()?;
                (s == state).then(|| s.to_string())
            })
            .await
            .unwrap();
        assert_eq!(seen.as_deref(), Some(state));
        changer.await.unwrap();

        let absent = w
            .source
            .watch_until(r, Some("waits"), "none", Duration::from_secs(10), |o| {
                o.is_none().then_some(())
            })
            .await
            .unwrap();
        assert_eq!(absent, Some(()), "a missing object is seen as missing");
        let started = std::time::Instant::now();
        let never = w
            .source
            .watch_until(r, Some("waits"), "w", Duration::from_millis(400), |o| {
                (o?.pointer("/data/state")? == "never").then_some(())
            })
            .await
            .unwrap();
        assert_eq!(never, None);
        assert!(started.elapsed() >= Duration::from_millis(400));
    }
}
