//! Defaults the API server fills in at creation, as Kubernetes' defaulting and admission do for
//! the fields a client tool (and Ferry's sanitiser) will meet: namespace finalizers, service
//! cluster IPs, the default storage class, workload replica counts.

use super::resources::ResourceType;
use super::store::Inner;
use serde_json::{json, Value};

/// Sets the field at a JSON pointer (RFC 6901 escapes: `~1` is `/`) unless it is present.
fn set_default(obj: &mut Value, pointer: &str, value: Value) {
    if obj.pointer(pointer).is_some() {
        return;
    }
    let mut parts: Vec<String> = pointer
        .trim_start_matches('/')
        .split('/')
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect();
    let last = parts.pop().unwrap_or_default();
    let mut cur = obj;
    for p in parts {
        if !cur.get(&p).is_some_and(Value::is_object) {
            cur[&p] = json!({});
        }
        cur = &mut cur[&p];
    }
    cur[&last] = value;
}

pub fn on_create(rt: &ResourceType, obj: &mut Value, store: &Inner) {
    let rv = store.resource_version() + 1;
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Namespace") => {
            let name = obj["metadata"]["name"].clone();
            set_default(obj, "/metadata/labels/kubernetes.io~1metadata.name", name);
            set_default(obj, "/spec/finalizers", json!(["kubernetes"]));
            obj["status"] = json!({"phase": "Active"});
        }
        ("", "Pod") => {
            set_default(obj, "/spec/restartPolicy", json!("Always"));
            set_default(obj, "/spec/serviceAccountName", json!("default"));
            set_default(obj, "/spec/schedulerName", json!("default-scheduler"));
            set_default(obj, "/spec/terminationGracePeriodSeconds", json!(30));
            set_default(obj, "/spec/dnsPolicy", json!("ClusterFirst"));
            obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
        }
        ("", "Service") => {
            set_default(obj, "/spec/type", json!("ClusterIP"));
            set_default(obj, "/spec/sessionAffinity", json!("None"));
            let headless = obj.pointer("/spec/clusterIP").and_then(Value::as_str) == Some("None");
            if !headless
                && obj.pointer("/spec/type").and_then(Value::as_str) != Some("ExternalName")
            {
                let ip = format!("10.96.{}.{}", (rv / 250) % 250, rv % 250 + 1);
                set_default(obj, "/spec/clusterIP", json!(ip));
            }
            if let Some(ip) = obj.pointer("/spec/clusterIP").cloned() {
                set_default(obj, "/spec/clusterIPs", json!([ip]));
            }
            let node_ports = matches!(
                obj.pointer("/spec/type").and_then(Value::as_str),
                Some("NodePort" | "LoadBalancer")
            );
            if let Some(ports) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
                for (i, p) in ports.iter_mut().enumerate() {
                    set_default(p, "/protocol", json!("TCP"));
                    if let Some(port) = p.get("port").cloned() {
                        set_default(p, "/targetPort", port);
                    }
                    if node_ports {
                        set_default(p, "/nodePort", json!(30000 + (rv as usize * 7 + i) % 2768));
                    }
                }
            }
            set_default(obj, "/status/loadBalancer", json!({}));
        }
        ("", "PersistentVolumeClaim") => {
            if obj.pointer("/spec/storageClassName").is_none() {
                let default_class = store
                    .range("storage.k8s.io", "storageclasses", None)
                    .find(|(_, sc)| {
                        sc.pointer(
                            "/metadata/annotations/storageclass.kubernetes.io~1is-default-class",
                        )
                        .and_then(Value::as_str)
                            == Some("true")
                    })
                    .map(|(k, _)| k.name.clone());
                if let Some(sc) = default_class {
                    obj["spec"]["storageClassName"] = json!(sc);
                }
            }
            set_default(obj, "/spec/volumeMode", json!("Filesystem"));
            obj["status"] = json!({"phase": "Pending"});
        }
        ("", "PersistentVolume") => {
            set_default(obj, "/spec/persistentVolumeReclaimPolicy", json!("Retain"));
            set_default(obj, "/spec/volumeMode", json!("Filesystem"));
            set_default(obj, "/status/phase", json!("Available"));
        }
        ("apps", "Deployment") => {
            set_default(obj, "/spec/replicas", json!(1));
            set_default(obj, "/spec/revisionHistoryLimit", json!(10));
            set_default(obj, "/spec/progressDeadlineSeconds", json!(600));
            set_default(
                obj,
                "/spec/strategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}),
            );
        }
        ("apps", "StatefulSet") => {
            set_default(obj, "/spec/replicas", json!(1));
            set_default(obj, "/spec/podManagementPolicy", json!("OrderedReady"));
            set_default(
                obj,
                "/spec/updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
            );
            set_default(obj, "/spec/revisionHistoryLimit", json!(10));
        }
        ("apps", "ReplicaSet") | ("", "ReplicationController") => {
            set_default(obj, "/spec/replicas", json!(1));
        }
        ("batch", "Job") => {
            set_default(obj, "/spec/completions", json!(1));
            set_default(obj, "/spec/parallelism", json!(1));
            set_default(obj, "/spec/backoffLimit", json!(6));
        }
        _ => {}
    }
}
