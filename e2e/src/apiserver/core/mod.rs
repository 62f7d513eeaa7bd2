//! The API's verbs with Kubernetes semantics, independent of HTTP: the HTTP layer and the
//! built-in controllers both go through here, so a controller's write follows the same rules
//! (resourceVersion, generation, finalizers) as a client's.
//!
//! Reads and the shared rules are here; writes (create, update, patch, controller mutations)
//! are in `write`, deletion and what it sets off in `delete`.

mod delete;
mod write;

use super::error::{ApiError, ApiResult};
use super::resources::{established_crd_status, resource_type_from_crd, Registry, ResourceRef};
use super::schema::{self, validate, FieldValidation};
use super::store::{Inner, Key, Store};
use base64::Engine;
use ferry_transform::patch;
use ferry_transform::selector::{FieldSelector, LabelSelector};
use serde_json::{json, Value};
use std::sync::RwLock;

pub struct ApiCore {
    pub store: Store,
    registry: RwLock<Registry>,
}

#[derive(Debug, Default, Clone)]
pub struct ListOptions {
    pub label_selector: Option<LabelSelector>,
    pub field_selector: Option<FieldSelector>,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
}

pub struct ListResult {
    pub items: Vec<Value>,
    pub resource_version: u64,
    pub continue_token: Option<String>,
    pub remaining: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    Main,
    Status,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<PatchType> {
        let base = ct.split(';').next().unwrap_or("").trim();
        Some(match base {
            "application/json-patch+json" => PatchType::Json,
            "application/merge-patch+json" => PatchType::Merge,
            "application/strategic-merge-patch+json" => PatchType::Strategic,
            "application/apply-patch+yaml" | "application/apply-patch+json" => PatchType::Apply,
            _ => return None,
        })
    }
}

/// How a create, update or patch is carried out.
#[derive(Debug, Default, Clone)]
pub struct WriteOptions {
    /// `dryRun=All`: everything is checked, nothing is stored.
    pub dry_run: bool,
    pub field_validation: FieldValidation,
    /// A write by the stand-in itself (bootstrap, controllers): it may set status at creation,
    /// which a client's create may not, and it records no field ownership.
    pub internal: bool,
    /// `fieldManager`; required for server-side apply.
    pub field_manager: Option<String>,
    /// The manager of writes that name none (from the client's User-Agent).
    pub default_manager: String,
    /// A create on behalf of a server-side apply: ownership is recorded as an apply.
    pub(super) applying: bool,
}

impl WriteOptions {
    fn manager(&self) -> &str {
        self.field_manager
            .as_deref()
            .unwrap_or(self.default_manager.as_str())
    }
}

impl WriteOptions {
    pub fn internal() -> WriteOptions {
        WriteOptions {
            internal: true,
            ..WriteOptions::default()
        }
    }
}

/// A stored (or, on a dry run, would-be) object and the warnings for the client.
#[derive(Debug, Clone)]
pub struct Written {
    pub object: Value,
    pub warnings: Vec<String>,
}

#[derive(Debug, Default, Clone)]
pub struct DeleteOptions {
    pub propagation: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

pub fn name_of(obj: &Value) -> &str {
    meta_str(obj, "name").unwrap_or("")
}

/// DNS-1123 subdomain, the rule for most object names.
fn random_suffix(n: usize) -> String {
    // Kubernetes avoids vowels and confusable characters in generated names.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..n)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

pub fn new_uid() -> String {
    let b: [u8; 16] = rand::random();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
        u16::from_be_bytes([b[6], b[7]]) & 0x0fff,
        (u16::from_be_bytes([b[8], b[9]]) & 0x3fff) | 0x8000,
        u64::from_be_bytes([0, 0, b[10], b[11], b[12], b[13], b[14], b[15]])
    )
}

/// Everything of an object except metadata and status: a change here bumps generation.
fn spec_part(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
        m.remove("apiVersion");
        m.remove("kind");
    }
    o
}

impl ApiCore {
    pub fn new(store: Store) -> ApiCore {
        let core = ApiCore {
            store,
            registry: RwLock::new(Registry::builtin()),
        };
        // Objects reloaded from a data directory bring their CRDs back into discovery.
        let crds: Vec<Value> = {
            let s = core.store.lock();
            s.range("apiextensions.k8s.io", "customresourcedefinitions", None)
                .map(|(_, v)| v.clone())
                .collect()
        };
        for crd in crds {
            if let Ok(t) = resource_type_from_crd(&crd) {
                core.registry_mut().insert(t);
            }
        }
        core
    }

    pub fn registry(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        self.registry.read().unwrap_or_else(|p| p.into_inner())
    }

    fn registry_mut(&self) -> std::sync::RwLockWriteGuard<'_, Registry> {
        self.registry.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn resource(&self, group: &str, plural: &str) -> Option<ResourceRef> {
        self.registry().get(group, plural)
    }

    fn key(rt: &ResourceRef, namespace: Option<&str>, name: &str) -> Key {
        Key::new(
            &rt.group,
            &rt.plural,
            if rt.namespaced {
                namespace.unwrap_or("")
            } else {
                ""
            },
            name,
        )
    }

    /// The object as a client of `version` sees it.
    pub fn at_version(rt: &ResourceRef, version: &str, mut obj: Value) -> Value {
        obj["apiVersion"] = Value::String(rt.api_version(version));
        obj
    }

    pub fn get(&self, rt: &ResourceRef, namespace: Option<&str>, name: &str) -> ApiResult<Value> {
        let s = self.store.lock();
        s.get(&Self::key(rt, namespace, name))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt.group_resource(), name))
    }

    pub fn list(
        &self,
        rt: &ResourceRef,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> ApiResult<ListResult> {
        let s = self.store.lock();
        let start_after: Option<Key> = match &opts.continue_token {
            Some(t) => Some(decode_continue(t)?),
            None => None,
        };
        let namespace = namespace.filter(|_| rt.namespaced);
        // A continue key from another type or namespace starts nowhere inside this range.
        let start_after = start_after.map(|after| {
            let before_range = Key::new(&rt.group, &rt.plural, namespace.unwrap_or(""), "");
            after.max(before_range)
        });
        let mut matching = s
            .range_after(&rt.group, &rt.plural, namespace, start_after.as_ref())
            .filter(|(_, v)| {
                opts.label_selector
                    .as_ref()
                    .is_none_or(|sel| sel.matches(v.pointer("/metadata/labels")))
                    && opts.field_selector.as_ref().is_none_or(|f| f.matches(v))
            });
        let mut items = Vec::new();
        let mut last_key = None;
        let limit = opts.limit.filter(|l| *l > 0);
        for (k, v) in matching.by_ref() {
            if limit.is_some_and(|l| items.len() >= l) {
                // One more exists: hand out a continue token. As the real API server, count
                // what remains only when no selector filters it (the count is then cheap).
                let remaining = (opts.label_selector.is_none() && opts.field_selector.is_none())
                    .then(|| 1 + matching.count());
                return Ok(ListResult {
                    items,
                    resource_version: s.resource_version(),
                    continue_token: last_key.map(|k: Key| encode_continue(&k)),
                    remaining,
                });
            }
            items.push(v.clone());
            last_key = Some(k.clone());
        }
        Ok(ListResult {
            items,
            resource_version: s.resource_version(),
            continue_token: None,
            remaining: None,
        })
    }
}

fn push_unique(list: &mut Vec<Value>, f: &str) {
    if !list.iter().any(|x| x.as_str() == Some(f)) {
        list.push(Value::String(f.to_string()));
    }
}

fn encode_continue(k: &Key) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
        serde_json::to_vec(
            &json!({"ns": k.namespace, "name": k.name, "g": k.group, "r": k.resource}),
        )
        .unwrap_or_default(),
    )
}

fn decode_continue(t: &str) -> ApiResult<Key> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t)
        .map_err(|_| ApiError::bad_request("continue key is not valid: illegal base64 data"))?;
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|_| ApiError::bad_request("continue key is not valid"))?;
    let s = |f: &str| v.get(f).and_then(Value::as_str).unwrap_or("").to_string();
    Ok(Key::new(&s("g"), &s("r"), &s("ns"), &s("name")))
}

impl ApiCore {
    /// The stored object at `key`, or NotFound naming it.
    fn stored(s: &Inner, rt: &ResourceRef, key: &Key) -> ApiResult<Value> {
        s.get(key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt.group_resource(), &key.name))
    }
}

/// The structure every object must have before any field is read or written: an object with
/// an object `metadata` whose labels and annotations map strings to strings, and (for built-in
/// kinds, whose schemas say so) object `spec`, `status` and pod `template`s. Kubernetes' schema
/// validation refuses the same bodies; here it also keeps the controllers' field writes total.
pub(crate) fn check_shape(rt: &ResourceRef, name: &str, obj: &Value) -> ApiResult<()> {
    let invalid = |field: &str, what: &str| {
        Err(ApiError::invalid(
            &rt.kind,
            &rt.group,
            name,
            field,
            &format!("Invalid value: must be {what}"),
        ))
    };
    if !obj.is_object() {
        return Err(ApiError::bad_request(format!(
            "the body of a {} must be a JSON object",
            rt.kind
        )));
    }
    match obj.get("metadata") {
        None | Some(Value::Object(_)) => {}
        Some(_) => return invalid("metadata", "an object"),
    }
    for field in ["labels", "annotations"] {
        match obj.pointer(&format!("/metadata/{field}")) {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) if m.values().all(Value::is_string) => {}
            Some(_) => return invalid(&format!("metadata.{field}"), "a map of strings to strings"),
        }
    }
    if !rt.custom {
        for pointer in [
            "/spec",
            "/status",
            "/spec/template",
            "/spec/template/metadata",
            "/spec/template/spec",
            "/spec/jobTemplate/spec/template/spec",
            "/spec/selector",
        ] {
            match obj.pointer(pointer) {
                None | Some(Value::Null) | Some(Value::Object(_)) => {}
                Some(_) => return invalid(&pointer[1..].replace('/', "."), "an object"),
            }
        }
    }
    Ok(())
}
