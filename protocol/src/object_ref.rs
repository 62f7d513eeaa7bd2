//! A reference to one Kubernetes object, used in every error and event that names an object.

use serde::{Deserialize, Serialize};

/// Group, version, kind, namespace and name of an object: enough to find it again and to tell a
/// user exactly which object an error is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectRef {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    pub version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    /// Reads the reference out of a Kubernetes object in its JSON form.
    ///
    /// Returns `None` when `apiVersion`, `kind` or `metadata.name` is missing, since such an
    /// object cannot be named.
    pub fn from_object(object: &serde_json::Value) -> Option<ObjectRef> {
        let api_version = object.get("apiVersion")?.as_str()?;
        let kind = object.get("kind")?.as_str()?;
        let metadata = object.get("metadata")?;
        let name = metadata.get("name")?.as_str()?;
        let namespace = metadata
            .get("namespace")
            .and_then(|n| n.as_str())
            .filter(|n| !n.is_empty())
            .map(str::to_string);
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), api_version.to_string()),
        };
        Some(ObjectRef {
            group,
            version,
            kind: kind.to_string(),
            namespace,
            name: name.to_string(),
        })
    }
}

impl std::fmt::Display for ObjectRef {
    /// `apps/v1 Deployment shop/web`, the form users see in errors.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.group.is_empty() {
            write!(f, "{} {}", self.version, self.kind)?;
        } else {
            write!(f, "{}/{} {}", self.group, self.version, self.kind)?;
        }
        match &self.namespace {
            Some(ns) => write!(f, " {ns}/{}", self.name),
            None => write!(f, " {}", self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_namespaced_and_cluster_objects() {
        let dep = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                         "metadata": {"name": "web", "namespace": "shop"}});
        let r = ObjectRef::from_object(&dep).unwrap();
        assert_eq!(r.to_string(), "apps/v1 Deployment shop/web");
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}});
        assert_eq!(
            ObjectRef::from_object(&ns).unwrap().to_string(),
            "v1 Namespace shop"
        );
    }

    #[test]
    fn unnamed_objects_have_no_reference() {
        assert!(ObjectRef::from_object(&json!({"apiVersion": "v1", "kind": "Pod"})).is_none());
    }
}
