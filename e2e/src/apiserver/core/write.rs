//! Writes: create, update (PUT), patch, and the controllers' direct mutations.

use super::*;
use crate::apiserver::managed;
use crate::apiserver::resources::ResourceType;
use crate::apiserver::schema::defaults;

impl ApiCore {
    pub fn create(
        &self,
        rt: &ResourceRef,
        namespace: Option<&str>,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        check_shape(rt, meta_str(&obj, "name").unwrap_or(""), &obj)?;
        self.check_type(rt, &obj)?;
        // The stand-in's own writes (pods from templates already decoded) skip decoding.
        let warnings = if opts.internal {
            Vec::new()
        } else {
            schema::conform(rt, &rt.storage_version, &mut obj, opts.field_validation)?
        };
        // What the client sent is what an apply owns; defaults belong to no one.
        let sent = opts.applying.then(|| obj.clone());
        if rt.status && !opts.internal {
            // Status is the controllers' to write, through /status.
            obj.as_object_mut().map(|m| m.remove("status"));
        }
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
        invalid_if_any(rt, &name, validate::object(&rt.group, &rt.kind, &obj))?;
        if !opts.internal {
            let api_version = rt.api_version(&rt.storage_version);
            if let Some(config) = &sent {
                managed::record_apply(None, &mut obj, config, opts.manager(), &api_version, &now());
            } else {
                managed::record_update(None, &mut obj, opts.manager(), &api_version, &now());
            }
        }
        check_stored_size(&obj)?;
        let crd_type = self.served_type_of_crd(rt, &name, &mut obj)?;
        if opts.dry_run {
            return Ok(Written {
                object: obj,
                warnings,
            });
        }
        let stored = s.put(key, obj);
        if let Some(t) = crd_type {
            self.registry_mut().insert(t);
        }
        Ok(Written {
            object: stored,
            warnings,
        })
    }

    pub(super) fn check_type(&self, rt: &ResourceRef, obj: &Value) -> ApiResult<()> {
        if let Some(kind) = obj.get("kind").and_then(Value::as_str) {
            if kind != rt.kind && !kind.is_empty() {
                return Err(ApiError::bad_request(format!(
                    "the kind in the data ({kind}) does not match the expected kind ({})",
                    rt.kind
                )));
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
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
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
        let existing = Self::stored(&s, rt, &key)?;
        check_resource_version(rt, name, &obj, &existing)?;
        self.write_over(&mut s, rt, key, existing, obj, sub, opts)
    }

    /// Merges a client's new object over the stored one: the server owns identity fields, the
    /// main resource cannot change status and the status subresource cannot change anything else.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn write_over(
        &self,
        s: &mut Inner,
        rt: &ResourceRef,
        key: Key,
        existing: Value,
        mut obj: Value,
        sub: Subresource,
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        let name = key.name.clone();
        // Bodies and patch results alike: a patch can turn an object into anything.
        check_shape(rt, &name, &obj)?;
        if obj.get("metadata").is_none() {
            obj["metadata"] = json!({});
        }
        let warnings = match sub {
            Subresource::Main => {
                schema::conform(rt, &rt.storage_version, &mut obj, opts.field_validation)?
            }
            Subresource::Status => Vec::new(),
        };
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
        if sub == Subresource::Main {
            defaults::apply(rt, &mut new);
            keep_allocated(rt, &existing, &mut new);
            if !opts.applying {
                let api_version = rt.api_version(&rt.storage_version);
                managed::record_update(
                    Some(&existing),
                    &mut new,
                    opts.manager(),
                    &api_version,
                    &now(),
                );
            }
            invalid_if_any(
                rt,
                &name,
                validate::update(&rt.group, &rt.kind, &existing, &new),
            )?;
            check_stored_size(&new)?;
        }
        if new == existing {
            return Ok(Written {
                object: existing,
                warnings,
            });
        }
        let crd_type = match sub {
            Subresource::Main => self.served_type_of_crd(rt, &name, &mut new)?,
            Subresource::Status => None,
        };
        if opts.dry_run {
            return Ok(Written {
                object: new,
                warnings,
            });
        }
        let stored = self.store_or_finish_deletion(s, rt, key, new);
        if let Some(t) = crd_type {
            self.registry_mut().insert(t);
        }
        Ok(Written {
            object: stored,
            warnings,
        })
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
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        let mut s = self.store.lock();
        let key = Self::key(rt, namespace, name);
        let existing = match s.get(&key).cloned() {
            Some(e) => e,
            None if patch_type == PatchType::Apply && sub == Subresource::Main => {
                // Server-side apply creates what does not exist yet.
                drop(s);
                require_manager(opts)?;
                let mut obj = body.clone();
                check_shape(rt, name, &obj)?;
                if obj.get("metadata").is_none() {
                    obj["metadata"] = json!({});
                }
                obj["metadata"]["name"] = Value::String(name.to_string());
                let applying = WriteOptions {
                    applying: true,
                    ..opts.clone()
                };
                return self.create(rt, namespace, obj, &applying);
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
        check_resource_version(rt, name, &patched, &existing)?;
        if patch_type == PatchType::Apply && sub == Subresource::Main {
            require_manager(opts)?;
            let mut patched = patched;
            let api_version = rt.api_version(&rt.storage_version);
            managed::record_apply(
                Some(&existing),
                &mut patched,
                body,
                opts.manager(),
                &api_version,
                &now(),
            );
            let applying = WriteOptions {
                applying: true,
                ..opts.clone()
            };
            return self.write_over(&mut s, rt, key, existing, patched, sub, &applying);
        }
        self.write_over(&mut s, rt, key, existing, patched, sub, opts)
    }

    /// Writes by the stand-in's own components that read and change the object under one lock
    /// (the kubelet's pod status, CRD finalizers): they see the latest version, so they cannot
    /// lose a client's write.
    pub fn mutate(
        &self,
        rt: &ResourceRef,
        namespace: Option<&str>,
        name: &str,
        f: impl FnOnce(&mut Value),
    ) -> ApiResult<Value> {
        let mut s = self.store.lock();
        let key = Self::key(rt, namespace, name);
        let existing = Self::stored(&s, rt, &key)?;
        let mut new = existing.clone();
        f(&mut new);
        if new == existing {
            return Ok(existing);
        }
        self.write_direct(&mut s, rt, key, existing, new)
    }

    /// A controller's write of `new`, computed from `seen` (the object as its pass read it).
    /// Refused with 409 when the object changed since, as a real controller's update carrying
    /// a resourceVersion is: the change that conflicted wakes the next pass, which reads the
    /// object again. Writing unconditionally would revert clients' writes made in between.
    pub fn replace_if_unchanged(
        &self,
        rt: &ResourceRef,
        seen: &Value,
        new: Value,
    ) -> ApiResult<Value> {
        let name = meta_str(seen, "name").unwrap_or("");
        let mut s = self.store.lock();
        let key = Self::key(rt, meta_str(seen, "namespace"), name);
        let existing = Self::stored(&s, rt, &key)?;
        if meta_str(&existing, "resourceVersion") != meta_str(seen, "resourceVersion")
            || meta_str(&existing, "uid") != meta_str(seen, "uid")
        {
            return Err(ApiError::conflict(
                &rt.group_resource(),
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
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
        // Identity and deletion state belong to the server: once set, a deletionTimestamp is
        // never unset, whoever writes.
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            if let Some(v) = existing["metadata"].get(field) {
                new["metadata"][field] = v.clone();
            }
        }
        if rt.has_generation && spec_part(&existing) != spec_part(&new) {
            let g = existing
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            new["metadata"]["generation"] = json!(g + 1);
        }
        Ok(self.store_or_finish_deletion(s, rt, key, new))
    }

    /// For a CustomResourceDefinition being written: the resource type it will serve (its
    /// errors name the CRD's field), with the CRD's status set to established.
    fn served_type_of_crd(
        &self,
        rt: &ResourceRef,
        name: &str,
        crd: &mut Value,
    ) -> ApiResult<Option<ResourceType>> {
        if rt.group != "apiextensions.k8s.io" || rt.plural != "customresourcedefinitions" {
            return Ok(None);
        }
        let invalid =
            |field: &str, msg: &str| ApiError::invalid(&rt.kind, &rt.group, name, field, msg);
        let t = resource_type_from_crd(crd).map_err(|e| {
            let (field, msg) = e.split_once(": ").unwrap_or(("spec", &e));
            invalid(field, msg)
        })?;
        if self
            .registry()
            .get(&t.group, &t.plural)
            .is_some_and(|existing| !existing.custom)
        {
            return Err(invalid(
                "spec.names.plural",
                "Invalid value: the resource is served by a built-in API group",
            ));
        }
        crd["status"] = established_crd_status(&t, &now());
        Ok(Some(t))
    }

    /// Stores the new version, unless it is being deleted and its last finalizer just went:
    /// then the deletion completes (namespaces are finished by their controller instead).
    fn store_or_finish_deletion(
        &self,
        s: &mut Inner,
        rt: &ResourceRef,
        key: Key,
        new: Value,
    ) -> Value {
        let terminating = new.pointer("/metadata/deletionTimestamp").is_some();
        let no_finalizers = new
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_none_or(|f| f.is_empty());
        if terminating && no_finalizers && rt.plural != "namespaces" {
            s.put(key.clone(), new);
            return self.remove_now(s, rt, &key).unwrap_or(Value::Null);
        }
        s.put(key, new)
    }

    /// Removes a namespace whose contents are gone (the namespace controller's last step).
    pub fn finalize_namespace(&self, name: &str) {
        let mut s = self.store.lock();
        s.remove(&Key::new("", "namespaces", "", name));
    }
}

/// Server-side apply must say who applies: ownership is recorded per manager.
fn require_manager(opts: &WriteOptions) -> ApiResult<()> {
    if opts.field_manager.is_none() {
        return Err(ApiError::bad_request(
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        ));
    }
    Ok(())
}

/// A 422 listing every invalid field, or nothing.
fn invalid_if_any(rt: &ResourceRef, name: &str, causes: Vec<validate::Cause>) -> ApiResult<()> {
    if causes.is_empty() {
        return Ok(());
    }
    Err(ApiError::invalid_causes(&rt.kind, &rt.group, name, &causes))
}

/// etcd refuses values over 1.5 MiB; the API server passes the refusal on.
const MAX_STORED_BYTES: usize = 1536 * 1024;

fn check_stored_size(obj: &Value) -> ApiResult<()> {
    // Counted as written, not written out: every write passes through here.
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, obj);
    let size = count.0;
    if size > MAX_STORED_BYTES {
        return Err(ApiError::too_large(format!(
            "etcdserver: request is too large ({size} bytes; the limit is {MAX_STORED_BYTES})"
        )));
    }
    Ok(())
}

/// What the server allocated and an update may leave out: a Service's cluster IPs and node
/// ports stay when the new version does not name them.
fn keep_allocated(rt: &ResourceRef, existing: &Value, new: &mut Value) {
    if rt.custom || !rt.group.is_empty() || rt.kind != "Service" {
        return;
    }
    for field in ["clusterIP", "clusterIPs"] {
        let unset = new
            .pointer(&format!("/spec/{field}"))
            .is_none_or(|v| v.is_null() || v == "");
        if let (true, Some(old)) = (unset, existing.pointer(&format!("/spec/{field}"))) {
            if new.get("spec").is_some_and(Value::is_object) {
                new["spec"][field] = old.clone();
            }
        }
    }
    let old_ports = existing
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if let Some(ports) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
        for p in ports {
            if p.get("nodePort").is_some() {
                continue;
            }
            let same = old_ports
                .iter()
                .find(|o| o.get("port") == p.get("port") && o.get("protocol") == p.get("protocol"));
            if let Some(node_port) = same.and_then(|o| o.get("nodePort")) {
                p["nodePort"] = node_port.clone();
            }
        }
    }
}

/// Optimistic concurrency: a write that names a resourceVersion must name the current one.
fn check_resource_version(
    rt: &ResourceRef,
    name: &str,
    new: &Value,
    existing: &Value,
) -> ApiResult<()> {
    match meta_str(new, "resourceVersion").filter(|r| !r.is_empty()) {
        Some(rv) if Some(rv) != meta_str(existing, "resourceVersion") => Err(ApiError::conflict(
            &rt.group_resource(),
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )),
        _ => Ok(()),
    }
}
