//! Where objects name other objects: what a pod spec uses, the roles and subjects of a
//! binding, the volume and class of a claim, the Services and Secrets of an Ingress. The restore
//! order waits on these; capture follows them to take what an application depends on.

use crate::rules::Pointer;
use crate::rules::{group_of, kind_of, pod_spec_pointer, strings_at};
use serde_json::Value;

/// One object named by another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub group: &'static str,
    pub kind: String,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
    /// Why the naming object needs it, as the restore order explains it
    /// (`after ConfigMap shop/web, which its pods use`).
    pub reason: String,
}

/// Every object `obj` names, with why. Objects that may not exist (a pod's `default`
/// ServiceAccount) are included: a caller looks them up and takes what is there.
pub fn references(obj: &Value) -> Vec<Reference> {
    let ns = obj
        .ptr("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut out = Vec::new();
    let mut add =
        |group: &'static str, kind: &str, namespace: &str, name: String, reason: String| {
            if !name.is_empty() {
                out.push(Reference {
                    group,
                    kind: kind.to_string(),
                    namespace: namespace.to_string(),
                    name,
                    reason,
                });
            }
        };
    for (kind, name) in pod_references(obj) {
        let reason = format!("after {kind} {ns}/{name}, which its pods use");
        add("", kind, ns, name, reason);
    }
    const RBAC: &str = "rbac.authorization.k8s.io";
    match (group_of(obj), kind_of(obj)) {
        (RBAC, "RoleBinding" | "ClusterRoleBinding") => {
            let rk = obj
                .ptr("/roleRef/kind")
                .and_then(Value::as_str)
                .unwrap_or("");
            let rn = obj
                .ptr("/roleRef/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            let rns = if rk == "Role" { ns } else { "" };
            add(
                RBAC,
                rk,
                rns,
                rn.into(),
                format!("after {rk} {rn}, which it grants"),
            );
            for (sns, sn) in service_account_subjects(obj) {
                let reason = format!("after ServiceAccount {sns}/{sn}, its subject");
                add("", "ServiceAccount", &sns, sn, reason);
            }
        }
        ("", "PersistentVolumeClaim") => {
            if let Some(v) = obj.ptr("/spec/volumeName").and_then(Value::as_str) {
                let reason = format!("after PersistentVolume {v}, which it binds");
                add("", "PersistentVolume", "", v.into(), reason);
            }
            if let Some(sc) = obj.ptr("/spec/storageClassName").and_then(Value::as_str) {
                let reason = format!("after StorageClass {sc}");
                add("storage.k8s.io", "StorageClass", "", sc.into(), reason);
            }
        }
        ("", "PersistentVolume") => {
            if let Some(sc) = obj.ptr("/spec/storageClassName").and_then(Value::as_str) {
                let reason = format!("after StorageClass {sc}");
                add("storage.k8s.io", "StorageClass", "", sc.into(), reason);
            }
        }
        ("apps", "StatefulSet") => {
            for sc in strings_at(obj, "/spec/volumeClaimTemplates/*/spec/storageClassName") {
                let reason = format!("after StorageClass {sc}, which its claims use");
                add("storage.k8s.io", "StorageClass", "", sc, reason);
            }
        }
        ("networking.k8s.io", "Ingress") => {
            let services: std::collections::BTreeSet<String> =
                strings_at(obj, "/spec/defaultBackend/service/name")
                    .into_iter()
                    .chain(strings_at(
                        obj,
                        "/spec/rules/*/http/paths/*/backend/service/name",
                    ))
                    .collect();
            for s in services {
                let reason = format!("after Service {ns}/{s}, which it routes to");
                add("", "Service", ns, s, reason);
            }
            for secret in strings_at(obj, "/spec/tls/*/secretName") {
                let reason = format!("after Secret {ns}/{secret}, its TLS certificate");
                add("", "Secret", ns, secret, reason);
            }
            if let Some(class) = obj.ptr("/spec/ingressClassName").and_then(Value::as_str) {
                let reason = format!("after IngressClass {class}");
                add(
                    "networking.k8s.io",
                    "IngressClass",
                    "",
                    class.into(),
                    reason,
                );
            }
        }
        _ => {}
    }
    out
}

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
fn pod_references(obj: &Value) -> Vec<(&'static str, String)> {
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
pub fn service_account_subjects(binding: &Value) -> Vec<(String, String)> {
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
