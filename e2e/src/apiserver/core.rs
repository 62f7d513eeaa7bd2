//! The API's verbs with Kubernetes semantics, independent of HTTP: the HTTP layer and the
//! built-in controllers both go through here, so a controller's write follows the same rules
//! (resourceVersion, generation, finalizers) as a client's.

use super::defaults;
use super::error::{ApiError, ApiResult};
use super::patch;
use super::resources::{established_crd_status, resource_type_from_crd, Registry, ResourceRef};
use super::selector::{FieldSelector, LabelSelector};
use super::store::{Inner, Key, Store};
use base64::Engine;
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
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

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
        let mut matching = s
            .range(&rt.group, &rt.plural, namespace.filter(|_| rt.namespaced))
            .filter(|(k, _)| start_after.as_ref().is_none_or(|after| *k > after))
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
                // One more exists: hand out a continue token.
                let remaining = 1 + matching.count();
                return Ok(ListResult {
                    items,
                    resource_version: s.resource_version(),
                    continue_token: last_key.map(|k: Key| encode_continue(&k)),
                    remaining: Some(remaining),
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

    pub fn create(
        &self,
        rt: &ResourceRef,
        namespace: Option<&str>,
        mut obj: Value,
        dry_run: bool,
    ) -> ApiResult<Value> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be an object",
            ));
        }
        self.check_type(rt, &obj)?;
        if !obj.get("metadata").is_some_and(Value::is_object) {
            obj["metadata"] = json!({});
        }
        let meta_ns = meta_str(&obj, "namespace").map(str::to_string);
        let namespace = if rt.namespaced {
            let ns = namespace
                .map(str::to_string)
                .or(meta_ns.clone())
                .unwrap_or_else(|| "default".into());
            if let Some(m) = &meta_ns {
                if *m != ns && !m.is_empty() {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
            }
            obj["metadata"]["namespace"] = Value::String(ns.clone());
            Some(ns)
        } else {
            if let Some(m) = obj["metadata"].as_object_mut() {
                m.remove("namespace");
            }
            None
        };
        let mut s = self.store.lock();
        if meta_str(&obj, "name").unwrap_or("").is_empty() {
            match meta_str(&obj, "generateName") {
                Some(prefix) if !prefix.is_empty() => {
                    let prefix = prefix.to_string();
                    let name = loop {
                        let candidate = format!("{prefix}{}", random_suffix(5));
                        if s.get(&Self::key(rt, namespace.as_deref(), &candidate))
                            .is_none()
                        {
                            break candidate;
                        }
                    };
                    obj["metadata"]["name"] = Value::String(name);
                }
                _ => {
                    return Err(ApiError::invalid(
                        &rt.kind,
                        &rt.group,
                        "",
                        "metadata.name",
                        "Required value: name or generateName is required",
                    ))
                }
            }
        }
        let name = name_of(&obj).to_string();
        if !valid_name(&name) && rt.plural != "nodes" {
            return Err(ApiError::invalid(
                &rt.kind,
                &rt.group,
                &name,
                "metadata.name",
                &format!("Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"),
            ));
        }
        if let Some(ns) = &namespace {
            match s.get(&Key::new("", "namespaces", "", ns)) {
                None => return Err(ApiError::not_found("namespaces", ns)),
                Some(n) if n.pointer("/metadata/deletionTimestamp").is_some() => {
                    return Err(ApiError::forbidden(format!(
                        "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                        rt.group_resource()
                    )))
                }
                _ => {}
            }
        }
        let key = Self::key(rt, namespace.as_deref(), &name);
        if s.get(&key).is_some() {
            return Err(ApiError::already_exists(&rt.group_resource(), &name));
        }
        let meta = obj["metadata"].as_object_mut().expect("checked above");
        meta.insert("uid".into(), Value::String(new_uid()));
        meta.insert("creationTimestamp".into(), Value::String(now()));
        for field in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            meta.remove(field);
        }
        if rt.has_generation {
            meta.insert("generation".into(), json!(1));
        } else {
            meta.remove("generation");
        }
        obj["apiVersion"] = Value::String(rt.api_version(&rt.storage_version));
        obj["kind"] = Value::String(rt.kind.clone());
        defaults::on_create(rt, &mut obj, &s);
        let crd_type =
            if rt.group == "apiextensions.k8s.io" && rt.plural == "customresourcedefinitions" {
                let t = resource_type_from_crd(&obj).map_err(|e| {
                    let (field, msg) = e.split_once(": ").unwrap_or(("spec", &e));
                    ApiError::invalid(&rt.kind, &rt.group, &name, field, msg)
                })?;
                if let Some(existing) = self.registry().get(&t.group, &t.plural) {
                    if !existing.custom {
                        return Err(ApiError::invalid(
                            &rt.kind,
                            &rt.group,
                            &name,
                            "spec.names.plural",
                            "Invalid value: the resource is served by a built-in API group",
                        ));
                    }
                }
                obj["status"] = established_crd_status(&t, &now());
                Some(t)
            } else {
                None
            };
        if dry_run {
            return Ok(obj);
        }
        let stored = s.put(key, obj);
        if let Some(t) = crd_type {
            self.registry_mut().insert(t);
        }
        Ok(stored)
    }

    fn check_type(&self, rt: &ResourceRef, obj: &Value) -> ApiResult<()> {
        if let Some(kind) = obj.get("kind").and_then(Value::as_str) {
            if kind != rt.kind && !kind.is_empty() {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({}) does not match the expected API version ({})",
                    obj.get("apiVersion").and_then(Value::as_str).unwrap_or(""),
                    rt.api_version(&rt.storage_version)
                ))
                .with_kind_message(kind, &rt.kind));
            }
        }
        if let Some(av) = obj.get("apiVersion").and_then(Value::as_str) {
            let (group, version) = av.split_once('/').unwrap_or(("", av));
            if group != rt.group || !rt.serves(version) {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({av}) does not match the expected API version ({})",
                    rt.api_version(&rt.storage_version)
                )));
            }
        }
        Ok(())
    }

    /// PUT: replaces the object (or its status), with optimistic concurrency.
    pub fn update(
        &self,
        rt: &ResourceRef,
        namespace: Option<&str>,
        name: &str,
        obj: Value,
        sub: Subresource,
        dry_run: bool,
    ) -> ApiResult<Value> {
        self.check_type(rt, &obj)?;
        if let Some(body_name) = meta_str(&obj, "name") {
            if body_name != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({body_name}) does not match the name on the URL ({name})"
                )));
            }
        }
        let mut s = self.store.lock();
        let key = Self::key(rt, namespace, name);
        let existing = s
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt.group_resource(), name))?;
        if let Some(rv) = meta_str(&obj, "resourceVersion").filter(|r| !r.is_empty()) {
            if Some(rv) != meta_str(&existing, "resourceVersion") {
                return Err(ApiError::conflict(
                    &rt.group_resource(),
                    name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                ));
            }
        }
        self.write_over(&mut s, rt, key, existing, obj, sub, dry_run)
    }

    /// Merges a client's new object over the stored one: the server owns identity fields, the
    /// main resource cannot change status and the status subresource cannot change anything else.
    #[allow(clippy::too_many_arguments)]
    fn write_over(
        &self,
        s: &mut Inner,
        rt: &ResourceRef,
        key: Key,
        existing: Value,
        mut obj: Value,
        sub: Subresource,
        dry_run: bool,
    ) -> ApiResult<Value> {
        let name = key.name.clone();
        if !obj.get("metadata").is_some_and(Value::is_object) {
            obj["metadata"] = json!({});
        }
        let mut new = match sub {
            Subresource::Status => {
                let mut n = existing.clone();
                n["status"] = obj.get("status").cloned().unwrap_or(Value::Null);
                if n["status"].is_null() {
                    n.as_object_mut().map(|m| m.remove("status"));
                }
                n
            }
            Subresource::Main => {
                if rt.status {
                    match existing.get("status") {
                        Some(st) => obj["status"] = st.clone(),
                        None => {
                            obj.as_object_mut().map(|m| m.remove("status"));
                        }
                    }
                }
                obj
            }
        };
        new["apiVersion"] = Value::String(rt.api_version(&rt.storage_version));
        new["kind"] = Value::String(rt.kind.clone());
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "namespace",
            "name",
        ] {
            match existing["metadata"].get(field) {
                Some(v) => new["metadata"][field] = v.clone(),
                None => {
                    new["metadata"].as_object_mut().map(|m| m.remove(field));
                }
            }
        }
        if existing.pointer("/metadata/deletionTimestamp").is_some() {
            // Finalizers can only be removed from an object that is being deleted.
            let old: Vec<Value> = existing
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if let Some(added) = new
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .and_then(|n| n.iter().find(|f| !old.contains(f)))
            {
                return Err(ApiError::forbidden(format!(
                    "{} \"{name}\" is forbidden: no new finalizers can be added if the object is being deleted, found new finalizers [{}]",
                    rt.group_resource(),
                    added.as_str().unwrap_or("")
                )));
            }
        }
        if rt.has_generation {
            let generation = existing
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let bumped = if spec_part(&existing) != spec_part(&new) {
                generation + 1
            } else {
                generation
            };
            new["metadata"]["generation"] = json!(bumped);
        }
        new["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"].clone();
        if new == existing {
            return Ok(existing);
        }
        let crd_type = if rt.group == "apiextensions.k8s.io"
            && rt.plural == "customresourcedefinitions"
            && sub == Subresource::Main
        {
            let t = resource_type_from_crd(&new).map_err(|e| {
                let (field, msg) = e.split_once(": ").unwrap_or(("spec", &e));
                ApiError::invalid(&rt.kind, &rt.group, &name, field, msg)
            })?;
            new["status"] = established_crd_status(&t, &now());
            Some(t)
        } else {
            None
        };
        if dry_run {
            return Ok(new);
        }
        let terminating = new.pointer("/metadata/deletionTimestamp").is_some();
        let no_finalizers = new
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_none_or(|f| f.is_empty());
        if terminating && no_finalizers && rt.plural != "namespaces" {
            s.put(key.clone(), new);
            return Ok(self.remove_now(s, rt, &key).unwrap_or(Value::Null));
        }
        let stored = s.put(key, new);
        if let Some(t) = crd_type {
            self.registry_mut().insert(t);
        }
        Ok(stored)
    }

    #[allow(clippy::too_many_arguments)] // mirrors the REST call: target, patch, subresource, dryRun
    pub fn patch(
        &self,
        rt: &ResourceRef,
        namespace: Option<&str>,
        name: &str,
        patch_type: PatchType,
        body: &Value,
        sub: Subresource,
        dry_run: bool,
    ) -> ApiResult<Value> {
        let mut s = self.store.lock();
        let key = Self::key(rt, namespace, name);
        let existing = match s.get(&key).cloned() {
            Some(e) => e,
            None if patch_type == PatchType::Apply && sub == Subresource::Main => {
                // Server-side apply creates what does not exist yet.
                drop(s);
                let mut obj = body.clone();
                if !obj.get("metadata").is_some_and(Value::is_object) {
                    obj["metadata"] = json!({});
                }
                obj["metadata"]["name"] = Value::String(name.to_string());
                return self.create(rt, namespace, obj, dry_run);
            }
            None => return Err(ApiError::not_found(&rt.group_resource(), name)),
        };
        let patched = match patch_type {
            PatchType::Json => patch::json_patch(&existing, body)
                .map_err(|e| ApiError::invalid(&rt.kind, &rt.group, name, "patch", &e))?,
            PatchType::Merge => patch::merge_patch(&existing, body),
            PatchType::Strategic => {
                if rt.custom {
                    return Err(ApiError::unsupported_media_type(
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
                    ));
                }
                patch::strategic_merge_patch(&existing, body).map_err(ApiError::bad_request)?
            }
            PatchType::Apply => {
                self.check_type(rt, body)?;
                if rt.custom {
                    patch::merge_patch(&existing, body)
                } else {
                    patch::strategic_merge_patch(&existing, body).map_err(ApiError::bad_request)?
                }
            }
        };
        if let Some(rv) = meta_str(&patched, "resourceVersion").filter(|r| !r.is_empty()) {
            if Some(rv) != meta_str(&existing, "resourceVersion") {
                return Err(ApiError::conflict(
                    &rt.group_resource(),
                    name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                ));
            }
        }
        self.write_over(&mut s, rt, key, existing, patched, sub, dry_run)
    }

    pub fn delete(
        &self,
        rt: &ResourceRef,
        namespace: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<Value> {
        let mut s = self.store.lock();
        self.delete_locked(&mut s, rt, namespace, name, opts)
    }

    fn delete_locked(
        &self,
        s: &mut Inner,
        rt: &ResourceRef,
        namespace: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<Value> {
        let key = Self::key(rt, namespace, name);
        let existing = s
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt.group_resource(), name))?;
        if let Some(uid) = &opts.precondition_uid {
            if Some(uid.as_str()) != meta_str(&existing, "uid") {
                return Err(ApiError::conflict(
                    &rt.group_resource(),
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        meta_str(&existing, "uid").unwrap_or("")
                    ),
                ));
            }
        }
        if let Some(rv) = &opts.precondition_rv {
            if Some(rv.as_str()) != meta_str(&existing, "resourceVersion") {
                return Err(ApiError::conflict(&rt.group_resource(), name, &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    meta_str(&existing, "resourceVersion").unwrap_or("")
                )));
            }
        }
        if opts.dry_run {
            return Ok(existing);
        }
        let mut obj = existing.clone();
        let mut finalizers: Vec<Value> = obj
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        match opts.propagation.as_deref() {
            Some("Foreground") => push_unique(&mut finalizers, "foregroundDeletion"),
            Some("Orphan") => push_unique(&mut finalizers, "orphan"),
            Some("Background") | None => {}
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "invalid propagationPolicy {other:?}: must be one of Orphan, Background, Foreground"
                )))
            }
        }
        if rt.plural == "namespaces" {
            if obj.pointer("/metadata/deletionTimestamp").is_none() {
                obj["metadata"]["deletionTimestamp"] = Value::String(now());
                obj["status"]["phase"] = json!("Terminating");
                return Ok(s.put(key, obj));
            }
            return Ok(existing);
        }
        if !finalizers.is_empty() {
            if obj.pointer("/metadata/deletionTimestamp").is_none() {
                obj["metadata"]["deletionTimestamp"] = Value::String(now());
                obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            }
            obj["metadata"]["finalizers"] = Value::Array(finalizers);
            if obj == existing {
                return Ok(existing);
            }
            return Ok(s.put(key, obj));
        }
        self.remove_now(s, rt, &key)
            .ok_or_else(|| ApiError::not_found(&rt.group_resource(), name))
    }

    /// Removes an object for good, with what removal implies for CRDs.
    fn remove_now(&self, s: &mut Inner, rt: &ResourceRef, key: &Key) -> Option<Value> {
        let removed = s.remove(key)?;
        if rt.group == "apiextensions.k8s.io" && rt.plural == "customresourcedefinitions" {
            if let Ok(t) = resource_type_from_crd(&removed) {
                let keys: Vec<Key> = s
                    .range(&t.group, &t.plural, None)
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in keys {
                    s.remove(&k);
                }
                self.registry_mut().remove(&t.group, &t.plural);
            }
        }
        Some(removed)
    }

    pub fn delete_collection(
        &self,
        rt: &ResourceRef,
        namespace: Option<&str>,
        list: &ListOptions,
        opts: &DeleteOptions,
    ) -> ApiResult<Vec<Value>> {
        let names: Vec<(String, String)> = self
            .list(rt, namespace, list)?
            .items
            .iter()
            .map(|o| {
                (
                    meta_str(o, "namespace").unwrap_or("").to_string(),
                    name_of(o).to_string(),
                )
            })
            .collect();
        let mut s = self.store.lock();
        let mut out = Vec::new();
        for (ns, name) in names {
            match self.delete_locked(&mut s, rt, Some(&ns), &name, opts) {
                Ok(v) => out.push(v),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Writes by the stand-in's own controllers: unconditional, never conflicts with a client's
    /// stale copy because it reads and writes under one lock.
    pub fn mutate(
        &self,
        rt: &ResourceRef,
        namespace: Option<&str>,
        name: &str,
        f: impl FnOnce(&mut Value),
    ) -> ApiResult<Value> {
        let mut s = self.store.lock();
        let key = Self::key(rt, namespace, name);
        let existing = s
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt.group_resource(), name))?;
        let mut new = existing.clone();
        f(&mut new);
        if new == existing {
            return Ok(existing);
        }
        self.write_direct(&mut s, rt, key, existing, new)
    }

    fn write_direct(
        &self,
        s: &mut Inner,
        rt: &ResourceRef,
        key: Key,
        existing: Value,
        mut new: Value,
    ) -> ApiResult<Value> {
        if rt.has_generation && spec_part(&existing) != spec_part(&new) {
            let g = existing
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            new["metadata"]["generation"] = json!(g + 1);
        }
        let terminating = new.pointer("/metadata/deletionTimestamp").is_some();
        let no_finalizers = new
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_none_or(|f| f.is_empty());
        if terminating && no_finalizers && rt.plural != "namespaces" {
            s.put(key.clone(), new);
            return Ok(self.remove_now(s, rt, &key).unwrap_or(Value::Null));
        }
        Ok(s.put(key, new))
    }

    /// Removes a namespace whose contents are gone (the namespace controller's last step).
    pub fn finalize_namespace(&self, name: &str) {
        let mut s = self.store.lock();
        s.remove(&Key::new("", "namespaces", "", name));
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

impl ApiError {
    fn with_kind_message(mut self, sent: &str, expected: &str) -> ApiError {
        self.message =
            format!("the kind in the data ({sent}) does not match the expected kind ({expected})");
        self
    }
}
