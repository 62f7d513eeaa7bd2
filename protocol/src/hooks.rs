//! Exec hooks around volume snapshots: commands run in application pods to quiesce them
//! (`CHECKPOINT`, `fsfreeze`) before the snapshots and to resume them after.

use serde::{Deserialize, Serialize};

/// Annotations on a pod that declare hooks the way Velero's do, so applications already
/// annotated for it need no change: `pre.hook.backup.ferry.dev/command` holds a JSON array.
pub const POD_PRE_HOOK_COMMAND: &str = "pre.hook.backup.ferry.dev/command";
pub const POD_PRE_HOOK_CONTAINER: &str = "pre.hook.backup.ferry.dev/container";
pub const POD_PRE_HOOK_TIMEOUT: &str = "pre.hook.backup.ferry.dev/timeout";
pub const POD_PRE_HOOK_ON_ERROR: &str = "pre.hook.backup.ferry.dev/on-error";
pub const POD_POST_HOOK_COMMAND: &str = "post.hook.backup.ferry.dev/command";
pub const POD_POST_HOOK_CONTAINER: &str = "post.hook.backup.ferry.dev/container";
pub const POD_POST_HOOK_TIMEOUT: &str = "post.hook.backup.ferry.dev/timeout";
pub const POD_POST_HOOK_ON_ERROR: &str = "post.hook.backup.ferry.dev/on-error";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum HookPhase {
    /// Before the volume snapshots.
    Pre,
    /// After them, whatever the snapshots' outcome.
    Post,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OnError {
    /// The capture fails (post hooks still run).
    #[default]
    Fail,
    /// Recorded in the restore point; the capture goes on.
    Continue,
}

/// A hook in a backup spec: run `command` in `container` of every pod in `namespace` that
/// matches `labelSelector`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HookSpec {
    pub name: String,
    pub phase: HookPhase,
    pub namespace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
    /// The pod's first container when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    pub command: Vec<String>,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    #[serde(default)]
    pub on_error: OnError,
}

fn default_timeout() -> u64 {
    30
}

/// What a hook did, kept in the restore point's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HookResult {
    pub name: String,
    pub phase: HookPhase,
    /// `namespace/pod`.
    pub pod: String,
    pub container: String,
    pub succeeded: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The end of its output, for the operator to read (never more than a few KiB).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output: String,
    pub duration_ms: u64,
}
