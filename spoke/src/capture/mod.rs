//! Capture: resolve a selection against the cluster, add what the selected objects depend on,
//! and write them as a restore point.
//!
//! Objects go into the restore point's archive as they are read, so a capture of any size holds
//! only their identities (hashed) and the dependencies still to read. The restore point exists
//! once its manifest is written, after the volumes: a capture that fails (a selection naming
//! something missing, a hook, a snapshot) abandons the archive and leaves no restore point. A
//! redelivered command finds the restore point it already wrote and reports it again instead of
//! writing a second.
//!
//! `select` resolves the selection (namespaces, labels, types, a Helm release) and follows
//! dependencies; `operator` resolves an Operator's custom resource.

mod operator;
mod select;

use select::{collect, Collected, TypeFilter};

use crate::cancel::Cancellation;
use crate::cluster::{object_ref, Cluster, ResourceMap};
use crate::error::{Result, SpokeError};
use crate::hooks;
use crate::mover::{self, Mover, MoverConfig};
use crate::restore_point::{self, RestorePointWriter};
use ferry_protocol::command::CaptureCommand;
use ferry_protocol::event::{CaptureReport, PhaseTiming, Progress};
use ferry_protocol::hooks::{HookPhase, HookResult};
use ferry_protocol::restore_point::{Manifest, SourceCluster, VolumeEntry, RESTORE_POINT_FORMAT};
use ferry_protocol::selection::Selection;
use ferry_repository::repo::Repository;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// Where progress goes (the agent turns it into events).
pub type ProgressSink<'a> = &'a (dyn Fn(Progress) + Send + Sync);

/// How long a phase that began at `started` took, for the step's report.
pub fn phase_timing(phase: &str, started: Instant) -> PhaseTiming {
    PhaseTiming {
        phase: phase.to_string(),
        millis: started.elapsed().as_millis() as u64,
    }
}

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

/// Checks a selection before anything is read; errors name the field.
pub fn validate(selection: &Selection, field: &str) -> Result<()> {
    ferry_transform::selection::validate(selection, field)
        .map_err(|e| SpokeError::invalid(e.field, e.message))
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
    hooks::validate(&command.hooks)?;
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

    // Objects are written as they are read; the restore point exists only once its manifest
    // is written, after the volumes.
    let writer = RestorePointWriter::begin(repo.clone(), id).await?;
    let mut collected = Collected::new(writer, &map, &filter);
    let taken = take(
        &source,
        &repo,
        command,
        &resources,
        movers.as_ref(),
        &mut collected,
        (&mut phases, started),
        progress,
    )
    .await;
    let Collected { writer, .. } = collected;
    let (hook_results, consistent_at, volumes) = match taken {
        Ok(taken) => taken,
        Err(e) => {
            writer.abandon().await;
            return Err(e);
        }
    };
    let write_started = Instant::now();
    let total = writer.count();
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
        objects: (),
        volumes,
        skipped: Vec::new(),
    };
    let (name, manifest, snapshot) = writer.finish(manifest).await?;
    phases.push(phase_timing("write", write_started));
    progress(Progress {
        phase: "objects".into(),
        done: total,
        total: Some(total),
        ..Default::default()
    });
    Ok(CaptureReport {
        restore_point: manifest.summary(&name, snapshot.summary.stored_bytes),
        kinds,
        hooks: manifest.hooks,
        volumes: manifest.volumes,
        phases,
        warnings: Vec::new(),
    })
}

/// Everything before the manifest: the objects (written as found), then the consistent point
/// (pre hooks, every volume snapshot, post hooks), then the volume data; `phases` gets their
/// timings, the first from `started`. Returns the hook
/// results, when the point was consistent, and the volumes.
#[allow(clippy::too_many_arguments)]
async fn take(
    source: &Source<'_>,
    repo: &Arc<Repository>,
    command: &CaptureCommand,
    resources: &[crate::cluster::Resource],
    movers: Option<&Mover<'_>>,
    collected: &mut Collected<'_>,
    (phases, started): (&mut Vec<PhaseTiming>, Instant),
    progress: ProgressSink<'_>,
) -> Result<(Vec<HookResult>, Option<String>, Vec<VolumeEntry>)> {
    let id = &command.restore_point;
    collect(
        source.cluster,
        resources,
        &command.selection,
        collected,
        progress,
    )
    .await?;
    phases.push(phase_timing("discover", started));
    source.cancel.check()?;

    let pod_hooks = std::mem::take(&mut collected.pod_hooks);
    let hook_list =
        hooks::collect(source.cluster, collected.map, &command.hooks, pod_hooks).await?;
    let claims: Vec<&Value> = match command.volume_data {
        true => collected.claims.iter().collect(),
        false => Vec::new(),
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
    let taken = match movers {
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
        if let Some(m) = movers {
            for (c, s) in claims.iter().zip(&taken) {
                m.drop_snapshot(c, s).await;
            }
        }
        return Err(e);
    }
    phases.push(phase_timing("snapshots", point_started));
    let mut volumes = Vec::new();
    if let Some(m) = movers {
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
        phases.push(phase_timing("volumes", volumes_started));
    }
    source.cancel.check()?;
    Ok((hook_results, consistent_at, volumes))
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

/// Mover pods running at once: each waits on its pod as much as it computes, and volumes are
/// independent.
const MOVERS_AT_ONCE: usize = 4;

/// Moves each snapshot's data into the repository through a mover pod, then drops the
/// snapshot. Several volumes move at once; once one fails (or the capture is cancelled) no
/// further mover starts, and every snapshot is dropped either way.
async fn export_volumes(
    m: &Mover<'_>,
    id: &str,
    claims: &[&Value],
    taken: &[String],
    repo: Arc<Repository>,
    cancel: &Cancellation,
    progress: ProgressSink<'_>,
) -> Result<Vec<VolumeEntry>> {
    use futures::StreamExt;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let total = Some(claims.len() as u64);
    let (failed, done, bytes) = (AtomicBool::new(false), AtomicU64::new(0), AtomicU64::new(0));
    let moved: Vec<Result<Option<VolumeEntry>>> = futures::stream::iter(claims.iter().zip(taken))
        .map(|(claim, snap)| async {
            let moved = if failed.load(Ordering::Relaxed) {
                Ok(None)
            } else {
                export_volume(m, id, claim, snap, &repo, cancel)
                    .await
                    .map(Some)
            };
            m.drop_snapshot(claim, snap).await;
            match &moved {
                Err(_) => failed.store(true, Ordering::Relaxed),
                Ok(Some(entry)) => {
                    bytes.fetch_add(entry.bytes, Ordering::Relaxed);
                }
                Ok(None) => {}
            }
            progress(Progress {
                phase: "volumes".into(),
                message: object_ref(claim).to_string(),
                done: done.fetch_add(1, Ordering::Relaxed) + 1,
                total,
                bytes: Some(bytes.load(Ordering::Relaxed)),
            });
            moved
        })
        .buffered(MOVERS_AT_ONCE)
        .collect()
        .await;
    // The first failure in claim order is the one reported.
    let mut entries = Vec::new();
    for entry in moved {
        entries.extend(entry?);
    }
    Ok(entries)
}

/// One claim's data into the repository, described for the manifest.
async fn export_volume(
    m: &Mover<'_>,
    id: &str,
    claim: &Value,
    snap: &str,
    repo: &Repository,
    cancel: &Cancellation,
) -> Result<VolumeEntry> {
    cancel.check()?;
    let name = m.export(id, claim, snap, repo).await?;
    let (_, s) = repo.find_snapshot(&name, None).await?;
    Ok(VolumeEntry {
        claim: object_ref(claim),
        storage_class: claim
            .pointer("/spec/storageClassName")
            .and_then(Value::as_str)
            .map(str::to_string),
        mode: mover::mode_of(claim),
        volume_snapshot: Some(snap.to_string()),
        snapshot: name,
        tree: s.tree.to_string(),
        files: s.summary.files,
        bytes: s.summary.bytes,
        stored_bytes: s.summary.stored_bytes,
    })
}
