//! The spoke's errors. Each names what it is about (the object, the field of the command, the
//! restore point), and each maps to the [`StepFailure`] the hub and the user see.

use ferry_protocol::event::{FailureReason, StepFailure};
use ferry_protocol::ObjectRef;
use ferry_repository::repo::RepoError;

#[derive(Debug, thiserror::Error)]
pub enum SpokeError {
    /// The command is wrong: retrying cannot help.
    #[error("{field}: {message}")]
    InvalidSpec { field: String, message: String },
    #[error("{what} not found")]
    NotFound { what: String },
    /// A request to the cluster failed.
    #[error(transparent)]
    Cluster(Box<ClusterError>),
    #[error("{object} already exists in the target and the existing-resource policy is fail")]
    AlreadyExists { object: Box<ObjectRef> },
    #[error("restore point {restore_point}: {message}")]
    Damaged {
        restore_point: String,
        object: Option<Box<ObjectRef>>,
        message: String,
    },
    #[error("repository: {0}")]
    Repository(#[from] RepoError),
    #[error("{what} not ready after {seconds} s")]
    Timeout {
        what: String,
        object: Option<Box<ObjectRef>>,
        seconds: u64,
    },
    #[error("cancelled: {0}")]
    Cancelled(String),
    /// A hook failed and its policy is to fail the capture.
    #[error("{object}: {message}")]
    Hook {
        object: Box<ObjectRef>,
        message: String,
    },
    /// The spoke's own scratch space (where a capture keeps the manifest's entries) failed.
    #[error("the spoke's temporary file for {what}: {source}")]
    Scratch {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A mover pod failed; the message ends with its log.
    #[error("mover pod {object}: {message}")]
    Mover {
        object: Box<ObjectRef>,
        message: String,
    },
}

/// A failed request to the cluster; `action` says which (`listing deployments.apps in shop`).
#[derive(Debug, thiserror::Error)]
#[error("{action}: {source}")]
pub struct ClusterError {
    pub action: String,
    pub object: Option<ObjectRef>,
    #[source]
    pub source: kube::Error,
}

pub type Result<T, E = SpokeError> = std::result::Result<T, E>;

impl SpokeError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> SpokeError {
        SpokeError::InvalidSpec {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn cluster(
        action: impl Into<String>,
        object: Option<&ObjectRef>,
        source: kube::Error,
    ) -> Self {
        SpokeError::Cluster(Box::new(ClusterError {
            action: action.into(),
            object: object.cloned(),
            source,
        }))
    }

    /// The HTTP status of a failed cluster request, if the cluster answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            SpokeError::Cluster(e) => match &e.source {
                kube::Error::Api(status) => Some(status.code),
                _ => None,
            },
            _ => None,
        }
    }

    /// What the hub records: a reason an operator can act on, and whether a retry may help.
    pub fn to_failure(&self) -> StepFailure {
        let (reason, object, field, retryable) = match self {
            SpokeError::InvalidSpec { field, .. } => {
                (FailureReason::InvalidSpec, None, Some(field.clone()), false)
            }
            SpokeError::NotFound { .. } => (FailureReason::NotFound, None, None, false),
            SpokeError::Cluster(e) => match self.status() {
                Some(code) if code < 500 && code != 429 => (
                    FailureReason::ClusterRejected,
                    e.object.clone(),
                    None,
                    false,
                ),
                _ => (
                    FailureReason::ClusterUnavailable,
                    e.object.clone(),
                    None,
                    true,
                ),
            },
            SpokeError::AlreadyExists { object } => (
                FailureReason::AlreadyExists,
                Some((**object).clone()),
                None,
                false,
            ),
            SpokeError::Damaged { object, .. } => (
                FailureReason::Repository,
                object.as_deref().cloned(),
                None,
                false,
            ),
            SpokeError::Repository(e) => (
                FailureReason::Repository,
                None,
                None,
                matches!(e, RepoError::Backend(_) | RepoError::Locked(_)),
            ),
            SpokeError::Timeout { object, .. } => (
                FailureReason::Timeout,
                object.as_deref().cloned(),
                None,
                true,
            ),
            SpokeError::Cancelled(_) => (FailureReason::Cancelled, None, None, false),
            SpokeError::Hook { object, .. } => {
                (FailureReason::Hook, Some((**object).clone()), None, false)
            }
            SpokeError::Scratch { .. } => (FailureReason::Internal, None, None, true),
            SpokeError::Mover { object, .. } => (
                FailureReason::Repository,
                Some((**object).clone()),
                None,
                true,
            ),
        };
        StepFailure {
            reason,
            message: self.to_string(),
            object,
            field,
            retryable,
        }
    }
}
