//! Typed decoding of built-in objects through k8s-openapi's structs, as the API server decodes
//! into its Go types: a value of the wrong type is an error naming the field, and a field the
//! type does not have is found by comparing the input with the decoded object written back.

use k8s_openapi::api::{
    admissionregistration::v1 as admission, apps::v1 as apps, autoscaling::v2 as autoscaling,
    batch::v1 as batch, coordination::v1 as coordination, core::v1 as core,
    discovery::v1 as discovery, networking::v1 as networking, policy::v1 as policy,
    rbac::v1 as rbac, scheduling::v1 as scheduling, storage::v1 as storage,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as apiregistration;
use k8s_openapi::Resource;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

/// The object decoded as its built-in type and written back, or the decoding error with the
/// path of the field; `None` for types without a built-in schema (custom resources, the
/// snapshot API, which real clusters also serve from CRDs).
pub fn round_trip(
    group: &str,
    version: &str,
    kind: &str,
    obj: &Value,
) -> Option<Result<Value, String>> {
    macro_rules! types {
        ($($t:ty),* $(,)?) => {
            $(
                if <$t>::GROUP == group && <$t>::VERSION == version && <$t>::KIND == kind {
                    return Some(through::<$t>(obj));
                }
            )*
        };
    }
    types!(
        core::Namespace,
        core::Node,
        core::Pod,
        core::Service,
        core::Endpoints,
        core::ConfigMap,
        core::Secret,
        core::ServiceAccount,
        core::PersistentVolumeClaim,
        core::PersistentVolume,
        core::Event,
        core::ReplicationController,
        core::LimitRange,
        core::ResourceQuota,
        apps::Deployment,
        apps::StatefulSet,
        apps::DaemonSet,
        apps::ReplicaSet,
        apps::ControllerRevision,
        batch::Job,
        batch::CronJob,
        coordination::Lease,
        rbac::Role,
        rbac::RoleBinding,
        rbac::ClusterRole,
        rbac::ClusterRoleBinding,
        storage::StorageClass,
        networking::Ingress,
        networking::IngressClass,
        networking::NetworkPolicy,
        policy::PodDisruptionBudget,
        autoscaling::HorizontalPodAutoscaler,
        apiextensions::CustomResourceDefinition,
        apiregistration::APIService,
        admission::MutatingWebhookConfiguration,
        admission::ValidatingWebhookConfiguration,
        discovery::EndpointSlice,
        scheduling::PriorityClass,
    );
    None
}

fn through<T: Resource + DeserializeOwned + Serialize>(obj: &Value) -> Result<Value, String> {
    // The version and kind were checked against the URL already; the struct wants its own.
    let mut input = obj.clone();
    input["apiVersion"] = Value::String(T::API_VERSION.into());
    input["kind"] = Value::String(T::KIND.into());
    let typed: T = serde_path_to_error::deserialize(&input).map_err(|e| {
        let path = e.path().to_string();
        if path == "." || path.is_empty() {
            e.inner().to_string()
        } else {
            format!("{path}: {}", e.inner())
        }
    })?;
    serde_json::to_value(&typed).map_err(|e| e.to_string())
}

/// Removes from `input` every field the decoded object does not have, returning their paths
/// (`spec.template.spec.containers[0].foo`). Nulls go without a word: they say "absent".
pub fn prune_unknown(input: &mut Value, decoded: &Value) -> Vec<String> {
    let mut unknown = Vec::new();
    walk(input, decoded, &mut String::new(), &mut unknown);
    unknown
}

fn walk(input: &mut Value, decoded: &Value, path: &mut String, unknown: &mut Vec<String>) {
    match (input, decoded) {
        (Value::Object(fields), Value::Object(known)) => {
            let keys: Vec<String> = fields.keys().cloned().collect();
            for key in keys {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&key);
                match known.get(&key) {
                    Some(k) => {
                        if let Some(v) = fields.get_mut(&key) {
                            walk(v, k, path, unknown);
                        }
                    }
                    None => {
                        if fields.get(&key).is_some_and(|v| !v.is_null()) {
                            unknown.push(path.clone());
                        }
                        fields.shift_remove(&key);
                    }
                }
                path.truncate(len);
            }
        }
        (Value::Array(items), Value::Array(known)) if items.len() == known.len() => {
            for (i, (item, k)) in items.iter_mut().zip(known).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(item, k, path, unknown);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_are_found_at_any_depth() {
        let mut d = json!({
            "metadata": {"name": "web", "labels": {"a": "b"}, "nonsense": 1},
            "spec": {"replicas": 2, "replica": 3, "selector": {"matchLabels": {"a": "b"}},
                     "template": {"metadata": {"labels": {"a": "b"}},
                                  "spec": {"containers": [{"name": "c", "image": "x", "imagePullPolice": "Always"}],
                                           "nodeSelector": null}}}
        });
        let decoded = round_trip("apps", "v1", "Deployment", &d).unwrap().unwrap();
        let unknown = prune_unknown(&mut d, &decoded);
        assert_eq!(
            unknown,
            [
                "metadata.nonsense",
                "spec.replica",
                "spec.template.spec.containers[0].imagePullPolice"
            ]
        );
        assert!(d.pointer("/spec/replica").is_none());
        assert!(d.pointer("/spec/template/spec/nodeSelector").is_none());
        assert_eq!(d.pointer("/metadata/labels/a"), Some(&json!("b")));
    }

    #[test]
    fn wrong_types_name_their_field() {
        let d = json!({"metadata": {"name": "web"}, "spec": {"replicas": "3"}});
        let e = round_trip("apps", "v1", "Deployment", &d)
            .unwrap()
            .unwrap_err();
        assert!(
            e.starts_with("spec.replicas: invalid type: string \"3\""),
            "{e}"
        );
        let s = json!({"metadata": {"name": "s"}, "data": {"k": "not base64!"}});
        let e = round_trip("", "v1", "Secret", &s).unwrap().unwrap_err();
        assert!(e.starts_with("data.k: "), "{e}");
        assert!(round_trip("example.com", "v1", "Cache", &s).is_none());
    }
}
