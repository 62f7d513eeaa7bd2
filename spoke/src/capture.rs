//! Capture: resolve a selection against the cluster, add what the selected objects depend on,
//! and write them as a restore point.
//!
//! The plan is made first (every list and read), then written, so a selection that names
//! something missing fails before anything reaches the repository. A redelivered command finds
//! the restore point it already wrote and reports it again instead of writing a second.

use crate::cancel::Cancellation;
use crate::cluster::{object_ref, Cluster, Resource, ResourceMap};
use crate::error::{Result, SpokeError};
use crate::hooks;
use crate::mover::{self, Mover, MoverConfig};
use crate::restore_point::{self, RestorePointWriter};
use ferry_protocol::command::CaptureCommand;
use ferry_protocol::event::{CaptureReport, PhaseTiming, Progress};
use ferry_protocol::hooks::HookPhase;
use ferry_protocol::restore_point::{Manifest, SourceCluster, VolumeEntry, RESTORE_POINT_FORMAT};
use ferry_protocol::selection::Selection;
use ferry_protocol::ObjectRef;
use ferry_repository::repo::Repository;
use ferry_transform::references::references;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

/// Where progress goes (the agent turns it into events).
pub type ProgressSink<'a> = &'a (dyn Fn(Progress) + Send + Sync);

/// Who is capturing: the cluster's name as registered, and versions for the manifest.
pub struct Source<'a> {
    pub cluster: &'a Cluster,
    pub name: &'a str,
    pub operation: Option<&'a str>,
    /// How volume data moves; `None` when this spoke cannot move it.
    pub mover: Option<&'a MoverConfig>,
    /// Checked between phases: a cancelled capture stops where its state is clean.
    pub cancel: &'a Cancellation,
}

type Key = (String, String, String, String); // group, kind, namespace, name

fn key(r: &ObjectRef) -> Key {
    (
        r.group.clone(),
        r.kind.clone(),
        r.namespace.clone().unwrap_or_default(),
        r.name.clone(),
    )
}

/// The objects a capture takes, in the order found, with why each was taken.
#[derive(Default)]
struct Collected {
    objects: Vec<(Value, String)>,
    seen: HashSet<Key>,
}

impl Collected {
    fn add(&mut self, obj: Value, reason: String) -> bool {
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

/// Checks a selection before anything is read; errors name the field.
pub fn validate(selection: &Selection, field: &str) -> Result<()> {
    ferry_transform::selection::validate(selection, field)
        .map_err(|e| SpokeError::invalid(e.field, e.message))
}

/// Resource types as the selection's include and exclude lists name them.
struct TypeFilter {
    include: Vec<String>,
    exclude: Vec<String>,
}

impl TypeFilter {
    fn new(selection: &Selection, resources: &[Resource], field: &str) -> Result<TypeFilter> {
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

    fn selected(&self, r: &Resource) -> bool {
        (self.include.is_empty() || Self::named(&self.include, r)) && !self.excluded(r)
    }

    fn excluded(&self, r: &Resource) -> bool {
        Self::named(&self.exclude, r)
    }
}

/// Types never worth listing: they are made by the cluster from the others, or are requests.
fn listable(r: &Resource) -> bool {
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

pub async fn capture(
    source: Source<'_>,
    repo: Arc<Repository>,
    command: &CaptureCommand,
    progress: ProgressSink<'_>,
) -> Result<CaptureReport> {
    let id = &command.restore_point;
    // The shared repository changes under this spoke: what others stored is reused, not stored
    // again.
    repo.reload_index().await?;
    if let Some((name, snapshot)) = restore_point::find(&repo, id).await? {
        // Written before: a redelivered command, or a restarted spoke. Report it again.
        let manifest = restore_point::read_manifest(repo.clone(), id, &snapshot).await?;
        let mut kinds = BTreeMap::new();
        for e in &manifest.objects {
            *kinds
                .entry(restore_point::kind_label(&e.object))
                .or_default() += 1;
        }
        return Ok(CaptureReport {
            restore_point: manifest.summary(&name, snapshot.summary.stored_bytes),
            kinds,
            hooks: manifest.hooks.clone(),
            volumes: manifest.volumes.clone(),
            phases: Vec::new(),
            warnings: vec![format!(
                "restore point {id} was already written; reported again"
            )],
        });
    }
    validate(&command.selection, "selection")?;
    let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut phases = Vec::new();
    let started = Instant::now();
    progress(Progress {
        phase: "discover".into(),
        message: "resource types".into(),
        ..Default::default()
    });
    let kubernetes_version = source.cluster.version().await?;
    let resources = source.cluster.discover().await?;
    let filter = TypeFilter::new(&command.selection, &resources, "selection")?;
    let map = ResourceMap::new(&resources);
    let collected = collect(
        source.cluster,
        &resources,
        &map,
        &filter,
        &command.selection,
        progress,
    )
    .await?;
    phases.push(PhaseTiming {
        phase: "discover".into(),
        millis: started.elapsed().as_millis() as u64,
    });

    // The consistent point: pre hooks, every volume snapshot, post hooks; data moves after.
    let captured: Vec<&Value> = collected.objects.iter().map(|(o, _)| o).collect();
    let hook_list = hooks::collect(source.cluster, &map, &command.hooks, &captured).await?;
    let claims: Vec<&Value> = captured
        .iter()
        .copied()
        .filter(|o| o.get("kind").and_then(Value::as_str) == Some("PersistentVolumeClaim"))
        .filter(|o| o.pointer("/status/phase").and_then(Value::as_str) == Some("Bound"))
        .filter(|_| command.volume_data)
        .collect();
    let kinds = match command.volume_data {
        true => Some(mover::Kinds::new(&map)?),
        false => None,
    };
    let movers = match (&kinds, source.mover) {
        (Some(kinds), Some(config)) => Some(Mover {
            cluster: source.cluster,
            config,
            kinds,
        }),
        (Some(_), None) => {
            return Err(SpokeError::invalid(
                "volumeData",
                "this spoke has no mover configured (ferry-spoke run --mover-image)",
            ))
        }
        _ => None,
    };
    let point_started = Instant::now();
    let mut hook_results = Vec::new();
    if !hook_list.is_empty() {
        progress(Progress {
            phase: "hooks".into(),
            message: format!("{} hooks", hook_list.len()),
            ..Default::default()
        });
    }
    if let Some(e) = hooks::run_phase(
        source.cluster,
        &hook_list,
        HookPhase::Pre,
        &mut hook_results,
    )
    .await
    {
        hooks::run_phase(
            source.cluster,
            &hook_list,
            HookPhase::Post,
            &mut hook_results,
        )
        .await;
        return Err(e);
    }
    let consistent_at =
        Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    let taken = match &movers {
        Some(m) => take_snapshots(m, id, &claims, progress).await,
        None => Ok(Vec::new()),
    };
    let post_failure = hooks::run_phase(
        source.cluster,
        &hook_list,
        HookPhase::Post,
        &mut hook_results,
    )
    .await;
    let taken = taken?;
    if let Some(e) = post_failure {
        if let Some(m) = &movers {
            for (c, s) in claims.iter().zip(&taken) {
                m.drop_snapshot(c, s).await;
            }
        }
        return Err(e);
    }
    phases.push(PhaseTiming {
        phase: "snapshots".into(),
        millis: point_started.elapsed().as_millis() as u64,
    });
    let mut volumes = Vec::new();
    if let Some(m) = &movers {
        let volumes_started = Instant::now();
        volumes = export_volumes(
            m,
            id,
            &claims,
            &taken,
            repo.clone(),
            source.cancel,
            progress,
        )
        .await?;
        phases.push(PhaseTiming {
            phase: "volumes".into(),
            millis: volumes_started.elapsed().as_millis() as u64,
        });
    }

    source.cancel.check()?;
    let write_started = Instant::now();
    let total = collected.objects.len() as u64;
    let mut writer = RestorePointWriter::begin(repo.clone(), id).await?;
    for (n, (obj, reason)) in collected.objects.into_iter().enumerate() {
        writer.add(&obj, reason).await?;
        if n % 500 == 499 {
            progress(Progress {
                phase: "objects".into(),
                done: n as u64 + 1,
                total: Some(total),
                ..Default::default()
            });
        }
    }
    let kinds = writer.kinds().clone();
    let manifest = Manifest {
        format: RESTORE_POINT_FORMAT,
        id: id.clone(),
        created,
        consistent_at,
        source: SourceCluster {
            cluster: source.name.to_string(),
            kubernetes_version,
            ferry_version: env!("CARGO_PKG_VERSION").to_string(),
        },
        selection: command.selection.clone(),
        operation: source.operation.map(str::to_string),
        hooks: hook_results,
        objects: Vec::new(),
        volumes,
        skipped: Vec::new(),
    };
    let (name, manifest, snapshot) = writer.finish(manifest).await?;
    phases.push(PhaseTiming {
        phase: "write".into(),
        millis: write_started.elapsed().as_millis() as u64,
    });
    progress(Progress {
        phase: "objects".into(),
        done: total,
        total: Some(total),
        ..Default::default()
    });
    Ok(CaptureReport {
        restore_point: manifest.summary(&name, snapshot.summary.stored_bytes),
        kinds,
        hooks: manifest.hooks.clone(),
        volumes: manifest.volumes.clone(),
        phases,
        warnings: Vec::new(),
    })
}

/// Takes a snapshot of every claim; if one fails, those taken are dropped.
async fn take_snapshots(
    m: &Mover<'_>,
    id: &str,
    claims: &[&Value],
    progress: ProgressSink<'_>,
) -> Result<Vec<String>> {
    let total = Some(claims.len() as u64);
    let mut taken = Vec::new();
    for (n, claim) in claims.iter().enumerate() {
        progress(Progress {
            phase: "snapshots".into(),
            message: object_ref(claim).to_string(),
            done: n as u64,
            total,
            ..Default::default()
        });
        match m.snapshot(id, claim).await {
            Ok(s) => taken.push(s),
            Err(e) => {
                for (c, s) in claims.iter().zip(&taken) {
                    m.drop_snapshot(c, s).await;
                }
                return Err(e);
            }
        }
    }
    Ok(taken)
}

/// Moves each snapshot's data into the repository through a mover pod, then drops the
/// snapshot.
async fn export_volumes(
    m: &Mover<'_>,
    id: &str,
    claims: &[&Value],
    taken: &[String],
    repo: Arc<Repository>,
    cancel: &Cancellation,
    progress: ProgressSink<'_>,
) -> Result<Vec<VolumeEntry>> {
    let total = Some(claims.len() as u64);
    let mut entries = Vec::new();
    let mut bytes = 0;
    let mut failure = None;
    for (n, (claim, snap)) in claims.iter().zip(taken).enumerate() {
        let r = object_ref(claim);
        progress(Progress {
            phase: "volumes".into(),
            message: r.to_string(),
            done: n as u64,
            total,
            bytes: Some(bytes),
        });
        if failure.is_none() {
            failure = cancel.check().err();
        }
        let moved = if failure.is_none() {
            Some(m.export(id, claim, snap, &repo).await)
        } else {
            None
        };
        m.drop_snapshot(claim, snap).await;
        match moved {
            Some(Ok(name)) => {
                let (_, s) = repo.find_snapshot(&name, None).await?;
                bytes += s.summary.bytes;
                entries.push(VolumeEntry {
                    claim: r,
                    storage_class: claim
                        .pointer("/spec/storageClassName")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    mode: mover::mode_of(claim),
                    volume_snapshot: Some(snap.clone()),
                    snapshot: name,
                    tree: s.tree.to_string(),
                    files: s.summary.files,
                    bytes: s.summary.bytes,
                    stored_bytes: s.summary.stored_bytes,
                });
            }
            Some(Err(e)) => failure = Some(e),
            None => {}
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(entries),
    }
}

/// The selected objects, then everything they reach, breadth first.
async fn collect(
    cluster: &Cluster,
    resources: &[Resource],
    map: &ResourceMap,
    filter: &TypeFilter,
    selection: &Selection,
    progress: ProgressSink<'_>,
) -> Result<Collected> {
    let mut out = Collected::default();
    let namespace_type = map.get("", "Namespace").cloned();
    let mut namespaces: Vec<String> = selection.namespaces.clone();
    if let Some(h) = &selection.helm_release {
        if !namespaces.contains(&h.namespace) && selection.namespaces.is_empty() {
            namespaces.push(h.namespace.clone());
        }
    }
    // Namespaces first: each must exist.
    for (i, ns) in namespaces.iter().enumerate() {
        let Some(t) = &namespace_type else { break };
        match cluster.get(t, None, ns).await? {
            Some(obj) => {
                out.add(obj, "selected namespace".into());
            }
            None if i < selection.namespaces.len() => {
                return Err(SpokeError::NotFound {
                    what: format!("namespace {ns} (selection.namespaces[{i}])"),
                })
            }
            None => {
                return Err(SpokeError::NotFound {
                    what: format!("namespace {ns} (selection.helmRelease.namespace)"),
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
