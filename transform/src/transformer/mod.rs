//! Applying sanitising and rules to a set of objects, recording which rule did what.
//!
//! Each object goes through sanitising and the rules on its own ([`Transformer::transform_one`],
//! in parallel); what needs the whole set is decided after ([`Transformer::settle`]): whether
//! an object's controlling owner is restored too, and whether a storage class that a rule maps
//! away is still named by anything. Between the two, a caller may keep a smaller form of each
//! object (its YAML, or its place in the restore order) instead of the object itself.

mod release;
mod settle;

use crate::helm;
use crate::patch;
use crate::rules::storage_class;
use crate::rules::{group_of, kind_of, Pointer};
use crate::sanitize::{self, ControllingOwner, SanitizeOptions};
use crate::spec::{Action, CompiledRules, RuleOrigin};
use ferry_protocol::rules::{PatchOp, PatchOpKind};
use ferry_protocol::ObjectRef;
use release::rewrite_release;
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

/// A kept object: by default the transformed object itself, or what a caller made of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TransformedObject<O = Value> {
    /// Position in the input.
    pub index: usize,
    /// The object as it was in the source.
    pub source: ObjectRef,
    pub object: O,
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
enum Fate<O> {
    Kept(TransformedObject<O>),
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

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome<O = Value> {
    pub objects: Vec<TransformedObject<O>>,
    pub dropped: Vec<Dropped>,
    pub warnings: Vec<Warning>,
}

impl<O> Default for Outcome<O> {
    fn default() -> Self {
        Outcome {
            objects: Vec::new(),
            dropped: Vec::new(),
            warnings: Vec::new(),
        }
    }
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

/// One object after sanitising and the rules, waiting for [`Transformer::settle`]. Positions
/// (`index`) are given by settle, from the order the pending objects are handed to it.
pub struct Pending<O = Value> {
    uid: Option<String>,
    owner: Option<ControllingOwner>,
    fate: Result<Fate<O>, TransformError>,
    warnings: Vec<Warning>,
    /// The name of this StorageClass, when the object is one (after the rules).
    storage_class: Option<String>,
    /// The storage classes it names (after the rules), when a rule maps classes.
    names_storage_classes: Vec<String>,
}

impl<O> Pending<O> {
    /// Lets go of the record of what changed, for a caller that only needs the outcome.
    pub fn without_changes(mut self) -> Self {
        if let Ok(Fate::Kept(t)) = &mut self.fate {
            t.changes = Vec::new();
        }
        self
    }
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
        // Objects transform independently: in parallel, then gathered in input order (the
        // first failure in that order is the one reported).
        let pending: Vec<Pending> = objects
            .into_par_iter()
            .map(|obj| self.transform_one(obj, |o| o))
            .collect();
        self.settle(pending)
    }

    /// One object through sanitising and every rule; `keep` makes of the transformed object
    /// what the caller holds until [`settle`](Transformer::settle).
    pub fn transform_one<O>(&self, obj: Value, keep: impl FnOnce(Value) -> O) -> Pending<O> {
        let uid = obj
            .ptr("/metadata/uid")
            .and_then(Value::as_str)
            .map(str::to_string);
        let owner = ControllingOwner::of(&obj);
        let mut warnings = Vec::new();
        let mut storage_class = None;
        let mut names_storage_classes = Vec::new();
        let fate = self.rules_on(obj, &mut warnings).map(|fate| match fate {
            Fate::Kept(t) => {
                if self.maps_storage_classes() {
                    let is_class = group_of(&t.object) == "storage.k8s.io"
                        && kind_of(&t.object) == "StorageClass";
                    storage_class = is_class
                        .then(|| t.object.ptr("/metadata/name").and_then(Value::as_str))
                        .flatten()
                        .map(str::to_string);
                    names_storage_classes = crate::references::references(&t.object)
                        .into_iter()
                        .filter(|r| r.kind == "StorageClass")
                        .map(|r| r.name)
                        .collect();
                }
                Fate::Kept(TransformedObject {
                    index: t.index,
                    source: t.source,
                    object: keep(t.object),
                    changes: t.changes,
                })
            }
            Fate::Dropped(d) => Fate::Dropped(d),
        });
        Pending {
            uid,
            owner,
            fate,
            warnings,
            storage_class,
            names_storage_classes,
        }
    }

    fn maps_storage_classes(&self) -> bool {
        self.rules
            .rules
            .iter()
            .any(|r| matches!(r.action, Action::StorageClass { .. }))
    }

    /// Sanitising and the rules, on one object. Positions are left at 0 for `settle` to fill.
    fn rules_on(
        &self,
        mut obj: Value,
        warnings: &mut Vec<Warning>,
    ) -> Result<Fate<Value>, TransformError> {
        let index = 0;
        {
            let source = ObjectRef::from_object(&obj).ok_or(TransformError::Unnamed { index })?;
            if let Some(reason) = sanitize::drop_reason(&obj) {
                let dropped = Dropped {
                    index,
                    source,
                    by: sanitize::SANITIZE.into(),
                    reason,
                };
                return Ok(Fate::Dropped(dropped));
            }
            let mut changes: Vec<Change> = sanitize::sanitize(&mut obj, &self.sanitize)
                .into_iter()
                .map(|description| Change {
                    by: sanitize::SANITIZE.into(),
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
                            return Ok(Fate::Dropped(dropped));
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
            Ok(Fate::Kept(kept))
        }
    }
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
    fn objects_whose_controlling_owner_comes_along_are_left_to_it() {
        let owned_by = |uid: &str| json!([{"kind": "Deployment", "name": "web", "uid": uid, "controller": true}]);
        let objects = vec![
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop", "uid": "d1"}}),
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web-1", "namespace": "shop",
                   "ownerReferences": owned_by("d1")}}),
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "orphan", "namespace": "shop",
                   "ownerReferences": owned_by("gone")}}),
        ];
        // A patch that fails on ReplicaSets: the owned one is dropped before it counts.
        let rules = r#"
transforms:
  - patch:
      match: { kind: ReplicaSet, name: web-1 }
      ops: [{ op: remove, path: /spec/missing }]
"#;
        let out = transformer(rules).transform(&objects).unwrap();
        let kept: Vec<&str> = out.objects.iter().map(|t| t.source.name.as_str()).collect();
        assert_eq!(
            kept,
            ["web", "orphan"],
            "an owner outside the set recreates nothing"
        );
        assert_eq!(out.dropped.len(), 1);
        assert_eq!(
            (out.dropped[0].index, out.dropped[0].by.as_str()),
            (1, "sanitize")
        );
        assert!(out.dropped[0].reason.contains("Deployment web"));
        assert_eq!(out.objects[1].index, 2);

        let keep_owned = Transformer::new(
            compile(&parse_spec("transforms: []").unwrap()).unwrap(),
            SanitizeOptions {
                keep_owned: true,
                ..Default::default()
            },
        );
        assert_eq!(keep_owned.transform(&objects).unwrap().objects.len(), 3);
        let err = transformer(rules)
            .transform(&[objects[1].clone()])
            .unwrap_err();
        assert!(err.to_string().contains("patch.ops[0]"), "{err}");
    }

    #[test]
    fn unnamed_objects_are_refused() {
        let t = transformer("transforms: []\n");
        let err = t.transform(&[json!({"kind": "ConfigMap"})]).unwrap_err();
        assert_eq!(err, TransformError::Unnamed { index: 0 });
    }
}
