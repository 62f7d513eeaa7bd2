//! Objects that must serve before custom resources can be restored: operators (found through
//! the RBAC that lets them write the custom kinds' groups) and conversion webhooks.

use super::node::{Detail, Node};
use super::{lookup, Index};
use std::collections::{BTreeSet, HashMap};

/// Where an operator may act: everywhere (bound by a ClusterRoleBinding) or in one namespace.
pub(super) type Scope = Option<String>;

/// Which workloads run as operators of the custom kinds' groups: a workload whose service
/// account is bound to a role that may write those groups, with where the binding lets it act.
pub(super) fn operators(
    nodes: &[Node],
    crd_groups: &BTreeSet<String>,
) -> HashMap<usize, BTreeSet<(String, Scope)>> {
    // (kind, namespace, name) of each role → the custom groups it may write.
    let mut role_groups: HashMap<(&str, &str, &str), BTreeSet<&str>> = HashMap::new();
    for n in nodes {
        let Detail::Role { written_groups } = &n.detail else {
            continue;
        };
        let mut groups = BTreeSet::new();
        for g in written_groups {
            if g == "*" {
                groups.extend(crd_groups.iter().map(String::as_str));
            } else if crd_groups.contains(g) {
                groups.insert(g.as_str());
            }
        }
        if !groups.is_empty() {
            role_groups.insert((n.kind(), n.namespace(), n.name()), groups);
        }
    }
    // Service account (namespace, name) → the groups it may manage, and where.
    let mut sa_groups: HashMap<(&str, &str), BTreeSet<(String, Scope)>> = HashMap::new();
    for n in nodes {
        let Detail::Binding {
            role_kind,
            role_name,
            service_accounts,
        } = &n.detail
        else {
            continue;
        };
        let role_ns = if role_kind == "Role" {
            n.namespace()
        } else {
            ""
        };
        let Some(groups) = role_groups.get(&(role_kind.as_str(), role_ns, role_name.as_str()))
        else {
            continue;
        };
        let scope: Scope = (n.kind() == "RoleBinding").then(|| n.namespace().to_string());
        for (sa_ns, sa) in service_accounts {
            sa_groups
                .entry((sa_ns, sa))
                .or_default()
                .extend(groups.iter().map(|g| (g.to_string(), scope.clone())));
        }
    }
    let mut out = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        let Detail::AppsWorkload {
            service_account, ..
        } = &n.detail
        else {
            continue;
        };
        if !matches!(n.kind(), "Deployment" | "StatefulSet" | "DaemonSet") {
            continue;
        }
        if let Some(groups) = sa_groups.get(&(n.namespace(), service_account.as_str())) {
            out.insert(i, groups.clone());
        }
    }
    out
}

/// For each CRD with a conversion webhook: the webhook's Service and the workloads behind it,
/// which must serve before any object of the CRD's kinds can be written.
pub(super) fn conversion_backends(nodes: &[Node], index: &Index) -> HashMap<usize, Vec<usize>> {
    let mut out = HashMap::new();
    for (i, crd) in nodes.iter().enumerate() {
        let Detail::CustomResourceDefinition {
            webhook_service: Some((ns, name)),
            ..
        } = &crd.detail
        else {
            continue;
        };
        let Some(&service) = lookup(index, "", "Service", ns, name) else {
            continue;
        };
        let mut backends = vec![service];
        let selector = match &nodes[service].detail {
            Detail::Service { selector } if !selector.is_empty() => selector.as_slice(),
            _ => &[],
        };
        if !selector.is_empty() {
            for (j, w) in nodes.iter().enumerate() {
                let Detail::AppsWorkload {
                    template_labels, ..
                } = &w.detail
                else {
                    continue;
                };
                let serves = w.namespace() == ns
                    && selector
                        .iter()
                        .all(|s| template_labels.iter().any(|l| l == s));
                if serves {
                    backends.push(j);
                }
            }
        }
        out.insert(i, backends);
    }
    out
}
