//! Operations as clients start them and as the hub tracks them: a spec, and steps each carried
//! out by one spoke.

use crate::command::ExistingPolicy;
use crate::event::{Progress, StepFailure, StepOutput};
use crate::hooks::HookSpec;
use crate::rules::TransformSpec;
use crate::selection::Selection;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OperationSpec {
    /// Capture a restore point in one cluster.
    Backup(BackupSpec),
    /// Rehydrate a restore point into one cluster.
    Restore(RestoreSpec),
    /// Capture in one cluster and restore into another, as one operation.
    Migrate(MigrateSpec),
    /// Forget a restore point's snapshots in the repository (their data goes at the next prune).
    DeleteRestorePoint(DeleteRestorePointSpec),
    /// Refill the hub's restore-point catalog from a spoke's repository (after the hub lost its
    /// database, or to see restore points another hub made).
    RebuildCatalog(RebuildCatalogSpec),
}

impl OperationSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            OperationSpec::Backup(_) => "backup",
            OperationSpec::Restore(_) => "restore",
            OperationSpec::Migrate(_) => "migrate",
            OperationSpec::DeleteRestorePoint(_) => "delete-restore-point",
            OperationSpec::RebuildCatalog(_) => "rebuild-catalog",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupSpec {
    pub cluster: String,
    pub selection: Selection,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<HookSpec>,
    #[serde(default = "crate::yes")]
    pub volume_data: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestoreSpec {
    pub cluster: String,
    pub restore_point: String,
    #[serde(default)]
    pub transforms: TransformSpec,
    #[serde(default)]
    pub existing: ExistingPolicy,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default = "crate::yes")]
    pub volume_data: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MigrateSpec {
    pub from: String,
    pub to: String,
    pub selection: Selection,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<HookSpec>,
    #[serde(default)]
    pub transforms: TransformSpec,
    #[serde(default)]
    pub existing: ExistingPolicy,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default = "crate::yes")]
    pub volume_data: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeleteRestorePointSpec {
    pub restore_point: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RebuildCatalogSpec {
    pub cluster: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OperationPhase {
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl OperationPhase {
    pub fn is_final(self) -> bool {
        self != OperationPhase::Running
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StepState {
    /// Waiting for an earlier step.
    Pending,
    /// Its command is in the stream; the spoke has not said it started.
    Dispatched,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StepStatus {
    /// `capture`, `restore`, `delete-restore-point`.
    pub name: String,
    pub cluster: String,
    pub state: StepState,
    /// Message id of the step's command (the same on every redelivery).
    pub command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<StepOutput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<StepFailure>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Operation {
    pub id: String,
    pub spec: OperationSpec,
    pub phase: OperationPhase,
    pub created: String,
    pub updated: String,
    pub steps: Vec<StepStatus>,
    /// Why it failed or was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The restore point it made or used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_point: Option<String>,
    /// Recovery-point age at the end of a restore (now − the restore point's consistency time)
    /// and recovery time (the restore's duration), in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpo_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rto_ms: Option<u64>,
}
