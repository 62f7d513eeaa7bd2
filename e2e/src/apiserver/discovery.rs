//! Discovery: `/version`, legacy discovery (`/api`, `/apis`, per group-version resource lists),
//! aggregated discovery (`apidiscovery.k8s.io/v2` and `v2beta1`) and the OpenAPI v3 documents
//! `kubectl apply` reads to decide how to patch and whether the server validates fields.

use super::resources::{Registry, ResourceType};
use serde_json::{json, Value};

pub const AGGREGATED_V2: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
pub const AGGREGATED_V2BETA1: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

pub fn version(minor: u32) -> Value {
    json!({
        "major": "1",
        "minor": minor.to_string(),
        "gitVersion": format!("v1.{minor}.0-ferry-standin"),
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// Which aggregated discovery version the client asked for, if any.
pub fn wants_aggregated(accept: &str) -> Option<&'static str> {
    for part in accept.split(',') {
        let p: String = part.chars().filter(|c| !c.is_whitespace()).collect();
        if p.contains("g=apidiscovery.k8s.io") && p.contains("as=APIGroupDiscoveryList") {
            if p.contains("v=v2beta1") {
                return Some("v2beta1");
            }
            if p.contains("v=v2") {
                return Some("v2");
            }
        }
    }
    None
}

pub fn api_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
    })
}

fn group_json(name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({
        "name": name,
        "versions": vs,
        "preferredVersion": vs.first().cloned().unwrap_or(Value::Null),
    })
}

pub fn api_group_list(reg: &Registry) -> Value {
    let groups: Vec<Value> = reg
        .groups()
        .iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, vs)| group_json(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn api_group(reg: &Registry, group: &str) -> Option<Value> {
    reg.groups()
        .iter()
        .find(|(g, _)| g == group && !g.is_empty())
        .map(|(g, vs)| {
            let mut v = group_json(g, vs);
            v["kind"] = json!("APIGroup");
            v["apiVersion"] = json!("v1");
            v
        })
}

fn types_in<'a>(reg: &'a Registry, group: &'a str, version: &'a str) -> Vec<&'a ResourceType> {
    reg.all()
        .filter(|t| t.group == group && t.serves(version))
        .map(|t| t.as_ref())
        .collect()
}

/// `/api/v1` or `/apis/{group}/{version}`.
pub fn resource_list(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let types = types_in(reg, group, version);
    if types.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let mut resources = Vec::new();
    for t in types {
        let mut r = json!({
            "name": t.plural, "singularName": t.singular, "namespaced": t.namespaced,
            "kind": t.kind, "verbs": t.verbs(),
        });
        if !t.short_names.is_empty() {
            r["shortNames"] = json!(t.short_names);
        }
        if !t.categories.is_empty() {
            r["categories"] = json!(t.categories);
        }
        resources.push(r);
        for (sub, kind, g, v, verbs) in subresources(t) {
            let mut r = json!({"name": format!("{}/{sub}", t.plural), "singularName": "",
                               "namespaced": t.namespaced, "kind": kind, "verbs": verbs});
            if let (Some(g), Some(v)) = (g, v) {
                r["group"] = json!(g);
                r["version"] = json!(v);
            }
            resources.push(r);
        }
    }
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

type Sub = (
    &'static str,
    String,
    Option<&'static str>,
    Option<&'static str>,
    Vec<&'static str>,
);

fn subresources(t: &ResourceType) -> Vec<Sub> {
    let mut out: Vec<Sub> = Vec::new();
    if t.status {
        out.push((
            "status",
            t.kind.clone(),
            None,
            None,
            vec!["get", "patch", "update"],
        ));
    }
    if t.scale.is_some() {
        out.push((
            "scale",
            "Scale".into(),
            Some("autoscaling"),
            Some("v1"),
            vec!["get", "patch", "update"],
        ));
    }
    if t.group.is_empty() && t.plural == "pods" {
        out.push((
            "exec",
            "PodExecOptions".into(),
            None,
            None,
            vec!["create", "get"],
        ));
        out.push(("log", "Pod".into(), None, None, vec!["get"]));
    }
    if t.group.is_empty() && t.plural == "namespaces" {
        out.push(("finalize", "Namespace".into(), None, None, vec!["update"]));
    }
    out
}

/// Aggregated discovery for `/api` (core only) or `/apis` (every named group).
pub fn aggregated(reg: &Registry, core: bool, api_version: &str) -> Value {
    let mut items = Vec::new();
    for (group, versions) in reg.groups() {
        if group.is_empty() != core {
            continue;
        }
        let vs: Vec<Value> = versions
            .iter()
            .map(|version| {
                let resources: Vec<Value> = types_in(reg, &group, version)
                    .into_iter()
                    .map(|t| {
                        let subs: Vec<Value> = subresources(t)
                            .into_iter()
                            .map(|(sub, kind, g, v, verbs)| {
                                json!({"subresource": sub, "verbs": verbs,
                                       "responseKind": {"group": g.unwrap_or(&group), "version": v.unwrap_or(version), "kind": kind}})
                            })
                            .collect();
                        let mut r = json!({
                            "resource": t.plural,
                            "responseKind": {"group": group, "version": version, "kind": t.kind},
                            "scope": if t.namespaced { "Namespaced" } else { "Cluster" },
                            "singularResource": t.singular,
                            "verbs": t.verbs(),
                        });
                        if !t.short_names.is_empty() {
                            r["shortNames"] = json!(t.short_names);
                        }
                        if !t.categories.is_empty() {
                            r["categories"] = json!(t.categories);
                        }
                        if !subs.is_empty() {
                            r["subresources"] = json!(subs);
                        }
                        r
                    })
                    .collect();
                json!({"version": version, "resources": resources, "freshness": "Current"})
            })
            .collect();
        items.push(json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": vs}));
    }
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{api_version}"),
        "metadata": {},
        "items": items,
    })
}

fn fnv(s: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016X}")
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: one entry per group-version, with a hash that changes when its types do, so
/// that clients' caches never serve a stale document after a CRD changes.
pub fn openapi_v3_index(reg: &Registry) -> Value {
    let mut paths = serde_json::Map::new();
    for (group, versions) in reg.groups() {
        for v in versions {
            let path = gv_path(&group, &v);
            let doc = openapi_v3_group(reg, &group, &v).unwrap_or(Value::Null);
            paths.insert(
                path.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={}", fnv(&doc.to_string()))}),
            );
        }
    }
    json!({"paths": paths})
}

/// The OpenAPI v3 document of one group-version. It describes paths and their GVKs, and
/// advertises `fieldValidation`, which makes kubectl leave validation to the server. It lists
/// no strategic-merge content type and no schemas, so kubectl computes strategic merge patches
/// from its compiled-in types (built-ins) and merge patches for custom resources, exactly as it
/// does against a server whose schemas it cannot use.
pub fn openapi_v3_group(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let types = types_in(reg, group, version);
    if types.is_empty() {
        return None;
    }
    let prefix = format!("/{}", gv_path(group, version));
    let query = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
    let body = json!({"content": {
        "application/json-patch+json": {"schema": {"type": "object"}},
        "application/merge-patch+json": {"schema": {"type": "object"}},
        "application/apply-patch+yaml": {"schema": {"type": "object"}},
    }});
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    for t in types {
        let gvk = json!({"group": group, "version": version, "kind": t.kind});
        let op = |action: &str| {
            json!({
                "operationId": format!("{action}{}", t.kind),
                "parameters": [query("dryRun"), query("fieldManager"), query("fieldValidation")],
                "responses": {"200": {"description": "OK"}},
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
            })
        };
        let base = if t.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", t.plural)
        } else {
            format!("{prefix}/{}", t.plural)
        };
        let mut patch_op = op("patch");
        patch_op["requestBody"] = body.clone();
        paths.insert(
            format!("{base}/{{name}}"),
            json!({"get": op("get"), "put": op("put"), "patch": patch_op, "delete": op("delete")}),
        );
        paths.insert(base, json!({"get": op("list"), "post": op("post")}));
        let schema_name = if group.is_empty() {
            format!("io.k8s.api.core.{version}.{}", t.kind)
        } else {
            format!(
                "{}.{version}.{}",
                group.split('.').rev().collect::<Vec<_>>().join("."),
                t.kind
            )
        };
        schemas.insert(
            schema_name,
            json!({"type": "object", "x-kubernetes-group-version-kind": [gvk],
                                            "x-kubernetes-preserve-unknown-fields": true}),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (Ferry stand-in)", "version": "v1"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}
