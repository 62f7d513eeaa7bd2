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
    if selection.operator_resource.is_some() {
        return err(
            format!("{field}.operatorResource"),
            "selecting by Operator resource is not supported yet; select its namespace".into(),
        );
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
    use ferry_protocol::selection::HelmReleaseSelector;

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
    }
}
