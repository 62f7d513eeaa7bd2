//! The `scale` subresource: an `autoscaling/v1` Scale view of any resource with replicas
//! (built-in workloads, and custom resources that declare `subresources.scale`).

use super::core::{PatchType, Subresource};
use super::error::{ApiError, ApiResult};
use super::http::{
    json_response, patch_type, read_body, write_options, Body, Query, Shared, Target,
};
use ferry_transform::selector::LabelSelector;
use http::{Method, Request, Response};
use hyper::body::Incoming;
use serde_json::{json, Value};
use std::sync::Arc;

fn json_pointer(path: &str) -> String {
    path.replace('.', "/")
}

fn scale_of(t: &Target, obj: &Value) -> Value {
    let paths =
        t.rt.scale
            .as_ref()
            .expect("scale target checked in routing");
    let spec = obj
        .pointer(&json_pointer(&paths.spec_replicas))
        .cloned()
        .unwrap_or(json!(0));
    let status = obj
        .pointer(&json_pointer(&paths.status_replicas))
        .cloned()
        .unwrap_or(json!(0));
    let selector = match &paths.label_selector {
        Some(p) => obj.pointer(&json_pointer(p)).cloned().unwrap_or(json!("")),
        None => json!(""),
    };
    let selector = match selector {
        Value::String(s) if !s.is_empty() => json!(s),
        _ => obj
            .pointer("/spec/selector")
            .and_then(|s| LabelSelector::from_object(s).ok())
            .map(|s| json!(s.to_query()))
            .unwrap_or(json!("")),
    };
    let meta = &obj["metadata"];
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
                     "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"]},
        "spec": {"replicas": spec},
        "status": {"replicas": status, "selector": selector},
    })
}

pub async fn serve(
    shared: Arc<Shared>,
    t: &Target,
    name: &str,
    req: Request<Incoming>,
    q: &Query,
) -> ApiResult<Response<Body>> {
    let core = &shared.core;
    let ns = t.namespace.as_deref();
    let obj = core.get(&t.rt, ns, name)?;
    let current = scale_of(t, &obj);
    if req.method() == Method::GET {
        return Ok(json_response(200, &current));
    }
    let is_put = req.method() == Method::PUT;
    let (body, ct) = read_body(req).await?;
    let desired = if is_put {
        body
    } else {
        match patch_type(&ct)? {
            PatchType::Json => ferry_transform::patch::json_patch(&current, &body)
                .map_err(ApiError::bad_request)?,
            _ => ferry_transform::patch::merge_patch(&current, &body),
        }
    };
    let replicas = desired
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .ok_or_else(|| {
            ApiError::invalid(
                "Scale",
                "autoscaling",
                name,
                "spec.replicas",
                "Required value",
            )
        })?;
    if replicas < 0 {
        return Err(ApiError::invalid(
            "Scale",
            "autoscaling",
            name,
            "spec.replicas",
            "Invalid value: must be greater than or equal to 0",
        ));
    }
    let paths = t.rt.scale.as_ref().expect("checked in routing");
    let mut patch = json!({});
    let pointer = json_pointer(&paths.spec_replicas);
    let mut cur = &mut patch;
    let parts: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    for (i, p) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            cur[*p] = json!(replicas);
        } else {
            cur[*p] = json!({});
            cur = &mut cur[*p];
        }
    }
    if let Some(rv) = desired
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
    {
        if is_put && !rv.is_empty() {
            patch["metadata"] = json!({"resourceVersion": rv});
        }
    }
    let updated = core.patch(
        &t.rt,
        ns,
        name,
        PatchType::Merge,
        &patch,
        Subresource::Main,
        &write_options(q, "kubectl")?,
    )?;
    Ok(json_response(200, &scale_of(t, &updated.object)))
}
