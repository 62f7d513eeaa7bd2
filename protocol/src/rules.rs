//! The transform-rule schema: what users write to make an application fit its new cluster.
//!
//! ```yaml
//! ruleSets:
//!   us-registry:
//!     - imageRegistry: { from: registry.eu.example.com, to: registry.us.example.com }
//! transforms:
//!   - storageClass: { from: gp2, to: premium-rwo }
//!   - name: rename-namespace
//!     namespace: { from: shop, to: shop-dr }
//!   - use: us-registry
//!   - patch:
//!       match: { group: apps, kind: Deployment, labelSelector: "tier=web" }
//!       ops:
//!         - { op: replace, path: /spec/replicas, value: 0 }
//! ```
//!
//! Every struct refuses unknown fields, so a typo is an error rather than a rule that silently
//! does nothing. Semantic checks (one kind per rule, valid regexes, known rule sets) live in
//! `ferry-transform`, which names the rule and field of each error.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransformSpec {
    /// Named, reusable lists of rules, referenced from `transforms` with `use: <name>`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rule_sets: BTreeMap<String, Vec<Rule>>,
    #[serde(default)]
    pub transforms: Vec<Rule>,
}

/// One rule: an optional name and exactly one kind of rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<StorageClassRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<NamespaceRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_registry: Option<ImageRegistryRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<PatchRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude: Option<Match>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<Match>,
    /// Inserts the rules of a named rule set here.
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_rule_set: Option<String>,
}

impl Rule {
    /// The kinds this rule sets, by their YAML names. Valid rules set exactly one.
    pub fn kinds(&self) -> Vec<&'static str> {
        let mut kinds = Vec::new();
        let mut add = |set: bool, name: &'static str| {
            if set {
                kinds.push(name);
            }
        };
        add(self.storage_class.is_some(), "storageClass");
        add(self.namespace.is_some(), "namespace");
        add(self.image_registry.is_some(), "imageRegistry");
        add(self.patch.is_some(), "patch");
        add(self.exclude.is_some(), "exclude");
        add(self.include.is_some(), "include");
        add(self.use_rule_set.is_some(), "use");
        kinds
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StorageClassRule {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamespaceRule {
    pub from: String,
    pub to: String,
    /// Also rewrite in-cluster DNS names (`<svc>.<from>.svc[.cluster.local]`) in container env
    /// values and ConfigMap data. Off by default: such strings are data, and data is the user's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rewrite_dns: bool,
    /// With `rewriteDns`, also rewrite DNS names inside Secret data (decoded, rewritten,
    /// encoded again; values that are not UTF-8 text stay as they are). Datasource URLs and
    /// scrape configs often live there.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rewrite_dns_in_secrets: bool,
    /// Where custom resources name namespaces (a Prometheus CR's alertmanager namespace),
    /// per kind: exact matches of `from` there become `to`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom_paths: Vec<KindPaths>,
}

/// Rewrites image references, by registry prefix (`from`/`to`) or by regex with capture groups
/// (`regex`/`replacement`, `$1`-style).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageRegistryRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replacement: Option<String>,
    /// Where custom resources keep images (operators often do), per kind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom_paths: Vec<KindPaths>,
    /// Also rewrite image references given as container arguments or commands, whole
    /// (`quay.io/x/y:1`) or as a flag's value (`--config-reloader-image=quay.io/x/y:1`), as
    /// operators take the images of what they deploy.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub args: bool,
}

/// JSON pointers (RFC 6901; `*` matches every element of an array) into objects of one kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KindPaths {
    #[serde(default)]
    pub group: String,
    pub kind: String,
    pub paths: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchRule {
    #[serde(default, rename = "match")]
    pub match_: Match,
    pub ops: Vec<PatchOp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PatchOpKind {
    Add,
    Remove,
    Replace,
    Move,
    Copy,
    Test,
}

/// One RFC 6902 operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchOp {
    pub op: PatchOpKind,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// Which objects a rule applies to; every condition given must hold. `name` and `namespace`
/// are globs (`*`, `?`) or, written `/.../`, regular expressions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Match {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_design_shape_from_json() {
        let spec: TransformSpec = serde_json::from_str(
            r#"{"transforms": [
                {"storageClass": {"from": "gp2", "to": "premium-rwo"}},
                {"name": "ns", "namespace": {"from": "shop", "to": "shop-dr"}},
                {"patch": {"match": {"group": "apps", "kind": "Deployment", "labelSelector": "tier=web"},
                           "ops": [{"op": "replace", "path": "/spec/replicas", "value": 0}]}}
            ]}"#,
        )
        .unwrap();
        assert_eq!(spec.transforms.len(), 3);
        assert_eq!(spec.transforms[1].kinds(), vec!["namespace"]);
        assert_eq!(
            spec.transforms[2].patch.as_ref().unwrap().ops[0].op,
            PatchOpKind::Replace
        );
    }

    #[test]
    fn unknown_fields_are_errors() {
        let err = serde_json::from_str::<TransformSpec>(
            r#"{"transforms": [{"storageClass": {"from": "a", "too": "b"}}]}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `too`"), "{err}");
        let err =
            serde_json::from_str::<TransformSpec>(r#"{"transforms": [{"storageclass": {}}]}"#)
                .unwrap_err();
        assert!(
            err.to_string().contains("unknown field `storageclass`"),
            "{err}"
        );
    }
}
