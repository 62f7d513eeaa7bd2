//! Where objects name other objects: what a pod spec uses, and whom a binding grants to.

use crate::rules::Pointer;
use crate::rules::{group_of, kind_of, pod_spec_pointer, strings_at};
use serde_json::Value;

/// Where a pod spec names other objects of its namespace, and their kinds.
const POD_REFERENCES: &[(&str, &str)] = &[
    ("/volumes/*/configMap/name", "ConfigMap"),
    ("/volumes/*/secret/secretName", "Secret"),
    (
        "/volumes/*/persistentVolumeClaim/claimName",
        "PersistentVolumeClaim",
    ),
    ("/volumes/*/projected/sources/*/configMap/name", "ConfigMap"),
    ("/volumes/*/projected/sources/*/secret/name", "Secret"),
    ("/imagePullSecrets/*/name", "Secret"),
];

/// Where each container of each list names other objects.
const CONTAINER_REFERENCES: &[(&str, &str)] = &[
    ("/containers/*/envFrom/*/configMapRef/name", "ConfigMap"),
    ("/containers/*/envFrom/*/secretRef/name", "Secret"),
    (
        "/containers/*/env/*/valueFrom/configMapKeyRef/name",
        "ConfigMap",
    ),
    ("/containers/*/env/*/valueFrom/secretKeyRef/name", "Secret"),
    ("/initContainers/*/envFrom/*/configMapRef/name", "ConfigMap"),
    ("/initContainers/*/envFrom/*/secretRef/name", "Secret"),
    (
        "/initContainers/*/env/*/valueFrom/configMapKeyRef/name",
        "ConfigMap",
    ),
    (
        "/initContainers/*/env/*/valueFrom/secretKeyRef/name",
        "Secret",
    ),
    (
        "/ephemeralContainers/*/envFrom/*/configMapRef/name",
        "ConfigMap",
    ),
    ("/ephemeralContainers/*/envFrom/*/secretRef/name", "Secret"),
    (
        "/ephemeralContainers/*/env/*/valueFrom/configMapKeyRef/name",
        "ConfigMap",
    ),
    (
        "/ephemeralContainers/*/env/*/valueFrom/secretKeyRef/name",
        "Secret",
    ),
];

/// What an object's pods reference, as (kind, name) in the object's namespace.
pub(super) fn pod_references(obj: &Value) -> Vec<(&'static str, String)> {
    let Some(spec_ptr) = pod_spec_pointer(group_of(obj), kind_of(obj)) else {
        return Vec::new();
    };
    let Some(spec) = obj.ptr(spec_ptr) else {
        return Vec::new();
    };
    let sa = spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let mut refs = vec![("ServiceAccount", sa.to_string())];
    for (pointer, kind) in POD_REFERENCES.iter().chain(CONTAINER_REFERENCES) {
        refs.extend(strings_at(spec, pointer).into_iter().map(|n| (*kind, n)));
    }
    refs
}

/// The service accounts a (Cluster)RoleBinding grants to, as (namespace, name); a subject
/// without a namespace is in the binding's.
pub(super) fn service_account_subjects(binding: &Value) -> Vec<(String, String)> {
    let binding_ns = binding
        .ptr("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    binding
        .get("subjects")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|s| s.get("kind").and_then(Value::as_str) == Some("ServiceAccount"))
        .map(|s| {
            let ns = s
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or(binding_ns);
            let name = s.get("name").and_then(Value::as_str).unwrap_or("");
            (ns.to_string(), name.to_string())
        })
        .collect()
}
