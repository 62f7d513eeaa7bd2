//! The resource types the stand-in serves: the built-ins Ferry handles, plus whatever
//! CustomResourceDefinitions add at run time.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// How a resource's scale subresource maps onto the object.
#[derive(Debug, Clone)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

/// An `additionalPrinterColumns` entry (CRDs) or a built-in table column.
#[derive(Debug, Clone)]
pub struct PrinterColumn {
    pub name: String,
    pub type_: String,
    pub json_path: String,
    pub description: String,
    pub priority: i64,
}

#[derive(Debug, Clone)]
pub struct ResourceType {
    pub group: String,
    /// Served versions; the storage version is `storage_version`.
    pub versions: Vec<String>,
    pub storage_version: String,
    pub kind: String,
    pub list_kind: String,
    pub plural: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub namespaced: bool,
    pub status: bool,
    pub scale: Option<ScalePaths>,
    pub printer_columns: Vec<PrinterColumn>,
    /// Defined by a CustomResourceDefinition (and removed with it).
    pub custom: bool,
    /// Whether the object has a spec whose changes bump `metadata.generation`.
    pub has_generation: bool,
}

impl ResourceType {
    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{}", self.group, version)
        }
    }

    pub fn serves(&self, version: &str) -> bool {
        self.versions.iter().any(|v| v == version)
    }

    pub fn verbs(&self) -> Vec<&'static str> {
        let mut verbs = vec![
            "create", "delete", "get", "list", "patch", "update", "watch",
        ];
        if self.plural != "namespaces" {
            verbs.insert(2, "deletecollection");
        }
        verbs
    }

    /// `deployments.apps`, the form used in messages and in `kubectl`.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

pub type ResourceRef = Arc<ResourceType>;

/// The set of resource types, keyed by group and plural name.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    types: BTreeMap<(String, String), ResourceRef>,
}

impl Registry {
    pub fn builtin() -> Registry {
        let mut r = Registry::default();
        for t in builtin_types() {
            r.insert(t);
        }
        r
    }

    pub fn insert(&mut self, t: ResourceType) {
        self.types
            .insert((t.group.clone(), t.plural.clone()), Arc::new(t));
    }

    pub fn remove(&mut self, group: &str, plural: &str) -> Option<ResourceRef> {
        self.types.remove(&(group.to_string(), plural.to_string()))
    }

    pub fn get(&self, group: &str, plural: &str) -> Option<ResourceRef> {
        self.types
            .get(&(group.to_string(), plural.to_string()))
            .cloned()
    }

    /// The resource type of an object of this kind in this group.
    pub fn by_kind(&self, group: &str, kind: &str) -> Option<ResourceRef> {
        self.types
            .values()
            .find(|t| t.group == group && t.kind == kind)
            .cloned()
    }

    pub fn all(&self) -> impl Iterator<Item = &ResourceRef> {
        self.types.values()
    }

    /// Groups with their served versions, in the order discovery lists them (core first, then
    /// built-in groups as Kubernetes orders them, then custom groups by name).
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for t in self.types.values() {
            let versions = groups.entry(t.group.clone()).or_default();
            for v in &t.versions {
                if !versions.contains(v) {
                    versions.push(v.clone());
                }
            }
        }
        for versions in groups.values_mut() {
            versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        }
        let mut out: Vec<(String, Vec<String>)> = groups.into_iter().collect();
        out.sort_by_key(|(g, _)| {
            let builtin = BUILTIN_GROUP_ORDER.iter().position(|b| b == g);
            (builtin.unwrap_or(usize::MAX), g.clone())
        });
        out
    }
}

const BUILTIN_GROUP_ORDER: &[&str] = &[
    "",
    "apiregistration.k8s.io",
    "apps",
    "events.k8s.io",
    "autoscaling",
    "batch",
    "networking.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "storage.k8s.io",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "snapshot.storage.k8s.io",
];

/// Kubernetes' version ordering: GA > beta > alpha, higher numbers first.
pub fn version_priority(v: &str) -> (u8, u32, u32) {
    let rest = v.strip_prefix('v').unwrap_or(v);
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let major: u32 = digits.parse().unwrap_or(0);
    let tail = &rest[digits.len()..];
    if tail.is_empty() {
        (3, major, 0)
    } else if let Some(n) = tail.strip_prefix("beta") {
        (2, major, n.parse().unwrap_or(0))
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (1, major, n.parse().unwrap_or(0))
    } else {
        (0, major, 0)
    }
}

struct B {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    short: &'static [&'static str],
    namespaced: bool,
    status: bool,
    scale: bool,
    categories: &'static [&'static str],
}

const fn b(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    short: &'static [&'static str],
    namespaced: bool,
) -> B {
    B {
        group,
        version,
        kind,
        plural,
        short,
        namespaced,
        status: false,
        scale: false,
        categories: &[],
    }
}

impl B {
    const fn status(mut self) -> B {
        self.status = true;
        self
    }
    const fn scale(mut self) -> B {
        self.scale = true;
        self
    }
    const fn all(mut self) -> B {
        self.categories = &["all"];
        self
    }
}

const BUILTINS: &[B] = &[
    b("", "v1", "Namespace", "namespaces", &["ns"], false).status(),
    b("", "v1", "Node", "nodes", &["no"], false).status(),
    b("", "v1", "Pod", "pods", &["po"], true).status().all(),
    b("", "v1", "Service", "services", &["svc"], true)
        .status()
        .all(),
    b("", "v1", "Endpoints", "endpoints", &["ep"], true),
    b("", "v1", "ConfigMap", "configmaps", &["cm"], true),
    b("", "v1", "Secret", "secrets", &[], true),
    b("", "v1", "ServiceAccount", "serviceaccounts", &["sa"], true),
    b(
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        &["pvc"],
        true,
    )
    .status(),
    b(
        "",
        "v1",
        "PersistentVolume",
        "persistentvolumes",
        &["pv"],
        false,
    )
    .status(),
    b("", "v1", "Event", "events", &["ev"], true),
    b(
        "",
        "v1",
        "ReplicationController",
        "replicationcontrollers",
        &["rc"],
        true,
    )
    .status()
    .scale()
    .all(),
    b("", "v1", "LimitRange", "limitranges", &["limits"], true),
    b(
        "",
        "v1",
        "ResourceQuota",
        "resourcequotas",
        &["quota"],
        true,
    )
    .status(),
    b("apps", "v1", "Deployment", "deployments", &["deploy"], true)
        .status()
        .scale()
        .all(),
    b("apps", "v1", "StatefulSet", "statefulsets", &["sts"], true)
        .status()
        .scale()
        .all(),
    b("apps", "v1", "DaemonSet", "daemonsets", &["ds"], true)
        .status()
        .all(),
    b("apps", "v1", "ReplicaSet", "replicasets", &["rs"], true)
        .status()
        .scale()
        .all(),
    b(
        "apps",
        "v1",
        "ControllerRevision",
        "controllerrevisions",
        &[],
        true,
    ),
    b("batch", "v1", "Job", "jobs", &[], true).status().all(),
    b("batch", "v1", "CronJob", "cronjobs", &["cj"], true)
        .status()
        .all(),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        &[],
        true,
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        &[],
        true,
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        &[],
        false,
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        &[],
        false,
    ),
    b(
        "storage.k8s.io",
        "v1",
        "StorageClass",
        "storageclasses",
        &["sc"],
        false,
    ),
    b(
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
        &["ing"],
        true,
    )
    .status(),
    b(
        "networking.k8s.io",
        "v1",
        "IngressClass",
        "ingressclasses",
        &[],
        false,
    ),
    b(
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        &["netpol"],
        true,
    ),
    b(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        &["pdb"],
        true,
    )
    .status(),
    b(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        &["hpa"],
        true,
    )
    .status()
    .all(),
    b(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        &["crd", "crds"],
        false,
    )
    .status(),
    b(
        "apiregistration.k8s.io",
        "v1",
        "APIService",
        "apiservices",
        &[],
        false,
    )
    .status(),
    b(
        "admissionregistration.k8s.io",
        "v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        &[],
        false,
    ),
    b(
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        &[],
        false,
    ),
    b("coordination.k8s.io", "v1", "Lease", "leases", &[], true),
    b(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        &[],
        true,
    ),
    b(
        "snapshot.storage.k8s.io",
        "v1",
        "VolumeSnapshot",
        "volumesnapshots",
        &["vs"],
        true,
    )
    .status(),
    b(
        "snapshot.storage.k8s.io",
        "v1",
        "VolumeSnapshotContent",
        "volumesnapshotcontents",
        &["vsc", "vscs"],
        false,
    )
    .status(),
    b(
        "snapshot.storage.k8s.io",
        "v1",
        "VolumeSnapshotClass",
        "volumesnapshotclasses",
        &["vsclass", "vsclasses"],
        false,
    ),
];

/// Kinds whose objects carry no spec and therefore no generation.
const NO_GENERATION: &[&str] = &[
    "ConfigMap",
    "Secret",
    "ServiceAccount",
    "Event",
    "Endpoints",
    "EndpointSlice",
    "Namespace",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "StorageClass",
    "ControllerRevision",
];

fn builtin_types() -> Vec<ResourceType> {
    BUILTINS
        .iter()
        .map(|b| {
            let scale = b.scale.then(|| ScalePaths {
                spec_replicas: ".spec.replicas".into(),
                status_replicas: ".status.replicas".into(),
                label_selector: Some(".status.selector".into()),
            });
            ResourceType {
                group: b.group.into(),
                versions: vec![b.version.into()],
                storage_version: b.version.into(),
                kind: b.kind.into(),
                list_kind: format!("{}List", b.kind),
                plural: b.plural.into(),
                singular: b.kind.to_ascii_lowercase(),
                short_names: b.short.iter().map(|s| s.to_string()).collect(),
                categories: b.categories.iter().map(|s| s.to_string()).collect(),
                namespaced: b.namespaced,
                status: b.status,
                scale,
                printer_columns: Vec::new(),
                custom: false,
                has_generation: !NO_GENERATION.contains(&b.kind),
            }
        })
        .collect()
}

/// Errors in a CustomResourceDefinition that stop it from being served.
pub fn resource_type_from_crd(crd: &Value) -> Result<ResourceType, String> {
    let spec = crd.get("spec").ok_or("spec: Required value")?;
    let group = spec
        .get("group")
        .and_then(Value::as_str)
        .filter(|g| !g.is_empty())
        .ok_or("spec.group: Required value")?;
    let names = spec.get("names").ok_or("spec.names: Required value")?;
    let name_field = |field: &str| names.get(field).and_then(Value::as_str).map(str::to_string);
    let plural = name_field("plural").ok_or("spec.names.plural: Required value")?;
    let kind = name_field("kind").ok_or("spec.names.kind: Required value")?;
    let expected_name = format!("{plural}.{group}");
    let name = crd
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if name != expected_name {
        return Err(format!(
            "metadata.name: Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group ({expected_name:?})"
        ));
    }
    let scope = spec
        .get("scope")
        .and_then(Value::as_str)
        .ok_or("spec.scope: Required value")?;
    let namespaced = match scope {
        "Namespaced" => true,
        "Cluster" => false,
        other => {
            return Err(format!(
                "spec.scope: Unsupported value: {other:?}: supported values: \"Cluster\", \"Namespaced\""
            ))
        }
    };
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .filter(|v| !v.is_empty())
        .ok_or("spec.versions: Required value")?;
    let mut served = Vec::new();
    let mut storage = None;
    let mut status = false;
    let mut scale = None;
    let mut printer_columns = Vec::new();
    for (i, v) in versions.iter().enumerate() {
        let vname = v
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("spec.versions[{i}].name: Required value"))?;
        if v.get("served").and_then(Value::as_bool).unwrap_or(false) {
            served.push(vname.to_string());
        }
        if v.get("storage").and_then(Value::as_bool).unwrap_or(false) {
            if storage.is_some() {
                return Err("spec.versions: Invalid value: must have exactly one version marked as storage version".into());
            }
            storage = Some(vname.to_string());
        }
        // Subresources may differ per version; the stand-in serves the union, which is what
        // matters for a tool that reads and writes objects.
        if let Some(sub) = v.get("subresources") {
            status |= sub.get("status").is_some();
            if let Some(s) = sub.get("scale") {
                scale = Some(ScalePaths {
                    spec_replicas: s
                        .get("specReplicasPath")
                        .and_then(Value::as_str)
                        .unwrap_or(".spec.replicas")
                        .into(),
                    status_replicas: s
                        .get("statusReplicasPath")
                        .and_then(Value::as_str)
                        .unwrap_or(".status.replicas")
                        .into(),
                    label_selector: s
                        .get("labelSelectorPath")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                });
            }
        }
        if printer_columns.is_empty() {
            for c in v
                .get("additionalPrinterColumns")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                printer_columns.push(PrinterColumn {
                    name: c.get("name").and_then(Value::as_str).unwrap_or("").into(),
                    type_: c
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("string")
                        .into(),
                    json_path: c
                        .get("jsonPath")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .into(),
                    description: c
                        .get("description")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .into(),
                    priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                });
            }
        }
    }
    let storage_version = storage.ok_or(
        "spec.versions: Invalid value: must have exactly one version marked as storage version",
    )?;
    let singular = name_field("singular").unwrap_or_else(|| kind.to_ascii_lowercase());
    let list_kind = name_field("listKind").unwrap_or_else(|| format!("{kind}List"));
    let strings = |field: &str| -> Vec<String> {
        names
            .get(field)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(ResourceType {
        group: group.into(),
        versions: served,
        storage_version,
        kind,
        list_kind,
        plural,
        singular,
        short_names: strings("shortNames"),
        categories: strings("categories"),
        namespaced,
        status,
        scale,
        printer_columns,
        custom: true,
        has_generation: true,
    })
}

/// The status a CRD gets once the stand-in serves it.
pub fn established_crd_status(t: &ResourceType, now: &str) -> Value {
    let condition = |type_: &str, reason: &str, message: &str| {
        json!({"type": type_, "status": "True", "lastTransitionTime": now,
               "reason": reason, "message": message})
    };
    json!({
        "acceptedNames": {
            "kind": t.kind, "listKind": t.list_kind, "plural": t.plural,
            "singular": t.singular, "shortNames": t.short_names, "categories": t.categories,
        },
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "storedVersions": [t.storage_version],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_like_kubernetes() {
        let mut v = vec!["v1alpha1", "v2", "v1beta2", "v1", "v1beta1"];
        v.sort_by_key(|x| std::cmp::Reverse(version_priority(x)));
        assert_eq!(v, vec!["v2", "v1", "v1beta2", "v1beta1", "v1alpha1"]);
    }

    #[test]
    fn crd_errors_name_the_field() {
        let crd = json!({"metadata": {"name": "caches.example.com"},
                         "spec": {"group": "example.com", "names": {"plural": "caches", "kind": "Cache"},
                                  "scope": "Galaxy", "versions": [{"name": "v1", "served": true, "storage": true}]}});
        let err = resource_type_from_crd(&crd).unwrap_err();
        assert!(err.starts_with("spec.scope: Unsupported value"), "{err}");
        let crd = json!({"metadata": {"name": "wrong"},
                         "spec": {"group": "example.com", "names": {"plural": "caches", "kind": "Cache"},
                                  "scope": "Namespaced", "versions": [{"name": "v1", "served": true, "storage": true}]}});
        assert!(resource_type_from_crd(&crd)
            .unwrap_err()
            .starts_with("metadata.name"));
    }
}
