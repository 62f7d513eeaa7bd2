//! Objects that must serve before custom resources can be restored: operators (found through
//! the RBAC that lets them write the custom kinds' groups) and conversion webhooks.

use super::{key_of, lookup, Index};
use crate::references::service_account_subjects;
use crate::rules::Pointer;
use crate::rules::{group_of, kind_of, strings_at};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};

/// Where an operator may act: everywhere (bound by a ClusterRoleBinding) or in one namespace.
pub(super) type Scope = Option<String>;

/// Verbs that let a controller change objects; read-only access makes no operator.
const WRITE_VERBS: [&str; 6] = [
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
    "*",
];

/// Which workloads run as operators of the custom kinds' groups: a workload whose service
/// account is bound to a role that may write those groups, with where the binding lets it act.
pub(super) fn operators(
    objects: &[Value],
    crd_groups: &BTreeSet<String>,
) -> HashMap<usize, BTreeSet<(String, Scope)>> {
    let mut role_groups: HashMap<(String, String, String), BTreeSet<String>> = HashMap::new();
    for o in objects {
        let (g, k) = (group_of(o), kind_of(o));
        if g == "rbac.authorization.k8s.io" && (k == "Role" || k == "ClusterRole") {
            let mut groups = BTreeSet::new();
            for rule in o
                .get("rules")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let writes = strings_at(rule, "/verbs/*")
                    .iter()
                    .any(|v| WRITE_VERBS.contains(&v.as_str()));
                if !writes {
                    continue;
                }
                for ag in strings_at(rule, "/apiGroups/*") {
                    if ag == "*" {
                        groups.extend(crd_groups.iter().cloned());
                    } else if crd_groups.contains(&ag) {
                        groups.insert(ag);
                    }
                }
            }
            if !groups.is_empty() {
                let (_, _, ns, name) = key_of(o);
                role_groups.insert((k.to_string(), ns, name), groups);
            }
        }
    }
    // Service account (namespace, name) → the groups it may manage, and where.
    let mut sa_groups: HashMap<(String, String), BTreeSet<(String, Scope)>> = HashMap::new();
    for o in objects {
        let k = kind_of(o);
        if group_of(o) != "rbac.authorization.k8s.io"
            || (k != "RoleBinding" && k != "ClusterRoleBinding")
        {
            continue;
        }
        let role_kind = o.ptr("/roleRef/kind").and_then(Value::as_str).unwrap_or("");
        let role_name = o.ptr("/roleRef/name").and_then(Value::as_str).unwrap_or("");
        let binding_ns = key_of(o).2;
        let role_ns = if role_kind == "Role" {
            binding_ns.clone()
        } else {
            String::new()
        };
        let Some(groups) =
            role_groups.get(&(role_kind.to_string(), role_ns, role_name.to_string()))
        else {
            continue;
        };
        let scope: Scope = (k == "RoleBinding").then_some(binding_ns);
        for sa in service_account_subjects(o) {
            sa_groups
                .entry(sa)
                .or_default()
                .extend(groups.iter().map(|g| (g.clone(), scope.clone())));
        }
    }
    let mut out = HashMap::new();
    for (i, o) in objects.iter().enumerate() {
        if !matches!(
            (group_of(o), kind_of(o)),
            ("apps", "Deployment" | "StatefulSet" | "DaemonSet")
        ) {
            continue;
        }
        let sa = o
            .ptr("/spec/template/spec/serviceAccountName")
            .and_then(Value::as_str)
            .unwrap_or("default");
        if let Some(groups) = sa_groups.get(&(key_of(o).2, sa.to_string())) {
            out.insert(i, groups.clone());
        }
    }
    out
}

/// For each CRD with a conversion webhook: the webhook's Service and the workloads behind it,
/// which must serve before any object of the CRD's kinds can be written.
pub(super) fn conversion_backends(objects: &[Value], index: &Index) -> HashMap<usize, Vec<usize>> {
    let mut out = HashMap::new();
    for (i, crd) in objects.iter().enumerate() {
        if (group_of(crd), kind_of(crd)) != ("apiextensions.k8s.io", "CustomResourceDefinition") {
            continue;
        }
        let at = |p: &str| {
            crd.ptr(&format!(
                "/spec/conversion/webhook/clientConfig/service/{p}"
            ))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
        };
        let (ns, name) = (at("namespace"), at("name"));
        let Some(&service) = lookup(index, "", "Service", &ns, &name) else {
            continue;
        };
        let mut backends = vec![service];
        if let Some(selector) = objects[service]
            .ptr("/spec/selector")
            .and_then(Value::as_object)
            .filter(|s| !s.is_empty())
        {
            for (j, w) in objects.iter().enumerate() {
                let labels = w.ptr("/spec/template/metadata/labels");
                let serves = group_of(w) == "apps"
                    && key_of(w).2 == ns
                    && selector
                        .iter()
                        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
                if serves {
                    backends.push(j);
                }
            }
        }
        out.insert(i, backends);
    }
    out
}
