#!/usr/bin/env python3
"""Writes N objects (default 100,000) as multi-document YAML (one JSON document each, which is
YAML) and the rules of the transform bench, for `ferry transform` at restore-point scale
(docs/benchmarks.md). The mix matches transform/benches/transform.rs.

Usage: gen_objects.py OUT_DIR [N]"""
import json
import os
import sys

out_dir = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
os.makedirs(out_dir, exist_ok=True)
objects = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"app-{ns}", "uid": f"ns-{ns}"}}
           for ns in range(100)]
i = 0
while len(objects) < n:
    ns, name, kind = f"app-{i % 100}", f"svc-{i}", i % 7
    if kind == 0:
        o = {"apiVersion": "apps/v1", "kind": "Deployment",
             "metadata": {"name": name, "namespace": ns, "uid": f"d-{i}", "resourceVersion": "1",
                          "labels": {"tier": "web"}},
             "spec": {"replicas": 2, "template": {"spec": {
                 "serviceAccountName": f"sa-{i - i % 7 + 4}",
                 "containers": [{"name": "app", "image": f"registry.eu.example.com/team/app-{i}:1.0",
                                 "envFrom": [{"configMapRef": {"name": f"cm-{i + 6}"}}],
                                 "env": [{"name": "DB", "value": f"db.{ns}.svc.cluster.local"}]}],
                 "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": f"pvc-{i + 2}"}}]}}},
             "status": {"replicas": 2}}
    elif kind == 1:
        o = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
             "spec": {"clusterIP": "10.0.0.1", "ports": [{"port": 80}]}}
    elif kind == 2:
        o = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
             "metadata": {"name": f"pvc-{i}", "namespace": ns},
             "spec": {"storageClassName": "gp2", "volumeName": f"pv-{i}"}}
    elif kind == 3:
        o = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns},
             "data": {"k": "dmFsdWU="}}
    elif kind == 4:
        o = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": f"sa-{i}", "namespace": ns}}
    elif kind == 5:
        o = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": name, "namespace": ns},
             "roleRef": {"kind": "ClusterRole", "name": "view"},
             "subjects": [{"kind": "ServiceAccount", "name": f"sa-{i - 1}", "namespace": ns}]}
    else:
        o = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cm-{i}", "namespace": ns},
             "data": {"config": "x" * 200}}
    objects.append(o)
    i += 1
with open(os.path.join(out_dir, "objects.yaml"), "w") as f:
    for o in objects:
        f.write("---\n" + json.dumps(o) + "\n")
with open(os.path.join(out_dir, "rules.yaml"), "w") as f:
    f.write("""transforms:
  - storageClass: { from: gp2, to: premium-rwo }
  - namespace: { from: app-7, to: app-7-dr, rewriteDns: true }
  - imageRegistry: { from: registry.eu.example.com, to: registry.us.example.com }
  - patch:
      match: { group: apps, kind: Deployment, labelSelector: "tier=web" }
      ops: [{ op: replace, path: /spec/replicas, value: 0 }]
  - exclude: { kind: ConfigMap, name: "cm-1?" }
""")
