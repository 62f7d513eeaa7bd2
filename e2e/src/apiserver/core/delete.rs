//! Deletion: preconditions, finalizers, propagation policies, namespaces and CRDs.

use super::*;

impl ApiCore {
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
        let existing = Self::stored(s, rt, &key)?;
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
    pub(super) fn remove_now(&self, s: &mut Inner, rt: &ResourceRef, key: &Key) -> Option<Value> {
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
}
