//! What the API server does to a built-in object between decoding a request and storing it:
//! typed decoding (a value of the wrong type is a 400 naming the field), unknown fields dropped,
//! warned about or refused as `fieldValidation` asks, quantities in canonical form,
//! `Secret.stringData` folded into `data`, defaults, and validation (a 422 naming every invalid
//! field). Custom resources keep what their clients send: the stand-in does not validate them
//! against their CRD's schema.

pub mod defaults;
mod names;
mod quantity;
mod typed;
pub mod validate;

use super::error::{ApiError, ApiResult};
use super::resources::ResourceType;
use base64::Engine;
use serde_json::Value;

/// The `fieldValidation` query parameter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FieldValidation {
    /// Unknown fields are dropped silently.
    Ignore,
    /// Unknown fields are dropped, and the response carries a warning for each.
    #[default]
    Warn,
    /// Unknown fields fail the request.
    Strict,
}

impl FieldValidation {
    pub fn parse(value: Option<&str>) -> ApiResult<FieldValidation> {
        match value {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation parameter unsupported: {other}, must be one of Ignore, Warn, Strict"
            ))),
        }
    }
}

/// Brings a client's object to what the server would store (before defaults), returning the
/// warnings for the response.
pub fn conform(
    rt: &ResourceType,
    version: &str,
    obj: &mut Value,
    validation: FieldValidation,
) -> ApiResult<Vec<String>> {
    if rt.custom {
        return Ok(Vec::new());
    }
    let cannot_decode = |why: String| {
        ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: {why}",
            kind = rt.kind
        ))
    };
    canonical_quantities(&rt.kind, obj).map_err(cannot_decode)?;
    let Some(decoded) = typed::round_trip(&rt.group, version, &rt.kind, obj) else {
        return Ok(Vec::new());
    };
    let decoded = decoded.map_err(cannot_decode)?;
    let unknown = typed::prune_unknown(obj, &decoded);
    if rt.kind == "Secret" && rt.group.is_empty() {
        fold_string_data(obj);
    }
    let messages: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    match validation {
        FieldValidation::Strict if !messages.is_empty() => Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            messages.join(", ")
        ))),
        FieldValidation::Warn => Ok(messages),
        _ => Ok(Vec::new()),
    }
}

/// `stringData` is write-only: its entries replace those of `data`, base64-encoded.
fn fold_string_data(secret: &mut Value) {
    let Some(Value::Object(string_data)) =
        secret.as_object_mut().and_then(|m| m.remove("stringData"))
    else {
        return;
    };
    if !secret.get("data").is_some_and(Value::is_object) {
        secret["data"] = Value::Object(Default::default());
    }
    for (k, v) in string_data {
        let text = v.as_str().unwrap_or_default();
        secret["data"][&k] = Value::String(base64::engine::general_purpose::STANDARD.encode(text));
    }
}

/// Where built-in kinds keep quantities, as JSON pointers with `*` for any key or index.
fn quantity_paths(kind: &str) -> Vec<String> {
    let pod_spec = |at: &str| -> Vec<String> {
        let mut paths = Vec::new();
        for list in ["containers", "initContainers", "ephemeralContainers"] {
            for which in ["limits", "requests"] {
                paths.push(format!("{at}/{list}/*/resources/{which}/*"));
            }
        }
        paths.push(format!("{at}/overhead/*"));
        paths.push(format!("{at}/resources/limits/*"));
        paths.push(format!("{at}/resources/requests/*"));
        paths.push(format!("{at}/volumes/*/emptyDir/sizeLimit"));
        paths
    };
    match kind {
        "Pod" => pod_spec("/spec"),
        "Deployment" | "ReplicaSet" | "DaemonSet" | "Job" | "ReplicationController" => {
            pod_spec("/spec/template/spec")
        }
        "StatefulSet" => {
            let mut p = pod_spec("/spec/template/spec");
            p.push("/spec/volumeClaimTemplates/*/spec/resources/requests/*".into());
            p.push("/spec/volumeClaimTemplates/*/spec/resources/limits/*".into());
            p
        }
        "CronJob" => pod_spec("/spec/jobTemplate/spec/template/spec"),
        "PersistentVolumeClaim" => vec![
            "/spec/resources/requests/*".into(),
            "/spec/resources/limits/*".into(),
            "/status/capacity/*".into(),
        ],
        "PersistentVolume" => vec!["/spec/capacity/*".into()],
        "ResourceQuota" => vec![
            "/spec/hard/*".into(),
            "/status/hard/*".into(),
            "/status/used/*".into(),
        ],
        "LimitRange" => [
            "max",
            "min",
            "default",
            "defaultRequest",
            "maxLimitRequestRatio",
        ]
        .iter()
        .map(|f| format!("/spec/limits/*/{f}/*"))
        .collect(),
        "Node" => vec!["/status/capacity/*".into(), "/status/allocatable/*".into()],
        _ => Vec::new(),
    }
}

fn canonical_quantities(kind: &str, obj: &mut Value) -> Result<(), String> {
    for path in quantity_paths(kind) {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        each_at(obj, &segments, String::new(), &mut |field, v| {
            if v.is_null() {
                return Ok(());
            }
            *v = Value::String(quantity::canonical(v).map_err(|e| format!("{field}: {e}"))?);
            Ok(())
        })?;
    }
    Ok(())
}

fn each_at(
    v: &mut Value,
    segments: &[&str],
    field: String,
    f: &mut dyn FnMut(&str, &mut Value) -> Result<(), String>,
) -> Result<(), String> {
    let Some((first, rest)) = segments.split_first() else {
        return f(&field, v);
    };
    let join = |k: &str| {
        if field.is_empty() {
            k.to_string()
        } else {
            format!("{field}.{k}")
        }
    };
    match (v, *first) {
        (Value::Object(m), "*") => {
            for (k, item) in m.iter_mut() {
                each_at(item, rest, join(k), f)?;
            }
        }
        (Value::Array(a), "*") => {
            for (i, item) in a.iter_mut().enumerate() {
                each_at(item, rest, format!("{field}[{i}]"), f)?;
            }
        }
        (Value::Object(m), key) => {
            if let Some(item) = m.get_mut(key) {
                each_at(item, rest, join(key), f)?;
            }
        }
        _ => {}
    }
    Ok(())
}
