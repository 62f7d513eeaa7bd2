//! Field ownership for server-side apply: `metadata.managedFields`, in Kubernetes' FieldsV1
//! form (`f:<field>`, `k:<key>` for keyed list items, `.` for the item itself).
//!
//! What is kept: each manager's set of fields, per operation (`Apply` or `Update`); an apply
//! replaces its manager's set, and fields that manager applied before but no longer applies are
//! removed from the object unless another manager owns them; writes take the fields they change
//! from other managers. What is not: conflicts (an apply never fails because another manager
//! owns a field; it takes it, as `--force-conflicts` would).

use ferry_transform::patch::merge_key;
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

/// A path of FieldsV1 keys to one owned field.
pub type FieldPath = Vec<String>;
pub type FieldSet = BTreeSet<FieldPath>;

/// Fields that identify or are owned by the server, never by a manager.
fn untracked(path: &[String]) -> bool {
    match path {
        [one] => matches!(one.as_str(), "f:apiVersion" | "f:kind" | "f:status"),
        [meta, field, ..] if meta == "f:metadata" => !matches!(
            field.as_str(),
            "f:labels" | "f:annotations" | "f:finalizers" | "f:ownerReferences"
        ),
        _ => false,
    }
}

/// The leaf fields an object (or an applied configuration) sets.
pub fn fields_of(obj: &Value) -> FieldSet {
    let mut set = FieldSet::new();
    walk(obj, &mut Vec::new(), None, &mut set);
    set.retain(|p| !untracked(p));
    set
}

fn walk(v: &Value, path: &mut FieldPath, field: Option<&str>, set: &mut FieldSet) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                path.push(format!("f:{k}"));
                walk(child, path, Some(k), set);
                path.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let keyed = items.iter().all(|item| {
                field
                    .and_then(|f| merge_key(f, item))
                    .is_some_and(|k| item.get(k).is_some())
            });
            if !keyed {
                // Lists without a key are owned whole.
                set.insert(path.clone());
                return;
            }
            for item in items {
                let key = field.and_then(|f| merge_key(f, item)).unwrap_or("name");
                path.push(format!("k:{}", json!({ key: item[key] })));
                set.insert({
                    let mut me = path.clone();
                    me.push(".".into());
                    me
                });
                walk(item, path, None, set);
                path.pop();
            }
        }
        _ => {
            if !path.is_empty() {
                set.insert(path.clone());
            }
        }
    }
}

/// The value at a field path, if the object has it.
fn get<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    for step in path {
        if step == "." {
            return Some(cur);
        }
        cur = step_into(cur, step)?;
    }
    Some(cur)
}

fn step_into<'a>(cur: &'a Value, step: &str) -> Option<&'a Value> {
    if let Some(field) = step.strip_prefix("f:") {
        return cur.get(field);
    }
    let key: Map<String, Value> = serde_json::from_str(step.strip_prefix("k:")?).ok()?;
    cur.as_array()?
        .iter()
        .find(|item| key.iter().all(|(k, v)| item.get(k) == Some(v)))
}

/// Removes the field at `path` from `obj`; an emptied list item or map stays (Kubernetes
/// leaves `{}` where a removed field's parent was set by someone).
fn remove(obj: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let (target, last) = if last == "." {
        match parents.split_last() {
            Some((item, rest)) => (rest, item),
            None => return,
        }
    } else {
        (parents, last)
    };
    let mut cur = obj;
    for step in target {
        let next = if let Some(field) = step.strip_prefix("f:") {
            cur.get_mut(field)
        } else {
            let key: Option<Map<String, Value>> = step
                .strip_prefix("k:")
                .and_then(|k| serde_json::from_str(k).ok());
            match (key, cur.as_array_mut()) {
                (Some(key), Some(items)) => items
                    .iter_mut()
                    .find(|item| key.iter().all(|(k, v)| item.get(k) == Some(v))),
                _ => None,
            }
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(field) = last.strip_prefix("f:") {
        if let Some(m) = cur.as_object_mut() {
            m.shift_remove(field);
        }
    } else if let (Some(key), Some(items)) = (
        last.strip_prefix("k:")
            .and_then(|k| serde_json::from_str::<Map<String, Value>>(k).ok()),
        cur.as_array_mut(),
    ) {
        items.retain(|item| !key.iter().all(|(k, v)| item.get(k) == Some(v)));
    }
}

/// FieldsV1 JSON of a set.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut cur = &mut root;
        for step in path {
            cur = cur
                .entry(step.clone())
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
                .expect("inserted as an object");
        }
    }
    Value::Object(root)
}

/// A set from FieldsV1 JSON (every path to an empty object is a leaf).
pub fn from_fields_v1(v: &Value) -> FieldSet {
    fn go(v: &Value, path: &mut FieldPath, out: &mut FieldSet) {
        match v.as_object() {
            Some(m) if !m.is_empty() => {
                for (k, child) in m {
                    path.push(k.clone());
                    go(child, path, out);
                    path.pop();
                }
            }
            _ => {
                if !path.is_empty() {
                    out.insert(path.clone());
                }
            }
        }
    }
    let mut out = FieldSet::new();
    go(v, &mut Vec::new(), &mut out);
    out
}

/// One `managedFields` entry.
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: String,
    fields: FieldSet,
}

fn entries(obj: &Value) -> Vec<Entry> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| {
            let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            Entry {
                manager: s("manager"),
                operation: s("operation"),
                api_version: s("apiVersion"),
                time: s("time"),
                fields: e.get("fieldsV1").map(from_fields_v1).unwrap_or_default(),
            }
        })
        .collect()
}

fn store(obj: &mut Value, entries: Vec<Entry>) {
    let list: Vec<Value> = entries
        .into_iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            json!({"manager": e.manager, "operation": e.operation, "apiVersion": e.api_version,
                   "time": e.time, "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(&e.fields)})
        })
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if list.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(list));
        }
    }
}

/// Records a create or update by `manager`: it owns every field it changed (all of them on a
/// create), and other managers lose those fields.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    now: &str,
) {
    let changed: FieldSet = fields_of(new)
        .into_iter()
        .filter(|p| old.is_none_or(|o| get(o, p) != get(new, p)))
        .collect();
    let mut list = old.map(entries).unwrap_or_default();
    if changed.is_empty() {
        store(new, list);
        return;
    }
    for e in &mut list {
        e.fields.retain(|p| !changed.contains(p));
    }
    match list
        .iter_mut()
        .find(|e| e.manager == manager && e.operation == "Update")
    {
        Some(e) => {
            e.fields.extend(changed);
            e.time = now.to_string();
        }
        None => list.push(Entry {
            manager: manager.into(),
            operation: "Update".into(),
            api_version: api_version.into(),
            time: now.into(),
            fields: changed,
        }),
    }
    store(new, list);
}

/// Records a server-side apply of `config` by `manager` onto `merged` (the object with the
/// config merged in): fields the manager applied before and no longer does are removed unless
/// another manager owns them, and the manager's set becomes what it applied.
pub fn record_apply(
    old: Option<&Value>,
    merged: &mut Value,
    config: &Value,
    manager: &str,
    api_version: &str,
    now: &str,
) {
    let applied = fields_of(config);
    let mut list = old.map(entries).unwrap_or_default();
    let before: FieldSet = list
        .iter()
        .find(|e| e.manager == manager && e.operation == "Apply")
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let owned_by_others: FieldSet = list
        .iter()
        .filter(|e| !(e.manager == manager && e.operation == "Apply"))
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    // Whole list items first (found by their key, which their own fields' removal would
    // take away), then fields, deepest first.
    let mut dropped: Vec<&FieldPath> = before
        .difference(&applied)
        .filter(|p| !owned_by_others.contains(*p))
        .collect();
    dropped.sort_by_key(|p| {
        (
            p.last().map(String::as_str) != Some("."),
            std::cmp::Reverse(p.len()),
        )
    });
    let dropped_any = !dropped.is_empty();
    for path in dropped {
        remove(merged, path);
    }
    // Fields whose value this apply changed move to it.
    let taken: FieldSet = applied
        .iter()
        .filter(|p| old.is_none_or(|o| get(o, p) != get(merged, p)))
        .cloned()
        .collect();
    for e in &mut list {
        if !(e.manager == manager && e.operation == "Apply") {
            e.fields.retain(|p| !taken.contains(p));
        }
    }
    let changed = dropped_any || !taken.is_empty();
    match list
        .iter_mut()
        .find(|e| e.manager == manager && e.operation == "Apply")
    {
        Some(e) => {
            // An apply that changes nothing leaves the object as it was, time included.
            if changed || e.fields != applied {
                e.time = now.to_string();
            }
            e.fields = applied;
        }
        None => list.push(Entry {
            manager: manager.into(),
            operation: "Apply".into(),
            api_version: api_version.into(),
            time: now.into(),
            fields: applied,
        }),
    }
    store(merged, list);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &[&str]) -> FieldPath {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn field_sets_use_kubernetes_keys() {
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"a": "b"}},
                       "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "c", "image": "x", "args": ["-v"]}]}}}});
        let set = fields_of(&d);
        assert!(set.contains(&path(&["f:metadata", "f:labels", "f:a"])));
        assert!(!set.contains(&path(&["f:metadata", "f:name"])));
        assert!(set.contains(&path(&["f:spec", "f:replicas"])));
        let c = [
            "f:spec",
            "f:template",
            "f:spec",
            "f:containers",
            "k:{\"name\":\"c\"}",
        ];
        assert!(set.contains(&path(&[&c[..], &["."]].concat())));
        assert!(set.contains(&path(&[&c[..], &["f:image"]].concat())));
        assert!(set.contains(&path(&[&c[..], &["f:args"]].concat())));
        assert_eq!(from_fields_v1(&to_fields_v1(&set)), set);
    }

    #[test]
    fn applies_remove_what_they_stop_applying() {
        let first = json!({"metadata": {"name": "cm", "labels": {"a": "1", "b": "2"}}, "data": {"x": "1", "y": "2"}});
        let mut obj = first.clone();
        record_apply(None, &mut obj, &first, "ferry", "v1", "t0");
        // Another manager writes z.
        let before = obj.clone();
        obj["data"]["z"] = json!("3");
        record_update(Some(&before), &mut obj, "kubectl-edit", "v1", "t1");
        // The next apply drops y and label b; z stays, owned by the other manager.
        let second = json!({"metadata": {"name": "cm", "labels": {"a": "1"}}, "data": {"x": "1"}});
        let old = obj.clone();
        let mut merged = obj.clone();
        record_apply(Some(&old), &mut merged, &second, "ferry", "v1", "t2");
        assert_eq!(merged["data"], json!({"x": "1", "z": "3"}));
        assert_eq!(merged["metadata"]["labels"], json!({"a": "1"}));
        let managers: Vec<&str> = merged["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["manager"].as_str().unwrap())
            .collect();
        assert_eq!(managers, ["ferry", "kubectl-edit"]);
    }

    #[test]
    fn dropped_list_items_go_by_key() {
        let first = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}});
        let mut obj = first.clone();
        record_apply(None, &mut obj, &first, "m", "v1", "t0");
        let second = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "x"}]}});
        let old = obj.clone();
        record_apply(Some(&old), &mut obj, &second, "m", "v1", "t1");
        assert_eq!(
            obj["spec"]["containers"],
            json!([{"name": "a", "image": "x"}])
        );
    }
}
