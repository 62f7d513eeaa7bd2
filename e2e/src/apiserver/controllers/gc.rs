//! The namespace controller (per-namespace defaults, and emptying terminating namespaces) and
//! the garbage collector (owner references, foreground and orphan deletion).

use super::{name, strings, uid, Ctl};
use serde_json::{json, Value};
use std::collections::HashSet;

pub fn namespaces(ctl: &Ctl) -> bool {
    let mut changed = false;
    let namespaces: Vec<Value> = ctl.of("", "namespaces").cloned().collect();
    for ns in namespaces {
        let n = name(&ns).to_string();
        if ns.pointer("/metadata/deletionTimestamp").is_some() {
            let contents: Vec<(String, String, Value)> = ctl
                .objects
                .iter()
                .filter(|(k, _)| k.namespace == n)
                .map(|(k, v)| (k.group.clone(), k.resource.clone(), v.clone()))
                .collect();
            if contents.is_empty() {
                ctl.core.finalize_namespace(&n);
                changed = true;
            }
            for (g, r, obj) in contents {
                changed |= ctl.delete(&g, &r, &obj);
            }
            continue;
        }
        if ctl.find("", "serviceaccounts", &n, "default").is_none() {
            changed |= ctl.create(
                "",
                "serviceaccounts",
                Some(&n),
                json!({"metadata": {"name": "default"}}),
            );
        }
        if ctl.find("", "configmaps", &n, "kube-root-ca.crt").is_none() {
            let ca = ctl.config.ca_pem.clone().unwrap_or_default();
            changed |= ctl.create("", "configmaps", Some(&n), json!({
                "metadata": {"name": "kube-root-ca.crt",
                             "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
                "data": {"ca.crt": ca}
            }));
        }
    }
    changed
}

fn finalizers(o: &Value) -> Vec<String> {
    strings(o, "/metadata/finalizers")
}

fn without_finalizer(o: &mut Value, f: &str) {
    if let Some(a) = o
        .pointer_mut("/metadata/finalizers")
        .and_then(Value::as_array_mut)
    {
        a.retain(|x| x.as_str() != Some(f));
    }
}

fn owner_uids(o: &Value) -> Vec<String> {
    o.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

pub fn owners(ctl: &Ctl) -> bool {
    let mut changed = false;
    let live: HashSet<&str> = ctl.objects.iter().map(|(_, v)| uid(v)).collect();
    // Dependents whose owners are all gone are deleted (background propagation); references
    // to owners that are gone are dropped when other owners remain.
    for (k, obj) in &ctl.objects {
        let owners = owner_uids(obj);
        if owners.is_empty() || obj.pointer("/metadata/deletionTimestamp").is_some() {
            continue;
        }
        let alive = owners.iter().filter(|u| live.contains(u.as_str())).count();
        if alive == 0 {
            changed |= ctl.delete(&k.group, &k.resource, obj);
        } else if alive < owners.len() {
            changed |= ctl.mutate(&k.group, &k.resource, obj, |o| {
                if let Some(a) = o
                    .pointer_mut("/metadata/ownerReferences")
                    .and_then(Value::as_array_mut)
                {
                    a.retain(|r| {
                        r.get("uid")
                            .and_then(Value::as_str)
                            .is_some_and(|u| live.contains(u))
                    });
                }
            });
        }
    }
    // Owners being deleted in the foreground or with orphaning.
    for (k, owner) in &ctl.objects {
        if owner.pointer("/metadata/deletionTimestamp").is_none() {
            continue;
        }
        let fins = finalizers(owner);
        let owner_uid = uid(owner);
        let dependents: Vec<&(super::Key, Value)> = ctl
            .objects
            .iter()
            .filter(|(_, d)| owner_uids(d).iter().any(|u| u == owner_uid))
            .collect();
        if fins.iter().any(|f| f == "orphan") {
            for (dk, d) in &dependents {
                changed |= ctl.mutate(&dk.group, &dk.resource, d, |o| {
                    if let Some(a) = o
                        .pointer_mut("/metadata/ownerReferences")
                        .and_then(Value::as_array_mut)
                    {
                        a.retain(|r| r.get("uid").and_then(Value::as_str) != Some(owner_uid));
                    }
                    if o.pointer("/metadata/ownerReferences")
                        .and_then(Value::as_array)
                        .is_some_and(|a| a.is_empty())
                    {
                        o["metadata"]
                            .as_object_mut()
                            .map(|m| m.remove("ownerReferences"));
                    }
                });
            }
            changed |= ctl.mutate(&k.group, &k.resource, owner, |o| {
                without_finalizer(o, "orphan")
            });
        } else if fins.iter().any(|f| f == "foregroundDeletion") {
            if dependents.is_empty() {
                changed |= ctl.mutate(&k.group, &k.resource, owner, |o| {
                    without_finalizer(o, "foregroundDeletion")
                });
            } else {
                for (dk, d) in &dependents {
                    changed |= ctl.delete(&dk.group, &dk.resource, d);
                }
            }
        }
    }
    changed
}
