//! Preview: what a set of rules will do, before anything is applied — a per-object unified diff
//! of the YAML, and a machine-readable plan of what is created, changed and dropped, and by
//! which rule.

use crate::transformer::{Change, Outcome};
use ferry_protocol::ObjectRef;
use serde::Serialize;
use serde_json::Value;
use similar::TextDiff;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum PlannedAction {
    /// Created as captured (only sanitised).
    Create,
    /// Created after rules changed it.
    CreateChanged,
    /// Not restored.
    Drop,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanEntry {
    pub source: ObjectRef,
    /// What the target cluster receives (absent for drops).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<ObjectRef>,
    pub action: PlannedAction,
    /// The rules that changed or dropped it (not counting sanitising).
    pub rules: Vec<String>,
    pub changes: Vec<Change>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub entries: Vec<PlanEntry>,
    /// What the run went past: objects it could transform only in part.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<crate::transformer::Warning>,
}

/// The plan, in the order of the input.
pub fn plan(outcome: &Outcome) -> Plan {
    let mut entries: Vec<(usize, PlanEntry)> = Vec::new();
    for o in &outcome.objects {
        let mut rules: Vec<String> = o
            .changes
            .iter()
            .filter(|c| c.by != "sanitize")
            .map(|c| c.by.clone())
            .collect();
        rules.dedup();
        entries.push((
            o.index,
            PlanEntry {
                source: o.source.clone(),
                target: ObjectRef::from_object(&o.object),
                action: if rules.is_empty() {
                    PlannedAction::Create
                } else {
                    PlannedAction::CreateChanged
                },
                rules,
                changes: o.changes.clone(),
                reason: None,
            },
        ));
    }
    for d in &outcome.dropped {
        entries.push((
            d.index,
            PlanEntry {
                source: d.source.clone(),
                target: None,
                action: PlannedAction::Drop,
                rules: if d.by == "sanitize" {
                    Vec::new()
                } else {
                    vec![d.by.clone()]
                },
                changes: Vec::new(),
                reason: Some(d.reason.clone()),
            },
        ));
    }
    entries.sort_by_key(|(i, _)| *i);
    Plan {
        entries: entries.into_iter().map(|(_, e)| e).collect(),
        warnings: outcome.warnings.clone(),
    }
}

fn yaml(v: &Value) -> String {
    crate::yaml::to_string(v)
}

/// A unified diff of one object's YAML before and after.
pub fn unified_diff(before: &Value, after: &Value, label: &str) -> String {
    let (a, b) = (yaml(before), yaml(after));
    TextDiff::from_lines(&a, &b)
        .unified_diff()
        .context_radius(3)
        .header(&format!("{label} (source)"), &format!("{label} (target)"))
        .to_string()
}

/// The human preview: for every input object, what happens to it and the diff.
pub fn preview_text(originals: &[Value], outcome: &Outcome) -> String {
    let mut out = String::new();
    let mut items: Vec<(usize, String)> = Vec::new();
    for o in &outcome.objects {
        let before = originals.get(o.index).cloned().unwrap_or(Value::Null);
        let rules: Vec<&str> = o
            .changes
            .iter()
            .filter(|c| c.by != "sanitize")
            .map(|c| c.by.as_str())
            .collect();
        let head = if rules.is_empty() {
            format!("= {} (sanitised only)\n", o.source)
        } else {
            let mut r = rules.clone();
            r.dedup();
            format!("~ {} (changed by {})\n", o.source, r.join(", "))
        };
        items.push((
            o.index,
            head + &unified_diff(&before, &o.object, &o.source.to_string()),
        ));
    }
    for d in &outcome.dropped {
        items.push((
            d.index,
            format!("- {} dropped by {}: {}\n", d.source, d.by, d.reason),
        ));
    }
    for w in &outcome.warnings {
        items.push((w.index, format!("! {}: {}\n", w.source, w.message)));
    }
    // Stable: an object's warning comes after its diff.
    items.sort_by_key(|(i, _)| *i);
    for (_, text) in items {
        out.push_str(&text);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sanitize::SanitizeOptions;
    use crate::spec::{compile, parse_spec};
    use crate::Transformer;
    use serde_json::json;

    #[test]
    fn plan_and_diff() {
        let objects = vec![
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": "shop", "uid": "1"},
                   "spec": {"storageClassName": "gp2"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "plain", "namespace": "other"}}),
            json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e", "namespace": "shop"}}),
        ];
        let rules = compile(
            &parse_spec(
                "transforms:\n  - name: sc\n    storageClass: { from: gp2, to: premium-rwo }\n",
            )
            .unwrap(),
        )
        .unwrap();
        let outcome = Transformer::new(rules, SanitizeOptions::default())
            .transform(&objects)
            .unwrap();
        let p = plan(&outcome);
        let actions: Vec<PlannedAction> = p.entries.iter().map(|e| e.action).collect();
        assert_eq!(
            actions,
            [
                PlannedAction::CreateChanged,
                PlannedAction::Create,
                PlannedAction::Drop
            ]
        );
        assert_eq!(p.entries[0].rules, ["transforms[0] (\"sc\")"]);
        let as_json = serde_json::to_value(&p).unwrap();
        assert_eq!(as_json["entries"][2]["action"], "drop");
        assert_eq!(as_json["entries"][0]["action"], "createChanged");

        let text = preview_text(&objects, &outcome);
        assert!(
            text.contains(
                "~ v1 PersistentVolumeClaim shop/data (changed by transforms[0] (\"sc\"))"
            ),
            "{text}"
        );
        assert!(
            text.contains("-  storageClassName: gp2\n+  storageClassName: premium-rwo"),
            "{text}"
        );
        assert!(
            text.contains("-  uid: '1'") || text.contains("-  uid: \"1\""),
            "{text}"
        );
        assert!(
            text.contains("= v1 ConfigMap other/plain (sanitised only)"),
            "{text}"
        );
        assert!(
            text.contains("- v1 Event shop/e dropped by sanitize: events are history, not state"),
            "{text}"
        );
    }
}
