//! Restore order around operators and conversion webhooks: who counts as an operator, where it
//! may act, what a CRD's conversion webhook needs first, and edges that stay linear in the
//! number of objects.

use ferry_transform::order::{restore_order, Phase, ReadinessGate, RestoreOrder};
use serde_json::{json, Value};

fn crd(webhook: Option<(&str, &str)>) -> Value {
    let mut crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "caches.example.com"},
        "spec": {"group": "example.com", "names": {"kind": "Cache", "plural": "caches"}}});
    if let Some((ns, name)) = webhook {
        crd["spec"]["conversion"] = json!({"strategy": "Webhook",
            "webhook": {"clientConfig": {"service": {"namespace": ns, "name": name}}}});
    }
    crd
}

fn cache(ns: &str) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Cache", "metadata": {"name": "hot", "namespace": ns}})
}

fn deployment(ns: &str, name: &str, sa: &str, labels: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
           "spec": {"template": {"metadata": {"labels": labels},
                                 "spec": {"serviceAccountName": sa, "containers": [{"name": "c", "image": "x"}]}}}})
}

fn role(kind: &str, ns: Option<&str>, name: &str, verbs: Value) -> Value {
    let mut r = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": {"name": name},
        "rules": [{"apiGroups": ["example.com"], "resources": ["caches"], "verbs": verbs}]});
    if let Some(ns) = ns {
        r["metadata"]["namespace"] = json!(ns);
    }
    r
}

fn binding(
    kind: &str,
    ns: Option<&str>,
    role_kind: &str,
    role: &str,
    sa_ns: &str,
    sa: &str,
) -> Value {
    let mut b = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": {"name": format!("{role}-{sa}")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": sa_ns}]});
    if let Some(ns) = ns {
        b["metadata"]["namespace"] = json!(ns);
    }
    b
}

fn step<'a>(
    order: &'a RestoreOrder,
    kind: &str,
    ns: &str,
    name: &str,
) -> (usize, &'a ferry_transform::order::Step) {
    order
        .steps
        .iter()
        .enumerate()
        .find(|(_, (_, s))| {
            s.object.kind == kind
                && s.object.name == name
                && s.object.namespace.as_deref().unwrap_or("") == ns
        })
        .map(|(i, (_, s))| (i, s))
        .unwrap_or_else(|| panic!("{kind} {ns}/{name} in\n{}", order.explain()))
}

#[test]
fn read_only_access_makes_no_operator() {
    let objects = vec![
        crd(None),
        cache("shop"),
        deployment("monitoring", "viewer", "viewer", json!({})),
        role(
            "ClusterRole",
            None,
            "cache-viewer",
            json!(["get", "list", "watch"]),
        ),
        binding(
            "ClusterRoleBinding",
            None,
            "ClusterRole",
            "cache-viewer",
            "monitoring",
            "viewer",
        ),
    ];
    let order = restore_order(&objects);
    let (_, viewer) = step(&order, "Deployment", "monitoring", "viewer");
    assert_eq!(viewer.phase, Phase::Workloads, "{}", order.explain());
    let (_, cache) = step(&order, "Cache", "shop", "hot");
    assert!(
        !cache.reasons.iter().any(|r| r.contains("operator")),
        "{:?}",
        cache.reasons
    );
}

#[test]
fn namespaced_operators_reconcile_only_their_namespace() {
    let objects = vec![
        crd(None),
        cache("a"),
        cache("b"),
        deployment("a", "op", "op", json!({})),
        role("Role", Some("a"), "manager", json!(["create", "update"])),
        binding("RoleBinding", Some("a"), "Role", "manager", "a", "op"),
    ];
    let order = restore_order(&objects);
    let (op_at, op) = step(&order, "Deployment", "a", "op");
    assert_eq!(
        (op.phase, op.gate),
        (Phase::Operators, Some(ReadinessGate::Available))
    );
    let (a_at, a) = step(&order, "Cache", "a", "hot");
    assert!(op_at < a_at);
    assert!(
        a.reasons
            .iter()
            .any(|r| r.contains("its operator Deployment a/op")),
        "{:?}",
        a.reasons
    );
    let (_, b) = step(&order, "Cache", "b", "hot");
    assert!(
        !b.reasons.iter().any(|r| r.contains("operator")),
        "{:?}",
        b.reasons
    );
}

#[test]
fn conversion_webhooks_serve_before_custom_resources() {
    let objects = vec![
        crd(Some(("system", "cache-webhook"))),
        cache("shop"),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "cache-webhook", "namespace": "system"},
               "spec": {"selector": {"app": "cache-webhook"}}}),
        deployment(
            "system",
            "cache-webhook",
            "default",
            json!({"app": "cache-webhook"}),
        ),
        deployment("system", "unrelated", "default", json!({"app": "other"})),
    ];
    let order = restore_order(&objects);
    let (svc_at, _) = step(&order, "Service", "system", "cache-webhook");
    let (dep_at, dep) = step(&order, "Deployment", "system", "cache-webhook");
    let (cr_at, cr) = step(&order, "Cache", "shop", "hot");
    assert!(svc_at < cr_at && dep_at < cr_at, "{}", order.explain());
    assert_eq!(
        dep.gate,
        Some(ReadinessGate::Available),
        "the webhook must be serving, not just created"
    );
    assert!(
        cr.reasons
            .iter()
            .any(|r| r.contains("which serves its CRD's conversion webhook")),
        "{:?}",
        cr.reasons
    );
    let (_, other) = step(&order, "Deployment", "system", "unrelated");
    assert_eq!(other.phase, Phase::Workloads);
}

#[test]
fn operator_edges_grow_with_objects_not_their_square() {
    // A wildcard role and an operator in each of 300 namespaces, each with 10 custom resources:
    // every custom resource waits for its own namespace's operator only.
    let mut objects = vec![crd(None)];
    for n in 0..300 {
        let ns = format!("ns-{n}");
        objects.push(deployment(&ns, "op", "op", json!({})));
        objects.push(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "all", "namespace": ns}, "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}));
        objects.push(binding("RoleBinding", Some(&ns), "Role", "all", &ns, "op"));
        for c in 0..10 {
            objects.push(json!({"apiVersion": "example.com/v1", "kind": "Cache", "metadata": {"name": format!("c{c}"), "namespace": ns}}));
        }
    }
    let order = restore_order(&objects);
    let operator_waits: usize = order
        .steps
        .iter()
        .map(|(_, s)| {
            s.reasons
                .iter()
                .filter(|r| r.contains("its operator"))
                .count()
        })
        .sum();
    assert_eq!(operator_waits, 300 * 10);
}
