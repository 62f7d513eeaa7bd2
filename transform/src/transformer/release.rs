//! Transform rules inside a Helm release record: the release's namespace, the objects of its
//! manifest and hooks, and the chart values that name images or storage classes.

use crate::helm;
use crate::rules::namespace::Rename;
use crate::rules::storage_class;
use crate::spec::Action;
use serde_json::Value;

type ObjectRewrite<'a> = dyn FnMut(&mut Value) -> Vec<String> + 'a;

/// Applies a storage-class, namespace or image rule inside a Helm release: its namespace, the
/// objects of its manifest and hooks, and the values that name images or storage classes.
pub(super) fn rewrite_release(
    release: &mut Value,
    action: &Action,
) -> Result<Vec<String>, helm::HelmError> {
    let mut per_object: Box<ObjectRewrite<'_>> = match action {
        Action::StorageClass { from, to } => {
            Box::new(move |o: &mut Value| storage_class::apply(o, from, to))
        }
        Action::Namespace(rename) => Box::new(move |o: &mut Value| rename.apply(o)),
        Action::Image(rw) => Box::new(move |o: &mut Value| rw.apply(o)),
        _ => return Ok(Vec::new()),
    };
    let mut changes = Vec::new();
    if let Action::Namespace(Rename { from, to, .. }) = action {
        if release.get("namespace").and_then(Value::as_str) == Some(from.as_str()) {
            release["namespace"] = Value::String(to.clone());
            changes.push(format!("release.namespace: {from} → {to}"));
        }
    }
    if let Some(manifest) = release
        .get("manifest")
        .and_then(Value::as_str)
        .map(str::to_string)
    {
        let (new, described) =
            helm::rewrite_manifest(&manifest, "release.manifest", &mut *per_object)?;
        if !described.is_empty() {
            release["manifest"] = Value::String(new);
            changes.extend(described);
        }
    }
    let hooks = release
        .get("hooks")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    for i in 0..hooks {
        let field = format!("release.hooks[{i}].manifest");
        if let Some(manifest) = release["hooks"][i]
            .get("manifest")
            .and_then(Value::as_str)
            .map(str::to_string)
        {
            let (new, described) = helm::rewrite_manifest(&manifest, &field, &mut *per_object)?;
            if !described.is_empty() {
                release["hooks"][i]["manifest"] = Value::String(new);
                changes.extend(described);
            }
        }
    }
    drop(per_object);
    for (pointer, label) in [
        ("/config", "release.config"),
        ("/chart/values", "release.chart.values"),
    ] {
        let Some(values) = release.pointer_mut(pointer) else {
            continue;
        };
        match action {
            Action::Image(rw) => helm::for_each_image_value(values, label, &mut |at, s| {
                if let Some(new) = rw.rewrite(s) {
                    crate::rules::set(at, s, new, &mut changes);
                }
            }),
            Action::StorageClass { from, to } => {
                helm::for_each_storage_class_value(values, label, &mut |at, s| {
                    if s == from {
                        crate::rules::set(at, s, to.clone(), &mut changes);
                    }
                })
            }
            _ => {}
        }
    }
    Ok(changes)
}
