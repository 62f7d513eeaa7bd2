//! Sanitising for portability: what a cluster wrote into its objects, and objects a cluster
//! makes by itself, are removed so the rest can be created anywhere.
//!
//! Always on, each step documented here and switchable through [`SanitizeOptions`]:
//! - metadata the API server owns: uid, resourceVersion, generation, creationTimestamp,
//!   managedFields, selfLink, deletionTimestamp, deletionGracePeriodSeconds;
//! - owner references (their uids are the source cluster's): moved to the annotation
//!   [`OWNER_REFERENCES_ANNOTATION`] so the restore re-links them by name;
//! - `status`, unless `keep_status`;
//! - Service `clusterIP`/`clusterIPs` (except headless `None`), `healthCheckNodePort`, and
//!   `nodePort`s unless `keep_node_ports`; Pod `nodeName`; PVC `volumeName` and binding
//!   annotations; PV `claimRef` uid and resourceVersion;
//! - dropped objects: `kube-root-ca.crt`, service-account token Secrets, Endpoints,
//!   EndpointSlices, Events, Leases, and objects whose controlling owner is in the same set
//!   (ReplicaSets of Deployments, Pods of workloads, Jobs of CronJobs, ControllerRevisions),
//!   which the target's controllers recreate, unless `keep_owned`.

use crate::rules::{group_of, kind_of};
use crate::rules::{unescape, Pointer};
use serde_json::{json, Value};

pub const OWNER_REFERENCES_ANNOTATION: &str = "ferry.dev/owner-references";

/// Who made a change or a drop that sanitising made (`Change::by`, `Dropped::by`).
pub const SANITIZE: &str = "sanitize";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SanitizeOptions {
    pub keep_status: bool,
    pub keep_node_ports: bool,
    pub keep_owned: bool,
}

/// Why an object is never carried over, whatever else is in the set, if it is not.
pub fn drop_reason(obj: &Value) -> Option<String> {
    let name = obj
        .ptr("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    match (group_of(obj), kind_of(obj)) {
        ("", "ConfigMap") if name == "kube-root-ca.crt" => {
            Some("made by every cluster's namespace controller".into())
        }
        ("", "Secret")
            if obj.get("type").and_then(Value::as_str)
                == Some("kubernetes.io/service-account-token") =>
        {
            Some("service-account token: the target cluster issues its own".into())
        }
        ("", "Endpoints") | ("discovery.k8s.io", "EndpointSlice") => {
            Some("derived from Services and Pods by the target cluster".into())
        }
        ("", "Event") | ("events.k8s.io", "Event") => Some("events are history, not state".into()),
        ("coordination.k8s.io", "Lease") => Some("leases belong to running processes".into()),
        _ => None,
    }
}

/// An object's controlling owner: when the owner is restored too, the target's controller
/// recreates the object, so it is left out (unless `keep_owned`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllingOwner {
    pub uid: String,
    pub kind: String,
    pub name: String,
}

impl ControllingOwner {
    pub fn of(obj: &Value) -> Option<ControllingOwner> {
        let owner = obj
            .ptr("/metadata/ownerReferences")
            .and_then(Value::as_array)?
            .iter()
            .find(|r| r.get("controller") == Some(&json!(true)))?;
        let text = |k: &str| {
            owner
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        Some(ControllingOwner {
            uid: text("uid"),
            kind: text("kind"),
            name: text("name"),
        })
    }

    /// Why an object with this owner is left out when the owner is restored.
    pub fn drop_reason(&self) -> String {
        format!(
            "owned by {} {}, whose controller recreates it",
            self.kind, self.name
        )
    }
}

fn remove(obj: &mut Value, pointer: &str, changes: &mut Vec<String>) {
    let (parent, last) = pointer.rsplit_once('/').unwrap_or(("", pointer));
    if let Some(Value::Object(m)) = obj.ptr_mut(parent) {
        if m.remove(unescape(last).as_ref()).is_some() {
            changes.push(format!("{pointer}: removed"));
        }
    }
}

/// Clears what the source cluster wrote; returns what it cleared.
pub fn sanitize(obj: &mut Value, opts: &SanitizeOptions) -> Vec<String> {
    let mut changes = Vec::new();
    for pointer in [
        "/metadata/uid",
        "/metadata/resourceVersion",
        "/metadata/generation",
        "/metadata/creationTimestamp",
        "/metadata/managedFields",
        "/metadata/selfLink",
        "/metadata/deletionTimestamp",
        "/metadata/deletionGracePeriodSeconds",
    ] {
        remove(obj, pointer, &mut changes);
    }
    if let Some(refs) = obj.ptr("/metadata/ownerReferences").cloned() {
        let portable: Vec<Value> = refs
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                json!({"apiVersion": r["apiVersion"], "kind": r["kind"], "name": r["name"],
                       "controller": r.get("controller").cloned().unwrap_or(json!(false)),
                       "blockOwnerDeletion": r.get("blockOwnerDeletion").cloned().unwrap_or(json!(false))})
            })
            .collect();
        remove(obj, "/metadata/ownerReferences", &mut changes);
        if !obj["metadata"]["annotations"].is_object() {
            obj["metadata"]["annotations"] = json!({});
        }
        obj["metadata"]["annotations"][OWNER_REFERENCES_ANNOTATION] =
            json!(Value::Array(portable).to_string());
        changes.push(format!("/metadata/annotations/{OWNER_REFERENCES_ANNOTATION}: owners kept for re-linking by name"));
    }
    if !opts.keep_status {
        remove(obj, "/status", &mut changes);
    }
    match (group_of(obj), kind_of(obj)) {
        ("", "Service") => {
            if obj.ptr("/spec/clusterIP").and_then(Value::as_str) != Some("None") {
                remove(obj, "/spec/clusterIP", &mut changes);
                remove(obj, "/spec/clusterIPs", &mut changes);
            }
            remove(obj, "/spec/healthCheckNodePort", &mut changes);
            if !opts.keep_node_ports {
                let n = obj
                    .ptr("/spec/ports")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                for i in 0..n {
                    remove(obj, &format!("/spec/ports/{i}/nodePort"), &mut changes);
                }
            }
        }
        ("", "Pod") => remove(obj, "/spec/nodeName", &mut changes),
        ("", "PersistentVolumeClaim") => {
            remove(obj, "/spec/volumeName", &mut changes);
            for a in [
                "pv.kubernetes.io~1bind-completed",
                "pv.kubernetes.io~1bound-by-controller",
                "volume.beta.kubernetes.io~1storage-provisioner",
                "volume.kubernetes.io~1storage-provisioner",
                "volume.kubernetes.io~1selected-node",
            ] {
                remove(obj, &format!("/metadata/annotations/{a}"), &mut changes);
            }
        }
        ("", "PersistentVolume") => {
            remove(obj, "/spec/claimRef/uid", &mut changes);
            remove(obj, "/spec/claimRef/resourceVersion", &mut changes);
        }
        _ => {}
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clears_server_fields_and_keeps_owners_by_name() {
        let mut svc = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "shop", "uid": "u1", "resourceVersion": "9", "creationTimestamp": "x",
                         "managedFields": [], "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "o", "uid": "u0"}]},
            "spec": {"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"], "type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]},
            "status": {"loadBalancer": {}}});
        let changes = sanitize(&mut svc, &SanitizeOptions::default());
        assert!(svc["metadata"].get("uid").is_none() && svc.get("status").is_none());
        assert!(
            svc["spec"].get("clusterIP").is_none()
                && svc["spec"]["ports"][0].get("nodePort").is_none()
        );
        let owners: Value = serde_json::from_str(
            svc["metadata"]["annotations"][OWNER_REFERENCES_ANNOTATION]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(owners[0]["name"], "o");
        assert!(owners[0].get("uid").is_none());
        assert!(changes.iter().any(|c| c == "/spec/clusterIP: removed"));

        let mut headless = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "h"}, "spec": {"clusterIP": "None"}});
        sanitize(
            &mut headless,
            &SanitizeOptions {
                keep_node_ports: true,
                ..Default::default()
            },
        );
        assert_eq!(headless["spec"]["clusterIP"], "None");
    }

    #[test]
    fn drops_what_clusters_make_themselves() {
        let root = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kube-root-ca.crt"}});
        assert!(drop_reason(&root).is_some());
        let token = json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token", "metadata": {"name": "t"}});
        assert!(drop_reason(&token).is_some());
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web"}});
        assert!(drop_reason(&cm).is_none());
        let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web-1",
            "ownerReferences": [{"kind": "Pod", "name": "p", "uid": "p1"},
                                {"kind": "Deployment", "name": "web", "uid": "d1", "controller": true}]}});
        let owner = ControllingOwner::of(&rs).unwrap();
        assert_eq!(
            (owner.uid.as_str(), owner.kind.as_str()),
            ("d1", "Deployment")
        );
        assert!(owner.drop_reason().contains("Deployment web"));
        assert!(ControllingOwner::of(&cm).is_none());
    }
}
