//! `meta.k8s.io/v1` Table responses, which `kubectl get` asks for to print its columns.

use super::resources::ResourceType;
use serde_json::{json, Value};

pub fn wants_table(accept: &str) -> bool {
    accept.split(',').any(|p| {
        let p: String = p.chars().filter(|c| !c.is_whitespace()).collect();
        p.contains("as=Table") && p.contains("g=meta.k8s.io")
    })
}

fn col(name: &str, type_: &str, description: &str) -> Value {
    json!({"name": name, "type": type_, "format": if name == "Name" { "name" } else { "" },
           "description": description, "priority": 0})
}

fn age(obj: &Value) -> String {
    let Some(ts) = obj
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    else {
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

fn num(obj: &Value, pointer: &str) -> i64 {
    obj.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn text(obj: &Value, pointer: &str) -> String {
    match obj.pointer(pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "<none>".into(),
        Some(other) => other.to_string(),
    }
}

/// Evaluates the simple JSONPath subset CRD printer columns use: `.a.b`, `.a[0].b`.
fn json_path(obj: &Value, path: &str) -> Value {
    let mut cur = obj;
    for part in path.trim_start_matches('.').split('.') {
        if part.is_empty() {
            continue;
        }
        let (field, index) = match part.split_once('[') {
            Some((f, rest)) => (f, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        cur = match cur.get(field) {
            Some(v) => v,
            None => return Value::Null,
        };
        if let Some(i) = index {
            cur = match cur.get(i) {
                Some(v) => v,
                None => return Value::Null,
            };
        }
    }
    cur.clone()
}

fn columns(t: &ResourceType) -> Vec<Value> {
    let name = col("Name", "string", "Name must be unique within a namespace.");
    let age = col("Age", "string", "CreationTimestamp is a timestamp representing the server time when this object was created.");
    let mut cols = vec![name];
    match (t.group.as_str(), t.kind.as_str()) {
        ("", "Pod") => cols.extend([
            col("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
            col("Status", "string", "The aggregate status of the containers in this pod."),
            col("Restarts", "string", "The number of times the containers in this pod have been restarted."),
        ]),
        ("", "Namespace") => cols.push(col("Status", "string", "The status of the namespace")),
        ("", "Service") => cols.extend([
            col("Type", "string", "The type of the service."),
            col("Cluster-IP", "string", "The cluster IP of the service."),
            col("Ports", "string", "The ports of the service."),
        ]),
        ("", "ConfigMap") | ("", "Secret") => cols.push(col("Data", "string", "Number of entries.")),
        ("", "PersistentVolumeClaim") => cols.extend([
            col("Status", "string", "The phase of the claim."),
            col("Volume", "string", "The bound volume."),
            col("StorageClass", "string", "The storage class."),
        ]),
        ("apps", "Deployment") => cols.extend([
            col("Ready", "string", "Number of the pod with ready state"),
            col("Up-to-date", "string", "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
            col("Available", "string", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
        ]),
        ("apps", "StatefulSet") | ("apps", "ReplicaSet") => {
            cols.push(col("Ready", "string", "Number of the pod with ready state"))
        }
        _ => {
            for c in &t.printer_columns {
                cols.push(json!({"name": c.name, "type": c.type_, "format": "",
                                 "description": c.description, "priority": c.priority}));
            }
        }
    }
    cols.push(age);
    cols
}

fn cells(t: &ResourceType, obj: &Value) -> Vec<Value> {
    let name = obj
        .pointer("/metadata/name")
        .cloned()
        .unwrap_or(Value::Null);
    let mut c = vec![name];
    match (t.group.as_str(), t.kind.as_str()) {
        ("", "Pod") => {
            let total = obj
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let statuses = obj
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array);
            let ready = statuses.map_or(0, |s| {
                s.iter()
                    .filter(|x| x.get("ready") == Some(&json!(true)))
                    .count()
            });
            let restarts: i64 =
                statuses.map_or(0, |s| s.iter().map(|x| num(x, "/restartCount")).sum());
            let status = if obj.pointer("/metadata/deletionTimestamp").is_some() {
                "Terminating".to_string()
            } else {
                text(obj, "/status/phase")
            };
            c.extend([
                json!(format!("{ready}/{total}")),
                json!(status),
                json!(restarts.to_string()),
            ]);
        }
        ("", "Namespace") => c.push(json!(text(obj, "/status/phase"))),
        ("", "Service") => {
            let ports: Vec<String> = obj
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|p| format!("{}/{}", num(p, "/port"), text(p, "/protocol")))
                .collect();
            c.extend([
                json!(text(obj, "/spec/type")),
                json!(text(obj, "/spec/clusterIP")),
                json!(if ports.is_empty() {
                    "<none>".into()
                } else {
                    ports.join(",")
                }),
            ]);
        }
        ("", "ConfigMap") | ("", "Secret") => {
            let n = ["data", "binaryData", "stringData"]
                .iter()
                .filter_map(|f| obj.get(*f).and_then(Value::as_object))
                .map(|m| m.len())
                .sum::<usize>();
            c.push(json!(n));
        }
        ("", "PersistentVolumeClaim") => c.extend([
            json!(text(obj, "/status/phase")),
            json!(obj
                .pointer("/spec/volumeName")
                .and_then(Value::as_str)
                .unwrap_or("")),
            json!(text(obj, "/spec/storageClassName")),
        ]),
        ("apps", "Deployment") => c.extend([
            json!(format!(
                "{}/{}",
                num(obj, "/status/readyReplicas"),
                num(obj, "/spec/replicas")
            )),
            json!(num(obj, "/status/updatedReplicas")),
            json!(num(obj, "/status/availableReplicas")),
        ]),
        ("apps", "StatefulSet") | ("apps", "ReplicaSet") => c.push(json!(format!(
            "{}/{}",
            num(obj, "/status/readyReplicas"),
            num(obj, "/spec/replicas")
        ))),
        _ => {
            for pc in &t.printer_columns {
                c.push(json_path(obj, &pc.json_path));
            }
        }
    }
    c.push(json!(age(obj)));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printer_column_paths() {
        let o = json!({"spec": {"size": 3, "items": [{"n": "a"}]}});
        assert_eq!(json_path(&o, ".spec.size"), json!(3));
        assert_eq!(json_path(&o, ".spec.items[0].n"), json!("a"));
        assert_eq!(json_path(&o, ".spec.missing"), Value::Null);
    }
}
