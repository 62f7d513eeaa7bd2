//! Helm release records: decoding, rewriting with the same rules as plain objects, re-encoding
//! so that Helm reads the result as a valid release.
//!
//! Helm 3+ stores each release revision in the release's namespace as a Secret of type
//! `helm.sh/release.v1` named `sh.helm.release.v1.<release>.v<revision>` (or, with the ConfigMap
//! driver, a ConfigMap labelled `owner: helm`), whose `release` key holds
//! base64(gzip(JSON release)). A Secret's `data` base64-encodes that once more. The release
//! JSON keeps every field as Helm wrote it (unknown fields included); only the namespace, the
//! stored manifest (and hook manifests), and values that hold images or storage classes are
//! touched.

use crate::rules::Pointer;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde_json::Value;
use std::io::{Read, Write};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Secret,
    ConfigMap,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("Helm release record: {field}: {message}")]
pub struct HelmError {
    /// Where in the record: `data.release`, `release.manifest`, ...
    pub field: String,
    pub message: String,
}

fn err(field: &str, message: impl Into<String>) -> HelmError {
    HelmError {
        field: field.into(),
        message: message.into(),
    }
}

/// Whether an object is a Helm release record, and of which storage driver.
pub fn record_driver(obj: &Value) -> Option<Driver> {
    let kind = obj.get("kind").and_then(Value::as_str)?;
    let api = obj.get("apiVersion").and_then(Value::as_str)?;
    let owner = obj.ptr("/metadata/labels/owner").and_then(Value::as_str);
    match (api, kind) {
        ("v1", "Secret")
            if obj.get("type").and_then(Value::as_str) == Some("helm.sh/release.v1") =>
        {
            Some(Driver::Secret)
        }
        ("v1", "ConfigMap") if owner == Some("helm") && obj.ptr("/data/release").is_some() => {
            Some(Driver::ConfigMap)
        }
        _ => None,
    }
}

/// The release JSON of a record.
pub fn decode(obj: &Value, driver: Driver) -> Result<Value, HelmError> {
    let stored = obj
        .ptr("/data/release")
        .and_then(Value::as_str)
        .ok_or_else(|| err("data.release", "missing"))?;
    let encoded = match driver {
        Driver::Secret => STANDARD
            .decode(stored)
            .map_err(|e| err("data.release", format!("not base64 (Secret encoding): {e}")))?,
        Driver::ConfigMap => stored.as_bytes().to_vec(),
    };
    let gz = STANDARD
        .decode(&encoded)
        .map_err(|e| err("data.release", format!("not base64 (Helm encoding): {e}")))?;
    // Helm writes gzip; very old records may be plain JSON.
    let json = if gz.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        GzDecoder::new(&gz[..])
            .read_to_end(&mut out)
            .map_err(|e| err("data.release", format!("corrupt gzip: {e}")))?;
        out
    } else {
        gz
    };
    let release: Value = serde_json::from_slice(&json)
        .map_err(|e| err("data.release", format!("not a release JSON: {e}")))?;
    if !release.is_object() || release.get("name").and_then(Value::as_str).is_none() {
        return Err(err("release.name", "missing: not a Helm release"));
    }
    Ok(release)
}

/// Writes a release back into its record, as Helm would.
pub fn encode(obj: &mut Value, driver: Driver, release: &Value) -> Result<(), HelmError> {
    let json = serde_json::to_vec(release).map_err(|e| err("release", e.to_string()))?;
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&json)
        .map_err(|e| err("release", e.to_string()))?;
    let gz = gz.finish().map_err(|e| err("release", e.to_string()))?;
    let helm = STANDARD.encode(gz);
    obj["data"]["release"] = Value::String(match driver {
        Driver::Secret => STANDARD.encode(helm.as_bytes()),
        Driver::ConfigMap => helm,
    });
    Ok(())
}

/// Splits a stored manifest into its documents, keeping each document's leading comment lines
/// (Helm's `# Source: chart/templates/x.yaml`).
fn split_manifest(manifest: &str) -> Vec<(String, String)> {
    let mut docs = Vec::new();
    for chunk in manifest
        .split("\n---")
        .flat_map(|c| c.strip_prefix("---").map(|s| vec![s]).unwrap_or(vec![c]))
    {
        let mut comments = String::new();
        let mut body = String::new();
        for line in chunk.lines() {
            if body.is_empty() && (line.starts_with('#') || line.trim().is_empty()) {
                if line.starts_with('#') {
                    comments.push_str(line);
                    comments.push('\n');
                }
            } else {
                body.push_str(line);
                body.push('\n');
            }
        }
        if !body.trim().is_empty() || !comments.is_empty() {
            docs.push((comments, body));
        }
    }
    docs
}

/// Applies `f` to every object of a manifest; returns the new manifest and what changed.
pub fn rewrite_manifest(
    manifest: &str,
    field: &str,
    f: &mut dyn FnMut(&mut Value) -> Vec<String>,
) -> Result<(String, Vec<String>), HelmError> {
    let mut out = String::new();
    let mut changes = Vec::new();
    for (i, (comments, body)) in split_manifest(manifest).into_iter().enumerate() {
        out.push_str("---\n");
        out.push_str(&comments);
        if body.trim().is_empty() {
            continue;
        }
        crate::yaml::check_nesting(&body).map_err(|(line, column)| {
            err(
                &format!("{field}[{i}]"),
                format!(
                    "collections nest deeper than {} levels at line {line} column {column}",
                    crate::yaml::MAX_NESTING
                ),
            )
        })?;
        let mut obj: Value = serde_yaml_ng::from_str(&body)
            .map_err(|e| err(&format!("{field}[{i}]"), format!("not valid YAML: {e}")))?;
        let described = f(&mut obj);
        if described.is_empty() {
            out.push_str(&body);
        } else {
            let name = obj
                .ptr("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
            changes.extend(
                described
                    .into_iter()
                    .map(|c| format!("{field}: {kind} {name}: {c}")),
            );
            out.push_str(&crate::yaml::to_string(&obj));
        }
    }
    Ok((out, changes))
}

/// Visits the values that name images: `image: <ref>` strings, and `repository`/`registry`
/// strings of maps that look like image settings.
pub fn for_each_image_value(values: &mut Value, at: &str, f: &mut dyn FnMut(&str, &mut String)) {
    match values {
        Value::Object(map) => {
            let image_like = map.get("repository").is_some_and(Value::is_string)
                && (map.contains_key("tag")
                    || map.contains_key("registry")
                    || map.contains_key("digest"));
            let mut handled: &[&str] = &[];
            if image_like {
                let repo = map["repository"].as_str().unwrap_or("").to_string();
                // An empty `registry` means the chart's default (usually Docker Hub): the
                // repository alone is the reference.
                match map
                    .get("registry")
                    .and_then(Value::as_str)
                    .filter(|r| !r.is_empty())
                    .map(str::to_string)
                {
                    // `registry` + `repository` together form the reference: rewrite the pair.
                    Some(registry) => {
                        let mut full = format!("{registry}/{repo}");
                        f(&format!("{at}.registry"), &mut full);
                        if let Some((new_registry, new_repo)) = full.split_once('/') {
                            map.insert("registry".into(), Value::String(new_registry.into()));
                            map.insert("repository".into(), Value::String(new_repo.into()));
                        }
                        handled = &["registry", "repository"];
                    }
                    None => {
                        let mut r = repo;
                        f(&format!("{at}.repository"), &mut r);
                        map.insert("repository".into(), Value::String(r));
                        handled = &["repository"];
                    }
                }
            }
            for (k, v) in map.iter_mut() {
                if handled.contains(&k.as_str()) {
                    continue;
                }
                let here = format!("{at}.{k}");
                match (k.as_str(), v) {
                    ("image", Value::String(s)) => f(&here, s),
                    (_, v) => for_each_image_value(v, &here, f),
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                for_each_image_value(v, &format!("{at}[{i}]"), f);
            }
        }
        _ => {}
    }
}

/// Visits `storageClass`/`storageClassName` string values.
pub fn for_each_storage_class_value(
    values: &mut Value,
    at: &str,
    f: &mut dyn FnMut(&str, &mut String),
) {
    match values {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let here = format!("{at}.{k}");
                match (k.as_str(), v) {
                    ("storageClass" | "storageClassName", Value::String(s)) => f(&here, s),
                    (_, v) => for_each_storage_class_value(v, &here, f),
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                for_each_storage_class_value(v, &format!("{at}[{i}]"), f);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(release: &Value, driver: Driver) -> Value {
        let mut obj = match driver {
            Driver::Secret => {
                json!({"apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
                                     "metadata": {"name": "sh.helm.release.v1.web.v1", "labels": {"owner": "helm"}}, "data": {}})
            }
            Driver::ConfigMap => json!({"apiVersion": "v1", "kind": "ConfigMap",
                                        "metadata": {"name": "sh.helm.release.v1.web.v1", "labels": {"owner": "helm"}}, "data": {"release": ""}}),
        };
        encode(&mut obj, driver, release).unwrap();
        obj
    }

    #[test]
    fn round_trips_both_drivers() {
        let release = json!({"name": "web", "namespace": "shop", "version": 1, "manifest": "---\n# Source: a\nkind: X\n", "future_field": [1, 2]});
        for driver in [Driver::Secret, Driver::ConfigMap] {
            let obj = record(&release, driver);
            assert_eq!(record_driver(&obj), Some(driver));
            assert_eq!(decode(&obj, driver).unwrap(), release);
        }
    }

    #[test]
    fn corrupt_records_say_what_is_wrong() {
        let mut obj = record(&json!({"name": "web"}), Driver::Secret);
        obj["data"]["release"] = json!("%%%");
        assert_eq!(
            decode(&obj, Driver::Secret).unwrap_err().field,
            "data.release"
        );
        obj["data"]["release"] = json!(STANDARD.encode(STANDARD.encode([0x1f, 0x8b, 0, 1, 2])));
        assert!(decode(&obj, Driver::Secret)
            .unwrap_err()
            .message
            .contains("corrupt gzip"));
        obj["data"]["release"] = json!(STANDARD.encode(STANDARD.encode(b"{\"no\": \"name\"}")));
        assert_eq!(
            decode(&obj, Driver::Secret).unwrap_err().field,
            "release.name"
        );
    }

    #[test]
    fn manifests_keep_source_comments() {
        let manifest = "---\n# Source: webapp/templates/pvc.yaml\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: d\nspec:\n  storageClassName: gp2\n\n---\n# Source: webapp/templates/cm.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n";
        let (out, changes) = rewrite_manifest(manifest, "release.manifest", &mut |o| {
            crate::rules::storage_class::apply(o, "gp2", "premium-rwo")
        })
        .unwrap();
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert!(
            out.contains("# Source: webapp/templates/pvc.yaml\n")
                && out.contains("storageClassName: premium-rwo"),
            "{out}"
        );
        assert!(
            out.contains("# Source: webapp/templates/cm.yaml\napiVersion: v1\nkind: ConfigMap"),
            "unchanged documents stay as written:\n{out}"
        );
    }

    #[test]
    fn image_values() {
        let mut v = json!({"image": {"registry": "registry.eu.example.com", "repository": "shop/web", "tag": "1"},
                           "sidecar": {"image": "registry.eu.example.com/s:1"},
                           "other": {"repository": "not-an-image"}});
        let mut seen = Vec::new();
        for_each_image_value(&mut v, "values", &mut |at, s| {
            seen.push(at.to_string());
            *s = s.replace("registry.eu.example.com", "registry.us.example.com");
        });
        assert_eq!(seen, ["values.image.registry", "values.sidecar.image"]);
        assert_eq!(v["image"]["registry"], "registry.us.example.com");
        assert_eq!(v["image"]["repository"], "shop/web");
        assert_eq!(v["other"]["repository"], "not-an-image");
        assert_eq!(v["sidecar"]["image"], "registry.us.example.com/s:1");

        // An empty registry leaves the repository to stand alone, never `hub//x`.
        let mut v = json!({"image": {"registry": "", "repository": "bitnami/redis", "tag": "7"}});
        let mut seen = Vec::new();
        for_each_image_value(&mut v, "values", &mut |at, s| {
            seen.push((at.to_string(), s.clone()));
            *s = format!("mirror.example.com/{s}");
        });
        assert_eq!(
            seen,
            [(
                "values.image.repository".to_string(),
                "bitnami/redis".to_string()
            )]
        );
        assert_eq!(v["image"]["registry"], "");
        assert_eq!(v["image"]["repository"], "mirror.example.com/bitnami/redis");
    }
}
