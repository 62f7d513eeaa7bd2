//! HTTP: request parsing, routing to discovery or to a resource's verbs, and responses.

use super::core::{
    ApiCore, DeleteOptions, ListOptions, PatchType, Subresource, WriteOptions, Written,
};
use super::discovery;
use super::error::{ApiError, ApiResult};
use super::resources::ResourceRef;
use super::schema::FieldValidation;
use super::table::{self, Include};
use super::{exec, protobuf, scale, watch, StandInConfig};
use bytes::Bytes;
use ferry_transform::selector::{FieldSelector, LabelSelector};
use http::{header, Method, Request, Response};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

pub type Body = BoxBody<Bytes, std::io::Error>;

pub struct Shared {
    pub core: ApiCore,
    pub config: StandInConfig,
    /// Fault injection for tests: how many more client writes succeed before every request
    /// answers 500 (`u64::MAX`: no fault).
    pub writes_before_failing: std::sync::atomic::AtomicU64,
}

impl Shared {
    /// Whether this request meets an injected fault (and counts it, if it is a write).
    fn failing(&self, method: &hyper::Method) -> bool {
        use std::sync::atomic::Ordering;
        let left = self.writes_before_failing.load(Ordering::SeqCst);
        if left == u64::MAX {
            return false;
        }
        if left == 0 {
            return true;
        }
        if matches!(method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE") {
            self.writes_before_failing.fetch_sub(1, Ordering::SeqCst);
        }
        false
    }
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn json_response(status: u16, v: &Value) -> Response<Body> {
    json_response_typed(status, v, "application/json")
}

fn json_response_typed(status: u16, v: &Value, content_type: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(full(serde_json::to_vec(v).unwrap_or_default()))
        .expect("static response parts are valid")
}

/// A written object, with one `Warning` header per warning (RFC 7234 code 299, as the API
/// server sends them; kubectl prints each).
fn written_response(status: u16, t: &Target, written: Written) -> Response<Body> {
    let mut response = json_response(status, &out(t, written.object));
    for w in written.warnings {
        let text = format!("299 - {}", serde_json::Value::String(w));
        if let Ok(v) = http::HeaderValue::from_str(&text) {
            response.headers_mut().append("Warning", v);
        }
    }
    response
}

pub fn error_response(e: &ApiError) -> Response<Body> {
    json_response(e.code, &e.to_status())
}

/// The parsed query string; repeated keys (exec's `command`) keep every value.
pub struct Query(HashMap<String, Vec<String>>);

impl Query {
    pub fn parse(q: Option<&str>) -> Query {
        let mut m: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in form_urlencoded::parse(q.unwrap_or("").as_bytes()) {
            m.entry(k.into_owned()).or_default().push(v.into_owned());
        }
        Query(m)
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).and_then(|v| v.first()).map(String::as_str)
    }

    pub fn all(&self, k: &str) -> Vec<String> {
        self.0.get(k).cloned().unwrap_or_default()
    }

    pub fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }
}

/// Where a resource request points.
pub struct Target {
    pub rt: ResourceRef,
    pub version: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

pub async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    if shared.failing(&method) {
        let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "injected fault: the API server is failing", "reason": "InternalError", "code": 500});
        return json_response(500, &status);
    }
    let result = route(shared, req).await;
    let resp = result.unwrap_or_else(|e| error_response(&e));
    tracing::debug!(%method, %path, status = resp.status().as_u16(), "request");
    resp
}

async fn route(shared: Arc<Shared>, req: Request<Incoming>) -> ApiResult<Response<Body>> {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    let core = &shared.core;
    match segs.as_slice() {
        ["version"] => Ok(json_response(
            200,
            &discovery::version(shared.config.minor_version),
        )),
        ["healthz"] | ["readyz"] | ["livez"] => Ok(plain_response("text/plain", "ok")),
        ["api"] => Ok(match discovery::wants_aggregated(&accept) {
            Some(v) => aggregated(&discovery::aggregated(&core.registry(), true, v), v),
            None => json_response(200, &discovery::api_versions()),
        }),
        ["apis"] => Ok(match discovery::wants_aggregated(&accept) {
            Some(v) => aggregated(&discovery::aggregated(&core.registry(), false, v), v),
            None => json_response(200, &discovery::api_group_list(&core.registry())),
        }),
        ["api", v] => discovery::resource_list(&core.registry(), "", v)
            .map(|l| json_response(200, &l))
            .ok_or_else(|| not_found_path(&path)),
        ["apis", g] => discovery::api_group(&core.registry(), g)
            .map(|l| json_response(200, &l))
            .ok_or_else(|| not_found_path(&path)),
        ["apis", g, v] => discovery::resource_list(&core.registry(), g, v)
            .map(|l| json_response(200, &l))
            .ok_or_else(|| not_found_path(&path)),
        // An empty document: kubectl reads it (as protobuf, where empty is a valid message) when
        // a group-version is newer than the OpenAPI v3 index it cached, then validates nothing
        // client-side for kinds it finds no schema for, as against a server with CRDs without
        // schemas.
        ["openapi", "v2"] => Ok(if accept.contains("protobuf") {
            plain_response(
                "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
                "",
            )
        } else {
            json_response(
                200,
                &json!({"swagger": "2.0", "info": {"title": "Kubernetes (Ferry stand-in)", "version": "v1"},
                                        "paths": {}, "definitions": {}}),
            )
        }),
        ["openapi", "v3"] => Ok(json_response(
            200,
            &discovery::openapi_v3_index(&core.registry()),
        )),
        ["openapi", "v3", "api", v] => discovery::openapi_v3_group(&core.registry(), "", v)
            .map(|d| json_response(200, &d))
            .ok_or_else(|| not_found_path(&path)),
        ["openapi", "v3", "apis", g, v] => discovery::openapi_v3_group(&core.registry(), g, v)
            .map(|d| json_response(200, &d))
            .ok_or_else(|| not_found_path(&path)),
        ["api", v, rest @ ..] => {
            let target = resolve(core, "", v, rest)?;
            resource(shared.clone(), target, req, &accept).await
        }
        ["apis", g, v, rest @ ..] => {
            let target = resolve(core, g, v, rest)?;
            resource(shared.clone(), target, req, &accept).await
        }
        _ => Err(not_found_path(&path)),
    }
}

fn aggregated(v: &Value, version: &str) -> Response<Body> {
    let ct = if version == "v2beta1" {
        discovery::AGGREGATED_V2BETA1
    } else {
        discovery::AGGREGATED_V2
    };
    json_response_typed(200, v, ct)
}

fn not_found_path(path: &str) -> ApiError {
    ApiError::not_served(format_args!("path {path}"))
}

fn resolve(core: &ApiCore, group: &str, version: &str, rest: &[&str]) -> ApiResult<Target> {
    let (namespace, rest): (Option<String>, Vec<&str>) = match rest {
        ["namespaces", ns, sub @ ("status" | "finalize")] => {
            return target(
                core,
                group,
                version,
                None,
                "namespaces",
                Some(ns),
                Some(sub),
            );
        }
        ["namespaces", ns, tail @ ..] if !tail.is_empty() => (Some(ns.to_string()), tail.to_vec()),
        other => (None, other.to_vec()),
    };
    match rest.as_slice() {
        [r] => target(core, group, version, namespace, r, None, None),
        [r, name] => target(core, group, version, namespace, r, Some(name), None),
        [r, name, sub] => target(core, group, version, namespace, r, Some(name), Some(sub)),
        _ => Err(not_found_path(&format!(
            "/{group}/{version}/{}",
            rest.join("/")
        ))),
    }
}

fn target(
    core: &ApiCore,
    group: &str,
    version: &str,
    namespace: Option<String>,
    resource: &str,
    name: Option<&str>,
    sub: Option<&str>,
) -> ApiResult<Target> {
    let rt = core
        .resource(group, resource)
        .filter(|rt| rt.serves(version))
        .ok_or_else(|| {
            let gv = if group.is_empty() {
                version.to_string()
            } else {
                format!("{group}/{version}")
            };
            ApiError::not_served(format_args!("resource {resource} in {gv}"))
        })?;
    if namespace.is_some() && !rt.namespaced {
        return Err(ApiError::not_found(
            &rt.group_resource(),
            name.unwrap_or(""),
        ));
    }
    let allowed_sub = match sub {
        None => true,
        Some("status") => rt.status,
        Some("scale") => rt.scale.is_some(),
        Some("exec" | "log") => rt.group.is_empty() && rt.plural == "pods",
        Some("finalize") => rt.group.is_empty() && rt.plural == "namespaces",
        Some(_) => false,
    };
    if !allowed_sub {
        return Err(ApiError::not_found(
            &format!("{}/{}", rt.group_resource(), sub.unwrap_or("")),
            name.unwrap_or(""),
        ));
    }
    Ok(Target {
        rt,
        version: version.to_string(),
        namespace,
        name: name.map(str::to_string),
        subresource: sub.map(str::to_string),
    })
}

pub fn list_options(q: &Query) -> ApiResult<ListOptions> {
    Ok(ListOptions {
        label_selector: q
            .get("labelSelector")
            .filter(|s| !s.is_empty())
            .map(LabelSelector::parse)
            .transpose()
            .map_err(ApiError::bad_request)?,
        field_selector: q
            .get("fieldSelector")
            .filter(|s| !s.is_empty())
            .map(FieldSelector::parse)
            .transpose()
            .map_err(ApiError::bad_request)?,
        limit: q.get("limit").and_then(|l| l.parse().ok()),
        continue_token: q
            .get("continue")
            .filter(|c| !c.is_empty())
            .map(str::to_string),
    })
}

pub(super) async fn read_body(req: Request<Incoming>) -> ApiResult<(Value, String)> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let bytes = req
        .into_body()
        .collect()
        .await
        .map_err(|e| ApiError::bad_request(format!("reading request body: {e}")))?
        .to_bytes();
    if ct.starts_with("application/vnd.kubernetes.protobuf") {
        let v = protobuf::decode(&bytes).map_err(ApiError::unsupported_media_type)?;
        return Ok((v, ct));
    }
    if bytes.is_empty() {
        return Ok((Value::Null, ct));
    }
    let v = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(format!(
            "the body of the request could not be decoded as JSON: {e}"
        ))
    })?;
    Ok((v, ct))
}

/// The patch format a request's content type names, or 415 listing the accepted ones.
pub(super) fn patch_type(content_type: &str) -> ApiResult<PatchType> {
    PatchType::from_content_type(content_type).ok_or_else(|| {
        ApiError::unsupported_media_type(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {content_type:?})"
        ))
    })
}

/// A non-JSON response (health checks, logs, the empty OpenAPI v2 document).
fn plain_response(content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, content_type)
        .body(full(body))
        .expect("static response parts are valid")
}

pub(super) fn is_dry_run(q: &Query) -> bool {
    q.all("dryRun").iter().any(|d| d == "All")
}

/// A client write's options from its query (`dryRun`, `fieldValidation`, `fieldManager`) and
/// its User-Agent, whose product name stands in for a missing field manager, as the API
/// server's default does.
pub(super) fn write_options(q: &Query, user_agent: &str) -> ApiResult<WriteOptions> {
    let field_manager = match q.get("fieldManager").filter(|m| !m.is_empty()) {
        Some(m) if m.len() > 128 => {
            return Err(ApiError::bad_request(
                "fieldManager: Too long: may not be more than 128 bytes",
            ))
        }
        Some(m) => Some(m.to_string()),
        None => None,
    };
    Ok(WriteOptions {
        dry_run: is_dry_run(q),
        field_validation: FieldValidation::parse(q.get("fieldValidation"))?,
        internal: false,
        field_manager,
        default_manager: user_agent
            .split('/')
            .next()
            .filter(|a| !a.is_empty())
            .unwrap_or("unknown")
            .to_string(),
        ..WriteOptions::default()
    })
}

fn user_agent(req: &Request<Incoming>) -> String {
    req.headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

fn out(t: &Target, obj: Value) -> Value {
    ApiCore::at_version(&t.rt, &t.version, obj)
}

async fn resource(
    shared: Arc<Shared>,
    t: Target,
    req: Request<Incoming>,
    accept: &str,
) -> ApiResult<Response<Body>> {
    let q = Query::parse(req.uri().query());
    let agent = user_agent(&req);
    let core = &shared.core;
    let ns = t.namespace.as_deref();
    let method = req.method().clone();
    match (&method, t.name.as_deref(), t.subresource.as_deref()) {
        (&Method::GET, None, None) if q.flag("watch") => {
            watch::serve(shared.clone(), t, &q, accept)
        }
        (&Method::GET, None, None) => {
            let opts = list_options(&q)?;
            let r = core.list(&t.rt, ns, &opts)?;
            if table::wants_table(accept) {
                let items: Vec<Value> = r.items.into_iter().map(|o| out(&t, o)).collect();
                let include = Include::parse(q.get("includeObject"));
                return Ok(json_response(
                    200,
                    &table::table(&t.rt, &items, r.resource_version, r.continue_token, include),
                ));
            }
            let mut meta = json!({"resourceVersion": r.resource_version.to_string()});
            if let Some(c) = r.continue_token {
                meta["continue"] = json!(c);
            }
            if let Some(n) = r.remaining {
                meta["remainingItemCount"] = json!(n);
            }
            let items: Vec<Value> = r.items.into_iter().map(|o| out(&t, o)).collect();
            Ok(json_response(
                200,
                &json!({
                    "kind": t.rt.list_kind, "apiVersion": t.rt.api_version(&t.version),
                    "metadata": meta, "items": items,
                }),
            ))
        }
        (&Method::POST, None, None) => {
            let (body, _) = read_body(req).await?;
            let created = core.create(&t.rt, ns, body, &write_options(&q, &agent)?)?;
            Ok(written_response(201, &t, created))
        }
        (&Method::DELETE, None, None) => {
            let (body, _) = read_body(req).await?;
            let opts = delete_options(&q, &body);
            let deleted = core.delete_collection(&t.rt, ns, &list_options(&q)?, &opts)?;
            let items: Vec<Value> = deleted.into_iter().map(|o| out(&t, o)).collect();
            Ok(json_response(
                200,
                &json!({
                    "kind": t.rt.list_kind, "apiVersion": t.rt.api_version(&t.version),
                    "metadata": {}, "items": items,
                }),
            ))
        }
        (&Method::GET, Some(name), Some("status")) if t.rt.status => {
            Ok(json_response(200, &out(&t, core.get(&t.rt, ns, name)?)))
        }
        (&Method::GET, Some(name), None) => {
            let obj = out(&t, core.get(&t.rt, ns, name)?);
            if table::wants_table(accept) {
                let rv = obj
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                return Ok(json_response(
                    200,
                    &table::table(
                        &t.rt,
                        &[obj],
                        rv,
                        None,
                        Include::parse(q.get("includeObject")),
                    ),
                ));
            }
            Ok(json_response(200, &obj))
        }
        (&Method::PUT, Some(name), None | Some("status")) => {
            let sub = sub_of(&t);
            let (body, _) = read_body(req).await?;
            let updated = core.update(&t.rt, ns, name, body, sub, &write_options(&q, &agent)?)?;
            Ok(written_response(200, &t, updated))
        }
        (&Method::PUT, Some(name), Some("finalize")) => {
            let (body, _) = read_body(req).await?;
            let fins = body
                .pointer("/spec/finalizers")
                .cloned()
                .unwrap_or(json!([]));
            let updated = core.mutate(&t.rt, None, name, |o| o["spec"]["finalizers"] = fins)?;
            Ok(json_response(200, &out(&t, updated)))
        }
        (&Method::PATCH, Some(name), None | Some("status")) => {
            let sub = sub_of(&t);
            let (body, ct) = read_body(req).await?;
            let pt = patch_type(&ct)?;
            let patched =
                core.patch(&t.rt, ns, name, pt, &body, sub, &write_options(&q, &agent)?)?;
            Ok(written_response(200, &t, patched))
        }
        (&Method::GET | &Method::PUT | &Method::PATCH, Some(name), Some("scale")) => {
            scale::serve(shared.clone(), &t, name, req, &q).await
        }
        (&Method::DELETE, Some(name), None) => {
            let (body, _) = read_body(req).await?;
            let opts = delete_options(&q, &body);
            let deleted = core.delete(&t.rt, ns, name, &opts)?;
            let pending = deleted.pointer("/metadata/deletionTimestamp").is_some()
                && core.get(&t.rt, ns, name).is_ok();
            Ok(json_response(
                if pending { 202 } else { 200 },
                &out(&t, deleted),
            ))
        }
        (&Method::GET | &Method::POST, Some(name), Some("exec")) => {
            exec::serve(shared.clone(), ns.unwrap_or("default"), name, req, &q)
        }
        (&Method::GET, Some(name), Some("log")) => {
            let pod = core.get(&t.rt, ns, name)?;
            let text = exec::pod_log(&shared, &pod, q.get("container"));
            Ok(plain_response("text/plain", text))
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method} {})",
            t.rt.group_resource()
        ))),
    }
}

fn sub_of(t: &Target) -> Subresource {
    if t.subresource.as_deref() == Some("status") {
        Subresource::Status
    } else {
        Subresource::Main
    }
}

fn delete_options(q: &Query, body: &Value) -> DeleteOptions {
    let from_body = |f: &str| body.get(f).and_then(Value::as_str).map(str::to_string);
    let mut propagation = q
        .get("propagationPolicy")
        .map(str::to_string)
        .or(from_body("propagationPolicy"));
    if propagation.is_none() {
        // The pre-1.7 flag kubectl still sends in some paths.
        propagation = match body.get("orphanDependents").and_then(Value::as_bool) {
            Some(true) => Some("Orphan".into()),
            Some(false) => Some("Background".into()),
            None => None,
        };
    }
    DeleteOptions {
        propagation,
        precondition_uid: body
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string),
        precondition_rv: body
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string),
        dry_run: q.all("dryRun").iter().any(|d| d == "All")
            || body
                .get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|d| d == "All")),
    }
}
