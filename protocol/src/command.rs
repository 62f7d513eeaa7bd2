//! Commands from the hub to one spoke, carried by the JetStream command stream. Each names the
//! operation and step it belongs to; the envelope's message id makes it idempotent.

use crate::hooks::HookSpec;
use crate::rules::TransformSpec;
use crate::selection::Selection;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Command {
    pub operation: String,
    /// The step's position in the operation.
    pub step: u32,
    pub body: CommandBody,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CommandBody {
    Capture(Box<CaptureCommand>),
    Restore(Box<RestoreCommand>),
    DeleteRestorePoint(RestorePointCommand),
    VerifyRestorePoint(VerifyCommand),
    /// Report every restore point in the repository (to rebuild the hub's catalog).
    ListRestorePoints(ListRestorePointsCommand),
}

impl CommandBody {
    pub fn name(&self) -> &'static str {
        match self {
            CommandBody::Capture(_) => "capture",
            CommandBody::Restore(_) => "restore",
            CommandBody::DeleteRestorePoint(_) => "delete-restore-point",
            CommandBody::VerifyRestorePoint(_) => "verify-restore-point",
            CommandBody::ListRestorePoints(_) => "list-restore-points",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaptureCommand {
    /// Chosen by the hub, so a redelivered command finds the restore point it already wrote.
    pub restore_point: String,
    pub selection: Selection,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<HookSpec>,
    /// Capture volume data (VolumeSnapshots and mover pods); objects only when false.
    #[serde(default = "crate::yes")]
    pub volume_data: bool,
}

/// What to do with an object that already exists in the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ExistingPolicy {
    /// Leave it as it is.
    #[default]
    Skip,
    /// Replace its spec and metadata with the restore point's.
    Update,
    /// Fail the restore before anything is written.
    Fail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestoreCommand {
    pub restore_point: String,
    #[serde(default)]
    pub transforms: TransformSpec,
    #[serde(default)]
    pub existing: ExistingPolicy,
    /// Plan against the live target and change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Fill PVCs with the restore point's volume data.
    #[serde(default = "crate::yes")]
    pub volume_data: bool,
    /// How long to wait for each readiness gate (CRD established, operator available).
    #[serde(default = "default_wait")]
    pub wait_timeout_seconds: u64,
}

fn default_wait() -> u64 {
    120
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestorePointCommand {
    pub restore_point: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerifyCommand {
    pub restore_point: String,
    /// Read and authenticate every blob, not only the structure.
    #[serde(default)]
    pub read_data: bool,
}

/// On a spoke's control subject: stop working on an operation's commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Cancel {
    pub operation: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListRestorePointsCommand {}
