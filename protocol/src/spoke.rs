//! What a spoke says about itself: its registration when it starts (and whenever the hub asks,
//! by restarting), and heartbeats while it runs.

use serde::{Deserialize, Serialize};

/// Things a spoke can do, so the hub never sends a command a spoke cannot carry out.
pub mod capability {
    pub const CAPTURE: &str = "capture";
    pub const RESTORE: &str = "restore";
    /// Volume data through VolumeSnapshots and mover pods.
    pub const VOLUME_DATA: &str = "volume-data";
    pub const HOOKS: &str = "hooks";
    pub const HELM: &str = "helm";
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Registration {
    pub cluster: String,
    pub kubernetes_version: String,
    pub ferry_version: String,
    pub capabilities: Vec<String>,
    #[serde(default)]
    pub storage_classes: Vec<StorageClassInfo>,
    #[serde(default)]
    pub snapshot_classes: Vec<String>,
    /// The repository the spoke writes restore points to. Two spokes can move an application
    /// between them only when they share one (the same id).
    pub repository: RepositoryInfo,
    /// RFC 3339: a new value means the spoke restarted (and may have lost work in memory).
    pub started: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StorageClassInfo {
    pub name: String,
    pub provisioner: String,
    #[serde(default)]
    pub default: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RepositoryInfo {
    /// The repository's id from its config: equal ids are the same repository, whatever URL
    /// each spoke reaches it by.
    pub id: String,
    /// Its location, without credentials.
    pub location: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Heartbeat {
    pub cluster: String,
    /// The same value as in its registration.
    pub started: String,
    /// Message ids of the commands it is working on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active_commands: Vec<String>,
}
