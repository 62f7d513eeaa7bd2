//! The reference application: what the migration tests and the demo move from "source" to
//! "target". In namespace `shop`, images from `registry.eu.example.com`, claims on `fast-eu`:
//!
//! - `web`, a Helm release of the chart in `reference/web` (Deployment, Service, ConfigMap,
//!   Secret, Ingress), installed by the real Helm library, so its release records are Helm's own;
//! - `db`, a StatefulSet running real PostgreSQL (`images/postgres.sh` on the process kubelet)
//!   as user 999, its data on a claim, loaded with known rows by an init script from a ConfigMap
//!   plus one row written after it started; its hooks checkpoint before the snapshot;
//! - the Cache operator (Deployment, ServiceAccount, RBAC), its CRD, and a `Cache` that the
//!   operator reconciles into a StatefulSet with a claim, a Service and a ConfigMap.
//!
//! [`RULES`] moves it to namespace `shop-dr`, class `standard-us` and `registry.us.example.com`.

use crate::apiserver::controllers::PROVISIONER;
use crate::apiserver::kubelet::ImageProgram;
use crate::harness::process::ProcessError;
use crate::harness::{kubectl, Environment};
use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const NAMESPACE: &str = "shop";
pub const TARGET_NAMESPACE: &str = "shop-dr";
pub const SOURCE_CLASS: &str = "fast-eu";
pub const TARGET_CLASS: &str = "standard-us";
pub const WEB_RELEASE: &str = "web";
/// PostgreSQL's user in the pod (`runAsUser`), as in the official image.
pub const POSTGRES_UID: u32 = 999;
/// A file the Cache's own volume holds, to check that it arrives byte for byte.
pub const CACHE_DUMP: &str = "dump.rdb";

/// The transform rules of the migration.
pub const RULES: &str = "transforms:
  - namespace: { from: shop, to: shop-dr }
  - storageClass: { from: fast-eu, to: standard-us }
  - imageRegistry:
      from: registry.eu.example.com
      to: registry.us.example.com
      # The Cache operator's resources name their image here.
      customPaths: [{ group: example.com, kind: Cache, paths: [/spec/image] }]
  - name: cache-storage-class
    patch:
      match: { group: example.com, kind: Cache }
      ops: [{ op: replace, path: /spec/storageClassName, value: standard-us }]
";

/// The rows `db` starts with; [`deploy`] adds order 1001 once PostgreSQL runs.
const INIT_SQL: &str =
    "CREATE TABLE orders (id integer PRIMARY KEY, item text NOT NULL, cents integer NOT NULL);
INSERT INTO orders SELECT i, 'item-' || i, (i * 7919) % 100000 FROM generate_series(1, 1000) AS i;
";

/// One line that changes if any row of `orders` does.
pub const ORDERS_DIGEST_SQL: &str = "SELECT count(*) || ' ' || sum(cents) || ' ' || md5(string_agg(id || ':' || item || ':' || cents, ',' ORDER BY id)) FROM orders";

/// The programs the process kubelet runs for the application's images and Ferry's movers.
pub fn image_programs() -> Result<Vec<ImageProgram>, ProcessError> {
    Ok(vec![
        crate::harness::ferry::mover_program()?,
        crate::harness::ferry::operator_program()?,
        ImageProgram {
            image: "*/postgres:*".into(),
            program: Path::new(env!("CARGO_MANIFEST_DIR")).join("images/postgres.sh"),
        },
    ])
}

pub fn web_chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("reference/web")
}

/// A StorageClass of the stand-in's local-path provisioner, as a cluster's admin makes one.
pub fn storage_class(name: &str) -> Value {
    json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": name},
           "provisioner": PROVISIONER, "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate",
           "allowVolumeExpansion": true})
}

/// Everything but the Helm release, as `kubectl apply` takes it.
pub fn objects() -> Vec<Value> {
    vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}),
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
               "metadata": {"name": "caches.example.com"},
               "spec": {"group": "example.com", "scope": "Namespaced",
                        "names": {"plural": "caches", "singular": "cache", "kind": "Cache"},
                        "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                                      "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                                      "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}]}]}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db-credentials", "namespace": NAMESPACE},
               "type": "Opaque", "stringData": {"password": "demo-only"}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "db-init", "namespace": NAMESPACE},
               "data": {"01-orders.sql": INIT_SQL}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db", "namespace": NAMESPACE, "labels": {"app": "db"}},
               "spec": {"clusterIP": "None", "selector": {"app": "db"}, "ports": [{"name": "postgres", "port": 5432}]}}),
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": NAMESPACE, "labels": {"app": "db"}},
               "spec": {"replicas": 1, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                        // The pre hook checkpoints (everything committed is in the data files when
                        // the snapshot is taken) and leaves a mark on the volume; the post hook,
                        // after the snapshot, removes the mark.
                        "template": {"metadata": {"labels": {"app": "db"}, "annotations": {
                                         "pre.hook.backup.ferry.dev/command": "[\"/bin/sh\", \"-c\", \"psql -h /var/run/postgresql -U postgres -d shop -v ON_ERROR_STOP=1 -c CHECKPOINT && date -u > /var/lib/postgresql/data/ferry-checkpoint\"]",
                                         "pre.hook.backup.ferry.dev/container": "postgres",
                                         "pre.hook.backup.ferry.dev/timeout": "60s",
                                         "post.hook.backup.ferry.dev/command": "[\"/bin/sh\", \"-c\", \"rm -f /var/lib/postgresql/data/ferry-checkpoint\"]",
                                         "post.hook.backup.ferry.dev/container": "postgres"}},
                                     "spec": {"securityContext": {"runAsUser": POSTGRES_UID, "runAsGroup": POSTGRES_UID, "fsGroup": POSTGRES_UID,
                                                                  "fsGroupChangePolicy": "OnRootMismatch"},
                                              "containers": [{"name": "postgres", "image": "registry.eu.example.com/shop/postgres:15",
                                                              "ports": [{"name": "postgres", "containerPort": 5432}],
                                                              "env": [{"name": "POSTGRES_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db-credentials", "key": "password"}}},
                                                                      {"name": "POSTGRES_DB", "value": "shop"},
                                                                      {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"}],
                                                              "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"},
                                                                               {"name": "run", "mountPath": "/var/run/postgresql"},
                                                                               {"name": "init", "mountPath": "/docker-entrypoint-initdb.d"}]}],
                                              "volumes": [{"name": "run", "emptyDir": {}},
                                                          {"name": "init", "configMap": {"name": "db-init"}}]}},
                        "volumeClaimTemplates": [{"metadata": {"name": "data"},
                                                  "spec": {"storageClassName": SOURCE_CLASS, "accessModes": ["ReadWriteOnce"],
                                                           "resources": {"requests": {"storage": "1Gi"}}}}]}}),
        // The Cache operator: its identity, what it may write, and its Deployment. Ferry's restore
        // order sees from the RBAC that it serves example.com and starts it before the Cache.
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "cache-operator", "namespace": NAMESPACE}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "cache-operator"},
               "rules": [{"apiGroups": ["example.com"], "resources": ["caches", "caches/status"], "verbs": ["get", "list", "watch", "update", "patch"]},
                         {"apiGroups": [""], "resources": ["configmaps", "services"], "verbs": ["get", "list", "watch", "create", "update", "patch"]},
                         {"apiGroups": ["apps"], "resources": ["statefulsets"], "verbs": ["get", "list", "watch", "create", "update", "patch"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "cache-operator"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cache-operator"},
               "subjects": [{"kind": "ServiceAccount", "name": "cache-operator", "namespace": NAMESPACE}]}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "cache-operator", "namespace": NAMESPACE, "labels": {"app": "cache-operator"}},
               "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "cache-operator"}},
                        "template": {"metadata": {"labels": {"app": "cache-operator"}},
                                     "spec": {"serviceAccountName": "cache-operator",
                                              "containers": [{"name": "manager", "image": "registry.eu.example.com/shop/cache-operator:1.0"}]}}}}),
        json!({"apiVersion": "example.com/v1", "kind": "Cache", "metadata": {"name": "hot", "namespace": NAMESPACE},
               "spec": {"size": 3, "image": "registry.eu.example.com/shop/cache:2", "storageClassName": SOURCE_CLASS}}),
    ]
}

/// Writes `objects` as one YAML stream (JSON documents) and applies it with kubectl.
pub fn apply(
    kubeconfig: &Path,
    dir: &Path,
    name: &str,
    objects: &[Value],
) -> anyhow::Result<String> {
    let manifest = objects
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n---\n");
    let file = dir.join(name);
    std::fs::write(&file, manifest).with_context(|| format!("writing {}", file.display()))?;
    kubectl(kubeconfig, &["apply", "-f", &file.display().to_string()])
}

/// Deploys the application into "source" (and the target's storage class, as the target's
/// admin would have it), waits until it runs, and writes data as the application would.
pub fn deploy(env: &Environment) -> anyhow::Result<()> {
    let source = env.cluster("source").context("no source cluster")?;
    if let Some(target) = env.cluster("target") {
        apply(
            &target.kubeconfig,
            &env.dir,
            "target-storage.yaml",
            &[storage_class(TARGET_CLASS)],
        )?;
    }
    println!(
        "\n-- deploying the reference application into source (kubectl apply, helm install) --"
    );
    let mut all = vec![storage_class(SOURCE_CLASS)];
    all.extend(objects());
    // The CRD must be established before its Cache can be mapped, as on a real cluster.
    let _ = apply(&source.kubeconfig, &env.dir, "reference-app.yaml", &all);
    print!(
        "{}",
        apply(&source.kubeconfig, &env.dir, "reference-app.yaml", &all)?
    );
    let release = crate::helm::run(
        &source.kubeconfig,
        NAMESPACE,
        &["install", WEB_RELEASE, &web_chart().display().to_string()],
    )?;
    println!(
        "helm release {WEB_RELEASE}: {} (revision {})",
        release["info"]["status"].as_str().unwrap_or("?"),
        release["version"]
    );
    wait_ready(
        &source.kubeconfig,
        NAMESPACE,
        &["hot-cache", "db", "web", "cache-operator"],
    )?;
    let digest = orders_digest(&source.kubeconfig, NAMESPACE, Duration::from_secs(60))?;
    // A row written while the application runs, so the migration must carry live data.
    psql(
        &source.kubeconfig,
        NAMESPACE,
        "INSERT INTO orders VALUES (1001, 'placed-after-start', 4200)",
    )?;
    println!("db: orders loaded ({digest}), order 1001 written since");
    let cache_volume = volume_path(&source.kubeconfig, NAMESPACE, "data-hot-cache-0")?;
    std::fs::write(cache_volume.join(CACHE_DUMP), cache_dump())
        .context("writing the cache's data")?;
    Ok(())
}

/// The Cache's data: 256 KiB that a copy cannot get right by accident.
pub fn cache_dump() -> Vec<u8> {
    (0u32..64 * 1024)
        .flat_map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes())
        .collect()
}

/// Waits until each named Deployment or StatefulSet has all its replicas ready.
pub fn wait_ready(kubeconfig: &Path, namespace: &str, names: &[&str]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = kubectl(
            kubeconfig,
            &[
                "get",
                "deploy,sts",
                "-n",
                namespace,
                "-o",
                "jsonpath={range .items[*]}{.metadata.name}={.status.readyReplicas}/{.spec.replicas} {end}",
            ],
        )?;
        let done = names.iter().all(|name| {
            ready.split_whitespace().any(|w| {
                w.split_once('=').is_some_and(|(n, counts)| {
                    n == *name && counts.split_once('/').is_some_and(|(a, b)| a == b)
                })
            })
        });
        if done {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{namespace}: not ready after 60 s: {ready:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs SQL in `db-0` through `kubectl exec` and psql, as an operator would; psql's output.
pub fn psql(kubeconfig: &Path, namespace: &str, sql: &str) -> anyhow::Result<String> {
    let out = kubectl(
        kubeconfig,
        &[
            "exec",
            "-n",
            namespace,
            "db-0",
            "-c",
            "postgres",
            "--",
            "psql",
            "-h",
            "/var/run/postgresql",
            "-U",
            "postgres",
            "-d",
            "shop",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ],
    )?;
    Ok(out.trim().to_string())
}

/// [`ORDERS_DIGEST_SQL`]'s answer, once PostgreSQL answers (it may still be starting).
pub fn orders_digest(kubeconfig: &Path, namespace: &str, wait: Duration) -> anyhow::Result<String> {
    let deadline = Instant::now() + wait;
    loop {
        match psql(kubeconfig, namespace, ORDERS_DIGEST_SQL) {
            Ok(digest) if !digest.is_empty() => return Ok(digest),
            Ok(_) => {}
            Err(e) if Instant::now() > deadline => {
                let log =
                    kubectl(kubeconfig, &["logs", "-n", namespace, "db-0"]).unwrap_or_default();
                return Err(e.context(format!(
                    "PostgreSQL in {namespace} did not answer; its log:\n{log}"
                )));
            }
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Where a claim's data lives on this machine (the stand-in's local-path volumes).
pub fn volume_path(kubeconfig: &Path, namespace: &str, claim: &str) -> anyhow::Result<PathBuf> {
    let pv = kubectl(
        kubeconfig,
        &[
            "get",
            "pvc",
            claim,
            "-n",
            namespace,
            "-o",
            "jsonpath={.spec.volumeName}",
        ],
    )?;
    let path = kubectl(
        kubeconfig,
        &["get", "pv", &pv, "-o", "jsonpath={.spec.hostPath.path}"],
    )?;
    Ok(PathBuf::from(path))
}
