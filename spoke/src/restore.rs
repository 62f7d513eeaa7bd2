//! Restore: a restore point rehydrated into this cluster.
//!
//! Plan, then execute. The plan reads the restore point (each object checked against the
//! manifest), applies the transform rules, orders the objects with the transform library's
//! dependency graph and reads each from the live target to decide create, update or skip. A
//! dry run stops there; an existing object under the `fail` policy stops there too, before
//! anything is written. Execution creates in order, waiting on readiness gates (CRDs
//! established before their resources, operators available before the resources they
//! reconcile), then re-links owner references by name.
//!
//! Every restored object carries [`RESTORED_FROM_ANNOTATION`]: a redelivered command (or a
//! restore resumed after a crash) skips what it already wrote instead of failing or duplicating.

use crate::cancel::Cancellation;
use crate::capture::{phase_timing, ProgressSink};
use crate::cluster::{object_ref, Cluster, Resource, ResourceMap};
use crate::error::{Result, SpokeError};
use crate::mover::{self, Mover, MoverConfig, FILLED_FROM_ANNOTATION};
use crate::restore_point;
use ferry_protocol::command::{ExistingPolicy, RestoreCommand};
use ferry_protocol::event::{
    ObjectAction, PlannedObject, Progress, RestoreReport, MAX_PLANNED_OBJECTS,
};
use ferry_protocol::restore_point::VolumeEntry;
use ferry_protocol::ObjectRef;
use ferry_repository::repo::Repository;
use ferry_transform::order::{restore_order, ReadinessGate};
use ferry_transform::sanitize::{SanitizeOptions, OWNER_REFERENCES_ANNOTATION};
use ferry_transform::{compile, Transformer};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// On every restored object: the restore point it came from.
pub const RESTORED_FROM_ANNOTATION: &str = "ferry.dev/restored-from";

/// One object of the plan.
struct Planned {
    object: Value,
    reference: ObjectRef,
    /// `None`: a custom resource whose CRD this restore creates first.
    resource: Option<Resource>,
    action: ObjectAction,
    reason: String,
    gate: Option<ReadinessGate>,
    /// A claim's data in the restore point, to fill it with before anything mounts it.
    volume: Option<VolumeEntry>,
}

pub async fn restore(
    cluster: &Cluster,
    repo: Arc<Repository>,
    command: &RestoreCommand,
    mover: Option<&MoverConfig>,
    cancel: &Cancellation,
    progress: ProgressSink<'_>,
) -> Result<RestoreReport> {
    let started = Instant::now();
    let mut phases = Vec::new();
    let id = &command.restore_point;
    let rules = compile(&command.transforms)
        .map_err(|e| SpokeError::invalid("transforms", e.to_string()))?;
    progress(Progress {
        phase: "read".into(),
        message: format!("restore point {id}"),
        ..Default::default()
    });
    let (manifest, objects) = restore_point::read(repo, id).await?;
    let fill = command.volume_data && !manifest.volumes.is_empty();
    if fill && mover.is_none() {
        return Err(SpokeError::invalid(
            "volumeData",
            "this spoke has no mover configured (ferry-spoke run --mover-image)",
        ));
    }
    // Volumes by their claim in the source.
    let volumes: std::collections::HashMap<(Option<String>, String), VolumeEntry> = manifest
        .volumes
        .iter()
        .filter(|_| fill)
        .map(|v| ((v.claim.namespace.clone(), v.claim.name.clone()), v.clone()))
        .collect();
    let outcome = Transformer::new(rules, SanitizeOptions::default())
        .transform_owned(objects)
        .map_err(|e| SpokeError::invalid("transforms", e.to_string()))?;
    let mut warnings: Vec<String> = outcome
        .warnings
        .iter()
        .map(|w| format!("{}: {}", w.source, w.message))
        .collect();
    let mut omitted: Vec<PlannedObject> = outcome
        .dropped
        .iter()
        .map(|d| PlannedObject {
            object: d.source.clone(),
            action: ObjectAction::Omit,
            reason: d.reason.clone(),
        })
        .collect();
    let mut transformed: Vec<Value> = Vec::with_capacity(outcome.objects.len());
    let mut sources: Vec<ObjectRef> = Vec::with_capacity(outcome.objects.len());
    for t in outcome.objects {
        let mut o = t.object;
        if let Some(why) = provisioned_volume(&o) {
            omitted.push(PlannedObject {
                object: object_ref(&o),
                action: ObjectAction::Omit,
                reason: why,
            });
            continue;
        }
        o["metadata"]["annotations"][RESTORED_FROM_ANNOTATION] = json!(id);
        transformed.push(o);
        sources.push(t.source);
    }
    phases.push(phase_timing("transform", started));

    let plan_started = Instant::now();
    let order = restore_order(&transformed);
    warnings.extend(order.broken_cycles.iter().cloned());
    let mut map = ResourceMap::new(&cluster.discover().await?);
    let crds_in_set: Vec<(String, String)> = transformed
        .iter()
        .filter(|o| o.get("kind").and_then(Value::as_str) == Some("CustomResourceDefinition"))
        .map(|o| {
            (
                o.pointer("/spec/group")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                o.pointer("/spec/names/kind")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    let mut slots: Vec<Option<Value>> = transformed.into_iter().map(Some).collect();
    let mut plan = Vec::with_capacity(slots.len());
    let total = order.steps.len() as u64;
    for (n, (index, step)) in order.steps.into_iter().enumerate() {
        let object = slots[index].take().expect("each object is ordered once");
        let reference = step.object;
        let resource = map.for_object(&reference);
        let (action, reason) = match &resource {
            Some(r) => decide(cluster, r, &reference, id, command.existing).await?,
            None if crds_in_set.contains(&(reference.group.clone(), reference.kind.clone())) => {
                (ObjectAction::Create, "its CustomResourceDefinition is restored first".into())
            }
            None => {
                return Err(SpokeError::invalid(
                    "restorePoint",
                    format!("{reference}: the target cluster serves no such resource type, and the restore point has no CustomResourceDefinition for it"),
                ))
            }
        };
        if n % 200 == 199 {
            progress(Progress {
                phase: "plan".into(),
                done: n as u64 + 1,
                total: Some(total),
                ..Default::default()
            });
        }
        let source = &sources[index];
        let volume = volumes
            .get(&(source.namespace.clone(), source.name.clone()))
            .filter(|_| source.kind == "PersistentVolumeClaim" && source.group.is_empty())
            .cloned();
        plan.push(Planned {
            object,
            reference,
            resource,
            action,
            reason,
            gate: step.gate,
            volume,
        });
    }
    if command.existing == ExistingPolicy::Fail {
        if let Some(p) = plan.iter().find(|p| p.reason == EXISTS_FAIL) {
            return Err(SpokeError::AlreadyExists {
                object: Box::new(p.reference.clone()),
            });
        }
    }
    phases.push(phase_timing("plan", plan_started));

    if !command.dry_run {
        let apply_started = Instant::now();
        let kinds = match mover {
            Some(_) if fill => Some(mover::Kinds::new(&map)?),
            _ => None,
        };
        let movers = match (mover, &kinds) {
            (Some(config), Some(kinds)) => Some(Mover {
                cluster,
                config,
                kinds,
            }),
            _ => None,
        };
        execute(
            cluster,
            &mut map,
            &mut plan,
            command,
            movers.as_ref(),
            cancel,
            progress,
        )
        .await?;
        phases.push(phase_timing("apply", apply_started));
        let relink_started = Instant::now();
        relink_owners(cluster, &map, &plan).await?;
        phases.push(phase_timing("owners", relink_started));
    }
    let count = |a: ObjectAction| plan.iter().filter(|p| p.action == a).count() as u64;
    let mut objects: Vec<PlannedObject> = plan
        .iter()
        .map(|p| PlannedObject {
            object: p.reference.clone(),
            action: p.action,
            reason: p.reason.clone(),
        })
        .chain(omitted.iter().cloned())
        .collect();
    let truncated = objects.len() > MAX_PLANNED_OBJECTS;
    objects.truncate(MAX_PLANNED_OBJECTS);
    Ok(RestoreReport {
        restore_point: id.clone(),
        dry_run: command.dry_run,
        created: count(ObjectAction::Create),
        updated: count(ObjectAction::Update),
        skipped: count(ObjectAction::Skip),
        omitted: omitted.len() as u64,
        volumes: plan.iter().filter(|p| p.volume.is_some()).count() as u64,
        volume_bytes: plan
            .iter()
            .filter_map(|p| p.volume.as_ref())
            .map(|v| v.bytes)
            .sum(),
        objects,
        objects_truncated: truncated,
        phases,
        warnings,
    })
}

const EXISTS_FAIL: &str = "exists in the target; the policy is fail";

/// What to do with one object, from what the target has.
async fn decide(
    cluster: &Cluster,
    r: &Resource,
    reference: &ObjectRef,
    id: &str,
    policy: ExistingPolicy,
) -> Result<(ObjectAction, String)> {
    let existing = cluster
        .get(r, reference.namespace.as_deref(), &reference.name)
        .await?;
    let Some(existing) = existing else {
        return Ok((ObjectAction::Create, String::new()));
    };
    let from = existing
        .pointer(&format!(
            "/metadata/annotations/{}",
            RESTORED_FROM_ANNOTATION.replace('/', "~1")
        ))
        .and_then(Value::as_str);
    if from == Some(id) {
        return Ok((
            ObjectAction::Skip,
            "already restored from this restore point".into(),
        ));
    }
    Ok(match policy {
        ExistingPolicy::Skip => (
            ObjectAction::Skip,
            "exists in the target; the policy is skip".into(),
        ),
        ExistingPolicy::Update => (
            ObjectAction::Update,
            "exists in the target; the policy is update".into(),
        ),
        ExistingPolicy::Fail => (ObjectAction::Skip, EXISTS_FAIL.into()),
    })
}

/// Dynamically provisioned volumes are not restored: the target's provisioner makes a new one
/// for the claim (and the data mover fills it). Only pre-provisioned volumes travel.
fn provisioned_volume(obj: &Value) -> Option<String> {
    if obj.get("kind").and_then(Value::as_str) != Some("PersistentVolume") {
        return None;
    }
    let by = obj
        .pointer("/metadata/annotations/pv.kubernetes.io~1provisioned-by")
        .and_then(Value::as_str)?;
    Some(format!(
        "dynamically provisioned by {by}: the target provisions a volume for the claim"
    ))
}

async fn execute(
    cluster: &Cluster,
    map: &mut ResourceMap,
    plan: &mut [Planned],
    command: &RestoreCommand,
    mover: Option<&Mover<'_>>,
    cancel: &Cancellation,
    progress: ProgressSink<'_>,
) -> Result<()> {
    let total = plan.len() as u64;
    let timeout = Duration::from_secs(command.wait_timeout_seconds);
    for (n, p) in plan.iter_mut().enumerate() {
        // Between objects: what was created stays, and a restore run again skips it.
        cancel.check()?;
        if p.resource.is_none() {
            // Its CRD was created and established earlier in this loop: discovery is read
            // again once per new type, not once per object.
            p.resource = map.for_object(&p.reference);
            if p.resource.is_none() {
                *map = ResourceMap::new(&cluster.discover().await?);
                p.resource = map.for_object(&p.reference);
            }
        }
        let Some(r) = p.resource.clone() else {
            return Err(SpokeError::invalid(
                "restorePoint",
                format!("{}: its CustomResourceDefinition was restored but the cluster does not serve the type", p.reference),
            ));
        };
        match p.action {
            ObjectAction::Create => match cluster.create(&r, &p.object, false).await {
                Ok(_) => {}
                // Created since the plan (by an operator or another writer): the plan's policy
                // decides again.
                Err(e) if e.status() == Some(409) => {
                    let (action, reason) = decide(
                        cluster,
                        &r,
                        &p.reference,
                        &command.restore_point,
                        command.existing,
                    )
                    .await?;
                    if reason == EXISTS_FAIL {
                        return Err(SpokeError::AlreadyExists {
                            object: Box::new(p.reference.clone()),
                        });
                    }
                    if action == ObjectAction::Update {
                        cluster.apply(&r, &p.object, false).await?;
                    }
                    p.action = action;
                    p.reason = format!("appeared in the target during the restore; {reason}");
                }
                Err(e) => return Err(e),
            },
            ObjectAction::Update => {
                cluster.apply(&r, &p.object, false).await?;
            }
            ObjectAction::Skip | ObjectAction::Omit => {}
        }
        if let (Some(volume), Some(m)) = (&p.volume, mover) {
            fill(cluster, &r, p, volume, m, &command.restore_point, progress).await?;
        }
        if let Some(gate) = p.gate {
            if gate != ReadinessGate::Bound {
                progress(Progress {
                    phase: "wait".into(),
                    message: format!("{} {gate:?}", p.reference),
                    done: n as u64,
                    total: Some(total),
                    ..Default::default()
                });
                wait_for(cluster, &r, &p.reference, gate, timeout).await?;
            }
        }
        if n % 100 == 99 || n as u64 + 1 == total {
            progress(Progress {
                phase: "apply".into(),
                done: n as u64 + 1,
                total: Some(total),
                ..Default::default()
            });
        }
    }
    Ok(())
}

/// Fills a claim this restore made with its data, once: a claim not made by this restore point
/// (the user's own, left by the skip policy) is never written, and one already filled is not
/// filled again.
async fn fill(
    cluster: &Cluster,
    r: &Resource,
    p: &Planned,
    volume: &VolumeEntry,
    m: &Mover<'_>,
    id: &str,
    progress: ProgressSink<'_>,
) -> Result<()> {
    let ns = p.reference.namespace.as_deref();
    let Some(current) = cluster.get(r, ns, &p.reference.name).await? else {
        return Ok(());
    };
    let annotation = |key: &str| {
        current
            .pointer(&format!("/metadata/annotations/{}", key.replace('/', "~1")))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    if annotation(RESTORED_FROM_ANNOTATION).as_deref() != Some(id)
        || annotation(FILLED_FROM_ANNOTATION).is_some()
    {
        return Ok(());
    }
    progress(Progress {
        phase: "volumes".into(),
        message: format!("{} from {}", p.reference, volume.snapshot),
        bytes: Some(volume.bytes),
        ..Default::default()
    });
    m.restore(id, &p.reference, volume.mode, &volume.snapshot)
        .await?;
    let patch = json!({"metadata": {"annotations": {FILLED_FROM_ANNOTATION: volume.snapshot}}});
    cluster.merge_patch(r, &p.reference, &patch).await?;
    Ok(())
}

async fn wait_for(
    cluster: &Cluster,
    r: &Resource,
    reference: &ObjectRef,
    gate: ReadinessGate,
    timeout: Duration,
) -> Result<()> {
    let passed = cluster
        .watch_until(
            r,
            reference.namespace.as_deref(),
            &reference.name,
            timeout,
            |o| o.is_some_and(|o| gate.passed(o)).then_some(()),
        )
        .await?;
    passed.ok_or_else(|| SpokeError::Timeout {
        what: format!("{reference} ({gate:?})"),
        object: Some(Box::new(reference.clone())),
        seconds: timeout.as_secs(),
    })
}

/// Owner references were kept by name (their uids are the source cluster's): each is pointed
/// at the owner's uid in this cluster; an owner that is not here is left out.
async fn relink_owners(cluster: &Cluster, map: &ResourceMap, plan: &[Planned]) -> Result<()> {
    let pointer = format!(
        "/metadata/annotations/{}",
        OWNER_REFERENCES_ANNOTATION.replace('/', "~1")
    );
    for p in plan {
        if p.action == ObjectAction::Skip {
            continue;
        }
        let Some(kept) = p.object.pointer(&pointer).and_then(Value::as_str) else {
            continue;
        };
        let Some(r) = &p.resource else { continue };
        let owners: Vec<Value> = serde_json::from_str(kept).unwrap_or_default();
        let mut linked = Vec::new();
        for owner in owners {
            let api_version = owner["apiVersion"].as_str().unwrap_or("");
            let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
            let owner_ref = ObjectRef {
                group: group.into(),
                version: version.into(),
                kind: owner["kind"].as_str().unwrap_or("").into(),
                namespace: p.reference.namespace.clone(),
                name: owner["name"].as_str().unwrap_or("").into(),
            };
            let Some(t) = map.for_object(&owner_ref) else {
                continue;
            };
            let ns = if t.namespaced {
                owner_ref.namespace.as_deref()
            } else {
                None
            };
            if let Some(found) = cluster.get(&t, ns, &owner_ref.name).await? {
                let mut linked_ref = owner.clone();
                linked_ref["uid"] = found
                    .pointer("/metadata/uid")
                    .cloned()
                    .unwrap_or(Value::Null);
                linked.push(linked_ref);
            }
        }
        let patch = json!({"metadata": {
            "ownerReferences": linked,
            "annotations": {OWNER_REFERENCES_ANNOTATION: null}}});
        match cluster.merge_patch(r, &p.reference, &patch).await {
            Ok(_) => {}
            // Deleted since (an operator replaced it): nothing to link.
            Err(e) if e.status() == Some(404) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
