//! An application named by an Operator's custom resource: the resource, what it owns (its
//! children, and theirs), and the operator that reconciles it — the workload whose service
//! account may write the resource's API group, with that account's bindings and roles. The CRD
//! and the rest of what these need come with the dependencies that follow. Like the rest of the
//! capture, it holds facts about what it lists (owner uids, restore-order nodes), never the
//! listed objects: those it takes are read again one by one.

use super::select::{listable, Collected, TypeFilter};
use super::ProgressSink;
use crate::cluster::{object_ref, Cluster, Resource, ResourceMap};
use crate::error::{Result, SpokeError};
use ferry_protocol::event::Progress;
use ferry_protocol::selection::OperatorResourceSelector;
use ferry_protocol::ObjectRef;
use ferry_transform::order::{operators_among, Node};
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

    // What it owns, and what that owns, in its namespace: listed as (uid, owners, reference)
    // only, then read one by one once the ownership closure is known.
    let types: Vec<&Resource> = resources
        .iter()
        .filter(|r| r.namespaced && listable(r) && !filter.excluded(r))
        .collect();
    let mut owned_by_someone: Vec<Owned> = Vec::new();
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
                let owner_uids: Vec<String> = o
                    .pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|r| str_at(r, "/uid").to_string())
                    .collect();
                if !owner_uids.is_empty() {
                    owned_by_someone.push(Owned {
                        uid: uid(&o).to_string(),
                        owners: owner_uids,
                        object: object_ref(&o),
                    });
                }
                Ok(())
            })
            .await?;
    }
    loop {
        let (owned, rest): (Vec<Owned>, Vec<Owned>) = owned_by_someone
            .into_iter()
            .partition(|o| o.owners.iter().any(|u| owners.contains(u)));
        owned_by_someone = rest;
        if owned.is_empty() {
            break;
        }
        for o in owned {
            owners.insert(o.uid);
            let Some(t) = map.for_object(&o.object) else {
                continue;
            };
            // Gone since it was listed: nothing to take.
            if let Some(obj) = cluster.get(&t, Some(ns), &o.object.name).await? {
                out.add(obj, format!("owned by {me}")).await?;
            }
        }
    }

    // The operator: found through the RBAC that lets it write the resource's group, read as
    // restore-order nodes (the facts, not the objects).
    let mut candidates: Vec<Node> = Vec::new();
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
                candidates.push(Node::of(&o));
                Ok(())
            })
            .await?;
    }
    let operators = operators_among(&candidates, group, ns);
    let accounts: HashSet<(String, String)> = operators
        .iter()
        .map(|&i| {
            let w = &candidates[i];
            let sa = w.service_account().unwrap_or("default");
            (
                w.object.namespace.clone().unwrap_or_default(),
                sa.to_string(),
            )
        })
        .collect();
    // The roles the bindings name, and the operator's service account, come with the
    // dependencies that follow.
    let operators: HashSet<usize> = operators.into_iter().collect();
    for (i, node) in candidates.iter().enumerate() {
        let reason = if operators.contains(&i) {
            format!("operator of {group}, which serves {me}")
        } else if node
            .binding_subjects()
            .iter()
            .any(|sa| accounts.contains(sa))
        {
            format!("grants the operator of {me}")
        } else {
            continue;
        };
        let Some(t) = map.for_object(&node.object) else {
            continue;
        };
        if let Some(obj) = cluster
            .get(&t, node.object.namespace.as_deref(), &node.object.name)
            .await?
        {
            out.add(obj, reason).await?;
        }
    }
    Ok(())
}

/// An object of the resource's namespace that has owners: what the ownership closure needs.
struct Owned {
    uid: String,
    owners: Vec<String>,
    object: ObjectRef,
}
