//! What to capture: an application named by namespaces, labels, resource types, a Helm release
//! or an Operator's custom resource. The shape only; the spoke resolves it against discovery and
//! the hub checks it before anything starts (`ferry-transform`'s selector parser names the field).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Selection {
    /// Namespaces whose objects are captured (with their Namespace objects). Empty with a Helm
    /// release or an Operator resource means "the namespace that names".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// A Kubernetes label selector (`app=shop,tier in (web,db)`) objects in those namespaces
    /// must match. Dependencies are added whatever their labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
    /// Only these resource types (`deployments.apps`, `configmaps`, `caches.example.com`), plus
    /// the dependencies of what they select. Empty: every type the cluster serves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include_resources: Vec<String>,
    /// Never these resource types, not even as dependencies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_resources: Vec<String>,
    /// A Helm release: its release records and every object of its latest manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm_release: Option<HelmReleaseSelector>,
    /// An Operator's custom resource: the CR, its CRD, the children it owns, and the operator
    /// (its Deployment, ServiceAccount and RBAC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_resource: Option<OperatorResourceSelector>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HelmReleaseSelector {
    pub name: String,
    pub namespace: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OperatorResourceSelector {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl Selection {
    /// Whether the selection names anything at all; an empty one would capture the whole
    /// cluster, which must be asked for explicitly (a namespace list), never by omission.
    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty()
            && self.helm_release.is_none()
            && self.operator_resource.is_none()
    }
}
