#!/usr/bin/env bash
# The baseline Ferry's migration is measured against (docs/benchmarks.md): the same job done the
# way a careful operator would script it with kubectl, restic and kubectl apply.
#
#   baseline-migrate.sh SOURCE_KUBECONFIG TARGET_KUBECONFIG NAMESPACE TARGET_NAMESPACE WORKDIR
#
# 1. checkpoint the database (the same pre-hook Ferry runs);
# 2. export every namespaced object with `kubectl get -o yaml` (plus the CRD and the cluster
#    role and binding of the operator), drop what the cluster made (pods, replica sets, claims'
#    bound volumes, the operator's children) and server fields, rewrite namespace, storage class
#    and registry;
# 3. restic backup of each claim's data (on the stand-in a claim's data is a host directory,
#    which is also where a script on a node would find it);
# 4. kubectl apply the claims in the target, wait until bound, restic restore into each;
# 5. kubectl apply the rest and wait for the workloads.
set -euo pipefail
src=$1 dst=$2 ns=$3 to=$4 work=$5
export RESTIC_REPOSITORY="$work/restic" RESTIC_PASSWORD=baseline
mkdir -p "$work"
k() { local cfg=$1; shift; KUBECONFIG="$cfg" kubectl "$@"; }

k "$src" exec -n "$ns" db-0 -c postgres -- psql -h /var/run/postgresql -U postgres -d shop -c CHECKPOINT >/dev/null

types=$(k "$src" api-resources --namespaced --verbs=list,create -o name | grep -v -E '^(events|pods|replicasets.apps|endpoints|endpointslices.discovery.k8s.io|controllerrevisions.apps|events.events.k8s.io|leases.coordination.k8s.io)$' | paste -sd, -)
k "$src" get "$types" -n "$ns" -o yaml >"$work/objects.yaml"
k "$src" get crd caches.example.com -o yaml >"$work/cluster.yaml"
k "$src" get clusterrole,clusterrolebinding cache-operator -o yaml >>"$work/cluster.yaml"

python3 - "$work" "$ns" "$to" <<'PY'
import sys, yaml
work, ns, to = sys.argv[1:4]
def clean(o):
    m = o["metadata"]
    for f in ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields", "selfLink"):
        m.pop(f, None)
    (m.get("annotations") or {}).pop("kubectl.kubernetes.io/last-applied-configuration", None)
    o.pop("status", None)
    return o
docs = []
for path in ("objects.yaml", "cluster.yaml"):
    for o in yaml.safe_load(open(f"{work}/{path}"))["items"]:
        m = o["metadata"]
        if m.get("ownerReferences") or o["kind"] in ("ServiceAccount",) and m["name"] == "default":
            continue  # made again by the target's controllers and operator
        if o["kind"] == "ConfigMap" and m["name"] == "kube-root-ca.crt":
            continue
        if o["kind"] == "Service":
            o["spec"].pop("clusterIP", None); o["spec"].pop("clusterIPs", None)
        if o["kind"] == "PersistentVolumeClaim":
            o["spec"].pop("volumeName", None)
            (m.get("annotations") or {}).clear()
        docs.append(clean(o))
text = yaml.safe_dump_all(docs)
text = (text.replace(f"namespace: {ns}\n", f"namespace: {to}\n")
            .replace(f".{ns}.svc", f".{to}.svc")
            .replace("fast-eu", "standard-us")
            .replace("registry.eu.example.com", "registry.us.example.com"))
claims = [d for d in yaml.safe_load_all(text) if d["kind"] == "PersistentVolumeClaim"]
rest = [d for d in yaml.safe_load_all(text) if d["kind"] != "PersistentVolumeClaim"]
open(f"{work}/claims.yaml", "w").write(yaml.safe_dump_all(claims))
open(f"{work}/rest.yaml", "w").write(yaml.safe_dump_all(rest))
PY

restic init >/dev/null 2>&1 || true
claims=$(k "$src" get pvc -n "$ns" -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.spec.volumeName}{"\n"}{end}')
while read -r claim pv; do
  path=$(k "$src" get pv "$pv" -o jsonpath='{.spec.hostPath.path}')
  (cd "$path" && restic backup --quiet --tag "$claim" --host baseline .)
done <<<"$claims"

k "$dst" create namespace "$to" >/dev/null
k "$dst" apply -f "$work/claims.yaml" >/dev/null
while read -r claim _; do
  k "$dst" wait -n "$to" --for=jsonpath='{.status.phase}'=Bound "pvc/$claim" --timeout=60s >/dev/null
  pv=$(k "$dst" get pvc -n "$to" "$claim" -o jsonpath='{.spec.volumeName}')
  path=$(k "$dst" get pv "$pv" -o jsonpath='{.spec.hostPath.path}')
  restic restore --quiet latest --tag "$claim" --host baseline --target "$path"
done <<<"$claims"

k "$dst" apply -f "$work/rest.yaml" >/dev/null 2>&1 || k "$dst" apply -f "$work/rest.yaml" >/dev/null
k "$dst" wait -n "$to" --for=condition=Available deploy --all --timeout=60s >/dev/null
k "$dst" wait -n "$to" --for=jsonpath='{.status.readyReplicas}'=1 sts/db --timeout=60s >/dev/null
