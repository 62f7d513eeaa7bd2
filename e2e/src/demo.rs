//! The README's demo: the environment, a sample application in "source", Ferry's hub and a spoke
//! per cluster, and a migration of the application to "target" through `ferry migrate`, shown
//! through kubectl on both sides.

use crate::harness::ferry::Fleet;
use crate::harness::Environment;
use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The sample application: a namespace with a Deployment, a StatefulSet with a volume claim
/// template, a Service, a ConfigMap, a Secret and a custom resource of an operator's CRD.
pub fn sample_application() -> Vec<Value> {
    vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
               "metadata": {"name": "caches.example.com"},
               "spec": {"group": "example.com", "scope": "Namespaced",
                        "names": {"plural": "caches", "singular": "cache", "kind": "Cache"},
                        "versions": [{"name": "v1", "served": true, "storage": true,
                                      "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                                      "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}]}]}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web-config", "namespace": "shop"},
               "data": {"DATABASE_HOST": "db.shop.svc.cluster.local"}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db-credentials", "namespace": "shop"},
               "type": "Opaque", "stringData": {"password": "demo-only"}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
               "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                                     "spec": {"containers": [{"name": "web", "image": "registry.eu.example.com/shop/web:1.4",
                                                              "envFrom": [{"configMapRef": {"name": "web-config"}}]}]}}}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop"},
               "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}),
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": "shop", "labels": {"app": "db"}},
               "spec": {"replicas": 1, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                        // Hooks as an application declares them: the pre hook marks the data as
                        // checkpointed before the snapshot, the post hook clears the mark after.
                        "template": {"metadata": {"labels": {"app": "db"}, "annotations": {
                                         "pre.hook.backup.ferry.dev/command": "[\"/bin/sh\", \"-c\", \"echo checkpoint > /var/lib/db/checkpoint.marker\"]",
                                         "post.hook.backup.ferry.dev/command": "[\"/bin/sh\", \"-c\", \"rm /var/lib/db/checkpoint.marker\"]"}},
                                     "spec": {"containers": [{"name": "db", "image": "registry.eu.example.com/shop/db:15",
                                                              "volumeMounts": [{"name": "data", "mountPath": "/var/lib/db"}]}]}},
                        "volumeClaimTemplates": [{"metadata": {"name": "data"},
                                                  "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}}),
        // The Cache operator: its identity, what it may write, and its Deployment. Ferry's restore
        // order sees from the RBAC that it serves example.com and starts it before the Cache.
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "cache-operator", "namespace": "shop"}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "cache-operator"},
               "rules": [{"apiGroups": ["example.com"], "resources": ["caches", "caches/status"], "verbs": ["get", "list", "watch", "update", "patch"]},
                         {"apiGroups": [""], "resources": ["configmaps", "services"], "verbs": ["get", "list", "watch", "create", "update", "patch"]},
                         {"apiGroups": ["apps"], "resources": ["statefulsets"], "verbs": ["get", "list", "watch", "create", "update", "patch"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "cache-operator"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cache-operator"},
               "subjects": [{"kind": "ServiceAccount", "name": "cache-operator", "namespace": "shop"}]}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "cache-operator", "namespace": "shop", "labels": {"app": "cache-operator"}},
               "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "cache-operator"}},
                        "template": {"metadata": {"labels": {"app": "cache-operator"}},
                                     "spec": {"serviceAccountName": "cache-operator",
                                              "containers": [{"name": "manager", "image": "registry.eu.example.com/shop/cache-operator:1.0"}]}}}}),
        json!({"apiVersion": "example.com/v1", "kind": "Cache", "metadata": {"name": "hot", "namespace": "shop"},
               "spec": {"size": 3, "image": "registry.eu.example.com/shop/cache:2"}}),
    ]
}

pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("KUBECACHEDIR", kubeconfig.with_file_name("kubectl-cache"))
        .output()
        .context("running kubectl (is it installed?)")?;
    if !out.status.success() {
        bail!(
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// Applies the sample application to "source" with kubectl, waits until its workloads are
/// ready, and puts data on the database's volume as the application would.
pub fn deploy_sample(env: &Environment) -> anyhow::Result<()> {
    let source = env
        .cluster("source")
        .context("the environment has no source cluster")?;
    let manifest: String = sample_application()
        .iter()
        .map(|o| serde_json::to_string(o).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n---\n");
    let file = env.dir.join("sample-app.yaml");
    std::fs::write(&file, manifest).context("writing the sample application")?;
    println!("\n-- deploying the sample application into source with kubectl apply --");
    // The CRD must be established before its CR can be mapped, as on a real cluster.
    let _ = kubectl(
        &source.kubeconfig,
        &["apply", "-f", &file.display().to_string()],
    );
    print!(
        "{}",
        kubectl(
            &source.kubeconfig,
            &["apply", "-f", &file.display().to_string()]
        )?
    );

    // Ready: every Deployment and StatefulSet at its replicas, the operator's cache included.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = kubectl(
            &source.kubeconfig,
            &[
                "get",
                "deploy,sts",
                "-n",
                "shop",
                "-o",
                "jsonpath={range .items[*]}{.metadata.name}={.status.readyReplicas}/{.spec.replicas} {end}",
            ],
        )?;
        let all_ready = ready.split_whitespace().all(|w| {
            let (_, counts) = w.split_once('=').unwrap_or((w, ""));
            let (a, b) = counts.split_once('/').unwrap_or(("", "?"));
            a == b
        });
        if all_ready && ready.contains("hot-cache=") {
            break;
        }
        if Instant::now() > deadline {
            bail!("the sample application did not become ready: {ready:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Put data on the database's volume, as the application would.
    std::fs::write(
        volume_path(&source.kubeconfig, "shop", "data-db-0")?.join("orders.db"),
        b"order-1001 paid\norder-1002 shipped\n",
    )
    .context("writing volume data")?;

    Ok(())
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

/// The demo's transform rules: the namespace and the image registry change on the way.
pub const SAMPLE_RULES: &str = "transforms:
  - namespace: { from: shop, to: shop-dr }
  - imageRegistry:
      from: registry.eu.example.com
      to: registry.us.example.com
      # The Cache operator's resources name their image here.
      customPaths: [{ group: example.com, kind: Cache, paths: [/spec/image] }]
";

pub fn run(env: &Environment) -> anyhow::Result<Fleet> {
    let source = env
        .cluster("source")
        .context("the environment has no source cluster")?;
    let target = env
        .cluster("target")
        .context("the environment has no target cluster")?;
    println!("== Ferry demo ==");
    println!("NATS (JetStream):  {}", env.nats.url);
    println!("object store:      {}", env.store.url);
    println!(
        "source cluster:    {} (kubeconfig {})",
        source.server,
        source.kubeconfig.display()
    );
    println!(
        "target cluster:    {} (kubeconfig {})",
        target.server,
        target.kubeconfig.display()
    );

    deploy_sample(env)?;
    println!("\n-- source cluster --");
    print!(
        "{}",
        kubectl(&source.kubeconfig, &["get", "all,pvc,caches", "-n", "shop"])?
    );

    println!("\n-- starting ferry-hub and a ferry-spoke per cluster --");
    let started = Instant::now();
    let fleet = Fleet::start(env).context("starting Ferry's hub and spokes")?;
    println!(
        "hub and spokes up in {:.1} s (logs in {})",
        started.elapsed().as_secs_f64(),
        env.dir.display()
    );
    let clusters = fleet.ferry(&["clusters"]);
    print!("{}", String::from_utf8_lossy(&clusters.stdout));

    let rules = env.dir.join("rules.yaml");
    std::fs::write(&rules, SAMPLE_RULES).context("writing the transform rules")?;
    println!("\n-- ferry migrate --from source --to target -n shop --transforms rules.yaml --");
    print!("{SAMPLE_RULES}");
    let rules_arg = rules.display().to_string();
    let args = [
        "migrate",
        "--from",
        "source",
        "--to",
        "target",
        "-n",
        "shop",
        "--transforms",
        &rules_arg,
    ];
    let started = Instant::now();
    let out = fleet.ferry(&args);
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    print!("{}", String::from_utf8_lossy(&out.stdout));
    if !out.status.success() {
        bail!("the migration failed (logs in {})", env.dir.display());
    }
    println!(
        "migrated in {:.2} s end to end",
        started.elapsed().as_secs_f64()
    );

    println!("\n-- target cluster, namespace shop-dr --");
    print!(
        "{}",
        kubectl(
            &target.kubeconfig,
            &["get", "all,configmaps,secrets,caches", "-n", "shop-dr"]
        )?
    );
    let image = kubectl(
        &target.kubeconfig,
        &[
            "get",
            "deploy",
            "web",
            "-n",
            "shop-dr",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ],
    )?;
    println!("web's image in target: {image}");
    println!("\nLook for yourself (with --keep the environment stays up):");
    println!(
        "  KUBECONFIG={} kubectl get all -n shop-dr",
        target.kubeconfig.display()
    );
    println!(
        "  FERRY_NATS_URL={} {} backup list",
        env.nats.url,
        fleet.bin.join("ferry").display()
    );
    let restored = volume_path(&target.kubeconfig, "shop-dr", "data-db-0")?;
    let data = std::fs::read_to_string(restored.join("orders.db"))
        .context("reading the restored volume")?;
    println!(
        "data-db-0 in target ({}), moved by mover pods:\n{data}",
        restored.display()
    );
    Ok(fleet)
}
