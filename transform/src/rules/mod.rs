//! The rules' effects on objects. Each function changes one object in place and returns what
//! it changed, in words, for the preview.

pub mod image;
pub mod namespace;
pub mod storage_class;

use serde_json::Value;

/// `apps/v1` → `apps`; `v1` → ``.
/// `Value::pointer` without an allocation per segment (serde_json unescapes every segment into
/// a new String); the transform and order passes look up pointers millions of times.
pub trait Pointer {
    fn ptr(&self, pointer: &str) -> Option<&Value>;
    fn ptr_mut(&mut self, pointer: &str) -> Option<&mut Value>;
}

/// A pointer's token unescaped (`~1` is `/`, `~0` is `~`), borrowed when it has no escapes.
pub(crate) fn unescape(token: &str) -> std::borrow::Cow<'_, str> {
    if token.contains('~') {
        token.replace("~1", "/").replace("~0", "~").into()
    } else {
        token.into()
    }
}

/// An array index as a pointer writes it: digits, no leading zero, no sign.
fn array_index(token: &str) -> Option<usize> {
    if token.len() > 1 && token.starts_with('0') || token.starts_with('+') {
        return None;
    }
    token.parse().ok()
}

impl Pointer for Value {
    fn ptr(&self, pointer: &str) -> Option<&Value> {
        if pointer.is_empty() {
            return Some(self);
        }
        let rest = pointer.strip_prefix('/')?;
        let mut cur = self;
        for token in rest.split('/') {
            cur = match cur {
                Value::Object(m) => m.get(unescape(token).as_ref())?,
                Value::Array(a) => a.get(array_index(token)?)?,
                _ => return None,
            };
        }
        Some(cur)
    }

    fn ptr_mut(&mut self, pointer: &str) -> Option<&mut Value> {
        if pointer.is_empty() {
            return Some(self);
        }
        let rest = pointer.strip_prefix('/')?;
        let mut cur = self;
        for token in rest.split('/') {
            cur = match cur {
                Value::Object(m) => m.get_mut(unescape(token).as_ref())?,
                Value::Array(a) => a.get_mut(array_index(token)?)?,
                _ => return None,
            };
        }
        Some(cur)
    }
}

pub fn group_of(obj: &Value) -> &str {
    let av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    av.split_once('/').map(|(g, _)| g).unwrap_or("")
}

pub fn kind_of(obj: &Value) -> &str {
    obj.get("kind").and_then(Value::as_str).unwrap_or("")
}

/// Where a kind keeps its pod spec: Pods directly, workloads in their template, CronJobs two
/// levels down.
pub fn pod_spec_pointer(group: &str, kind: &str) -> Option<&'static str> {
    match (group, kind) {
        ("", "Pod") => Some("/spec"),
        ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet")
        | ("batch", "Job")
        | ("", "ReplicationController") => Some("/spec/template/spec"),
        // A PodTemplate is the template itself: no spec around it.
        ("", "PodTemplate") => Some("/template/spec"),
        ("batch", "CronJob") => Some("/spec/jobTemplate/spec/template/spec"),
        _ => None,
    }
}

/// Pointers into objects of one kind: (group, kind, JSON pointers).
pub type KindPointers = (String, String, Vec<String>);

/// Checks rule `customPaths` (a kind and JSON pointers); errors are the field
/// (`customPaths[0].paths[1]`) and what is wrong with it.
pub fn compile_paths(
    paths: &[ferry_protocol::rules::KindPaths],
) -> Result<Vec<KindPointers>, (String, String)> {
    let mut out = Vec::new();
    for (i, kp) in paths.iter().enumerate() {
        if kp.kind.is_empty() {
            return Err((format!("customPaths[{i}].kind"), "must not be empty".into()));
        }
        for (j, p) in kp.paths.iter().enumerate() {
            if !p.starts_with('/') {
                return Err((
                    format!("customPaths[{i}].paths[{j}]"),
                    format!("{p:?} is not a JSON pointer"),
                ));
            }
        }
        out.push((kp.group.clone(), kp.kind.clone(), kp.paths.clone()));
    }
    Ok(out)
}

pub const CONTAINER_LISTS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];

/// Visits every string at a JSON pointer whose `*` segments match every array element (or
/// every map value).
pub fn for_each_string_at(obj: &mut Value, pointer: &str, f: &mut dyn FnMut(&str, &mut String)) {
    let segments: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    walk(obj, &segments, String::new(), f);
}

fn walk(v: &mut Value, segments: &[&str], at: String, f: &mut dyn FnMut(&str, &mut String)) {
    let Some((first, rest)) = segments.split_first() else {
        if let Value::String(s) = v {
            f(&at, s);
        }
        return;
    };
    let token = first.replace("~1", "/").replace("~0", "~");
    match (v, token.as_str()) {
        (Value::Array(items), "*") => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, rest, format!("{at}/{i}"), f);
            }
        }
        (Value::Object(map), "*") => {
            for (k, item) in map.iter_mut() {
                walk(item, rest, format!("{at}/{k}"), f);
            }
        }
        (Value::Array(items), t) => {
            if let Some(item) = t.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                walk(item, rest, format!("{at}/{t}"), f);
            }
        }
        (Value::Object(map), t) => {
            if let Some(item) = map.get_mut(t) {
                walk(item, rest, format!("{at}/{t}"), f);
            }
        }
        _ => {}
    }
}

/// The strings at a JSON pointer whose `*` segments match every array element or map value.
pub fn strings_at(obj: &Value, pointer: &str) -> Vec<String> {
    fn collect<'a>(
        v: &Value,
        mut segments: impl Iterator<Item = &'a str> + Clone,
        out: &mut Vec<String>,
    ) {
        let Some(first) = segments.next() else {
            if let Value::String(s) = v {
                out.push(s.clone());
            }
            return;
        };
        let token: std::borrow::Cow<str> = if first.contains('~') {
            first.replace("~1", "/").replace("~0", "~").into()
        } else {
            first.into()
        };
        match (v, token.as_ref()) {
            (Value::Array(items), "*") => {
                items.iter().for_each(|i| collect(i, segments.clone(), out))
            }
            (Value::Object(map), "*") => {
                map.values().for_each(|i| collect(i, segments.clone(), out))
            }
            (Value::Array(items), t) => {
                if let Some(i) = t.parse::<usize>().ok().and_then(|i| items.get(i)) {
                    collect(i, segments, out)
                }
            }
            (Value::Object(map), t) => {
                if let Some(i) = map.get(t) {
                    collect(i, segments, out)
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    collect(obj, pointer.trim_start_matches('/').split('/'), &mut out);
    out
}

/// Sets `*s` to `new` and describes the change, if it differs.
pub fn set(at: &str, s: &mut String, new: String, changes: &mut Vec<String>) {
    if *s != new {
        changes.push(format!("{at}: {s} → {new}"));
        *s = new;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn walks_wildcards() {
        let mut v = json!({"spec": {"items": [{"image": "a"}, {"image": "b"}, {"other": 1}]}});
        let mut seen = Vec::new();
        for_each_string_at(&mut v, "/spec/items/*/image", &mut |at, s| {
            seen.push(format!("{at}={s}"));
            s.push('!');
        });
        assert_eq!(seen, ["/spec/items/0/image=a", "/spec/items/1/image=b"]);
        assert_eq!(v["spec"]["items"][1]["image"], "b!");
        assert_eq!(strings_at(&v, "/spec/items/*/image"), ["a!", "b!"]);
        assert!(strings_at(&v, "/spec/none/*").is_empty());
    }
}
