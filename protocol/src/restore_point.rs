//! Restore points as stored: a manifest and the captured objects, written as one snapshot of the
//! volume repository (so one key protects objects and data), plus one repository snapshot per
//! volume. `docs/restore-points.md` specifies the layout; these are the types.

use crate::hooks::HookResult;
use crate::selection::Selection;
use crate::ObjectRef;
use serde::{Deserialize, Serialize};

/// The restore-point format this build writes.
pub const RESTORE_POINT_FORMAT: u32 = 1;

/// The snapshot's file with the manifest.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The snapshot's file with the objects: one JSON object per line, in capture order.
pub const OBJECTS_FILE: &str = "objects.jsonl";
/// Tag on every repository snapshot that belongs to a restore point (its manifest snapshot and
/// its volume snapshots): `ferry.restore-point=<id>`.
pub const RESTORE_POINT_TAG: &str = "ferry.restore-point";
/// Tag that marks the manifest snapshot itself.
pub const MANIFEST_TAG: &str = "ferry.manifest";

/// Source names restore points' snapshots are recorded under, so `ferry-spoke repo snapshots`
/// shows what each is.
pub fn manifest_source(id: &str) -> String {
    format!("restore-point/{id}")
}

pub fn volume_source(id: &str, namespace: &str, claim: &str) -> String {
    format!("restore-point/{id}/volumes/{namespace}/{claim}")
}

/// `O` is the object list: read back it is a `Vec<ObjectEntry>`; a writer may stream it from
/// wherever it kept the entries while capturing (it must serialize as the same JSON array).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Manifest<O = Vec<ObjectEntry>> {
    pub format: u32,
    pub id: String,
    /// RFC 3339, when the capture began.
    pub created: String,
    /// When the volume snapshots were taken (between the pre and post hooks); the restore
    /// point's data is as of this moment, which is what RPO is measured against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistent_at: Option<String>,
    pub source: SourceCluster,
    pub selection: Selection,
    /// The operation that made it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<HookResult>,
    /// Every captured object, in the order of the objects file.
    pub objects: O,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeEntry>,
    /// Why each object the selection reached was not captured (excluded types, Forbidden).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceCluster {
    pub cluster: String,
    pub kubernetes_version: String,
    pub ferry_version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectEntry {
    pub object: ObjectRef,
    /// Why it was captured: `selected`, or the object that needed it.
    pub reason: String,
    /// Bytes of its line in the objects file and their BLAKE3 hash (hex), so a damaged or
    /// altered object is named on restore.
    pub bytes: u64,
    pub blake3: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum VolumeMode {
    Filesystem,
    Block,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeEntry {
    /// The PersistentVolumeClaim.
    pub claim: ObjectRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    pub mode: VolumeMode,
    /// The VolumeSnapshot taken of it in the source cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_snapshot: Option<String>,
    /// The repository snapshot holding its data.
    pub snapshot: String,
    /// The repository snapshot's root tree (filesystem) or block map id: its checksum.
    pub tree: String,
    pub files: u64,
    pub bytes: u64,
    /// What this volume added to the repository (after dedup and compression).
    #[serde(default)]
    pub stored_bytes: u64,
}

/// A restore point as listed: the manifest's headline without the object list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestorePointSummary {
    pub id: String,
    pub created: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistent_at: Option<String>,
    pub cluster: String,
    /// The repository snapshot holding the manifest and objects.
    pub snapshot: String,
    pub objects: u64,
    pub volumes: u64,
    /// Volume bytes, and what the capture added to the repository (after dedup and compression).
    pub volume_bytes: u64,
    pub stored_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
}

/// How many objects a manifest's object list names, however it is held.
pub trait ObjectCount {
    fn object_count(&self) -> u64;
}

impl ObjectCount for Vec<ObjectEntry> {
    fn object_count(&self) -> u64 {
        self.len() as u64
    }
}

impl<O> Manifest<O> {
    /// The same manifest with another object list.
    pub fn with_objects<P>(self, objects: P) -> Manifest<P> {
        Manifest {
            format: self.format,
            id: self.id,
            created: self.created,
            consistent_at: self.consistent_at,
            source: self.source,
            selection: self.selection,
            operation: self.operation,
            hooks: self.hooks,
            objects,
            volumes: self.volumes,
            skipped: self.skipped,
        }
    }
}

impl<O: ObjectCount> Manifest<O> {
    /// The headline; `objects_stored` is what the objects' archive added to the repository.
    pub fn summary(&self, snapshot: &str, objects_stored: u64) -> RestorePointSummary {
        RestorePointSummary {
            id: self.id.clone(),
            created: self.created.clone(),
            consistent_at: self.consistent_at.clone(),
            cluster: self.source.cluster.clone(),
            snapshot: snapshot.to_string(),
            objects: self.objects.object_count(),
            volumes: self.volumes.len() as u64,
            volume_bytes: self.volumes.iter().map(|v| v.bytes).sum(),
            stored_bytes: objects_stored + self.volumes.iter().map(|v| v.stored_bytes).sum::<u64>(),
            operation: self.operation.clone(),
        }
    }
}
