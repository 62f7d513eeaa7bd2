//! `ferry-e2e bench-app`: an application shaped like a production one — 538 objects: 106 pods
//! (from 76 Deployments), 92 Secrets, 87 Services, 70 cert-manager-style Certificates (custom
//! resources), 36 ConfigMaps, 16 claims with their volumes, and 55 others (ServiceAccounts,
//! Roles, RoleBindings, Ingresses, NetworkPolicies, ReplicaSets) — migrated without volume data
//! through the real hub, spokes and CLI, several times; it prints each run's capture, transform
//! and rehydrate times (docs/benchmarks.md). Same environment as the demo.

use crate::harness::ferry::Fleet;
use crate::harness::kubectl;
use crate::harness::Environment;
use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The objects, before the cluster adds ReplicaSets, Pods and bound volumes.
pub fn production_like() -> Vec<Value> {
    let ns = "prod";
    let mut out = vec![json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})];
    out.push(json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "certificates.cert-manager.io"},
        "spec": {"group": "cert-manager.io", "scope": "Namespaced",
                 "names": {"plural": "certificates", "singular": "certificate", "kind": "Certificate"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                               "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}}));
    for i in 0..36 {
        out.push(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("config-{i}"), "namespace": ns},
            "data": {"app.properties": format!("service.name=svc-{i}\nlog.level=info\nupstream=http://svc-{}.prod.svc.cluster.local\n", (i + 1) % 87)}}));
    }
    for i in 0..92 {
        out.push(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("secret-{i}"), "namespace": ns},
            "type": "Opaque", "stringData": {"password": format!("not-a-real-secret-{i}")}}));
    }
    for i in 0..10 {
        out.push(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": format!("sa-{i}"), "namespace": ns}}));
        out.push(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": format!("role-{i}"), "namespace": ns},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]}));
        out.push(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": format!("binding-{i}"), "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": format!("role-{i}")},
            "subjects": [{"kind": "ServiceAccount", "name": format!("sa-{i}"), "namespace": ns}]}));
    }
    for i in 0..87 {
        out.push(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": format!("svc-{i}"), "namespace": ns},
            "spec": {"selector": {"app": format!("app-{}", i % 76)}, "ports": [{"port": 80, "targetPort": 8080}]}}));
    }
    // 76 Deployments, 106 replicas in all: 30 of them run two.
    for i in 0..76 {
        let replicas = if i < 30 { 2 } else { 1 };
        let mut containers = json!([{"name": "app", "image": format!("registry.eu.example.com/prod/app-{i}:1.{i}"),
            "envFrom": [{"configMapRef": {"name": format!("config-{}", i % 36)}}],
            "env": [{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": format!("secret-{}", i % 92), "key": "password"}}}]}]);
        let mut volumes = json!([]);
        if i < 16 {
            containers[0]["volumeMounts"] = json!([{"name": "data", "mountPath": "/data"}]);
            volumes = json!([{"name": "data", "persistentVolumeClaim": {"claimName": format!("data-{i}")}}]);
            out.push(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": format!("data-{i}"), "namespace": ns},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}));
        }
        out.push(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": format!("app-{i}"), "namespace": ns, "labels": {"app": format!("app-{i}")}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": format!("app-{i}")}},
                     "template": {"metadata": {"labels": {"app": format!("app-{i}")}},
                                  "spec": {"serviceAccountName": format!("sa-{}", i % 10), "containers": containers, "volumes": volumes}}}}));
    }
    for i in 0..70 {
        out.push(json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": format!("cert-{i}"), "namespace": ns},
            "spec": {"secretName": format!("secret-{}", i % 92), "dnsNames": [format!("svc-{}.example.com", i)], "issuerRef": {"name": "letsencrypt", "kind": "ClusterIssuer"}}}));
    }
    for i in 0..10 {
        out.push(json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": format!("ingress-{i}"), "namespace": ns},
            "spec": {"rules": [{"host": format!("app-{i}.example.com"), "http": {"paths": [{"path": "/", "pathType": "Prefix",
                     "backend": {"service": {"name": format!("svc-{i}"), "port": {"number": 80}}}}]}}]}}));
    }
    out
}

pub fn run(env: &Environment, runs: usize) -> anyhow::Result<()> {
    let source = env.cluster("source").context("no source cluster")?;
    let objects = production_like();
    let file = env.dir.join("production-like.yaml");
    let text: Vec<String> = objects
        .iter()
        .map(|o| serde_json::to_string(o).unwrap_or_default())
        .collect();
    std::fs::write(&file, text.join("\n---\n"))?;
    let path = file.display().to_string();
    // Twice: the Certificates need their CRD established first, as on a real cluster.
    let _ = kubectl(&source.kubeconfig, &["apply", "-f", &path]);
    kubectl(&source.kubeconfig, &["apply", "-f", &path])?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pods = kubectl(
            &source.kubeconfig,
            &["get", "pods", "-n", "prod", "-o", "name"],
        )?;
        if pods.lines().count() >= 106 {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {} pods after 60 s", pods.lines().count());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let fleet = Fleet::start(env).context("starting Ferry")?;
    println!(
        "run  objects  capture(ms)  transform(ms)  plan(ms)  apply(ms)  operation(ms)  cli(ms)"
    );
    for run in 0..runs {
        let rules = env.dir.join(format!("rules-{run}.yaml"));
        std::fs::write(&rules, format!("transforms:\n  - namespace: {{ from: prod, to: prod-{run} }}\n  - imageRegistry: {{ from: registry.eu.example.com, to: registry.us.example.com }}\n"))?;
        let started = Instant::now();
        let out = fleet.migrate("prod", &rules, &["--no-volume-data", "-o", "json"]);
        let cli_ms = started.elapsed().as_millis();
        if !out.status.success() {
            bail!(
                "migration {run} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let op: Value = serde_json::from_slice(&out.stdout)?;
        let phase = |step: usize, kind: &str, name: &str| -> u64 {
            op["steps"][step]["output"][kind]["phases"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["phase"] == name)
                .filter_map(|p| p["millis"].as_u64())
                .sum()
        };
        let ms = |a: &Value, b: &Value| -> i64 {
            match (
                a.as_str()
                    .and_then(|a| chrono::DateTime::parse_from_rfc3339(a).ok()),
                b.as_str()
                    .and_then(|b| chrono::DateTime::parse_from_rfc3339(b).ok()),
            ) {
                (Some(a), Some(b)) => (b - a).num_milliseconds(),
                _ => -1,
            }
        };
        println!(
            "{run:>3}  {:>7}  {:>11}  {:>13}  {:>8}  {:>9}  {:>13}  {cli_ms:>7}",
            op["steps"][0]["output"]["captured"]["restorePoint"]["objects"],
            phase(0, "captured", "discover") + phase(0, "captured", "write"),
            phase(1, "restored", "transform"),
            phase(1, "restored", "plan"),
            phase(1, "restored", "apply") + phase(1, "restored", "owners"),
            ms(&op["created"], &op["updated"]),
        );
    }
    Ok(())
}
