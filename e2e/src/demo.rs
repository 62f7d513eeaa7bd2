//! The README's demo: the environment, a sample application in "source", both clusters shown
//! through kubectl. Ferry's hub and spokes take over from here as they land: the migration step
//! is added to this demo by the hub/spoke migration work.

use crate::harness::Environment;
use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::path::Path;
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
                        "template": {"metadata": {"labels": {"app": "db"}},
                                     "spec": {"containers": [{"name": "db", "image": "registry.eu.example.com/shop/db:15",
                                                              "volumeMounts": [{"name": "data", "mountPath": "/var/lib/db"}]}]}},
                        "volumeClaimTemplates": [{"metadata": {"name": "data"},
                                                  "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}}),
        json!({"apiVersion": "example.com/v1", "kind": "Cache", "metadata": {"name": "hot", "namespace": "shop"},
               "spec": {"size": 3, "image": "registry.eu.example.com/shop/cache:2"}}),
    ]
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> anyhow::Result<String> {
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

pub fn run(env: &Environment) -> anyhow::Result<()> {
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
                "jsonpath={.items[*].status.readyReplicas}",
            ],
        )?;
        if ready.split_whitespace().collect::<Vec<_>>() == ["2", "1"] {
            break;
        }
        if Instant::now() > deadline {
            bail!("the sample application did not become ready: ready replicas {ready:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Put data on the database's volume, as the application would.
    let pv = kubectl(
        &source.kubeconfig,
        &[
            "get",
            "pvc",
            "data-db-0",
            "-n",
            "shop",
            "-o",
            "jsonpath={.spec.volumeName}",
        ],
    )?;
    let path = kubectl(
        &source.kubeconfig,
        &["get", "pv", &pv, "-o", "jsonpath={.spec.hostPath.path}"],
    )?;
    std::fs::write(
        Path::new(&path).join("orders.db"),
        b"order-1001 paid\norder-1002 shipped\n",
    )
    .context("writing volume data")?;

    println!("\n-- source cluster --");
    print!(
        "{}",
        kubectl(&source.kubeconfig, &["get", "all,pvc,caches", "-n", "shop"])?
    );
    println!("volume data of data-db-0 in {path}");
    println!("\n-- target cluster --");
    print!("{}", kubectl(&target.kubeconfig, &["get", "namespaces"])?);
    println!("\nThe environment is real: NATS, the object store and both clusters answer the");
    println!(
        "clients Ferry uses. Migration through the hub and spokes joins this demo as it lands."
    );
    Ok(())
}
