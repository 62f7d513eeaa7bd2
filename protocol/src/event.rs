//! What a spoke reports about the commands it works on: started, progress, and one result.

use crate::restore_point::RestorePointSummary;
use crate::ObjectRef;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OperationEvent {
    pub operation: String,
    pub step: u32,
    /// Message id of the command this reports on.
    pub command: String,
    pub body: EventBody,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EventBody {
    Started,
    Progress(Progress),
    Succeeded(StepOutput),
    Failed(StepFailure),
}

impl EventBody {
    /// Whether this ends the step.
    pub fn is_final(&self) -> bool {
        matches!(self, EventBody::Succeeded(_) | EventBody::Failed(_))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Progress {
    /// `discover`, `hooks`, `snapshots`, `volumes`, `objects`, `apply`, `wait`, ...
    pub phase: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    pub done: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// Volume bytes moved so far, where there are any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StepOutput {
    Captured(CaptureReport),
    Restored(RestoreReport),
    Deleted(DeleteReport),
    Verified(VerifyReport),
    Listed(ListReport),
}

/// Every restore point a spoke's repository holds, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListReport {
    pub restore_points: Vec<crate::api::RestorePointDetails>,
    /// Restore points whose manifest could not be read, with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<String>,
}

/// How long a phase of a step took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PhaseTiming {
    pub phase: String,
    pub millis: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaptureReport {
    pub restore_point: RestorePointSummary,
    /// Objects by kind (`Deployment.apps`: 3), for the headline.
    pub kinds: std::collections::BTreeMap<String, u64>,
    /// What the hooks did, and the volumes moved (as in the manifest).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<crate::hooks::HookResult>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<crate::restore_point::VolumeEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<PhaseTiming>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ObjectAction {
    Create,
    Update,
    /// Already there and left alone (the existing-resource policy, or written by this very
    /// restore before a redelivery).
    Skip,
    /// Left out of the restore on purpose (a transform dropped it, its operator recreates it).
    Omit,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlannedObject {
    /// As in the target (after transforms).
    pub object: ObjectRef,
    pub action: ObjectAction,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// Plans longer than this are cut in events (a NATS message has a size limit); the counts stay
/// exact and `--dry-run` on the CLI pages through the rest.
pub const MAX_PLANNED_OBJECTS: usize = 5000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestoreReport {
    pub restore_point: String,
    pub dry_run: bool,
    pub created: u64,
    pub updated: u64,
    pub skipped: u64,
    pub omitted: u64,
    pub volumes: u64,
    pub volume_bytes: u64,
    /// Every object in restore order with what was (or, dry-run, would be) done.
    pub objects: Vec<PlannedObject>,
    #[serde(default)]
    pub objects_truncated: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<PhaseTiming>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeleteReport {
    pub restore_point: String,
    /// Repository snapshots forgotten (the manifest's and each volume's).
    pub snapshots: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerifyReport {
    pub restore_point: String,
    pub objects: u64,
    pub volumes: u64,
    pub read_data: bool,
    /// Empty when everything verified.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// Why a step failed, in terms an operator can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FailureReason {
    /// The command itself is wrong (a selector, a transform rule); retrying cannot help.
    InvalidSpec,
    /// Something the command names does not exist (a restore point, a namespace).
    NotFound,
    /// The cluster's API could not be reached or answered with server errors.
    ClusterUnavailable,
    /// The cluster refused a request (forbidden, invalid object, conflict).
    ClusterRejected,
    /// An object already exists and the policy is `fail`.
    AlreadyExists,
    /// The repository is unreachable, locked or damaged.
    Repository,
    /// A hook failed with `onError: fail`.
    Hook,
    /// A readiness gate was not passed in time.
    Timeout,
    /// The operation was cancelled.
    Cancelled,
    /// The spoke did not answer within the hub's deadline.
    SpokeLost,
    /// The message could not be read.
    Malformed,
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StepFailure {
    pub reason: FailureReason,
    pub message: String,
    /// The object the failure is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectRef>,
    /// The field of the command or object at fault (`selection.labelSelector`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Whether running the step again may succeed (it resumes where it stopped).
    pub retryable: bool,
}
