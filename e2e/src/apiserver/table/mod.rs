//! `meta.k8s.io/v1` Table responses, which `kubectl get` asks for to print its columns.

use super::resources::ResourceType;
use serde_json::{json, Value};

pub fn wants_table(accept: &str) -> bool {
    accept.split(',').any(|p| {
        let p: String = p.chars().filter(|c| !c.is_whitespace()).collect();
        p.contains("as=Table") && p.contains("g=meta.k8s.io")
    })
}

mod jsonpath;

/// A column: its definition for `columnDefinitions` and how to compute its cell. Columns with
/// priority 1 are the extra ones `kubectl get -o wide` shows.
struct Column {
    name: &'static str,
    type_: &'static str,
    priority: i64,
    description: &'static str,
    cell: fn(&Value) -> Value,
}

const fn column(name: &'static str, type_: &'static str, cell: fn(&Value) -> Value) -> Column {
    Column {
        name,
        type_,
        priority: 0,
        description: "",
        cell,
    }
}

const fn wide(name: &'static str, cell: fn(&Value) -> Value) -> Column {
    Column {
        name,
        type_: "string",
        priority: 1,
        description: "",
        cell,
    }
}

fn definition(c: &Column) -> Value {
    json!({"name": c.name, "type": c.type_, "format": if c.name == "Name" { "name" } else { "" },
           "description": c.description, "priority": c.priority})
}

/// A timestamp as kubectl prints ages: `42s`, `5m`, `3h`, `2d`.
fn since(ts: Option<&str>) -> String {
    let Some(ts) = ts.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()) else {
        return "<unknown>".into();
    };
    let secs = (chrono::Utc::now() - ts.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 3600 * 3 => format!("{}m", s / 60),
        s if s < 86400 * 2 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn age(obj: &Value) -> Value {
    json!(since(
        obj.pointer("/metadata/creationTimestamp")
            .and_then(Value::as_str)
    ))
}

fn name_cell(obj: &Value) -> Value {
    obj.pointer("/metadata/name")
        .cloned()
        .unwrap_or(Value::Null)
}

fn num(obj: &Value, pointer: &str) -> i64 {
    obj.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn text(obj: &Value, pointer: &str) -> String {
    match obj.pointer(pointer) {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Null) | None => "<none>".into(),
        Some(Value::String(_)) => "<none>".into(),
        Some(other) => other.to_string(),
    }
}

/// Strings at a `*` pattern joined with commas, `<none>` when there are none.
fn joined(obj: &Value, pattern: &str) -> Value {
    let found = ferry_transform::rules::strings_at(obj, pattern);
    json!(if found.is_empty() {
        "<none>".to_string()
    } else {
        found.join(",")
    })
}

fn label_selector(selector: Option<&Value>) -> Value {
    let Some(s) = selector else {
        return json!("<none>");
    };
    let labels = s.get("matchLabels").unwrap_or(s);
    let mut parts: Vec<String> = labels
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.as_str().map(|v| format!("{k}={v}")))
        .collect();
    parts.sort();
    json!(if parts.is_empty() {
        "<none>".to_string()
    } else {
        parts.join(",")
    })
}

fn ready_of(obj: &Value) -> Value {
    json!(format!(
        "{}/{}",
        num(obj, "/status/readyReplicas"),
        obj.pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1)
    ))
}

fn template_containers(obj: &Value) -> Value {
    joined(obj, "/spec/template/spec/containers/*/name")
}

fn template_images(obj: &Value) -> Value {
    joined(obj, "/spec/template/spec/containers/*/image")
}

fn data_count(obj: &Value) -> Value {
    let n: usize = ["data", "binaryData"]
        .iter()
        .filter_map(|f| obj.get(*f).and_then(Value::as_object))
        .map(|m| m.len())
        .sum();
    json!(n)
}

fn pod_ready(obj: &Value) -> Value {
    let total = obj
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let ready = obj
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map_or(0, |s| {
            s.iter()
                .filter(|x| x.get("ready") == Some(&json!(true)))
                .count()
        });
    json!(format!("{ready}/{total}"))
}

fn pod_status(obj: &Value) -> Value {
    json!(if obj.pointer("/metadata/deletionTimestamp").is_some() {
        "Terminating".to_string()
    } else {
        text(obj, "/status/phase")
    })
}

fn pod_restarts(obj: &Value) -> Value {
    let restarts: i64 = obj
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map_or(0, |s| s.iter().map(|x| num(x, "/restartCount")).sum());
    json!(restarts.to_string())
}

fn service_ports(obj: &Value) -> Value {
    let ports: Vec<String> = obj
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| match p.get("nodePort").and_then(Value::as_i64) {
            Some(np) => format!("{}:{np}/{}", num(p, "/port"), text(p, "/protocol")),
            None => format!("{}/{}", num(p, "/port"), text(p, "/protocol")),
        })
        .collect();
    json!(if ports.is_empty() {
        "<none>".into()
    } else {
        ports.join(",")
    })
}

fn external_ip(obj: &Value) -> Value {
    let ips = ferry_transform::rules::strings_at(obj, "/status/loadBalancer/ingress/*/ip");
    json!(match (text(obj, "/spec/type").as_str(), ips.is_empty()) {
        ("LoadBalancer", true) => "<pending>".to_string(),
        (_, false) => ips.join(","),
        _ => "<none>".to_string(),
    })
}

fn node_status(obj: &Value) -> Value {
    let ready = obj
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    let mut s = if ready { "Ready" } else { "NotReady" }.to_string();
    if obj.pointer("/spec/unschedulable") == Some(&json!(true)) {
        s.push_str(",SchedulingDisabled");
    }
    json!(s)
}

fn node_roles(obj: &Value) -> Value {
    let mut roles: Vec<&str> = obj
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/"))
        .collect();
    roles.sort_unstable();
    json!(if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    })
}

fn node_address(obj: &Value, kind: &str) -> Value {
    let found: Vec<&str> = obj
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|a| a["type"] == kind)
        .filter_map(|a| a["address"].as_str())
        .collect();
    json!(if found.is_empty() {
        "<none>".to_string()
    } else {
        found.join(",")
    })
}

fn access_modes(obj: &Value, pointer: &str) -> Value {
    let short: Vec<&str> = ferry_transform::rules::strings_at(obj, pointer)
        .iter()
        .map(|m| match m.as_str() {
            "ReadWriteOnce" => "RWO",
            "ReadOnlyMany" => "ROX",
            "ReadWriteMany" => "RWX",
            "ReadWriteOncePod" => "RWOP",
            _ => "?",
        })
        .collect();
    json!(short.join(","))
}

fn job_status(obj: &Value) -> Value {
    let condition = |t: &str| {
        obj.pointer("/status/conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|c| c["type"] == t && c["status"] == "True")
    };
    json!(if condition("Complete") {
        "Complete"
    } else if condition("Failed") {
        "Failed"
    } else {
        "Running"
    })
}

/// The built-in kinds' columns, as `kubectl get` shows them from a real cluster.
fn builtin(group: &str, kind: &str) -> Option<Vec<Column>> {
    let name = Column {
        description: "Name must be unique within a namespace.",
        ..column("Name", "string", name_cell)
    };
    let age = Column {
        description: "CreationTimestamp is a timestamp representing the server time when this object was created.",
        ..column("Age", "string", age)
    };
    let mut cols = vec![name];
    match (group, kind) {
        ("", "Pod") => cols.extend([
            column("Ready", "string", pod_ready),
            column("Status", "string", pod_status),
            column("Restarts", "string", pod_restarts),
            age,
            wide("IP", |o| json!(text(o, "/status/podIP"))),
            wide("Node", |o| json!(text(o, "/spec/nodeName"))),
            wide("Nominated Node", |o| {
                json!(text(o, "/status/nominatedNodeName"))
            }),
            wide("Readiness Gates", |o| {
                joined(o, "/spec/readinessGates/*/conditionType")
            }),
        ]),
        ("", "Namespace") => cols.extend([
            column("Status", "string", |o| json!(text(o, "/status/phase"))),
            age,
        ]),
        ("", "Node") => cols.extend([
            column("Status", "string", node_status),
            column("Roles", "string", node_roles),
            age,
            column("Version", "string", |o| {
                json!(text(o, "/status/nodeInfo/kubeletVersion"))
            }),
            wide("Internal-IP", |o| node_address(o, "InternalIP")),
            wide("External-IP", |o| node_address(o, "ExternalIP")),
            wide("OS-Image", |o| json!(text(o, "/status/nodeInfo/osImage"))),
            wide("Kernel-Version", |o| {
                json!(text(o, "/status/nodeInfo/kernelVersion"))
            }),
            wide("Container-Runtime", |o| {
                json!(text(o, "/status/nodeInfo/containerRuntimeVersion"))
            }),
        ]),
        ("", "Service") => cols.extend([
            column("Type", "string", |o| json!(text(o, "/spec/type"))),
            column("Cluster-IP", "string", |o| {
                json!(text(o, "/spec/clusterIP"))
            }),
            column("External-IP", "string", external_ip),
            column("Port(s)", "string", service_ports),
            age,
            wide("Selector", |o| label_selector(o.pointer("/spec/selector"))),
        ]),
        ("", "ConfigMap") => cols.extend([column("Data", "integer", data_count), age]),
        ("", "Secret") => cols.extend([
            column("Type", "string", |o| json!(text(o, "/type"))),
            column("Data", "integer", data_count),
            age,
        ]),
        ("", "ServiceAccount") => cols.extend([
            column("Secrets", "integer", |o| {
                json!(o
                    .get("secrets")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len))
            }),
            age,
        ]),
        ("", "PersistentVolumeClaim") => cols.extend([
            column("Status", "string", |o| json!(text(o, "/status/phase"))),
            column("Volume", "string", |o| {
                json!(o
                    .pointer("/spec/volumeName")
                    .and_then(Value::as_str)
                    .unwrap_or(""))
            }),
            column("Capacity", "string", |o| {
                json!(o
                    .pointer("/status/capacity/storage")
                    .and_then(Value::as_str)
                    .unwrap_or(""))
            }),
            column("Access Modes", "string", |o| {
                access_modes(o, "/status/accessModes/*")
            }),
            column("StorageClass", "string", |o| {
                json!(text(o, "/spec/storageClassName"))
            }),
            column("VolumeAttributesClass", "string", |o| {
                json!(text(o, "/spec/volumeAttributesClassName"))
            }),
            age,
            wide("VolumeMode", |o| json!(text(o, "/spec/volumeMode"))),
        ]),
        ("", "PersistentVolume") => cols.extend([
            column("Capacity", "string", |o| {
                json!(text(o, "/spec/capacity/storage"))
            }),
            column("Access Modes", "string", |o| {
                access_modes(o, "/spec/accessModes/*")
            }),
            column("Reclaim Policy", "string", |o| {
                json!(text(o, "/spec/persistentVolumeReclaimPolicy"))
            }),
            column("Status", "string", |o| json!(text(o, "/status/phase"))),
            column("Claim", "string", |o| {
                match (
                    o.pointer("/spec/claimRef/namespace")
                        .and_then(Value::as_str),
                    o.pointer("/spec/claimRef/name").and_then(Value::as_str),
                ) {
                    (Some(ns), Some(n)) => json!(format!("{ns}/{n}")),
                    _ => json!(""),
                }
            }),
            column("StorageClass", "string", |o| {
                json!(o
                    .pointer("/spec/storageClassName")
                    .and_then(Value::as_str)
                    .unwrap_or(""))
            }),
            column("VolumeAttributesClass", "string", |o| {
                json!(text(o, "/spec/volumeAttributesClassName"))
            }),
            column("Reason", "string", |o| {
                json!(o
                    .pointer("/status/reason")
                    .and_then(Value::as_str)
                    .unwrap_or(""))
            }),
            age,
            wide("VolumeMode", |o| json!(text(o, "/spec/volumeMode"))),
        ]),
        ("apps", "Deployment") => cols.extend([
            column("Ready", "string", ready_of),
            column("Up-to-date", "integer", |o| {
                json!(num(o, "/status/updatedReplicas"))
            }),
            column("Available", "integer", |o| {
                json!(num(o, "/status/availableReplicas"))
            }),
            age,
            wide("Containers", template_containers),
            wide("Images", template_images),
            wide("Selector", |o| label_selector(o.pointer("/spec/selector"))),
        ]),
        ("apps", "ReplicaSet") => cols.extend([
            column("Desired", "integer", |o| {
                json!(o
                    .pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1))
            }),
            column("Current", "integer", |o| json!(num(o, "/status/replicas"))),
            column("Ready", "integer", |o| {
                json!(num(o, "/status/readyReplicas"))
            }),
            age,
            wide("Containers", template_containers),
            wide("Images", template_images),
            wide("Selector", |o| label_selector(o.pointer("/spec/selector"))),
        ]),
        ("apps", "StatefulSet") => cols.extend([
            column("Ready", "string", ready_of),
            age,
            wide("Containers", template_containers),
            wide("Images", template_images),
        ]),
        ("apps", "DaemonSet") => cols.extend([
            column("Desired", "integer", |o| {
                json!(num(o, "/status/desiredNumberScheduled"))
            }),
            column("Current", "integer", |o| {
                json!(num(o, "/status/currentNumberScheduled"))
            }),
            column("Ready", "integer", |o| json!(num(o, "/status/numberReady"))),
            column("Up-to-date", "integer", |o| {
                json!(num(o, "/status/updatedNumberScheduled"))
            }),
            column("Available", "integer", |o| {
                json!(num(o, "/status/numberAvailable"))
            }),
            column("Node Selector", "string", |o| {
                label_selector(o.pointer("/spec/template/spec/nodeSelector"))
            }),
            age,
            wide("Containers", template_containers),
            wide("Images", template_images),
            wide("Selector", |o| label_selector(o.pointer("/spec/selector"))),
        ]),
        ("batch", "Job") => cols.extend([
            column("Status", "string", job_status),
            column("Completions", "string", |o| {
                json!(format!(
                    "{}/{}",
                    num(o, "/status/succeeded"),
                    o.pointer("/spec/completions")
                        .and_then(Value::as_i64)
                        .unwrap_or(1)
                ))
            }),
            column("Duration", "string", |o| {
                json!(since(
                    o.pointer("/status/startTime").and_then(Value::as_str)
                ))
            }),
            age,
            wide("Containers", template_containers),
            wide("Images", template_images),
        ]),
        ("storage.k8s.io", "StorageClass") => cols.extend([
            column("Provisioner", "string", |o| json!(text(o, "/provisioner"))),
            column("ReclaimPolicy", "string", |o| {
                json!(o
                    .get("reclaimPolicy")
                    .and_then(Value::as_str)
                    .unwrap_or("Delete"))
            }),
            column("VolumeBindingMode", "string", |o| {
                json!(o
                    .get("volumeBindingMode")
                    .and_then(Value::as_str)
                    .unwrap_or("Immediate"))
            }),
            column("AllowVolumeExpansion", "string", |o| {
                json!(o
                    .get("allowVolumeExpansion")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
                    .to_string())
            }),
            age,
        ]),
        _ => return None,
    }
    Some(cols)
}

fn columns(t: &ResourceType) -> Vec<Value> {
    if let Some(cols) = builtin(&t.group, &t.kind) {
        return cols.iter().map(definition).collect();
    }
    let mut cols = vec![json!({"name": "Name", "type": "string", "format": "name",
                                "description": "Name must be unique within a namespace.", "priority": 0})];
    for c in &t.printer_columns {
        cols.push(json!({"name": c.name, "type": c.type_, "format": "",
                         "description": c.description, "priority": c.priority}));
    }
    if !t.printer_columns.iter().any(|c| c.name == "Age") {
        cols.push(json!({"name": "Age", "type": "date", "format": "",
                         "description": "CreationTimestamp is a timestamp representing the server time when this object was created.", "priority": 0}));
    }
    cols
}

fn cells(t: &ResourceType, obj: &Value) -> Vec<Value> {
    if let Some(cols) = builtin(&t.group, &t.kind) {
        return cols.iter().map(|c| (c.cell)(obj)).collect();
    }
    let mut c = vec![name_cell(obj)];
    for pc in &t.printer_columns {
        let found = jsonpath::eval(obj, &pc.json_path);
        c.push(match (pc.type_.as_str(), found.as_slice()) {
            (_, []) => Value::Null,
            // Dates print as ages, computed by the server as for a real CRD.
            ("date", [Value::String(ts), ..]) => json!(since(Some(ts))),
            (_, [one]) => one.clone(),
            (_, many) => json!(many
                .iter()
                .map(|v| v
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string()))
                .collect::<Vec<_>>()
                .join(",")),
        });
    }
    if !t.printer_columns.iter().any(|c| c.name == "Age") {
        c.push(age(obj));
    }
    c
}

/// How much of each object a Table row carries (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    None,
    Metadata,
    Object,
}

impl Include {
    pub fn parse(s: Option<&str>) -> Include {
        match s {
            Some("None") => Include::None,
            Some("Object") => Include::Object,
            _ => Include::Metadata,
        }
    }
}

pub fn row(t: &ResourceType, obj: &Value, include: Include) -> Value {
    let object = match include {
        Include::None => Value::Null,
        Include::Object => obj.clone(),
        Include::Metadata => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata").cloned().unwrap_or(Value::Null),
        }),
    };
    json!({"cells": cells(t, obj), "object": object})
}

pub fn table(
    t: &ResourceType,
    items: &[Value],
    rv: u64,
    cont: Option<String>,
    include: Include,
) -> Value {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": columns(t),
        "rows": items.iter().map(|o| row(t, o, include)).collect::<Vec<_>>(),
    })
}

/// A one-row table, the object of each watch event when a watch asked for tables.
pub fn watch_table(t: &ResourceType, obj: &Value, include: Include, with_columns: bool) -> Value {
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null)},
        "columnDefinitions": if with_columns { json!(columns(t)) } else { json!([]) },
        "rows": [row(t, obj, include)],
    })
}
