//! Restore order: a dependency graph over the objects of a restore point, sorted so that
//! everything an object needs exists (and is ready) before it is created.
//!
//! Each object gets a phase from its kind (CRDs, namespaces, cluster configuration, identity and
//! RBAC, configuration, storage, operators, custom resources, services, workloads, routing,
//! admission webhooks) and edges from what it names (its namespace, its CRD, the service
//! account, ConfigMaps, Secrets and claims its pods use, the roles a binding grants, the volume
//! a claim is bound to, the Services an Ingress routes to, and for custom resources the operator
//! that reconciles them in their namespace and the Service and workloads of their CRD's
//! conversion webhook). The sort is Kahn's algorithm with the phase and the object's name as
//! tie-breaker, so the same input always gives the same order; a cycle is broken at its
//! smallest object and reported.

mod node;
mod operators;

use crate::rules::Pointer;
use crate::rules::{kind_of, pod_spec_pointer};
use ferry_protocol::ObjectRef;
use node::Detail;
pub use node::Node;
use operators::{conversion_backends, operators};
use serde::Serialize;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Phase {
    CustomResourceDefinitions,
    Namespaces,
    ClusterConfiguration,
    IdentityAndRbac,
    Configuration,
    Storage,
    Operators,
    CustomResources,
    Services,
    Workloads,
    Routing,
    AdmissionWebhooks,
}

/// What the restoring spoke waits for after creating an object, before its dependents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ReadinessGate {
    /// CRD condition `Established`.
    Established,
    /// Namespace phase `Active`.
    Active,
    /// PVC phase `Bound`.
    Bound,
    /// `availableReplicas` (Deployments) or `readyReplicas` (StatefulSets) reach `replicas`;
    /// DaemonSets: `numberReady` reaches `desiredNumberScheduled`.
    Available,
}

impl ReadinessGate {
    /// Whether the object as read back from the target cluster passes the gate.
    pub fn passed(self, obj: &Value) -> bool {
        let int = |p: &str| obj.ptr(p).and_then(Value::as_i64);
        match self {
            ReadinessGate::Established => obj
                .ptr("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Established" && c["status"] == "True")
                }),
            ReadinessGate::Active => {
                obj.ptr("/status/phase").and_then(Value::as_str) == Some("Active")
            }
            ReadinessGate::Bound => {
                obj.ptr("/status/phase").and_then(Value::as_str) == Some("Bound")
            }
            ReadinessGate::Available => match kind_of(obj) {
                "DaemonSet" => int("/status/numberReady") >= int("/status/desiredNumberScheduled"),
                "StatefulSet" => {
                    int("/status/readyReplicas").unwrap_or(0) >= int("/spec/replicas").unwrap_or(1)
                }
                _ => {
                    int("/status/availableReplicas").unwrap_or(0)
                        >= int("/spec/replicas").unwrap_or(1)
                }
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub object: ObjectRef,
    pub phase: Phase,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate: Option<ReadinessGate>,
    /// Why the object is where it is: its phase and each object it waits for.
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreOrder {
    /// Indices into the input, in restore order, with their explanation.
    pub steps: Vec<(usize, Step)>,
    /// Cycles that had to be broken, in words.
    pub broken_cycles: Vec<String>,
}

impl RestoreOrder {
    /// `explain` output: one line per object, with its reasons.
    pub fn explain(&self) -> String {
        let mut out = Vec::new();
        self.write_explain(&mut out)
            .expect("writing to a Vec does not fail");
        String::from_utf8(out).expect("explain writes text")
    }

    /// `explain`, written line by line: the explanation of 100,000 steps is not held whole.
    pub fn write_explain(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        for (n, (_, step)) in self.steps.iter().enumerate() {
            write!(out, "{:>4}. {}", n + 1, step.object)?;
            if let Some(g) = step.gate {
                write!(out, " [wait: {g:?}]")?;
            }
            writeln!(out)?;
            for r in &step.reasons {
                writeln!(out, "        {r}")?;
            }
        }
        for c in &self.broken_cycles {
            writeln!(out, "cycle broken: {c}")?;
        }
        Ok(())
    }
}

fn phase_of(node: &Node, is_operator: bool, custom_kinds: &BTreeSet<(&str, &str)>) -> Phase {
    let (group, kind) = (node.group(), node.kind());
    if custom_kinds.contains(&(group, kind)) {
        return Phase::CustomResources;
    }
    if is_operator {
        return Phase::Operators;
    }
    match (group, kind) {
        ("apiextensions.k8s.io", "CustomResourceDefinition") => Phase::CustomResourceDefinitions,
        ("", "Namespace") => Phase::Namespaces,
        ("storage.k8s.io", _)
        | ("scheduling.k8s.io", _)
        | ("networking.k8s.io", "IngressClass")
        | ("snapshot.storage.k8s.io", "VolumeSnapshotClass") => Phase::ClusterConfiguration,
        ("", "ServiceAccount") | ("rbac.authorization.k8s.io", _) => Phase::IdentityAndRbac,
        ("", "ConfigMap" | "Secret" | "LimitRange" | "ResourceQuota" | "PodTemplate") => {
            Phase::Configuration
        }
        ("", "PersistentVolume" | "PersistentVolumeClaim") | ("snapshot.storage.k8s.io", _) => {
            Phase::Storage
        }
        ("", "Service") => Phase::Services,
        ("networking.k8s.io", _) | ("autoscaling", _) | ("policy", _) => Phase::Routing,
        ("admissionregistration.k8s.io", _) | ("apiregistration.k8s.io", _) => {
            Phase::AdmissionWebhooks
        }
        _ if pod_spec_pointer(group, kind).is_some() => Phase::Workloads,
        // Unknown kinds of known groups (and custom kinds whose CRD is not in the set) go with
        // custom resources: after configuration and operators, before workloads.
        _ => Phase::CustomResources,
    }
}

fn gate_of(node: &Node, phase: Phase) -> Option<ReadinessGate> {
    match (node.group(), node.kind()) {
        ("apiextensions.k8s.io", "CustomResourceDefinition") => Some(ReadinessGate::Established),
        ("", "Namespace") => Some(ReadinessGate::Active),
        ("", "PersistentVolumeClaim") => Some(ReadinessGate::Bound),
        ("apps", "Deployment" | "StatefulSet" | "DaemonSet") if phase == Phase::Operators => {
            Some(ReadinessGate::Available)
        }
        _ => None,
    }
}

/// Objects by (group, kind, namespace, name), borrowing the keys: lookups allocate nothing.
type Index<'a> = HashMap<(&'a str, &'a str, &'a str, &'a str), usize>;

fn lookup<'a>(
    index: &'a Index<'a>,
    group: &'a str,
    kind: &'a str,
    ns: &'a str,
    name: &'a str,
) -> Option<&'a usize> {
    index.get(&(group, kind, ns, name))
}

/// The nodes of `objects`, read in parallel.
pub fn nodes(objects: &[Value]) -> Vec<Node> {
    use rayon::prelude::*;
    objects.par_iter().map(Node::of).collect()
}

/// The workloads among `objects` (Deployments, StatefulSets, DaemonSets) that run as operators
/// of API group `group` in `namespace`: their service account is bound to a role that may write
/// that group, cluster-wide or in that namespace. Indices into `objects`.
pub fn operators_of(objects: &[Value], group: &str, namespace: &str) -> Vec<usize> {
    operators_among(&nodes(objects), group, namespace)
}

/// As [`operators_of`], on nodes (for callers that read each object into its node as it
/// arrives); indices into `nodes`.
pub fn operators_among(nodes: &[Node], group: &str, namespace: &str) -> Vec<usize> {
    let groups = BTreeSet::from([group.to_string()]);
    let mut found: Vec<usize> = operators::operators(nodes, &groups)
        .into_iter()
        .filter(|(_, served)| {
            served
                .iter()
                .any(|(g, scope)| g == group && scope.as_deref().is_none_or(|s| s == namespace))
        })
        .map(|(i, _)| i)
        .collect();
    found.sort_unstable();
    found
}

/// Computes the restore order of `objects`.
pub fn restore_order(objects: &[Value]) -> RestoreOrder {
    order_nodes(&nodes(objects))
}

/// The restore order of the objects these nodes were read from; step indices are positions in
/// `nodes`.
pub fn order_nodes<'a>(nodes: &'a [Node]) -> RestoreOrder {
    let key = |i: usize| {
        let n = &nodes[i];
        (n.group(), n.kind(), n.namespace(), n.name())
    };
    let index: Index = (0..nodes.len()).map(|i| (key(i), i)).collect();
    let mut custom_kinds: BTreeSet<(&str, &str)> = BTreeSet::new();
    let mut crd_of_kind: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        if let Detail::CustomResourceDefinition { group, kind, .. } = &n.detail {
            custom_kinds.insert((group, kind));
            crd_of_kind.insert((group, kind), i);
        }
    }
    let crd_groups: BTreeSet<String> = custom_kinds.iter().map(|(g, _)| g.to_string()).collect();
    let operators = operators(nodes, &crd_groups);
    // Operators by (group, scope), so each custom resource finds its own in constant time.
    let mut operators_of: HashMap<(&str, Option<&str>), Vec<usize>> = HashMap::new();
    for (op, groups) in &operators {
        for (g, scope) in groups {
            operators_of
                .entry((g.as_str(), scope.as_deref()))
                .or_default()
                .push(*op);
        }
    }
    for ops in operators_of.values_mut() {
        ops.sort_unstable();
    }
    let backends = conversion_backends(nodes, &index);
    let webhook_workloads: BTreeSet<usize> = backends
        .values()
        .flatten()
        .copied()
        .filter(|&j| nodes[j].group() == "apps")
        .collect();
    let phases: Vec<Phase> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let serves_crds = operators.contains_key(&i) || webhook_workloads.contains(&i);
            phase_of(n, serves_crds, &custom_kinds)
        })
        .collect();

    // deps[i] = (j, why): i waits for j. Reasons read from the nodes are borrowed, so each is
    // copied once, into its step.
    let mut deps: Vec<BTreeMap<usize, Cow<'a, str>>> = vec![BTreeMap::new(); nodes.len()];
    let mut add = |i: usize, j: Option<&usize>, why: Cow<'a, str>| {
        if let Some(&j) = j {
            if j != i {
                deps[i].entry(j).or_insert(why);
            }
        }
    };
    for (i, n) in nodes.iter().enumerate() {
        let (g, k, ns, _) = key(i);
        if !ns.is_empty() {
            add(
                i,
                lookup(&index, "", "Namespace", "", ns),
                format!("after Namespace {ns}, which contains it").into(),
            );
        }
        if let Some(crd) = crd_of_kind.get(&(g, k)) {
            add(
                i,
                Some(crd),
                format!("after the CustomResourceDefinition of {k}.{g}").into(),
            );
            for &j in backends.get(crd).into_iter().flatten() {
                let (_, bk, bns, bn) = key(j);
                add(
                    i,
                    Some(&j),
                    format!("after {bk} {bns}/{bn}, which serves its CRD's conversion webhook")
                        .into(),
                );
            }
        }
        for r in &n.references {
            add(
                i,
                lookup(&index, r.group, &r.kind, &r.namespace, &r.name),
                Cow::Borrowed(&r.reason),
            );
        }
        if phases[i] == Phase::CustomResources {
            let cluster_wide = operators_of.get(&(g, None));
            let here = operators_of.get(&(g, Some(ns)));
            for &op in cluster_wide.into_iter().chain(here).flatten() {
                let (_, ok, ons, on) = key(op);
                add(
                    i,
                    Some(&op),
                    format!(
                        "after its operator {ok} {ons}/{on}, which must be ready to reconcile it"
                    )
                    .into(),
                );
            }
        }
    }
    // Among objects whose waits are all met, the earliest phase goes first: phases order what
    // the edges leave open, while the explanations stay about real references.
    // Ranked once, so the sort compares integers rather than four strings per step.
    let mut by_key: Vec<usize> = (0..nodes.len()).collect();
    by_key.sort_unstable_by(|&a, &b| (phases[a], key(a), a).cmp(&(phases[b], key(b), b)));
    let mut rank = vec![0usize; nodes.len()];
    for (r, &i) in by_key.iter().enumerate() {
        rank[i] = r;
    }
    let (sorted, broken) = toposort(&rank, &deps);
    let mut order = RestoreOrder::default();
    let describe = |j: usize| nodes[j].object.to_string();
    for (i, skipped) in broken {
        let waits: Vec<String> = skipped.into_iter().map(describe).collect();
        order.broken_cycles.push(format!(
            "{} created before {}",
            describe(i),
            waits.join(", ")
        ));
    }
    order.steps.reserve(sorted.len());
    for next in sorted {
        let n = &nodes[next];
        let mut reasons = vec![format!("phase: {:?}", phases[next])];
        reasons.extend(
            std::mem::take(&mut deps[next])
                .into_values()
                .map(Cow::into_owned),
        );
        order.steps.push((
            next,
            Step {
                object: n.object.clone(),
                phase: phases[next],
                gate: gate_of(n, phases[next]),
                reasons,
            },
        ));
    }
    order
}

/// Kahn's algorithm, taking the smallest ready key each time; when only cycles remain, the
/// smallest waiting node goes next and the waits it skips are returned with it.
fn toposort<K: Ord + Clone, W>(
    keys: &[K],
    deps: &[BTreeMap<usize, W>],
) -> (Vec<usize>, Vec<(usize, Vec<usize>)>) {
    let n = keys.len();
    let mut remaining: Vec<usize> = deps.iter().map(BTreeMap::len).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, d) in deps.iter().enumerate() {
        for &j in d.keys() {
            dependents[j].push(i);
        }
    }
    let mut ready: BTreeSet<(K, usize)> = (0..n)
        .filter(|&i| remaining[i] == 0)
        .map(|i| (keys[i].clone(), i))
        .collect();
    let mut done = vec![false; n];
    let (mut sorted, mut broken) = (Vec::with_capacity(n), Vec::new());
    while sorted.len() < n {
        let next = match ready.pop_first() {
            Some((_, i)) => i,
            None => {
                let i = (0..n)
                    .filter(|&i| !done[i])
                    .min_by(|&a, &b| keys[a].cmp(&keys[b]))
                    .expect("nodes remain");
                broken.push((i, deps[i].keys().copied().filter(|&j| !done[j]).collect()));
                i
            }
        };
        if done[next] {
            continue;
        }
        done[next] = true;
        sorted.push(next);
        for &d in &dependents[next] {
            remaining[d] = remaining[d].saturating_sub(1);
            if remaining[d] == 0 && !done[d] {
                ready.insert((keys[d].clone(), d));
            }
        }
    }
    (sorted, broken)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn app() -> Vec<Value> {
        vec![
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web", "namespace": "shop"},
                   "spec": {"rules": [{"http": {"paths": [{"backend": {"service": {"name": "web"}}}]}}]}}),
            json!({"apiVersion": "example.com/v1", "kind": "Cache", "metadata": {"name": "hot", "namespace": "shop"}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"},
                   "spec": {"template": {"spec": {"serviceAccountName": "web",
                       "containers": [{"envFrom": [{"configMapRef": {"name": "web-config"}}]}],
                       "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}}}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop"}}),
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": "shop"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web-config", "namespace": "shop"}}),
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "web", "namespace": "shop"}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "cache-operator", "namespace": "shop"},
                   "spec": {"template": {"spec": {"serviceAccountName": "operator", "containers": [{}]}}}}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "operator"},
                   "roleRef": {"kind": "ClusterRole", "name": "cache-manager"},
                   "subjects": [{"kind": "ServiceAccount", "name": "operator", "namespace": "shop"}]}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "cache-manager"},
                   "rules": [{"apiGroups": ["example.com"], "resources": ["caches"], "verbs": ["*"]}]}),
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "operator", "namespace": "shop"}}),
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "caches.example.com"},
                   "spec": {"group": "example.com", "names": {"kind": "Cache", "plural": "caches"}}}),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
        ]
    }

    fn position(order: &RestoreOrder, kind: &str, name: &str) -> usize {
        order
            .steps
            .iter()
            .position(|(_, s)| s.object.kind == kind && s.object.name == name)
            .unwrap()
    }

    #[test]
    fn dependencies_come_first() {
        let objects = app();
        let order = restore_order(&objects);
        assert_eq!(order.steps.len(), objects.len());
        assert!(order.broken_cycles.is_empty());
        let p = |k: &str, n: &str| position(&order, k, n);
        assert_eq!(p("CustomResourceDefinition", "caches.example.com"), 0);
        assert_eq!(p("Namespace", "shop"), 1);
        assert!(p("ServiceAccount", "web") < p("Deployment", "web"));
        assert!(p("ConfigMap", "web-config") < p("Deployment", "web"));
        assert!(p("PersistentVolumeClaim", "data") < p("Deployment", "web"));
        assert!(p("ClusterRole", "cache-manager") < p("ClusterRoleBinding", "operator"));
        assert!(
            p("Deployment", "cache-operator") < p("Cache", "hot"),
            "operator before its custom resources"
        );
        assert!(p("Cache", "hot") < p("Deployment", "web"));
        assert!(p("Service", "web") < p("Ingress", "web"));
        let op = &order.steps[p("Deployment", "cache-operator")].1;
        assert_eq!(op.phase, Phase::Operators);
        assert_eq!(op.gate, Some(ReadinessGate::Available));
        let cache = &order.steps[p("Cache", "hot")].1;
        assert!(
            cache
                .reasons
                .iter()
                .any(|r| r.contains("operator apps/v1 Deployment")
                    || r.contains("its operator Deployment shop/cache-operator")),
            "{:?}",
            cache.reasons
        );
        let explain = order.explain();
        assert!(
            explain.contains("[wait: Bound]") && explain.contains("which its pods use"),
            "{explain}"
        );
    }

    #[test]
    fn deterministic_whatever_the_input_order() {
        let objects = app();
        let names = |o: &[Value]| -> Vec<String> {
            restore_order(o)
                .steps
                .iter()
                .map(|(_, s)| s.object.to_string())
                .collect()
        };
        let expected = names(&objects);
        let mut reversed = objects.clone();
        reversed.reverse();
        assert_eq!(names(&reversed), expected);
        let mut rotated = objects.clone();
        rotated.rotate_left(5);
        assert_eq!(names(&rotated), expected);
    }

    #[test]
    fn cycles_are_broken_predictably_and_reported() {
        // Well-formed objects give no cycles through the edges above; the sort must still
        // finish, deterministically, on any graph.
        let dep = |pairs: &[(usize, &str)]| -> BTreeMap<usize, String> {
            pairs.iter().map(|(j, w)| (*j, w.to_string())).collect()
        };
        let keys = ["c", "a", "b", "d"];
        // a(1) → b(2) → c(0) → a(1) is a cycle; d(3) waits for c.
        let deps = vec![
            dep(&[(1, "c waits a")]),
            dep(&[(2, "a waits b")]),
            dep(&[(0, "b waits c")]),
            dep(&[(0, "")]),
        ];
        let (sorted, broken) = toposort(&keys, &deps);
        assert_eq!(
            sorted,
            [1, 0, 2, 3],
            "a breaks the cycle (smallest key); c waited only for a; then b and d"
        );
        assert_eq!(broken, [(1, vec![2])]);
        assert_eq!(toposort(&keys, &deps), (sorted, broken));
    }

    #[test]
    fn gates() {
        let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                         "status": {"conditions": [{"type": "Established", "status": "True"}]}});
        assert!(ReadinessGate::Established.passed(&crd));
        let dep = json!({"kind": "Deployment", "spec": {"replicas": 2}, "status": {"availableReplicas": 1}});
        assert!(!ReadinessGate::Available.passed(&dep));
        let dep = json!({"kind": "Deployment", "spec": {"replicas": 2}, "status": {"availableReplicas": 2}});
        assert!(ReadinessGate::Available.passed(&dep));
        assert!(ReadinessGate::Bound.passed(&json!({"status": {"phase": "Bound"}})));
    }
}
