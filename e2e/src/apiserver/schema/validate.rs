//! Validation after defaulting, as the API server's registry strategies do it: every invalid
//! field of the object is reported at once, each with Kubernetes' own field path and message,
//! and updates may not change what Kubernetes keeps immutable.

use super::names;
use serde_json::{json, Value};

/// One invalid field: its path and Kubernetes' message (`Required value`, `Invalid value: …`).
#[derive(Debug, Clone, PartialEq)]
pub struct Cause {
    pub field: String,
    pub message: String,
}

impl Cause {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Cause {
        Cause {
            field: field.into(),
            message: message.into(),
        }
    }

    fn invalid(field: impl Into<String>, value: &Value, why: &str) -> Cause {
        Cause::new(field, format!("Invalid value: {}: {why}", short(value)))
    }

    /// Kubernetes' cause reason for the message.
    pub fn reason(&self) -> &'static str {
        match self.message.split(':').next().unwrap_or("") {
            "Required value" => "FieldValueRequired",
            "Forbidden" => "FieldValueForbidden",
            "Duplicate value" => "FieldValueDuplicate",
            "Too long" => "FieldValueTooLong",
            "Unsupported value" => "FieldValueNotSupported",
            _ => "FieldValueInvalid",
        }
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 200 {
        format!("{}...", &s[..s.floor_char_boundary(200)])
    } else {
        s
    }
}

pub const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;
pub const MAX_DATA_BYTES: usize = 1024 * 1024;

/// Every invalid field of an object about to be stored.
pub fn object(group: &str, kind: &str, obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    name(group, kind, obj, &mut causes);
    metadata(obj, &mut causes);
    match (group, kind) {
        ("", "Pod") => pod_spec(obj.get("spec"), "spec", &mut causes),
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") => {
            selector_matches_template(kind, obj, &mut causes);
            pod_spec(
                obj.pointer("/spec/template/spec"),
                "spec.template.spec",
                &mut causes,
            );
        }
        ("batch", "Job") => pod_spec(
            obj.pointer("/spec/template/spec"),
            "spec.template.spec",
            &mut causes,
        ),
        ("batch", "CronJob") => pod_spec(
            obj.pointer("/spec/jobTemplate/spec/template/spec"),
            "spec.jobTemplate.spec.template.spec",
            &mut causes,
        ),
        ("", "ConfigMap") => {
            data("data", obj.get("data"), false, &mut causes);
            data("binaryData", obj.get("binaryData"), true, &mut causes);
        }
        ("", "Secret") => data("data", obj.get("data"), true, &mut causes),
        _ => {}
    }
    causes
}

/// What an update may not change, on top of `object`'s checks of the new version.
pub fn update(group: &str, kind: &str, old: &Value, new: &Value) -> Vec<Cause> {
    let mut causes = object(group, kind, new);
    let changed = |pointer: &str| old.pointer(pointer) != new.pointer(pointer);
    let immutable = |field: &str, pointer: &str| {
        Cause::invalid(
            field,
            new.pointer(pointer).unwrap_or(&Value::Null),
            "field is immutable",
        )
    };
    match (group, kind) {
        ("apps", "Deployment" | "ReplicaSet" | "DaemonSet") if changed("/spec/selector") => {
            causes.push(immutable("spec.selector", "/spec/selector"));
        }
        ("apps", "StatefulSet") => {
            let masked = |o: &Value| {
                let mut spec = o.get("spec").cloned().unwrap_or(json!({}));
                if let Some(m) = spec.as_object_mut() {
                    for f in [
                        "replicas",
                        "ordinals",
                        "template",
                        "updateStrategy",
                        "revisionHistoryLimit",
                        "persistentVolumeClaimRetentionPolicy",
                        "minReadySeconds",
                    ] {
                        m.remove(f);
                    }
                }
                spec
            };
            if masked(old) != masked(new) {
                causes.push(Cause::new("spec", "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"));
            }
        }
        ("batch", "Job") => {
            for (field, pointer) in [
                ("spec.selector", "/spec/selector"),
                ("spec.template", "/spec/template"),
                ("spec.completions", "/spec/completions"),
            ] {
                if changed(pointer) {
                    causes.push(immutable(field, pointer));
                }
            }
        }
        ("", "Pod") => {
            let masked = |o: &Value| {
                let mut spec = o.get("spec").cloned().unwrap_or(json!({}));
                for list in ["containers", "initContainers"] {
                    if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
                        for c in cs {
                            c.as_object_mut().map(|m| m.remove("image"));
                        }
                    }
                }
                if let Some(m) = spec.as_object_mut() {
                    for f in [
                        "activeDeadlineSeconds",
                        "tolerations",
                        "terminationGracePeriodSeconds",
                        "schedulingGates",
                    ] {
                        m.remove(f);
                    }
                }
                spec
            };
            if masked(old) != masked(new) {
                causes.push(Cause::new("spec", "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"));
            }
        }
        ("", "PersistentVolumeClaim") => {
            let masked = |o: &Value| {
                let mut spec = o.get("spec").cloned().unwrap_or(json!({}));
                if let Some(r) = spec.get_mut("resources").and_then(Value::as_object_mut) {
                    r.remove("requests");
                }
                spec.as_object_mut()
                    .map(|m| m.remove("volumeAttributesClassName"));
                spec
            };
            if masked(old) != masked(new) {
                causes.push(Cause::new("spec", "Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"));
            }
        }
        ("", "Service")
            if old.pointer("/spec/clusterIP").is_some() && changed("/spec/clusterIP") =>
        {
            causes.push(Cause::invalid(
                "spec.clusterIPs[0]",
                new.pointer("/spec/clusterIP").unwrap_or(&Value::Null),
                "may not change once set",
            ));
        }
        ("", "ConfigMap" | "Secret") => {
            if old.get("immutable") == Some(&json!(true)) {
                for field in ["data", "binaryData", "immutable"] {
                    if old.get(field) != new.get(field) {
                        causes.push(Cause::new(
                            field,
                            "Forbidden: field is immutable when `immutable` is set",
                        ));
                    }
                }
            }
            if kind == "Secret" && changed("/type") {
                causes.push(immutable("type", "/type"));
            }
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding")
            if changed("/roleRef") =>
        {
            causes.push(Cause::invalid(
                "roleRef",
                new.get("roleRef").unwrap_or(&Value::Null),
                "cannot change roleRef",
            ));
        }
        ("storage.k8s.io", "StorageClass") => {
            if changed("/parameters") {
                causes.push(Cause::new(
                    "parameters",
                    "Forbidden: updates to parameters are forbidden.",
                ));
            }
            for field in ["provisioner", "reclaimPolicy", "volumeBindingMode"] {
                if changed(&format!("/{field}")) {
                    causes.push(immutable(field, &format!("/{field}")));
                }
            }
        }
        _ => {}
    }
    causes
}

fn name(group: &str, kind: &str, obj: &Value, causes: &mut Vec<Cause>) {
    let n = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let why = match (group, kind) {
        ("rbac.authorization.k8s.io", _) => names::path_segment(n),
        ("", "Namespace") => names::dns1123_label(n),
        ("", "Service") => names::dns1035_label(n),
        _ => names::dns1123_subdomain(n),
    };
    if let Some(why) = why {
        causes.push(Cause::invalid("metadata.name", &json!(n), &why));
    }
}

fn metadata(obj: &Value, causes: &mut Vec<Cause>) {
    if let Some(labels) = obj.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in labels {
            if let Some(why) = names::qualified_name(k) {
                causes.push(Cause::invalid("metadata.labels", &json!(k), &why));
            }
            if let Some(why) = v.as_str().and_then(names::label_value) {
                causes.push(Cause::invalid("metadata.labels", v, &why));
            }
        }
    }
    if let Some(annotations) = obj
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
    {
        let mut total = 0;
        for (k, v) in annotations {
            if let Some(why) = names::qualified_name(&k.to_lowercase()) {
                causes.push(Cause::invalid("metadata.annotations", &json!(k), &why));
            }
            total += k.len() + v.as_str().map_or(0, str::len);
        }
        if total > MAX_ANNOTATIONS_BYTES {
            causes.push(Cause::new(
                "metadata.annotations",
                format!("Too long: must have at most {MAX_ANNOTATIONS_BYTES} bytes"),
            ));
        }
    }
}

fn data(field: &str, map: Option<&Value>, base64: bool, causes: &mut Vec<Cause>) {
    let Some(map) = map.and_then(Value::as_object) else {
        return;
    };
    let mut total = 0;
    for (k, v) in map {
        if let Some(why) = names::config_key(k) {
            causes.push(Cause::invalid(format!("{field}[{k}]"), &json!(k), &why));
        }
        let len = v.as_str().map_or(0, str::len);
        total += if base64 { len / 4 * 3 } else { len };
    }
    if total > MAX_DATA_BYTES {
        causes.push(Cause::new(
            field,
            format!("Too long: must have at most {MAX_DATA_BYTES} bytes"),
        ));
    }
}

fn pod_spec(spec: Option<&Value>, at: &str, causes: &mut Vec<Cause>) {
    let containers = spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array);
    if containers.is_none_or(Vec::is_empty) {
        causes.push(Cause::new(format!("{at}.containers"), "Required value"));
    }
    let mut seen = std::collections::HashSet::new();
    for list in ["initContainers", "containers"] {
        let items = spec.and_then(|s| s.get(list)).and_then(Value::as_array);
        for (i, c) in items.into_iter().flatten().enumerate() {
            let here = format!("{at}.{list}[{i}]");
            match c.get("name").and_then(Value::as_str).unwrap_or("") {
                "" => causes.push(Cause::new(format!("{here}.name"), "Required value")),
                n => {
                    if let Some(why) = names::dns1123_label(n) {
                        causes.push(Cause::invalid(format!("{here}.name"), &json!(n), &why));
                    }
                    if !seen.insert(n.to_string()) {
                        causes.push(Cause::new(
                            format!("{here}.name"),
                            format!("Duplicate value: {}", json!(n)),
                        ));
                    }
                }
            }
            if c.get("image")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
            {
                causes.push(Cause::new(format!("{here}.image"), "Required value"));
            }
        }
    }
}

fn selector_matches_template(kind: &str, obj: &Value, causes: &mut Vec<Cause>) {
    let Some(selector) = obj.pointer("/spec/selector").filter(|s| !s.is_null()) else {
        causes.push(Cause::new("spec.selector", "Required value"));
        return;
    };
    let empty = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(|m| m.is_empty())
        && selector
            .get("matchExpressions")
            .and_then(Value::as_array)
            .is_none_or(|m| m.is_empty());
    if empty {
        causes.push(Cause::invalid(
            "spec.selector",
            selector,
            &format!("empty selector is invalid for {}", kind.to_lowercase()),
        ));
        return;
    }
    let labels = obj
        .pointer("/spec/template/metadata/labels")
        .cloned()
        .unwrap_or(json!({}));
    if !selects(selector, &labels) {
        causes.push(Cause::invalid(
            "spec.template.metadata.labels",
            &labels,
            "`selector` does not match template `labels`",
        ));
    }
}

/// Whether a label selector selects an object with these labels.
pub fn selects(selector: &Value, labels: &Value) -> bool {
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    let match_labels = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .all(|(k, v)| label(k) == v.as_str());
    let expressions = selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .all(|e| {
            let key = e.get("key").and_then(Value::as_str).unwrap_or("");
            let values: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            match e.get("operator").and_then(Value::as_str) {
                Some("In") => label(key).is_some_and(|v| values.contains(&v)),
                Some("NotIn") => label(key).is_none_or(|v| !values.contains(&v)),
                Some("Exists") => label(key).is_some(),
                Some("DoesNotExist") => label(key).is_none(),
                _ => false,
            }
        });
    match_labels && expressions
}
