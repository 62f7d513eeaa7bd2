//! What a capture takes: the selected objects, then everything they depend on.

use super::ProgressSink;
use crate::cluster::{namespace_and_name, object_ref, Cluster, Resource, ResourceMap};
use crate::error::{Result, SpokeError};
use crate::hooks::{self, Hook};
use crate::restore_point::RestorePointWriter;
use ferry_protocol::event::Progress;
use ferry_protocol::selection::Selection;
use ferry_protocol::ObjectRef;
use ferry_transform::references::references;
use serde_json::Value;
use std::collections::{HashSet, VecDeque};

/// An object's identity (group, kind, namespace, name) as a 128-bit hash: what a capture of
/// any size remembers of each object it took.
type Key = u128;

fn key(group: &str, kind: &str, namespace: &str, name: &str) -> Key {
    let mut h = blake3::Hasher::new();
    for part in [group, kind, namespace, name] {
        h.update(part.as_bytes());
        // No part of a Kubernetes name can hold a NUL, so the parts cannot run together.
        h.update(&[0]);
    }
    let bytes: [u8; 16] = h.finalize().as_bytes()[..16]
        .try_into()
        .expect("16 of 32 bytes");
    u128::from_le_bytes(bytes)
}

fn key_of(r: &ObjectRef) -> Key {
    key(
        &r.group,
        &r.kind,
        r.namespace.as_deref().unwrap_or(""),
        &r.name,
    )
}

/// An object a captured one depends on, still to be read.
struct Wanted {
    key: Key,
    resource: Resource,
    namespace: Option<String>,
    name: String,
    reason: String,
}

/// What a capture has taken. Each object goes into the restore point as it is found; what stays
/// in memory is the hash of each one's identity, the dependencies not yet read, and what the
/// later phases need (bound claims, hooks from pod annotations) — never the object list.
pub(super) struct Collected<'a> {
    pub(super) writer: RestorePointWriter,
    pub(super) map: &'a ResourceMap,
    pub(super) filter: &'a TypeFilter,
    crd_type: Option<Resource>,
    taken: HashSet<Key>,
    /// Dependencies queued once, found or not.
    asked: HashSet<Key>,
    wanted: VecDeque<Wanted>,
    /// A ServiceAccount was taken since cluster role bindings were last looked through.
    new_accounts: bool,
    /// Bound PersistentVolumeClaims, for the volume snapshots.
    pub(super) claims: Vec<Value>,
    /// Hooks the taken pods' annotations ask for.
    pub(super) pod_hooks: Vec<Hook>,
}

impl<'a> Collected<'a> {
    pub(super) fn new(
        writer: RestorePointWriter,
        map: &'a ResourceMap,
        filter: &'a TypeFilter,
    ) -> Collected<'a> {
        Collected {
            writer,
            map,
            filter,
            crd_type: map
                .get("apiextensions.k8s.io", "CustomResourceDefinition")
                .cloned(),
            taken: HashSet::new(),
            asked: HashSet::new(),
            wanted: VecDeque::new(),
            new_accounts: false,
            claims: Vec::new(),
            pod_hooks: Vec::new(),
        }
    }

    /// Takes `obj` unless it was taken before or is Ferry's own; says whether it was taken.
    pub(super) async fn add(&mut self, obj: Value, reason: impl Into<String>) -> Result<bool> {
        // Ferry's own movers, snapshots and their credentials are never part of an application.
        if obj
            .pointer("/metadata/labels/app.kubernetes.io~1managed-by")
            .and_then(Value::as_str)
            == Some("ferry")
        {
            return Ok(false);
        }
        let r = object_ref(&obj);
        if !self.taken.insert(key_of(&r)) {
            return Ok(false);
        }
        let obj = strip(obj);
        self.queue_dependencies(&obj, &r);
        match (r.group.as_str(), r.kind.as_str()) {
            ("", "Pod") => self.pod_hooks.extend(hooks::from_pod(&obj)?),
            ("", "ServiceAccount") => self.new_accounts = true,
            ("", "PersistentVolumeClaim")
                if obj.pointer("/status/phase").and_then(Value::as_str) == Some("Bound") =>
            {
                self.claims.push(obj.clone())
            }
            _ => {}
        }
        self.writer.add(&obj, reason.into()).await?;
        Ok(true)
    }

    /// Objects taken so far.
    pub(super) fn count(&self) -> u64 {
        self.writer.count()
    }

    /// Queues what `obj` references (and a custom resource's definition), each target once.
    fn queue_dependencies(&mut self, obj: &Value, me: &ObjectRef) {
        // The reason is only written for a target not queued before.
        let mut want =
            |resource: &Resource, namespace: &str, name: &str, reason: &dyn Fn() -> String| {
                if self.filter.excluded(resource) {
                    return;
                }
                let k = key(&resource.api.group, &resource.api.kind, namespace, name);
                if self.taken.contains(&k) || !self.asked.insert(k) {
                    return;
                }
                self.wanted.push_back(Wanted {
                    key: k,
                    resource: resource.clone(),
                    namespace: (!namespace.is_empty()).then(|| namespace.to_string()),
                    name: name.to_string(),
                    reason: reason(),
                });
            };
        for r in references(obj) {
            if let Some(t) = self.map.get(r.group, &r.kind) {
                want(t, &r.namespace, &r.name, &|| format!("needed by {me}"));
            }
        }
        if let (Some(crd), Some(t)) = (&self.crd_type, self.map.get(&me.group, &me.kind)) {
            if is_custom(&me.group) {
                let name = format!("{}.{}", t.api.plural, me.group);
                want(crd, "", &name, &|| format!("defines {me}"));
            }
        }
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

/// Takes the selected objects, then everything they reach, breadth first.
pub(super) async fn collect(
    cluster: &Cluster,
    resources: &[Resource],
    selection: &Selection,
    out: &mut Collected<'_>,
    progress: ProgressSink<'_>,
) -> Result<()> {
    let namespace_type = out.map.get("", "Namespace").cloned();
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
                out.add(obj, "selected namespace").await?;
            }
            None => {
                return Err(SpokeError::NotFound {
                    what: format!("namespace {ns} ({field})"),
                })
            }
        }
    }
    let types: Vec<&Resource> = resources
        .iter()
        .filter(|r| r.namespaced && listable(r) && out.filter.selected(r))
        .collect();
    for ns in &selection.namespaces {
        for (n, r) in types.iter().enumerate() {
            let report = |taken: u64| {
                progress(Progress {
                    phase: "discover".into(),
                    message: format!("{} in {ns} ({taken} objects taken)", r.qualified_name()),
                    done: n as u64,
                    total: Some(types.len() as u64),
                    ..Default::default()
                })
            };
            report(out.count());
            let mut pages = cluster.pages(r, Some(ns), selection.label_selector.as_deref());
            let mut reported = out.count();
            while let Some(page) = pages.next().await? {
                for o in page {
                    out.add(o, "selected").await?;
                }
                if out.count() - reported >= PROGRESS_EVERY {
                    reported = out.count();
                    report(reported);
                }
            }
        }
    }
    if let Some(h) = &selection.helm_release {
        helm_release(cluster, &h.name, &h.namespace, out).await?;
    }
    if let Some(o) = &selection.operator_resource {
        super::operator::operator_resource(cluster, resources, o, out, progress).await?;
    }
    dependencies(cluster, out).await
}

/// Objects taken between two progress reports while one type is listed.
const PROGRESS_EVERY: u64 = 5000;

/// A Helm release's records (Secrets labelled `owner=helm,name=<release>`) and every object of
/// its latest deployed manifest.
async fn helm_release(
    cluster: &Cluster,
    name: &str,
    namespace: &str,
    out: &mut Collected<'_>,
) -> Result<()> {
    let map = out.map;
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
        out.add(r, format!("record of Helm release {name}")).await?;
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
            out.add(obj, format!("in Helm release {name}")).await?;
        }
    }
    Ok(())
}

/// Follows references until nothing new is reached: what pods use, what bindings grant, claims'
/// volumes and classes, custom resources' definitions, and the cluster role bindings that grant
/// to captured service accounts (looked through again whenever more accounts were taken).
async fn dependencies(cluster: &Cluster, out: &mut Collected<'_>) -> Result<()> {
    loop {
        while let Some(w) = out.wanted.pop_front() {
            if out.taken.contains(&w.key) {
                continue;
            }
            if let Some(found) = cluster
                .get(&w.resource, w.namespace.as_deref(), &w.name)
                .await?
            {
                out.add(found, w.reason).await?;
            }
        }
        if !std::mem::take(&mut out.new_accounts) {
            return Ok(());
        }
        for b in cluster_role_bindings(cluster, out).await? {
            out.add(b, "grants to a captured ServiceAccount").await?;
        }
    }
}

/// Whether a group is served by a CustomResourceDefinition rather than built in.
fn is_custom(group: &str) -> bool {
    let builtin =
        !group.contains('.') || group.ends_with(".k8s.io") && !group.ends_with(".x-k8s.io");
    !builtin
}

/// The cluster role bindings that grant to a taken ServiceAccount and are not taken yet.
async fn cluster_role_bindings(cluster: &Cluster, out: &Collected<'_>) -> Result<Vec<Value>> {
    let Some(t) = out
        .map
        .get("rbac.authorization.k8s.io", "ClusterRoleBinding")
    else {
        return Ok(Vec::new());
    };
    if out.filter.excluded(t) {
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
                    let field = |f: &str| s.get(f).and_then(Value::as_str).unwrap_or("");
                    field("kind") == "ServiceAccount"
                        && out.taken.contains(&key(
                            "",
                            "ServiceAccount",
                            field("namespace"),
                            field("name"),
                        ))
                });
            let (namespace, name) = namespace_and_name(&b);
            if grants
                && !out
                    .taken
                    .contains(&key(&t.api.group, &t.api.kind, &namespace, &name))
            {
                found.push(b);
            }
            Ok(())
        })
        .await?;
    Ok(found)
}
