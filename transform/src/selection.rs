//! Checking an application selection before anything runs: the hub refuses a bad one when the
//! operation is started, the spoke again before it reads the cluster.

use crate::selector::LabelSelector;
use ferry_protocol::selection::Selection;

/// A field of the selection and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SelectionError {
    pub field: String,
    pub message: String,
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Checks `selection`, naming fields under `field` (`spec.migrate.selection`).
pub fn validate(selection: &Selection, field: &str) -> Result<(), SelectionError> {
    let err = |f: String, m: String| {
        Err(SelectionError {
            field: f,
            message: m,
        })
    };
    if selection.is_empty() {
        return err(
            field.to_string(),
            "selects nothing: give namespaces, a Helm release or an Operator resource".into(),
        );
    }
    for (i, ns) in selection.namespaces.iter().enumerate() {
        if !is_dns_label(ns) {
            return err(
                format!("{field}.namespaces[{i}]"),
                format!("{ns:?} is not a namespace name"),
            );
        }
    }
    if let Some(s) = &selection.label_selector {
        if let Err(e) = LabelSelector::parse(s) {
            return err(format!("{field}.labelSelector"), e);
        }
    }
    if let Some(h) = &selection.helm_release {
        if h.name.is_empty() || h.name.len() > 53 {
            return err(
                format!("{field}.helmRelease.name"),
                format!("{:?} is not a Helm release name", h.name),
            );
        }
        if !is_dns_label(&h.namespace) {
            return err(
                format!("{field}.helmRelease.namespace"),
                format!("{:?} is not a namespace name", h.namespace),
            );
        }
    }
    if let Some(o) = &selection.operator_resource {
        let f = |name: &str| format!("{field}.operatorResource.{name}");
        let version = o.api_version.rsplit('/').next().unwrap_or("");
        if version.is_empty() || o.api_version.split('/').count() > 2 || o.api_version.contains(' ')
        {
            return err(
                f("apiVersion"),
                format!(
                    "{:?} is not an apiVersion (write group/version, as `example.com/v1`)",
                    o.api_version
                ),
            );
        }
        if o.kind.is_empty() || !o.kind.chars().all(|c| c.is_ascii_alphanumeric()) {
            return err(f("kind"), format!("{:?} is not a kind", o.kind));
        }
        if !is_dns_label(&o.namespace) {
            return err(
                f("namespace"),
                format!("{:?} is not a namespace name", o.namespace),
            );
        }
        if o.name.is_empty() || o.name.len() > 253 || o.name.contains(['/', ' ']) {
            return err(f("name"), format!("{:?} is not an object name", o.name));
        }
    }
    for (list, which) in [
        (&selection.include_resources, "includeResources"),
        (&selection.exclude_resources, "excludeResources"),
    ] {
        for (i, name) in list.iter().enumerate() {
            if name.is_empty() || name.contains(['/', ' ']) {
                return err(
                    format!("{field}.{which}[{i}]"),
                    format!("{name:?} is not a resource type (write plural.group, as `deployments.apps`)"),
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_protocol::selection::{HelmReleaseSelector, OperatorResourceSelector};

    fn field_of(s: &Selection) -> String {
        validate(s, "selection").unwrap_err().field
    }

    #[test]
    fn names_the_offending_field() {
        let mut s = Selection::default();
        assert_eq!(field_of(&s), "selection");
        s.namespaces = vec!["shop".into(), "Shop".into()];
        assert_eq!(field_of(&s), "selection.namespaces[1]");
        s.namespaces = vec!["shop".into()];
        assert!(validate(&s, "selection").is_ok());
        s.label_selector = Some("app in (web".into());
        assert_eq!(field_of(&s), "selection.labelSelector");
        s.label_selector = Some("app in (web,db),tier!=cache".into());
        assert!(validate(&s, "selection").is_ok());
        s.helm_release = Some(HelmReleaseSelector {
            name: "web".into(),
            namespace: "-bad".into(),
        });
        assert_eq!(field_of(&s), "selection.helmRelease.namespace");
        s.helm_release = None;
        s.exclude_resources = vec!["apps/deployments".into()];
        assert_eq!(field_of(&s), "selection.excludeResources[0]");
        s.exclude_resources.clear();
        let cache =
            |api_version: &str, kind: &str, namespace: &str, name: &str| OperatorResourceSelector {
                api_version: api_version.into(),
                kind: kind.into(),
                namespace: namespace.into(),
                name: name.into(),
            };
        s.operator_resource = Some(cache("example.com/v1", "Cache", "shop", "hot"));
        assert!(validate(&s, "selection").is_ok());
        for (bad, field) in [
            (cache("example.com/", "Cache", "shop", "hot"), "apiVersion"),
            (cache("a/b/c", "Cache", "shop", "hot"), "apiVersion"),
            (cache("example.com/v1", "Ca che", "shop", "hot"), "kind"),
            (cache("example.com/v1", "Cache", "Shop", "hot"), "namespace"),
            (cache("example.com/v1", "Cache", "shop", ""), "name"),
        ] {
            s.operator_resource = Some(bad);
            assert_eq!(field_of(&s), format!("selection.operatorResource.{field}"));
        }
    }
}
