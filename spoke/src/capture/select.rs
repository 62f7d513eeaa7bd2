//! What a capture takes: the selected objects, then everything they depend on.

use super::ProgressSink;
use crate::cluster::{object_ref, Cluster, Resource, ResourceMap};
use crate::error::{Result, SpokeError};
use ferry_protocol::event::Progress;
use ferry_protocol::selection::Selection;
use ferry_protocol::ObjectRef;
use ferry_transform::references::references;
use serde_json::Value;
use std::collections::{HashSet, VecDeque};

pub(super) type Key = (String, String, String, String); // group, kind, namespace, name

pub(super) fn key(r: &ObjectRef) -> Key {
    (
        r.group.clone(),
        r.kind.clone(),
        r.namespace.clone().unwrap_or_default(),
        r.name.clone(),
    )
}

/// The objects a capture takes, in the order found, with why each was taken.
#[derive(Default)]
pub(super) struct Collected {
    pub(super) objects: Vec<(Value, String)>,
    pub(super) seen: HashSet<Key>,
}

impl Collected {
    pub(super) fn add(&mut self, obj: Value, reason: String) -> bool {
        // Ferry's own movers, snapshots and their credentials are never part of an application.
        if obj
            .pointer("/metadata/labels/app.kubernetes.io~1managed-by")
            .and_then(Value::as_str)
            == Some("ferry")
        {
            return false;
        }
        let r = object_ref(&obj);
        if !self.seen.insert(key(&r)) {
            return false;
        }
        self.objects.push((strip(obj), reason));
        true
    }
}

/// What only the source cluster's bookkeeping needs; the rest (uids included: the restore uses
/// them to tell which owners travel with their children) is kept as read.
fn strip(mut obj: Value) -> Value {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    obj
}

/// Resource types as the selection's include and exclude lists name them.
pub(super) struct TypeFilter {
    include: Vec<String>,
    exclude: Vec<String>,
}

impl TypeFilter {
    pub(super) fn new(
        selection: &Selection,
        resources: &[Resource],
        field: &str,
    ) -> Result<TypeFilter> {
        let known = |name: &str| {
            resources
                .iter()
                .any(|r| r.qualified_name() == name || r.api.plural == name)
        };
        for (list, which) in [
            (&selection.include_resources, "includeResources"),
            (&selection.exclude_resources, "excludeResources"),
        ] {
            for (i, name) in list.iter().enumerate() {
                if !known(name) {
                    return Err(SpokeError::invalid(
                        format!("{field}.{which}[{i}]"),
                        format!("the cluster serves no resource type {name:?} (write plural.group, as `deployments.apps`)"),
                    ));
                }
            }
        }
        Ok(TypeFilter {
            include: selection.include_resources.clone(),
            exclude: selection.exclude_resources.clone(),
        })
    }

    fn named(list: &[String], r: &Resource) -> bool {
        list.iter()
            .any(|n| *n == r.qualified_name() || (*n == r.api.plural && !n.contains('.')))
    }

    pub(super) fn selected(&self, r: &Resource) -> bool {
        (self.include.is_empty() || Self::named(&self.include, r)) && !self.excluded(r)
    }

    pub(super) fn excluded(&self, r: &Resource) -> bool {
        Self::named(&self.exclude, r)
    }
}

/// Types never worth listing: they are made by the cluster from the others, or are requests.
pub(super) fn listable(r: &Resource) -> bool {
    let skip = matches!(
        (r.api.group.as_str(), r.api.kind.as_str()),
        ("", "Event" | "Binding" | "ComponentStatus" | "Endpoints")
            | ("events.k8s.io", "Event")
            | ("discovery.k8s.io", "EndpointSlice")
            | ("authorization.k8s.io", _)
            | ("authentication.k8s.io", _)
            | ("metrics.k8s.io", _)
    );
    !skip && r.supports("list") && r.supports("get") && r.supports("create")
}

/// The selected objects, then everything they reach, breadth first.
pub(super) async fn collect(
    cluster: &Cluster,
    resources: &[Resource],
    map: &ResourceMap,
    filter: &TypeFilter,
    selection: &Selection,
    progress: ProgressSink<'_>,
) -> Result<Collected> {
    let mut out = Collected::default();
    let namespace_type = map.get("", "Namespace").cloned();
    // Namespaces first, each with the field that named it: each must exist.
    let mut namespaces: Vec<(String, String)> = selection
        .namespaces
        .iter()
        .enumerate()
        .map(|(i, ns)| (ns.clone(), format!("selection.namespaces[{i}]")))
        .collect();
    if selection.namespaces.is_empty() {
        if let Some(h) = &selection.helm_release {
            namespaces.push((
                h.namespace.clone(),
                "selection.helmRelease.namespace".into(),
            ));
        }
        if let Some(o) = &selection.operator_resource {
            if namespaces.iter().all(|(ns, _)| *ns != o.namespace) {
                namespaces.push((
                    o.namespace.clone(),
                    "selection.operatorResource.namespace".into(),
                ));
            }
        }
    }
    for (ns, field) in &namespaces {
        let Some(t) = &namespace_type else { break };
        match cluster.get(t, None, ns).await? {
            Some(obj) => {
                out.add(obj, "selected namespace".into());
            }
            None => {
                return Err(SpokeError::NotFound {
                    what: format!("namespace {ns} ({field})"),
                })
            }
        }
    }
    let helm_only = selection.namespaces.is_empty();
    if !helm_only {
        let types: Vec<&Resource> = resources
            .iter()
            .filter(|r| r.namespaced && listable(r) && filter.selected(r))
            .collect();
        for ns in &selection.namespaces {
            for (n, r) in types.iter().enumerate() {
                progress(Progress {
                    phase: "discover".into(),
                    message: format!("{} in {ns}", r.qualified_name()),
                    done: n as u64,
                    total: Some(types.len() as u64),
                    ..Default::default()
                });
                let mut found = Vec::new();
                cluster
                    .list_each(r, Some(ns), selection.label_selector.as_deref(), |o| {
                        found.push(o);
                        Ok(())
                    })
                    .await?;
                for o in found {
                    out.add(o, "selected".into());
                }
            }
        }
    }
    if let Some(h) = &selection.helm_release {
        helm_release(cluster, map, &h.name, &h.namespace, &mut out).await?;
    }
    if let Some(o) = &selection.operator_resource {
        super::operator::operator_resource(cluster, resources, map, filter, o, &mut out, progress)
            .await?;
    }
    dependencies(cluster, map, filter, &mut out).await?;
    Ok(out)
}

/// A Helm release's records (Secrets labelled `owner=helm,name=<release>`) and every object of
/// its latest deployed manifest.
async fn helm_release(
    cluster: &Cluster,
    map: &ResourceMap,
    name: &str,
    namespace: &str,
    out: &mut Collected,
) -> Result<()> {
    let secrets = map
        .get("", "Secret")
        .cloned()
        .ok_or_else(|| SpokeError::NotFound {
            what: "the Secret resource type".into(),
        })?;
    let mut records = Vec::new();
    cluster
        .list_each(
            &secrets,
            Some(namespace),
            Some(&format!("owner=helm,name={name}")),
            |o| {
                records.push(o);
                Ok(())
            },
        )
        .await?;
    if records.is_empty() {
        return Err(SpokeError::NotFound {
            what: format!("Helm release {namespace}/{name} (selection.helmRelease)"),
        });
    }
    let version = |o: &Value| {
        o.pointer("/metadata/labels/version")
            .and_then(Value::as_str)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    records.sort_by_key(version);
    let latest = records.last().expect("not empty").clone();
    let driver = ferry_transform::helm::record_driver(&latest)
        .unwrap_or(ferry_transform::helm::Driver::Secret);
    let release = ferry_transform::helm::decode(&latest, driver).map_err(|e| {
        SpokeError::invalid(
            "selection.helmRelease",
            format!("{}: {e}", object_ref(&latest)),
        )
    })?;
    for r in records {
        out.add(r, format!("record of Helm release {name}"));
    }
    let manifest = release
        .get("manifest")
        .and_then(Value::as_str)
        .unwrap_or("");
    let docs = ferry_transform::documents::parse_documents(manifest, "the release manifest")
        .map_err(|e| SpokeError::invalid("selection.helmRelease", e.to_string()))?;
    for doc in docs {
        let Some(mut r) = ObjectRef::from_object(&doc) else {
            continue;
        };
        let Some(t) = map.for_object(&r) else {
            continue;
        };
        if t.namespaced && r.namespace.is_none() {
            r.namespace = Some(namespace.to_string());
        }
        if let Some(obj) = cluster.get(&t, r.namespace.as_deref(), &r.name).await? {
            out.add(obj, format!("in Helm release {name}"));
        }
    }
    Ok(())
}

/// Follows references until nothing new is reached: what pods use, what bindings grant, claims'
/// volumes and classes, custom resources' definitions, and the cluster role bindings that grant
/// to captured service accounts.
async fn dependencies(
    cluster: &Cluster,
    map: &ResourceMap,
    filter: &TypeFilter,
    out: &mut Collected,
) -> Result<()> {
    let crd_type = map
        .get("apiextensions.k8s.io", "CustomResourceDefinition")
        .cloned();
    let mut queue: VecDeque<usize> = (0..out.objects.len()).collect();
    let mut crb_checked = false;
    while let Some(i) = queue.pop_front() {
        let (obj, _) = &out.objects[i];
        let me = object_ref(obj);
        let mut wanted: Vec<(ObjectRef, Resource, String)> = Vec::new();
        for r in references(obj) {
            let Some(t) = map.get(r.group, &r.kind) else {
                continue;
            };
            if filter.excluded(t) {
                continue;
            }
            let target = ObjectRef {
                group: r.group.to_string(),
                version: t.api.version.clone(),
                kind: r.kind.clone(),
                namespace: (!r.namespace.is_empty()).then(|| r.namespace.clone()),
                name: r.name.clone(),
            };
            wanted.push((target, t.clone(), format!("needed by {me}")));
        }
        if let (Some(crd), Some(t)) = (&crd_type, map.get(&me.group, &me.kind)) {
            if is_custom(&me.group) && !filter.excluded(crd) {
                let name = format!("{}.{}", t.api.plural, me.group);
                let target = ObjectRef {
                    group: "apiextensions.k8s.io".into(),
                    version: crd.api.version.clone(),
                    kind: "CustomResourceDefinition".into(),
                    namespace: None,
                    name,
                };
                wanted.push((target, crd.clone(), format!("defines {me}")));
            }
        }
        if me.group.is_empty() && me.kind == "ServiceAccount" && !crb_checked {
            crb_checked = true;
            for b in cluster_role_bindings(cluster, map, filter, &out.seen).await? {
                if out.add(b, "grants to a captured ServiceAccount".into()) {
                    queue.push_back(out.objects.len() - 1);
                }
            }
        }
        for (target, t, reason) in wanted {
            if out.seen.contains(&key(&target)) {
                continue;
            }
            if let Some(found) = cluster
                .get(&t, target.namespace.as_deref(), &target.name)
                .await?
            {
                if out.add(found, reason) {
                    queue.push_back(out.objects.len() - 1);
                }
            }
        }
    }
    // Service accounts reached late (from a pod found as a dependency) are covered too.
    if !crb_checked
        && out
            .seen
            .iter()
            .any(|(g, k, _, _)| g.is_empty() && k == "ServiceAccount")
    {
        for b in cluster_role_bindings(cluster, map, filter, &out.seen).await? {
            out.add(b, "grants to a captured ServiceAccount".into());
        }
    }
    Ok(())
}

/// Whether a group is served by a CustomResourceDefinition rather than built in.
fn is_custom(group: &str) -> bool {
    let builtin =
        !group.contains('.') || group.ends_with(".k8s.io") && !group.ends_with(".x-k8s.io");
    !builtin
}

async fn cluster_role_bindings(
    cluster: &Cluster,
    map: &ResourceMap,
    filter: &TypeFilter,
    seen: &HashSet<Key>,
) -> Result<Vec<Value>> {
    let Some(t) = map.get("rbac.authorization.k8s.io", "ClusterRoleBinding") else {
        return Ok(Vec::new());
    };
    if filter.excluded(t) {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    cluster
        .list_each(t, None, None, |b| {
            let grants = b
                .get("subjects")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|s| {
                    s.get("kind").and_then(Value::as_str) == Some("ServiceAccount")
                        && seen.contains(&(
                            String::new(),
                            "ServiceAccount".into(),
                            s.get("namespace")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .into(),
                            s.get("name").and_then(Value::as_str).unwrap_or("").into(),
                        ))
                });
            if grants {
                found.push(b);
            }
            Ok(())
        })
        .await?;
    Ok(found)
}
