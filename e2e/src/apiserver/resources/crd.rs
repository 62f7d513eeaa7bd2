//! Resource types defined by CustomResourceDefinitions.

use super::{PrinterColumn, ResourceType, ScalePaths};
use serde_json::{json, Value};

/// Errors in a CustomResourceDefinition that stop it from being served.
pub fn resource_type_from_crd(crd: &Value) -> Result<ResourceType, String> {
    let spec = crd.get("spec").ok_or("spec: Required value")?;
    let group = spec
        .get("group")
        .and_then(Value::as_str)
        .filter(|g| !g.is_empty())
        .ok_or("spec.group: Required value")?;
    let names = spec.get("names").ok_or("spec.names: Required value")?;
    let name_field = |field: &str| names.get(field).and_then(Value::as_str).map(str::to_string);
    let plural = name_field("plural").ok_or("spec.names.plural: Required value")?;
    let kind = name_field("kind").ok_or("spec.names.kind: Required value")?;
    let expected_name = format!("{plural}.{group}");
    let name = crd
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if name != expected_name {
        return Err(format!(
            "metadata.name: Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group ({expected_name:?})"
        ));
    }
    let scope = spec
        .get("scope")
        .and_then(Value::as_str)
        .ok_or("spec.scope: Required value")?;
    let namespaced = match scope {
        "Namespaced" => true,
        "Cluster" => false,
        other => {
            return Err(format!(
                "spec.scope: Unsupported value: {other:?}: supported values: \"Cluster\", \"Namespaced\""
            ))
        }
    };
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .filter(|v| !v.is_empty())
        .ok_or("spec.versions: Required value")?;
    let mut served = Vec::new();
    let mut storage = None;
    let mut status = false;
    let mut scale = None;
    let mut printer_columns = Vec::new();
    for (i, v) in versions.iter().enumerate() {
        let vname = v
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("spec.versions[{i}].name: Required value"))?;
        if v.get("served").and_then(Value::as_bool).unwrap_or(false) {
            served.push(vname.to_string());
        }
        if v.get("storage").and_then(Value::as_bool).unwrap_or(false) {
            if storage.is_some() {
                return Err("spec.versions: Invalid value: must have exactly one version marked as storage version".into());
            }
            storage = Some(vname.to_string());
        }
        // Subresources may differ per version; the stand-in serves the union, which is what
        // matters for a tool that reads and writes objects.
        if let Some(sub) = v.get("subresources") {
            status |= sub.get("status").is_some();
            if let Some(s) = sub.get("scale") {
                scale = Some(ScalePaths {
                    spec_replicas: s
                        .get("specReplicasPath")
                        .and_then(Value::as_str)
                        .unwrap_or(".spec.replicas")
                        .into(),
                    status_replicas: s
                        .get("statusReplicasPath")
                        .and_then(Value::as_str)
                        .unwrap_or(".status.replicas")
                        .into(),
                    label_selector: s
                        .get("labelSelectorPath")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                });
            }
        }
        if printer_columns.is_empty() {
            for c in v
                .get("additionalPrinterColumns")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                printer_columns.push(PrinterColumn {
                    name: c.get("name").and_then(Value::as_str).unwrap_or("").into(),
                    type_: c
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("string")
                        .into(),
                    json_path: c
                        .get("jsonPath")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .into(),
                    description: c
                        .get("description")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .into(),
                    priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                });
            }
        }
    }
    let storage_version = storage.ok_or(
        "spec.versions: Invalid value: must have exactly one version marked as storage version",
    )?;
    let singular = name_field("singular").unwrap_or_else(|| kind.to_ascii_lowercase());
    let list_kind = name_field("listKind").unwrap_or_else(|| format!("{kind}List"));
    let strings = |field: &str| ferry_transform::rules::strings_at(names, &format!("/{field}/*"));
    Ok(ResourceType {
        group: group.into(),
        versions: served,
        storage_version,
        kind,
        list_kind,
        plural,
        singular,
        short_names: strings("shortNames"),
        categories: strings("categories"),
        namespaced,
        status,
        scale,
        printer_columns,
        custom: true,
        has_generation: true,
    })
}

/// The status a CRD gets once the stand-in serves it.
pub fn established_crd_status(t: &ResourceType, now: &str) -> Value {
    let condition = |type_: &str, reason: &str, message: &str| {
        json!({"type": type_, "status": "True", "lastTransitionTime": now,
               "reason": reason, "message": message})
    };
    json!({
        "acceptedNames": {
            "kind": t.kind, "listKind": t.list_kind, "plural": t.plural,
            "singular": t.singular, "shortNames": t.short_names, "categories": t.categories,
        },
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "storedVersions": [t.storage_version],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crd_errors_name_the_field() {
        let crd = json!({"metadata": {"name": "caches.example.com"},
                         "spec": {"group": "example.com", "names": {"plural": "caches", "kind": "Cache"},
                                  "scope": "Galaxy", "versions": [{"name": "v1", "served": true, "storage": true}]}});
        let err = resource_type_from_crd(&crd).unwrap_err();
        assert!(err.starts_with("spec.scope: Unsupported value"), "{err}");
        let crd = json!({"metadata": {"name": "wrong"},
                         "spec": {"group": "example.com", "names": {"plural": "caches", "kind": "Cache"},
                                  "scope": "Namespaced", "versions": [{"name": "v1", "served": true, "storage": true}]}});
        assert!(resource_type_from_crd(&crd)
            .unwrap_err()
            .starts_with("metadata.name"));
    }
}
