//! `namespace`: the object's own namespace and every reference a rename must reach.

use super::{
    compile_paths, for_each_string_at, group_of, kind_of, pod_spec_pointer, set, KindPointers,
    CONTAINER_LISTS,
};
use base64::Engine;
use ferry_protocol::rules::NamespaceRule;
use regex::Regex;
use serde_json::Value;

/// References to a namespace by kind, besides `metadata.namespace`.
fn reference_pointers(group: &str, kind: &str) -> &'static [&'static str] {
    match (group, kind) {
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            &["/subjects/*/namespace"]
        }
        (
            "admissionregistration.k8s.io",
            "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration",
        ) => &["/webhooks/*/clientConfig/service/namespace"],
        ("apiregistration.k8s.io", "APIService") => &["/spec/service/namespace"],
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            &["/spec/conversion/webhook/clientConfig/service/namespace"]
        }
        ("", "PersistentVolume") => &["/spec/claimRef/namespace"],
        _ => &[],
    }
}

/// Matches `<service>.<namespace>.svc` with an optional `.cluster.local`, on name boundaries.
pub fn dns_pattern(from: &str) -> Regex {
    Regex::new(&format!(
        r"(?P<pre>\b[a-z0-9]([-a-z0-9]*[a-z0-9])?)\.{}\.svc\b",
        regex::escape(from)
    ))
    .expect("escaped namespace makes a valid pattern")
}

/// A compiled `namespace` rule.
#[derive(Debug, Clone)]
pub struct Rename {
    pub from: String,
    pub to: String,
    /// Set when DNS names are rewritten too.
    pub dns: Option<Regex>,
    pub dns_in_secrets: bool,
    /// (group, kind, pointers) where custom resources name namespaces.
    pub custom_paths: Vec<KindPointers>,
}

impl Rename {
    /// Errors name the field of the rule (`customPaths[0].paths[1]`).
    pub fn compile(rule: &NamespaceRule) -> Result<Rename, (String, String)> {
        if rule.rewrite_dns_in_secrets && !rule.rewrite_dns {
            return Err((
                "rewriteDnsInSecrets".into(),
                "needs rewriteDns: true".into(),
            ));
        }
        Ok(Rename {
            from: rule.from.clone(),
            to: rule.to.clone(),
            dns: rule.rewrite_dns.then(|| dns_pattern(&rule.from)),
            dns_in_secrets: rule.rewrite_dns_in_secrets,
            custom_paths: compile_paths(&rule.custom_paths)?,
        })
    }

    pub fn apply(&self, obj: &mut Value) -> Vec<String> {
        let mut changes = apply(obj, &self.from, &self.to, self.dns.as_ref());
        let (group, kind) = (group_of(obj).to_string(), kind_of(obj).to_string());
        for (g, k, paths) in &self.custom_paths {
            if *g != group || *k != kind {
                continue;
            }
            for p in paths {
                for_each_string_at(obj, p, &mut |at, s| {
                    if s == &self.from {
                        set(at, s, self.to.clone(), &mut changes);
                    } else if let Some(re) = &self.dns {
                        rewrite_dns(re, &self.to, at, s, &mut changes);
                    }
                });
            }
        }
        if let (Some(re), true, ("", "Secret")) = (
            &self.dns,
            self.dns_in_secrets,
            (group.as_str(), kind.as_str()),
        ) {
            for_each_string_at(obj, "/data/*", &mut |at, encoded| {
                let Ok(bytes) =
                    base64::engine::general_purpose::STANDARD.decode(encoded.as_bytes())
                else {
                    return;
                };
                let Ok(mut text) = String::from_utf8(bytes) else {
                    return;
                };
                let mut inner = Vec::new();
                rewrite_dns(re, &self.to, at, &mut text, &mut inner);
                if !inner.is_empty() {
                    let new = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
                    // The change names the field, never the secret's content.
                    set(at, encoded, new, &mut Vec::new());
                    changes.push(format!(
                        "{at}: in-cluster DNS names → namespace {}",
                        self.to
                    ));
                }
            });
        }
        changes
    }
}

fn rewrite_dns(re: &Regex, to: &str, at: &str, s: &mut String, changes: &mut Vec<String>) {
    if re.is_match(s) {
        let new = re
            .replace_all(s, format!("$pre.{to}.svc").as_str())
            .into_owned();
        set(at, s, new, changes);
    }
}

pub fn apply(obj: &mut Value, from: &str, to: &str, dns: Option<&Regex>) -> Vec<String> {
    let mut changes = Vec::new();
    let (group, kind) = (group_of(obj).to_string(), kind_of(obj).to_string());
    let mut rename = |at: &str, s: &mut String| {
        if s == from {
            set(at, s, to.to_string(), &mut changes);
        }
    };
    for_each_string_at(obj, "/metadata/namespace", &mut rename);
    if (group.as_str(), kind.as_str()) == ("", "Namespace") {
        for_each_string_at(obj, "/metadata/name", &mut rename);
        for_each_string_at(
            obj,
            "/metadata/labels/kubernetes.io~1metadata.name",
            &mut rename,
        );
    }
    for p in reference_pointers(&group, &kind) {
        for_each_string_at(obj, p, &mut rename);
    }
    if let Some(re) = dns {
        let mut rewrite = |at: &str, s: &mut String| rewrite_dns(re, to, at, s, &mut changes);
        if let Some(spec) = pod_spec_pointer(&group, &kind) {
            for list in CONTAINER_LISTS {
                for field in ["env/*/value", "args/*", "command/*"] {
                    for_each_string_at(obj, &format!("{spec}/{list}/*/{field}"), &mut rewrite);
                }
            }
        }
        if (group.as_str(), kind.as_str()) == ("", "ConfigMap") {
            for_each_string_at(obj, "/data/*", &mut rewrite);
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reaches_references() {
        let mut rb = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "r", "namespace": "shop"},
            "subjects": [{"kind": "ServiceAccount", "name": "a", "namespace": "shop"},
                         {"kind": "ServiceAccount", "name": "b", "namespace": "other"}]});
        assert_eq!(apply(&mut rb, "shop", "shop-dr", None).len(), 2);
        assert_eq!(rb["subjects"][0]["namespace"], "shop-dr");
        assert_eq!(rb["subjects"][1]["namespace"], "other");
        let mut ns = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "shop", "labels": {"kubernetes.io/metadata.name": "shop"}}});
        apply(&mut ns, "shop", "shop-dr", None);
        assert_eq!(ns["metadata"]["name"], "shop-dr");
        assert_eq!(
            ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "shop-dr"
        );
        let mut wh = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "webhooks": [{"clientConfig": {"service": {"namespace": "shop", "name": "hook"}}}]});
        assert_eq!(apply(&mut wh, "shop", "shop-dr", None).len(), 1);
        let mut pv = json!({"apiVersion": "v1", "kind": "PersistentVolume", "spec": {"claimRef": {"namespace": "shop"}}});
        assert_eq!(apply(&mut pv, "shop", "shop-dr", None).len(), 1);
    }

    #[test]
    fn dns_names_only_when_asked() {
        let dep = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"namespace": "shop"},
            "spec": {"template": {"spec": {"containers": [{"env": [
                {"name": "DB", "value": "db.shop.svc.cluster.local:5432"},
                {"name": "OTHER", "value": "db.shopping.svc"}]}]}}}});
        let mut off = dep.clone();
        apply(&mut off, "shop", "shop-dr", None);
        assert_eq!(
            off["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"],
            "db.shop.svc.cluster.local:5432"
        );
        let mut on = dep.clone();
        apply(&mut on, "shop", "shop-dr", Some(&dns_pattern("shop")));
        assert_eq!(
            on["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"],
            "db.shop-dr.svc.cluster.local:5432"
        );
        assert_eq!(
            on["spec"]["template"]["spec"]["containers"][0]["env"][1]["value"],
            "db.shopping.svc"
        );
    }
}
