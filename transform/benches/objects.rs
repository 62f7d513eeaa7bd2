//! The objects and rules of the transform benchmarks, shared by the criterion bench
//! (`benches/transform.rs`) and the restore-point-scale generator (`examples/gen_objects.rs`).

use serde_json::{json, Value};

/// `n` objects over 100 namespaces: per namespace a Deployment, a Service, a PVC, a Secret,
/// a ServiceAccount, a RoleBinding and filler ConfigMaps.
pub fn objects(n: usize) -> Vec<Value> {
    let mut out = Vec::with_capacity(n);
    let namespaces = 100;
    for ns in 0..namespaces {
        out.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": format!("app-{ns}"), "uid": format!("ns-{ns}")}}));
    }
    let mut i = 0;
    while out.len() < n {
        let ns = format!("app-{}", i % namespaces);
        let name = format!("svc-{i}");
        let obj = match i % 7 {
            0 => json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "namespace": ns, "uid": format!("d-{i}"), "resourceVersion": "1", "labels": {"tier": "web"}},
                "spec": {"replicas": 2, "template": {"spec": {"serviceAccountName": format!("sa-{}", i - i % 7 + 4),
                    "containers": [{"name": "app", "image": format!("registry.eu.example.com/team/app-{i}:1.0"),
                                    "envFrom": [{"configMapRef": {"name": format!("cm-{}", i + 6)}}],
                                    "env": [{"name": "DB", "value": format!("db.{ns}.svc.cluster.local")}]}],
                    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": format!("pvc-{}", i + 2)}}]}}},
                "status": {"replicas": 2}}),
            1 => {
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
                "spec": {"clusterIP": "10.0.0.1", "ports": [{"port": 80}]}})
            }
            2 => {
                json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": format!("pvc-{i}"), "namespace": ns},
                "spec": {"storageClassName": "gp2", "volumeName": format!("pv-{i}")}})
            }
            3 => {
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns}, "data": {"k": "dmFsdWU="}})
            }
            4 => {
                json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": format!("sa-{i}"), "namespace": ns}})
            }
            5 => {
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": name, "namespace": ns},
                "roleRef": {"kind": "ClusterRole", "name": "view"}, "subjects": [{"kind": "ServiceAccount", "name": format!("sa-{}", i - 1), "namespace": ns}]})
            }
            _ => {
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm-{i}"), "namespace": ns},
                "data": {"config": "x".repeat(200)}})
            }
        };
        out.push(obj);
        i += 1;
    }
    out
}

pub const RULES: &str = r#"
transforms:
  - storageClass: { from: gp2, to: premium-rwo }
  - namespace: { from: app-7, to: app-7-dr, rewriteDns: true }
  - imageRegistry: { from: registry.eu.example.com, to: registry.us.example.com }
  - patch:
      match: { group: apps, kind: Deployment, labelSelector: "tier=web" }
      ops: [{ op: replace, path: /spec/replicas, value: 0 }]
  - exclude: { kind: ConfigMap, name: "cm-1?" }
"#;
