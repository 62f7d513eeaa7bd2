//! The hub's request/reply API for clients (the `ferry` CLI, alerting, CI, chat-ops).
//!
//! A request goes to `<p>.v1.api.<resource>.<verb>` in an envelope; the reply comes on the
//! request's reply subject, in an envelope whose body is an [`ApiReply`] and whose correlation
//! id is the request's message id. Watching an operation is a subscription to
//! `<p>.v1.op.<id>.events`, where the hub publishes the whole [`Operation`] on every change.
//!
//! [`Operation`]: crate::operation::Operation

use crate::operation::{OperationPhase, OperationSpec};
use crate::restore_point::RestorePointSummary;
use crate::spoke::Registration;
use serde::{Deserialize, Serialize};

/// Each API endpoint as `(resource, verb)`, for the hub's router and the docs.
pub const ENDPOINTS: &[(&str, &str)] = &[
    ("operations", "start"),
    ("operations", "get"),
    ("operations", "list"),
    ("operations", "cancel"),
    ("clusters", "list"),
    ("restorepoints", "list"),
    ("restorepoints", "describe"),
    ("restorepoints", "delete"),
    ("restorepoints", "rebuild"),
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartOperation {
    pub spec: OperationSpec,
    /// Chosen by the client to make the request idempotent: a second start with the same id
    /// returns the operation the first one created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// `operations.get`, `operations.cancel`, `restorepoints.describe`, `restorepoints.delete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ById {
    pub id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListOperations {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<OperationPhase>,
    /// Newest first; at most this many (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListRestorePoints {
    /// Only those captured in this cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
}

/// `restorepoints.rebuild`: the spoke whose repository to read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RebuildCatalog {
    pub cluster: String,
}

/// `clusters.list` takes an empty object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterStatus {
    pub registration: Registration,
    /// RFC 3339, the last registration or heartbeat.
    pub last_seen: String,
    /// Seen within the hub's deadline.
    pub connected: bool,
}

/// `restorepoints.describe`: the manifest's headline, hooks and volumes, and objects counted by
/// kind (the full object list stays in the repository: `ferry-spoke repo restore` reads it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestorePointDetails {
    pub summary: RestorePointSummary,
    pub source: crate::restore_point::SourceCluster,
    pub selection: crate::selection::Selection,
    pub kinds: std::collections::BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<crate::hooks::HookResult>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<crate::restore_point::VolumeEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ApiReply<T> {
    Ok(T),
    Error(ApiError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ApiErrorCode {
    /// The request could not be read (not JSON, unknown field, wrong type).
    Malformed,
    /// It was read but is not valid (an unknown cluster, a bad selector).
    Invalid,
    NotFound,
    /// The subject names no endpoint.
    UnknownEndpoint,
    /// The request is valid but cannot be done now (cancelling a finished operation).
    Conflict,
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiError {
    pub code: ApiErrorCode,
    pub message: String,
    /// The request field at fault, as a path (`spec.migrate.selection.labelSelector`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{field}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ApiError {}

/// Restore points as `restorepoints.list` returns them.
pub type RestorePointList = Vec<RestorePointSummary>;
