//! Transforming and ordering 10 000 objects (issue 5's target: well under a second).
//! `cargo bench -p ferry-transform`; results in docs/benchmarks.md.

use criterion::{criterion_group, criterion_main, Criterion};
use ferry_transform::order::restore_order;
use ferry_transform::sanitize::SanitizeOptions;
use ferry_transform::{compile, parse_spec, Transformer};
use serde_json::{json, Value};
use std::hint::black_box;

/// 10 000 objects over 100 namespaces: per namespace a Deployment, a Service, a PVC, a Secret,
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

const RULES: &str = r#"
transforms:
  - storageClass: { from: gp2, to: premium-rwo }
  - namespace: { from: app-7, to: app-7-dr, rewriteDns: true }
  - imageRegistry: { from: registry.eu.example.com, to: registry.us.example.com }
  - patch:
      match: { group: apps, kind: Deployment, labelSelector: "tier=web" }
      ops: [{ op: replace, path: /spec/replicas, value: 0 }]
  - exclude: { kind: ConfigMap, name: "cm-1?" }
"#;

fn bench(c: &mut Criterion) {
    let input = objects(10_000);
    let rules = compile(&parse_spec(RULES).unwrap()).unwrap();
    let transformer = Transformer::new(rules, SanitizeOptions::default());
    let transformed: Vec<Value> = transformer
        .transform(&input)
        .unwrap()
        .objects
        .into_iter()
        .map(|o| o.object)
        .collect();
    let mut group = c.benchmark_group("10k objects");
    group.sample_size(10);
    group.bench_function("transform", |b| {
        b.iter(|| black_box(transformer.transform(black_box(&input)).unwrap()))
    });
    group.bench_function("restore order", |b| {
        b.iter(|| black_box(restore_order(black_box(&transformed))))
    });
    group.bench_function("transform + order", |b| {
        b.iter(|| {
            let out = transformer.transform(&input).unwrap();
            let objs: Vec<Value> = out.objects.into_iter().map(|o| o.object).collect();
            black_box(restore_order(&objs))
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
