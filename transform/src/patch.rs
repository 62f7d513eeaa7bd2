//! The three patch formats of the Kubernetes API: JSON patch (RFC 6902), JSON merge patch
//! (RFC 7386) and strategic merge patch (`kubectl apply`'s format for built-in kinds).

use crate::rules::Pointer;
use serde_json::{Map, Value};

/// RFC 6902. The whole patch applies or nothing does.
pub fn json_patch(doc: &Value, ops: &Value) -> Result<Value, String> {
    let ops = ops
        .as_array()
        .ok_or("json patch must be an array of operations")?;
    let mut out = doc.clone();
    for (i, op) in ops.iter().enumerate() {
        apply_op(&mut out, op).map_err(|e| format!("operation {i}: {e}"))?;
    }
    Ok(out)
}

/// One RFC 6902 operation, in place. On failure the document may be partly changed (a `move`
/// whose target is invalid has removed its source): callers that need all-or-nothing use
/// `json_patch`.
pub fn apply_op(doc: &mut Value, op: &Value) -> Result<(), String> {
    let name = op
        .get("op")
        .and_then(Value::as_str)
        .ok_or("missing \"op\"")?;
    let path = op
        .get("path")
        .and_then(Value::as_str)
        .ok_or("missing \"path\"")?;
    let value = || op.get("value").cloned().ok_or("missing \"value\"");
    let from = || {
        op.get("from")
            .and_then(Value::as_str)
            .ok_or("missing \"from\"")
    };
    match name {
        "add" => add(doc, path, value()?),
        "remove" => remove(doc, path).map(|_| ()),
        "replace" => {
            let target = doc
                .pointer_mut(path)
                .ok_or_else(|| format!("replace: path {path:?} does not exist"))?;
            *target = value()?;
            Ok(())
        }
        "move" => {
            let from = from()?;
            if path.starts_with(&format!("{from}/")) {
                return Err(format!("move: {from:?} is a prefix of {path:?}"));
            }
            let v = remove(doc, from)?;
            add(doc, path, v)
        }
        "copy" => {
            let v = doc.ptr(from()?).cloned().ok_or_else(|| {
                format!("copy: from path {:?} does not exist", from().unwrap_or(""))
            })?;
            add(doc, path, v)
        }
        "test" => {
            let expected = value()?;
            match doc.ptr(path) {
                Some(actual) if *actual == expected => Ok(()),
                _ => Err(format!("test failed at {path:?}")),
            }
        }
        other => Err(format!("unknown op {other:?}")),
    }
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn split_parent(path: &str) -> Result<(&str, String), String> {
    let idx = path
        .rfind('/')
        .ok_or_else(|| format!("invalid path {path:?}"))?;
    Ok((&path[..idx], unescape(&path[idx + 1..])))
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, last) = split_parent(path)?;
    let target = doc
        .pointer_mut(parent)
        .ok_or_else(|| format!("add: parent of {path:?} does not exist"))?;
    match target {
        Value::Object(m) => {
            m.insert(last, value);
            Ok(())
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value);
                return Ok(());
            }
            let i: usize = last
                .parse()
                .map_err(|_| format!("add: invalid array index {last:?}"))?;
            if i > a.len() {
                return Err(format!("add: index {i} out of bounds at {path:?}"));
            }
            a.insert(i, value);
            Ok(())
        }
        _ => Err(format!("add: parent of {path:?} is not a container")),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split_parent(path)?;
    let target = doc
        .pointer_mut(parent)
        .ok_or_else(|| format!("remove: path {path:?} does not exist"))?;
    match target {
        Value::Object(m) => m
            .remove(&last)
            .ok_or_else(|| format!("remove: path {path:?} does not exist")),
        Value::Array(a) => {
            let i: usize = last
                .parse()
                .map_err(|_| format!("remove: invalid array index {last:?}"))?;
            if i >= a.len() {
                return Err(format!("remove: index {i} out of bounds at {path:?}"));
            }
            Ok(a.remove(i))
        }
        _ => Err(format!("remove: path {path:?} does not exist")),
    }
}

/// RFC 7386: objects merge recursively, `null` deletes, everything else replaces.
pub fn merge_patch(doc: &Value, patch: &Value) -> Value {
    match patch {
        Value::Object(p) => {
            let mut out = match doc {
                Value::Object(m) => m.clone(),
                _ => Map::new(),
            };
            for (k, v) in p {
                if v.is_null() {
                    out.remove(k);
                } else {
                    let merged = merge_patch(out.get(k).unwrap_or(&Value::Null), v);
                    out.insert(k.clone(), merged);
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// The merge key of a list field in the built-in types, by field name. Kubernetes keeps this
/// in struct tags (`patchMergeKey`); the field names Ferry and `kubectl apply` meet are
/// unambiguous enough to key on the name alone, except `ports`, which is decided per element.
/// Server-side apply keys list items by the same fields. Lists without one are atomic: a patch
/// replaces them whole (a StatefulSet's `volumeClaimTemplates`, whose items are named in their
/// metadata, is one).
pub fn merge_key(field: &str, element: &Value) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "hostAliases" => "ip",
        "conditions" => "type",
        "ownerReferences" => "uid",
        "topologySpreadConstraints" => "topologyKey",
        "ports" => {
            if element.get("containerPort").is_some() {
                "containerPort"
            } else {
                "port"
            }
        }
        _ => return None,
    })
}

/// Primitive lists whose patch strategy is `merge` (union) rather than replace.
fn merges_primitives(field: &str) -> bool {
    matches!(field, "finalizers")
}

/// Strategic merge patch as `kubectl apply` and `kubectl patch --type strategic` send it:
/// merge keys, `$patch: replace|delete|merge`, `$retainKeys`, `$setElementOrder/<list>` and
/// `$deleteFromPrimitiveList/<list>`.
pub fn strategic_merge_patch(doc: &Value, patch: &Value) -> Result<Value, String> {
    match (doc, patch) {
        (_, Value::Object(_)) => smp_map(doc.as_object(), patch.as_object().unwrap_or(&Map::new())),
        (_, other) => Ok(other.clone()),
    }
}

fn smp_map(doc: Option<&Map<String, Value>>, patch: &Map<String, Value>) -> Result<Value, String> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut p = patch.clone();
            p.remove("$patch");
            return Ok(Value::Object(strip_directives(p)));
        }
        Some("delete") => return Ok(Value::Null),
        Some("merge") | None => {}
        Some(other) => return Err(format!("unknown patch directive $patch: {other:?}")),
    }
    let mut out = doc.cloned().unwrap_or_default();
    let mut orders = Vec::new();
    for (k, v) in patch {
        if k == "$patch" {
            continue;
        }
        if k == "$retainKeys" {
            let keep: Vec<&str> = v
                .as_array()
                .ok_or("$retainKeys must be a list")?
                .iter()
                .filter_map(Value::as_str)
                .collect();
            out.retain(|key, _| keep.contains(&key.as_str()) || patch.contains_key(key));
            continue;
        }
        if let Some(field) = k.strip_prefix("$setElementOrder/") {
            orders.push((field.to_string(), v.clone()));
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let Some(Value::Array(list)) = out.get_mut(field) {
                let drop = v.as_array().cloned().unwrap_or_default();
                list.retain(|x| !drop.contains(x));
            }
            continue;
        }
        if v.is_null() {
            out.remove(k);
            continue;
        }
        let merged = match (out.get(k), v) {
            (existing, Value::Object(pm)) => smp_map(existing.and_then(Value::as_object), pm)?,
            (existing, Value::Array(pl)) => smp_list(k, existing.and_then(Value::as_array), pl)?,
            (_, other) => other.clone(),
        };
        if merged.is_null() {
            out.remove(k);
        } else {
            out.insert(k.clone(), merged);
        }
    }
    for (field, order) in orders {
        if let (Some(Value::Array(list)), Some(order)) = (out.get_mut(&field), order.as_array()) {
            reorder(&field, list, order);
        }
    }
    Ok(Value::Object(out))
}

fn strip_directives(m: Map<String, Value>) -> Map<String, Value> {
    m.into_iter().filter(|(k, _)| !k.starts_with('$')).collect()
}

fn smp_list(field: &str, doc: Option<&Vec<Value>>, patch: &[Value]) -> Result<Value, String> {
    // `[{"$patch": "replace"}, ...]` replaces the list with the remaining elements.
    if patch
        .iter()
        .any(|e| e.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return Ok(Value::Array(
            patch
                .iter()
                .filter(|e| e.get("$patch").is_none())
                .cloned()
                .collect(),
        ));
    }
    let first = patch.first().or_else(|| doc.and_then(|d| d.first()));
    let key = first.and_then(|e| merge_key(field, e));
    match key {
        Some(key) if first.is_some_and(Value::is_object) => {
            let mut out: Vec<Value> = doc.cloned().unwrap_or_default();
            for pe in patch {
                let id = pe.get(key);
                if id.is_none() && pe.is_object() {
                    // As the API server answers: an element a keyed list cannot place.
                    return Err(format!(
                        "{field}: an element does not contain declared merge key: {key}"
                    ));
                }
                let pos = out.iter().position(|e| id.is_some() && e.get(key) == id);
                let directive = pe.get("$patch").and_then(Value::as_str);
                match (pos, directive) {
                    (Some(i), Some("delete")) => {
                        out.remove(i);
                    }
                    (None, Some("delete")) => {}
                    (Some(i), _) => {
                        let merged =
                            smp_map(out[i].as_object(), pe.as_object().unwrap_or(&Map::new()))?;
                        out[i] = merged;
                    }
                    (None, _) => {
                        let mut e = pe.as_object().cloned().unwrap_or_default();
                        e.remove("$patch");
                        out.push(Value::Object(strip_directives(e)));
                    }
                }
            }
            Ok(Value::Array(out))
        }
        _ if merges_primitives(field) => {
            let mut out: Vec<Value> = doc.cloned().unwrap_or_default();
            for v in patch {
                if !out.contains(v) {
                    out.push(v.clone());
                }
            }
            Ok(Value::Array(out))
        }
        _ => Ok(Value::Array(patch.to_vec())),
    }
}

/// Orders a merged list as `$setElementOrder` says; elements it does not name keep their
/// relative order after the named ones.
fn reorder(field: &str, list: &mut [Value], order: &[Value]) {
    let ident = |e: &Value| -> Value {
        match merge_key(field, e) {
            Some(k) if e.is_object() => e.get(k).cloned().unwrap_or(Value::Null),
            _ => e.clone(),
        }
    };
    let position = |e: &Value| {
        let id = ident(e);
        order
            .iter()
            .position(|o| ident(o) == id || *o == id)
            .unwrap_or(usize::MAX)
    };
    list.sort_by_key(position);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_patch_ops() {
        let doc = json!({"a": {"b": [1, 2]}, "c": "x"});
        let out = json_patch(
            &doc,
            &json!([
                {"op": "add", "path": "/a/b/1", "value": 9},
                {"op": "replace", "path": "/c", "value": "y"},
                {"op": "copy", "from": "/c", "path": "/d"},
                {"op": "move", "from": "/d", "path": "/e"},
                {"op": "remove", "path": "/a/b/0"},
                {"op": "test", "path": "/e", "value": "y"},
            ]),
        )
        .unwrap();
        assert_eq!(out, json!({"a": {"b": [9, 2]}, "c": "y", "e": "y"}));
        let err =
            json_patch(&doc, &json!([{"op": "test", "path": "/c", "value": "no"}])).unwrap_err();
        assert!(err.contains("test failed"));
        assert!(json_patch(&doc, &json!([{"op": "remove", "path": "/zz"}])).is_err());
    }

    #[test]
    fn merge_patch_deletes_with_null() {
        let out = merge_patch(
            &json!({"a": 1, "b": {"c": 2, "d": 3}}),
            &json!({"a": null, "b": {"c": 5}}),
        );
        assert_eq!(out, json!({"b": {"c": 5, "d": 3}}));
    }

    #[test]
    fn strategic_merge_by_key() {
        let doc = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "b:1"}]}});
        let patch = json!({"spec": {
            "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
            "containers": [{"name": "a", "image": "a:2", "env": [{"name": "Y", "value": "2"}]}]}});
        let out = strategic_merge_patch(&doc, &patch).unwrap();
        assert_eq!(out["spec"]["containers"][0]["name"], "b");
        assert_eq!(out["spec"]["containers"][1]["image"], "a:2");
        assert_eq!(
            out["spec"]["containers"][1]["env"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn strategic_merge_directives() {
        let doc = json!({"spec": {"volumes": [{"name": "v1"}, {"name": "v2"}], "sel": {"a": 1, "b": 2}},
                         "metadata": {"finalizers": ["x"]}});
        let patch = json!({"spec": {"volumes": [{"name": "v1", "$patch": "delete"}],
                                    "sel": {"$patch": "replace", "c": 3}},
                           "metadata": {"finalizers": ["y"]}});
        let out = strategic_merge_patch(&doc, &patch).unwrap();
        assert_eq!(out["spec"]["volumes"], json!([{"name": "v2"}]));
        assert_eq!(out["spec"]["sel"], json!({"c": 3}));
        assert_eq!(out["metadata"]["finalizers"], json!(["x", "y"]));
        let out = strategic_merge_patch(
            &doc,
            &json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}}),
        )
        .unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!([]));
    }

    #[test]
    fn lists_without_a_merge_key_are_replaced_and_keyed_elements_need_their_key() {
        let template = json!({"metadata": {"name": "data"},
                              "spec": {"resources": {"requests": {"storage": "1Gi"}}}});
        let doc = json!({"spec": {"volumeClaimTemplates": [template]}});
        // Applying the same StatefulSet again changes nothing (an operator's every reconcile).
        let again = strategic_merge_patch(&doc, &doc).unwrap();
        assert_eq!(again, doc);
        let other = json!({"spec": {"volumeClaimTemplates": [{"metadata": {"name": "logs"}}]}});
        let replaced = strategic_merge_patch(&doc, &other).unwrap();
        assert_eq!(replaced, other);

        let err = strategic_merge_patch(
            &json!({"spec": {"containers": [{"name": "a"}]}}),
            &json!({"spec": {"containers": [{"image": "b:1"}]}}),
        )
        .unwrap_err();
        assert_eq!(
            err,
            "containers: an element does not contain declared merge key: name"
        );
    }
}
