//! Applying sanitising and rules to a set of objects, recording which rule did what.

use crate::helm;
use crate::patch;
use crate::rules::namespace::Rename;
use crate::rules::storage_class;
use crate::rules::Pointer;
use crate::sanitize::{self, SanitizeOptions};
use crate::spec::{Action, CompiledRules, RuleOrigin};
use ferry_protocol::rules::{PatchOp, PatchOpKind};
use ferry_protocol::ObjectRef;
use serde::Serialize;
use serde_json::Value;

/// One change to one object, and what made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// `sanitize`, or the rule's origin (`transforms[1] ("dr")`).
    pub by: String,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TransformedObject {
    /// Position in the input.
    pub index: usize,
    /// The object as it was in the source.
    pub source: ObjectRef,
    pub object: Value,
    pub changes: Vec<Change>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Dropped {
    /// Position in the input.
    pub index: usize,
    pub source: ObjectRef,
    pub by: String,
    pub reason: String,
}

/// What became of one object.
enum Fate {
    Kept(TransformedObject),
    Dropped(Dropped),
}

/// Something the run went past rather than fail on, for the user to look at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Warning {
    /// Position in the input.
    pub index: usize,
    pub source: ObjectRef,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub objects: Vec<TransformedObject>,
    pub dropped: Vec<Dropped>,
    pub warnings: Vec<Warning>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TransformError {
    #[error("object {index}: cannot be named: apiVersion, kind and metadata.name are required")]
    Unnamed { index: usize },
    #[error("{}: {}: {}: {}", .0.object, .0.origin, .0.field, .0.message)]
    Rule(Box<RuleFailure>),
    #[error("{}: {}", .0.0, .0.1)]
    Helm(Box<(ObjectRef, helm::HelmError)>),
}

/// A rule that could not be applied to an object.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleFailure {
    pub object: ObjectRef,
    pub origin: RuleOrigin,
    /// The field of the rule, e.g. `patch.ops[1]`.
    pub field: String,
    pub message: String,
}

pub struct Transformer {
    rules: CompiledRules,
    sanitize: SanitizeOptions,
}

impl Transformer {
    pub fn new(rules: CompiledRules, sanitize: SanitizeOptions) -> Transformer {
        Transformer { rules, sanitize }
    }

    /// Sanitises, then applies each rule in order to each object. Fails as a whole on the
    /// first object a rule cannot be applied to, so nothing half-transformed is returned.
    pub fn transform(&self, objects: &[Value]) -> Result<Outcome, TransformError> {
        self.transform_owned(objects.to_vec())
    }

    /// `transform`, taking the objects: each is changed in place rather than copied, so a
    /// large set is held once, not twice.
    pub fn transform_owned(&self, objects: Vec<Value>) -> Result<Outcome, TransformError> {
        use rayon::prelude::*;
        let set_uids = sanitize::uids(&objects);
        // Objects transform independently: in parallel, then gathered in input order (the
        // first failure in that order is the one reported).
        let fates: Vec<Result<(Fate, Vec<Warning>), TransformError>> = objects
            .into_par_iter()
            .enumerate()
            .map(|(index, obj)| self.transform_one(index, obj, &set_uids))
            .collect();
        let mut out = Outcome::default();
        for fate in fates {
            let (fate, warnings) = fate?;
            out.warnings.extend(warnings);
            match fate {
                Fate::Kept(o) => out.objects.push(o),
                Fate::Dropped(d) => out.dropped.push(d),
            }
        }
        self.drop_replaced_storage_classes(&mut out);
        Ok(out)
    }

    /// A StorageClass that a `storageClass` rule maps away is left behind when nothing kept
    /// still names it: the target has its own class, and making the source's there would only
    /// offer a class whose provisioner may not exist.
    fn drop_replaced_storage_classes(&self, out: &mut Outcome) {
        for rule in &self.rules.rules {
            let Action::StorageClass { from, to } = &rule.action else {
                continue;
            };
            let is_class = |o: &Value| {
                crate::rules::group_of(o) == "storage.k8s.io"
                    && crate::rules::kind_of(o) == "StorageClass"
                    && o.pointer("/metadata/name").and_then(Value::as_str) == Some(from)
            };
            if !out.objects.iter().any(|t| is_class(&t.object)) {
                continue;
            }
            let still_named = out.objects.iter().any(|t| {
                crate::references::references(&t.object)
                    .iter()
                    .any(|r| r.kind == "StorageClass" && r.name == *from)
            });
            if still_named {
                continue;
            }
            let (gone, kept): (Vec<TransformedObject>, Vec<TransformedObject>) =
                std::mem::take(&mut out.objects)
                    .into_iter()
                    .partition(|t| is_class(&t.object));
            out.objects = kept;
            out.dropped.extend(gone.into_iter().map(|t| Dropped {
                index: t.index,
                source: t.source,
                by: rule.origin.to_string(),
                reason: format!("replaced by storage class {to}; nothing restored names {from}"),
            }));
        }
    }

    /// One object through sanitising and every rule.
    fn transform_one(
        &self,
        index: usize,
        mut obj: Value,
        set_uids: &std::collections::HashSet<String>,
    ) -> Result<(Fate, Vec<Warning>), TransformError> {
        let mut warnings = Vec::new();
        {
            let source = ObjectRef::from_object(&obj).ok_or(TransformError::Unnamed { index })?;
            if let Some(reason) = sanitize::drop_reason(&obj, set_uids, &self.sanitize) {
                let dropped = Dropped {
                    index,
                    source,
                    by: "sanitize".into(),
                    reason,
                };
                return Ok((Fate::Dropped(dropped), warnings));
            }
            let mut changes: Vec<Change> = sanitize::sanitize(&mut obj, &self.sanitize)
                .into_iter()
                .map(|description| Change {
                    by: "sanitize".into(),
                    description,
                })
                .collect();
            // A Helm record that cannot be read or rewritten does not stop the run: it goes
            // on with its release left as it was, and the outcome says so.
            let mut unreadable_release = |error: helm::HelmError| {
                warnings.push(Warning {
                    index,
                    source: source.clone(),
                    message: format!(
                        "Helm release record left unchanged inside (Helm may not manage it in the target): {error}"
                    ),
                });
            };
            let mut release = match helm::record_driver(&obj) {
                Some(driver) => match helm::decode(&obj, driver) {
                    Ok(rel) => Some((driver, rel)),
                    Err(e) => {
                        unreadable_release(e);
                        None
                    }
                },
                None => None,
            };
            for rule in &self.rules.rules {
                let by = rule.origin.to_string();
                if let Some((_, rel)) = release.as_mut() {
                    match rewrite_release(rel, &rule.action) {
                        Ok(described) => {
                            changes.extend(described.into_iter().map(|description| Change {
                                by: by.clone(),
                                description,
                            }))
                        }
                        Err(e) => {
                            unreadable_release(e);
                            changes.retain(|c| !c.description.starts_with("release."));
                            release = None;
                        }
                    }
                }
                let described = match &rule.action {
                    Action::Exclude(m) | Action::Include(m) => {
                        let excluded = matches!(rule.action, Action::Exclude(_));
                        if m.matches(&obj) == excluded {
                            let reason = if excluded { "excluded" } else { "not included" };
                            let dropped = Dropped {
                                index,
                                source,
                                by,
                                reason: reason.into(),
                            };
                            return Ok((Fate::Dropped(dropped), warnings));
                        }
                        Vec::new()
                    }
                    Action::StorageClass { from, to } => storage_class::apply(&mut obj, from, to),
                    Action::Namespace(rename) => rename.apply(&mut obj),
                    Action::Image(rw) => rw.apply(&mut obj),
                    Action::Patch { matcher, ops } if matcher.matches(&obj) => {
                        let failure = |field: String, message: String| {
                            TransformError::Rule(Box::new(RuleFailure {
                                object: source.clone(),
                                origin: rule.origin.clone(),
                                field,
                                message,
                            }))
                        };
                        let changes = apply_patch(&mut obj, ops)
                            .map_err(|(i, message)| failure(format!("patch.ops[{i}]"), message))?;
                        if let Some(why) = not_an_object(&obj) {
                            return Err(failure("patch.ops".into(), why));
                        }
                        changes
                    }
                    Action::Patch { .. } => Vec::new(),
                };
                changes.extend(described.into_iter().map(|description| Change {
                    by: by.clone(),
                    description,
                }));
            }
            if let Some((driver, rel)) = &release {
                if changes
                    .iter()
                    .any(|c| c.description.starts_with("release."))
                {
                    helm::encode(&mut obj, *driver, rel)
                        .map_err(|e| TransformError::Helm(Box::new((source.clone(), e))))?;
                }
            }
            let kept = TransformedObject {
                index,
                source,
                object: obj,
                changes,
            };
            Ok((Fate::Kept(kept), warnings))
        }
    }
}

type ObjectRewrite<'a> = dyn FnMut(&mut Value) -> Vec<String> + 'a;

/// Applies a storage-class, namespace or image rule inside a Helm release: its namespace, the
/// objects of its manifest and hooks, and the values that name images or storage classes.
fn rewrite_release(release: &mut Value, action: &Action) -> Result<Vec<String>, helm::HelmError> {
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

/// Why a patched value is no longer a Kubernetes object, if it is not.
fn not_an_object(v: &Value) -> Option<String> {
    if !v.is_object() {
        return Some("the patched result is not an object".into());
    }
    for (pointer, field) in [
        ("/apiVersion", "apiVersion"),
        ("/kind", "kind"),
        ("/metadata/name", "metadata.name"),
    ] {
        if v.ptr(pointer)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Some(format!("the patched object has no {field}"));
        }
    }
    None
}

/// Applies a rule's operations in order. A failing `test` skips the rest of this rule's
/// operations for this object (and is reported as such); any other failure is an error.
fn apply_patch(obj: &mut Value, ops: &[PatchOp]) -> Result<Vec<String>, (usize, String)> {
    let mut changes = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let as_json = serde_json::to_value(op).map_err(|e| (i, e.to_string()))?;
        // In place: a failure other than `test` fails the whole run, so a half-applied
        // operation is never used, and no per-operation copy of the object is needed.
        match patch::apply_op(obj, &as_json) {
            Ok(()) => {
                if op.op != PatchOpKind::Test {
                    changes.push(format!(
                        "{} {}",
                        format!("{:?}", op.op).to_lowercase(),
                        op.path
                    ));
                }
            }
            Err(_) if op.op == PatchOpKind::Test => {
                changes.push(format!(
                    "test {} did not hold: remaining operations skipped",
                    op.path
                ));
                break;
            }
            Err(e) => return Err((i, e)),
        }
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{compile, parse_spec};
    use serde_json::json;

    fn transformer(yaml: &str) -> Transformer {
        Transformer::new(
            compile(&parse_spec(yaml).unwrap()).unwrap(),
            SanitizeOptions::default(),
        )
    }

    fn app() -> Vec<Value> {
        vec![
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "uid": "n1"}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "web", "namespace": "shop", "uid": "d1", "labels": {"tier": "web"}},
                   "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "web", "image": "registry.eu.example.com/web:1"}]}}}}),
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                   "metadata": {"name": "web-1", "namespace": "shop", "ownerReferences": [{"kind": "Deployment", "name": "web", "uid": "d1", "controller": true}]}}),
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": "shop"},
                   "spec": {"storageClassName": "gp2", "volumeName": "pv-1"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "debug", "namespace": "shop"}}),
        ]
    }

    #[test]
    fn a_storage_class_mapped_away_is_left_behind_unless_still_named() {
        let t = transformer("transforms:\n  - storageClass: { from: gp2, to: premium-rwo }\n");
        let gp2 = json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "gp2"}});
        let mut objects = app();
        objects.push(gp2.clone());
        let out = t.transform(&objects).unwrap();
        assert!(out
            .objects
            .iter()
            .all(|o| o.object["kind"] != "StorageClass"));
        let dropped = out.dropped.iter().find(|d| d.source.name == "gp2").unwrap();
        assert!(dropped.reason.contains("premium-rwo"), "{}", dropped.reason);
        // A later rule that points a claim back at it keeps it.
        let back = transformer(
            "transforms:\n  - storageClass: { from: gp2, to: premium-rwo }\n  - patch:\n      match: { kind: PersistentVolumeClaim }\n      ops: [{ op: replace, path: /spec/storageClassName, value: gp2 }]\n",
        );
        let out = back.transform(&objects).unwrap();
        assert!(
            out.objects
                .iter()
                .any(|o| o.object["kind"] == "StorageClass"),
            "still named: kept"
        );
        let keep = transformer("transforms:\n  - storageClass: { from: premium-rwo, to: gp2 }\n");
        let out = keep.transform(&objects).unwrap();
        assert!(
            out.objects
                .iter()
                .any(|o| o.object["kind"] == "StorageClass"),
            "not the rule's class: kept"
        );
    }

    #[test]
    fn the_three_headline_migrations_and_a_patch() {
        let t = transformer(
            r#"
transforms:
  - storageClass: { from: gp2, to: premium-rwo }
  - name: dr
    namespace: { from: shop, to: shop-dr }
  - imageRegistry: { from: registry.eu.example.com, to: registry.us.example.com }
  - patch:
      match: { group: apps, kind: Deployment, labelSelector: "tier=web" }
      ops: [{ op: replace, path: /spec/replicas, value: 0 }]
  - exclude: { kind: ConfigMap, name: "debug*" }
"#,
        );
        let out = t.transform(&app()).unwrap();
        let names: Vec<String> = out
            .objects
            .iter()
            .map(|o| o.object["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["shop-dr", "web", "data"]);
        assert_eq!(out.dropped.len(), 2);
        assert!(out
            .dropped
            .iter()
            .any(|d| d.source.kind == "ReplicaSet" && d.by == "sanitize"));
        assert!(out
            .dropped
            .iter()
            .any(|d| d.source.name == "debug" && d.by == "transforms[4]"));
        let dep = &out.objects[1];
        assert_eq!(dep.object["metadata"]["namespace"], "shop-dr");
        assert_eq!(dep.object["spec"]["replicas"], 0);
        assert_eq!(
            dep.object["spec"]["template"]["spec"]["containers"][0]["image"],
            "registry.us.example.com/web:1"
        );
        assert!(dep
            .changes
            .iter()
            .any(|c| c.by == "transforms[1] (\"dr\")" && c.description.contains("shop → shop-dr")));
        let pvc = &out.objects[2].object;
        assert_eq!(pvc["spec"]["storageClassName"], "premium-rwo");
        assert!(pvc["spec"].get("volumeName").is_none());
        assert_eq!(
            out.objects[2].source.namespace.as_deref(),
            Some("shop"),
            "source keeps the original reference"
        );
    }

    #[test]
    fn failing_test_skips_the_rest_of_the_rule() {
        let t = transformer(
            r#"
transforms:
  - patch:
      match: { kind: Deployment }
      ops:
        - { op: test, path: /spec/replicas, value: 1 }
        - { op: replace, path: /spec/replicas, value: 9 }
  - patch:
      match: { kind: Deployment }
      ops: [{ op: add, path: /metadata/labels/migrated, value: "yes" }]
"#,
        );
        let out = t.transform(&app()).unwrap();
        let dep = out
            .objects
            .iter()
            .find(|o| o.source.kind == "Deployment")
            .unwrap();
        assert_eq!(dep.object["spec"]["replicas"], 3);
        assert_eq!(dep.object["metadata"]["labels"]["migrated"], "yes");
        assert!(dep
            .changes
            .iter()
            .any(|c| c.description.contains("did not hold")));
    }

    #[test]
    fn patches_must_leave_a_named_object() {
        for (ops, why) in [
            (
                "[{ op: replace, path: '', value: 5 }]",
                "the patched result is not an object",
            ),
            (
                "[{ op: remove, path: /metadata/name }]",
                "the patched object has no metadata.name",
            ),
            (
                "[{ op: replace, path: /kind, value: '' }]",
                "the patched object has no kind",
            ),
        ] {
            let t = transformer(&format!(
                "transforms:\n  - name: bad\n    patch:\n      match: {{ kind: Deployment }}\n      ops: {ops}\n"
            ));
            let err = t.transform(&app()).unwrap_err().to_string();
            assert_eq!(
                err,
                format!("apps/v1 Deployment shop/web: transforms[0] (\"bad\"): patch.ops: {why}")
            );
        }
    }

    #[test]
    fn other_patch_failures_name_object_rule_and_op() {
        let t = transformer(
            "transforms:\n  - name: bad\n    patch:\n      match: { kind: Deployment }\n      ops: [{ op: remove, path: /spec/missing }]\n",
        );
        let err = t.transform(&app()).unwrap_err().to_string();
        assert_eq!(err, "apps/v1 Deployment shop/web: transforms[0] (\"bad\"): patch.ops[0]: remove: path \"/spec/missing\" does not exist");
    }

    #[test]
    fn helm_records_follow_the_rules() {
        let release = json!({"name": "web", "namespace": "shop", "version": 1,
            "manifest": "---\n# Source: webapp/templates/deploy.yaml\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: shop\nspec:\n  template:\n    spec:\n      containers:\n      - name: web\n        image: registry.eu.example.com/web:1\n---\n# Source: webapp/templates/pvc.yaml\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: data\n  namespace: shop\nspec:\n  storageClassName: gp2\n",
            "config": {"image": {"repository": "registry.eu.example.com/web", "tag": "1"}, "persistence": {"storageClass": "gp2"}},
            "chart": {"metadata": {"name": "webapp"}, "values": {"image": {"repository": "registry.eu.example.com/web", "tag": "1"}}}});
        let mut secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
            "metadata": {"name": "sh.helm.release.v1.web.v1", "namespace": "shop", "labels": {"owner": "helm", "name": "web", "version": "1"}},
            "data": {}});
        crate::helm::encode(&mut secret, crate::helm::Driver::Secret, &release).unwrap();
        let t = transformer(
            "transforms:\n  - storageClass: { from: gp2, to: premium-rwo }\n  - namespace: { from: shop, to: shop-dr }\n  - imageRegistry: { from: registry.eu.example.com, to: registry.us.example.com }\n",
        );
        let out = t.transform(&[secret.clone()]).unwrap();
        let rec = &out.objects[0];
        assert_eq!(rec.object["metadata"]["namespace"], "shop-dr");
        let back = crate::helm::decode(&rec.object, crate::helm::Driver::Secret).unwrap();
        assert_eq!(back["namespace"], "shop-dr");
        let manifest = back["manifest"].as_str().unwrap();
        assert!(
            manifest.contains("namespace: shop-dr") && !manifest.contains("namespace: shop\n"),
            "{manifest}"
        );
        assert!(
            manifest.contains("image: registry.us.example.com/web:1")
                && manifest.contains("storageClassName: premium-rwo"),
            "{manifest}"
        );
        assert!(
            manifest.contains("# Source: webapp/templates/pvc.yaml"),
            "{manifest}"
        );
        assert_eq!(
            back["config"]["image"]["repository"],
            "registry.us.example.com/web"
        );
        assert_eq!(back["config"]["persistence"]["storageClass"], "premium-rwo");
        assert_eq!(
            back["chart"]["values"]["image"]["repository"],
            "registry.us.example.com/web"
        );
        assert!(rec
            .changes
            .iter()
            .any(|c| c.description == "release.namespace: shop → shop-dr"));

        // An unreadable record is reported and passed on; the other objects still transform.
        let mut broken = rec.object.clone();
        broken["data"]["release"] = json!("bm90IGd6aXA=");
        let outcome = t.transform(&[broken.clone(), secret]).unwrap();
        assert_eq!(outcome.objects.len(), 2);
        assert_eq!(
            outcome.objects[0].object["data"]["release"],
            broken["data"]["release"]
        );
        assert_eq!(outcome.warnings.len(), 1);
        assert_eq!(outcome.warnings[0].index, 0);
        assert!(
            outcome.warnings[0]
                .message
                .starts_with("Helm release record left unchanged inside"),
            "{:?}",
            outcome.warnings
        );
        assert!(outcome.objects[1]
            .changes
            .iter()
            .any(|c| c.description.starts_with("release.")));
    }

    #[test]
    fn unnamed_objects_are_refused() {
        let t = transformer("transforms: []\n");
        let err = t.transform(&[json!({"kind": "ConfigMap"})]).unwrap_err();
        assert_eq!(err, TransformError::Unnamed { index: 0 });
    }
}
