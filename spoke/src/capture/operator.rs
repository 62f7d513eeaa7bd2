//! An application named by an Operator's custom resource: the resource, what it owns (its
//! children, and theirs), and the operator that reconciles it — the workload whose service
//! account may write the resource's API group, with that account's bindings and roles. The CRD
//! and the rest of what these need come with the dependencies that follow.

use super::select::{listable, Collected, TypeFilter};
use super::ProgressSink;
use crate::cluster::{object_ref, Cluster, Resource, ResourceMap};
use crate::error::{Result, SpokeError};
use ferry_protocol::event::Progress;
use ferry_protocol::selection::OperatorResourceSelector;
use ferry_transform::references::service_account_subjects;
use serde_json::Value;
use std::collections::HashSet;

const RBAC: &str = "rbac.authorization.k8s.io";

fn uid(o: &Value) -> &str {
    o.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn str_at<'a>(o: &'a Value, pointer: &str) -> &'a str {
    o.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

pub(super) async fn operator_resource(
    cluster: &Cluster,
    resources: &[Resource],
    selected: &OperatorResourceSelector,
    out: &mut Collected<'_>,
    progress: ProgressSink<'_>,
) -> Result<()> {
    let (map, filter): (&ResourceMap, &TypeFilter) = (out.map, out.filter);
    let ns = selected.namespace.as_str();
    let group = selected.api_version.rsplit_once('/').map_or("", |(g, _)| g);
    let t = map.get(group, &selected.kind).cloned().ok_or_else(|| {
        SpokeError::invalid(
            "selection.operatorResource.kind",
            format!(
                "the cluster serves no kind {} in {}",
                selected.kind, selected.api_version
            ),
        )
    })?;
    let resource = cluster
        .get(&t, Some(ns), &selected.name)
        .await?
        .ok_or_else(|| SpokeError::NotFound {
            what: format!(
                "{} {ns}/{} (selection.operatorResource)",
                selected.kind, selected.name
            ),
        })?;
    let me = object_ref(&resource);
    let mut owners: HashSet<String> = HashSet::from([uid(&resource).to_string()]);
    out.add(resource, "selected Operator resource").await?;

    // What it owns, and what that owns, in its namespace.
    let types: Vec<&Resource> = resources
        .iter()
        .filter(|r| r.namespaced && listable(r) && !filter.excluded(r))
        .collect();
    let mut owned_by_someone = Vec::new();
    for (n, r) in types.iter().enumerate() {
        progress(Progress {
            phase: "discover".into(),
            message: format!("children of {me}: {}", r.qualified_name()),
            done: n as u64,
            total: Some(types.len() as u64),
            ..Default::default()
        });
        cluster
            .list_each(r, Some(ns), None, |o| {
                if o.pointer("/metadata/ownerReferences").is_some() {
                    owned_by_someone.push(o);
                }
                Ok(())
            })
            .await?;
    }
    loop {
        let (owned, rest): (Vec<Value>, Vec<Value>) = owned_by_someone.into_iter().partition(|o| {
            o.pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|r| owners.contains(str_at(r, "/uid")))
        });
        owned_by_someone = rest;
        if owned.is_empty() {
            break;
        }
        for o in owned {
            owners.insert(uid(&o).to_string());
            out.add(o, format!("owned by {me}")).await?;
        }
    }

    // The operator: found through the RBAC that lets it write the resource's group.
    let mut candidates = Vec::new();
    for (g, k) in [
        (RBAC, "ClusterRole"),
        (RBAC, "Role"),
        (RBAC, "ClusterRoleBinding"),
        (RBAC, "RoleBinding"),
        ("apps", "Deployment"),
        ("apps", "StatefulSet"),
        ("apps", "DaemonSet"),
    ] {
        let Some(t) = map.get(g, k) else { continue };
        if filter.excluded(t) {
            continue;
        }
        cluster
            .list_each(t, None, None, |o| {
                candidates.push(o);
                Ok(())
            })
            .await?;
    }
    let operators = ferry_transform::order::operators_of(&candidates, group, ns);
    let accounts: HashSet<(String, String)> = operators
        .iter()
        .map(|&i| {
            let w = &candidates[i];
            let sa = w
                .pointer("/spec/template/spec/serviceAccountName")
                .and_then(Value::as_str)
                .unwrap_or("default");
            (str_at(w, "/metadata/namespace").to_string(), sa.to_string())
        })
        .collect();
    let bindings: Vec<usize> = (0..candidates.len())
        .filter(|&i| {
            let b = &candidates[i];
            matches!(str_at(b, "/kind"), "RoleBinding" | "ClusterRoleBinding")
                && service_account_subjects(b)
                    .iter()
                    .any(|sa| accounts.contains(sa))
        })
        .collect();
    // The roles the bindings name, and the operator's service account, come with the
    // dependencies that follow.
    let operators: HashSet<usize> = operators.into_iter().collect();
    let bindings: HashSet<usize> = bindings.into_iter().collect();
    for (i, o) in candidates.into_iter().enumerate() {
        if operators.contains(&i) {
            out.add(o, format!("operator of {group}, which serves {me}"))
                .await?;
        } else if bindings.contains(&i) {
            out.add(o, format!("grants the operator of {me}")).await?;
        }
    }
    Ok(())
}
