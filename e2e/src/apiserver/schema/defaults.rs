//! Defaults the API server fills in at creation, as Kubernetes' defaulting and admission do for
//! the fields a client tool (and Ferry's sanitiser) will meet: namespace finalizers, service
//! cluster IPs, the default storage class, workload replica counts, pod and container defaults
//! (tools such as `kubectl debug` read them without checking).

use crate::apiserver::resources::ResourceType;
use crate::apiserver::store::Inner;
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

/// Defaults and allocations of a new object: everything `apply` sets, plus what admission and
/// allocation give a new object only (service IPs and node ports, the default storage class,
/// a pod's service account, initial status).
pub fn on_create(rt: &ResourceType, obj: &mut Value, store: &Inner) {
    apply(rt, obj);
    let rv = store.resource_version() + 1;
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Namespace") => {
            let name = obj["metadata"]["name"].clone();
            set_default(obj, "/metadata/labels/kubernetes.io~1metadata.name", name);
            set_default(obj, "/spec/finalizers", json!(["kubernetes"]));
            obj["status"] = json!({"phase": "Active"});
        }
        ("", "Pod") => {
            set_default(obj, "/spec/serviceAccountName", json!("default"));
            let qos = qos_class(obj.get("spec").unwrap_or(&Value::Null));
            obj["status"] = json!({"phase": "Pending", "qosClass": qos});
        }
        ("", "Service") => {
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
            obj["status"] = json!({"phase": "Pending"});
        }
        ("", "PersistentVolume") => {
            set_default(obj, "/status/phase", json!("Available"));
        }
        _ => {}
    }
}

/// Defaults that decoding applies to every write, creates and updates alike, so an update
/// that omits a defaulted field does not read as a change of it.
pub fn apply(rt: &ResourceType, obj: &mut Value) {
    if rt.custom {
        return;
    }
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Pod") => {
            if let Some(spec) = obj.get_mut("spec") {
                pod_spec(spec, true);
                set_default(spec, "/enableServiceLinks", json!(true));
                set_default(spec, "/priority", json!(0));
                set_default(spec, "/preemptionPolicy", json!("PreemptLowerPriority"));
            }
        }
        ("", "Secret") => {
            set_default(obj, "/type", json!("Opaque"));
        }
        ("", "Service") => {
            set_default(obj, "/spec/type", json!("ClusterIP"));
            set_default(obj, "/spec/sessionAffinity", json!("None"));
            if obj.pointer("/spec/type").and_then(Value::as_str) != Some("ExternalName") {
                set_default(obj, "/spec/internalTrafficPolicy", json!("Cluster"));
                set_default(obj, "/spec/ipFamilies", json!(["IPv4"]));
                set_default(obj, "/spec/ipFamilyPolicy", json!("SingleStack"));
            }
            if let Some(ports) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
                for p in ports.iter_mut() {
                    set_default(p, "/protocol", json!("TCP"));
                    if let Some(port) = p.get("port").cloned() {
                        set_default(p, "/targetPort", port);
                    }
                }
            }
        }
        ("", "PersistentVolumeClaim") => {
            set_default(obj, "/spec/volumeMode", json!("Filesystem"));
        }
        ("", "PersistentVolume") => {
            set_default(obj, "/spec/persistentVolumeReclaimPolicy", json!("Retain"));
            set_default(obj, "/spec/volumeMode", json!("Filesystem"));
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
            set_default(
                obj,
                "/spec/persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            );
            // Claim templates come back as whole claims, as apps/v1 serves them: typed, with
            // a claim's defaults and an empty status (`kubectl get sts -o yaml` shows them so).
            for claim in obj
                .pointer_mut("/spec/volumeClaimTemplates")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
                .filter(|c| c.is_object())
            {
                set_default(claim, "/apiVersion", json!("v1"));
                set_default(claim, "/kind", json!("PersistentVolumeClaim"));
                set_default(claim, "/spec/volumeMode", json!("Filesystem"));
                set_default(claim, "/status/phase", json!("Pending"));
            }
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
    // A Job's pods must say whether they restart on failure: no default, as in Kubernetes.
    let (template, restarts) = match (rt.group.as_str(), rt.kind.as_str()) {
        ("apps", _) | ("", "ReplicationController") => ("/spec/template/spec", true),
        ("batch", "Job") => ("/spec/template/spec", false),
        ("batch", "CronJob") => ("/spec/jobTemplate/spec/template/spec", false),
        _ => return,
    };
    if let Some(spec) = obj.pointer_mut(template) {
        pod_spec(spec, restarts);
    }
}

/// Defaults of a pod spec, in a pod or a workload's template.
fn pod_spec(spec: &mut Value, restarts: bool) {
    if !spec.is_object() {
        return;
    }
    if restarts {
        set_default(spec, "/restartPolicy", json!("Always"));
    }
    set_default(spec, "/schedulerName", json!("default-scheduler"));
    set_default(spec, "/terminationGracePeriodSeconds", json!(30));
    set_default(spec, "/dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "/securityContext", json!({}));
    for list in ["initContainers", "containers"] {
        for c in spec
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            container(c);
        }
    }
    for v in spec
        .get_mut("volumes")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        for source in ["configMap", "secret", "projected", "downwardAPI"] {
            if let Some(src) = v.get_mut(source).filter(|s| s.is_object()) {
                set_default(src, "/defaultMode", json!(420));
            }
        }
    }
}

fn container(c: &mut Value) {
    if !c.is_object() {
        return;
    }
    set_default(c, "/terminationMessagePath", json!("/dev/termination-log"));
    set_default(c, "/terminationMessagePolicy", json!("File"));
    set_default(c, "/resources", json!({}));
    let image = c.get("image").and_then(Value::as_str).unwrap_or("");
    // Kubernetes pulls `latest` (named or implied) every time, pinned tags and digests once.
    let last = image.rsplit('/').next().unwrap_or(image);
    let pull = if image.contains('@') {
        "IfNotPresent"
    } else {
        match last.split_once(':') {
            Some((_, "latest")) | None => "Always",
            Some(_) => "IfNotPresent",
        }
    };
    set_default(c, "/imagePullPolicy", json!(pull));
    for p in c
        .get_mut("ports")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        set_default(p, "/protocol", json!("TCP"));
    }
}

/// The pod's quality-of-service class from its containers' requests and limits.
fn qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .filter_map(|l| spec.get(*l).and_then(Value::as_array))
        .flatten()
        .collect();
    let of =
        |c: &Value, which: &str, r: &str| c.pointer(&format!("/resources/{which}/{r}")).cloned();
    let any = containers.iter().any(|c| {
        ["requests", "limits"]
            .iter()
            .any(|w| ["cpu", "memory"].iter().any(|r| of(c, w, r).is_some()))
    });
    if !any {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        ["cpu", "memory"].iter().all(|r| {
            let limit = of(c, "limits", r);
            limit.is_some() && of(c, "requests", r).is_none_or(|req| Some(req) == limit)
        })
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}
