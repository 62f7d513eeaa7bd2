//! Reading and compiling transform rules. Every problem is reported (not just the first), each
//! naming where the rule is (`transforms[2]`, or `ruleSets.<set>[0]`), its name if it has one,
//! and the field.

use crate::matcher::Matcher;
use crate::rules::image::ImageRewrite;
use crate::rules::namespace::Rename;
use ferry_protocol::rules::{PatchOp, PatchOpKind, Rule, TransformSpec};
use std::fmt;

/// Where a rule was written, for messages and for the preview's "changed by".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleOrigin {
    /// `transforms` or `ruleSets.<name>`.
    pub list: String,
    pub index: usize,
    pub name: Option<String>,
}

impl fmt::Display for RuleOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.list, self.index)?;
        if let Some(n) = &self.name {
            write!(f, " ({n:?})")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {field}: {message}")]
pub struct RuleError {
    pub origin: RuleOrigin,
    /// The field inside the rule, e.g. `imageRegistry.regex` or `patch.ops[1].value`.
    pub field: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("transform rules are not valid YAML or JSON{}: {message}", location.map(|(l, c)| format!(" at line {l}, column {c}")).unwrap_or_default())]
    Parse {
        location: Option<(usize, usize)>,
        message: String,
    },
    #[error("{} invalid transform rule{}:\n  {}", .0.len(), if .0.len() == 1 { "" } else { "s" }, .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n  "))]
    Invalid(Vec<RuleError>),
}

/// Reads a rule document (YAML, or JSON, which is YAML). Unknown fields are errors.
pub fn parse_spec(text: &str) -> Result<TransformSpec, SpecError> {
    crate::yaml::check_nesting(text).map_err(|(line, column)| SpecError::Parse {
        location: Some((line, column)),
        message: format!(
            "collections nest deeper than {} levels",
            crate::yaml::MAX_NESTING
        ),
    })?;
    serde_yaml_ng::from_str(text).map_err(|e| SpecError::Parse {
        location: e.location().map(|l| (l.line(), l.column())),
        message: e.to_string(),
    })
}

/// What a compiled rule does.
#[derive(Debug, Clone)]
pub enum Action {
    StorageClass { from: String, to: String },
    Namespace(Rename),
    Image(ImageRewrite),
    Patch { matcher: Matcher, ops: Vec<PatchOp> },
    Exclude(Matcher),
    Include(Matcher),
}

#[derive(Debug, Clone)]
pub struct CompiledRule {
    pub origin: RuleOrigin,
    pub action: Action,
}

/// Rules ready to apply, in the order they run (rule-set references expanded in place).
#[derive(Debug, Clone, Default)]
pub struct CompiledRules {
    pub rules: Vec<CompiledRule>,
}

/// Validates and compiles a spec, reporting every invalid rule.
pub fn compile(spec: &TransformSpec) -> Result<CompiledRules, SpecError> {
    let mut errors = Vec::new();
    let mut sets = std::collections::BTreeMap::new();
    for (set, rules) in &spec.rule_sets {
        let list = format!("ruleSets.{set}");
        let mut compiled = Vec::new();
        for (index, rule) in rules.iter().enumerate() {
            let origin = RuleOrigin {
                list: list.clone(),
                index,
                name: rule.name.clone(),
            };
            if rule.use_rule_set.is_some() {
                errors.push(RuleError {
                    origin,
                    field: "use".into(),
                    message: "rule sets cannot use other rule sets".into(),
                });
                continue;
            }
            match compile_rule(rule, &origin) {
                Ok(Some(action)) => compiled.push(CompiledRule { origin, action }),
                Ok(None) => {}
                Err(mut e) => errors.append(&mut e),
            }
        }
        sets.insert(set.clone(), compiled);
    }
    let mut rules = Vec::new();
    for (index, rule) in spec.transforms.iter().enumerate() {
        let origin = RuleOrigin {
            list: "transforms".into(),
            index,
            name: rule.name.clone(),
        };
        if let (Some(set), 1) = (&rule.use_rule_set, rule.kinds().len()) {
            match sets.get(set) {
                Some(compiled) => rules.extend(compiled.iter().cloned()),
                None => errors.push(RuleError {
                    origin,
                    field: "use".into(),
                    message: format!(
                        "no rule set named {set:?} (defined: {})",
                        if sets.is_empty() {
                            "none".to_string()
                        } else {
                            sets.keys().cloned().collect::<Vec<_>>().join(", ")
                        }
                    ),
                }),
            }
            continue;
        }
        match compile_rule(rule, &origin) {
            Ok(Some(action)) => rules.push(CompiledRule { origin, action }),
            Ok(None) => {}
            Err(mut e) => errors.append(&mut e),
        }
    }
    if errors.is_empty() {
        Ok(CompiledRules { rules })
    } else {
        Err(SpecError::Invalid(errors))
    }
}

/// A DNS-1123 label: what namespace names must be.
fn dns_label(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a valid name: lowercase letters, digits and '-', at most 63, starting and ending with a letter or digit"
        ))
    }
}

/// A DNS-1123 subdomain: what storage class names must be.
fn dns_subdomain(s: &str) -> Result<(), String> {
    if !s.is_empty() && s.len() <= 253 && s.split('.').all(|l| dns_label(l).is_ok()) {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a valid name: lowercase letters, digits, '-' and '.', at most 253"
        ))
    }
}

fn pointer(s: &str) -> Result<(), String> {
    if s.is_empty() || s.starts_with('/') {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a JSON pointer: it must be empty or start with '/'"
        ))
    }
}

fn compile_rule(rule: &Rule, origin: &RuleOrigin) -> Result<Option<Action>, Vec<RuleError>> {
    let mut errors = Vec::new();
    let mut err = |field: &str, message: String| {
        errors.push(RuleError {
            origin: origin.clone(),
            field: field.to_string(),
            message,
        });
    };
    if rule.name.as_deref() == Some("") {
        err("name", "must not be empty when given".into());
    }
    let kinds = rule.kinds();
    if kinds.len() != 1 {
        let message = if kinds.is_empty() {
            "a rule needs one of storageClass, namespace, imageRegistry, patch, exclude, include, use".to_string()
        } else {
            format!(
                "a rule has exactly one kind, this one has {}",
                kinds.join(", ")
            )
        };
        err("rule", message);
        return Err(errors);
    }
    let action = if let Some(sc) = &rule.storage_class {
        for (field, value) in [("storageClass.from", &sc.from), ("storageClass.to", &sc.to)] {
            if let Err(m) = dns_subdomain(value) {
                err(field, m);
            }
        }
        Action::StorageClass {
            from: sc.from.clone(),
            to: sc.to.clone(),
        }
    } else if let Some(ns) = &rule.namespace {
        for (field, value) in [("namespace.from", &ns.from), ("namespace.to", &ns.to)] {
            if let Err(m) = dns_label(value) {
                err(field, m);
            }
        }
        if ns.from == ns.to {
            err("namespace.to", "is the same as namespace.from".into());
        }
        match Rename::compile(ns) {
            Ok(rename) => Action::Namespace(rename),
            Err((field, message)) => {
                err(&format!("namespace.{field}"), message);
                return Err(errors);
            }
        }
    } else if let Some(img) = &rule.image_registry {
        match ImageRewrite::compile(img) {
            Ok(rw) => Action::Image(rw),
            Err((field, message)) => {
                err(&format!("imageRegistry.{field}"), message);
                return Err(errors);
            }
        }
    } else if let Some(p) = &rule.patch {
        let matcher = Matcher::compile(&p.match_);
        if let Err(e) = &matcher {
            err(&format!("patch.match.{}", e.field), e.message.clone());
        }
        if p.ops.is_empty() {
            err("patch.ops", "needs at least one operation".into());
        }
        for (i, op) in p.ops.iter().enumerate() {
            if let Err(m) = pointer(&op.path) {
                err(&format!("patch.ops[{i}].path"), m);
            }
            let needs_value = matches!(
                op.op,
                PatchOpKind::Add | PatchOpKind::Replace | PatchOpKind::Test
            );
            let needs_from = matches!(op.op, PatchOpKind::Move | PatchOpKind::Copy);
            if needs_value && op.value.is_none() {
                err(
                    &format!("patch.ops[{i}].value"),
                    format!("required for {:?}", op.op).to_lowercase(),
                );
            }
            match (&op.from, needs_from) {
                (None, true) => err(
                    &format!("patch.ops[{i}].from"),
                    format!("required for {:?}", op.op).to_lowercase(),
                ),
                (Some(f), true) => {
                    if let Err(m) = pointer(f) {
                        err(&format!("patch.ops[{i}].from"), m);
                    }
                }
                (Some(_), false) => err(
                    &format!("patch.ops[{i}].from"),
                    format!("not used by {:?}", op.op).to_lowercase(),
                ),
                (None, false) => {}
            }
        }
        match matcher {
            Ok(matcher) => Action::Patch {
                matcher,
                ops: p.ops.clone(),
            },
            Err(_) => return Err(errors),
        }
    } else if let Some(m) = rule.exclude.as_ref().or(rule.include.as_ref()) {
        let field = if rule.exclude.is_some() {
            "exclude"
        } else {
            "include"
        };
        if *m == Default::default() {
            err(
                field,
                "needs at least one condition (an empty match selects everything)".into(),
            );
        }
        match Matcher::compile(m) {
            Ok(matcher) if rule.exclude.is_some() => Action::Exclude(matcher),
            Ok(matcher) => Action::Include(matcher),
            Err(e) => {
                err(&format!("{field}.{}", e.field), e.message);
                return Err(errors);
            }
        }
    } else {
        return Ok(None);
    };
    if errors.is_empty() {
        Ok(Some(action))
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(yaml: &str) -> Vec<String> {
        match compile(&parse_spec(yaml).unwrap()) {
            Err(SpecError::Invalid(e)) => e.iter().map(|e| e.to_string()).collect(),
            other => panic!("expected invalid rules, got {other:?}"),
        }
    }

    #[test]
    fn parses_yaml_and_expands_rule_sets() {
        let spec = parse_spec(
            r#"
ruleSets:
  us:
    - imageRegistry: { from: registry.eu.example.com, to: registry.us.example.com }
transforms:
  - storageClass: { from: gp2, to: premium-rwo }
  - name: dr
    namespace: { from: shop, to: shop-dr }
  - use: us
"#,
        )
        .unwrap();
        let compiled = compile(&spec).unwrap();
        assert_eq!(compiled.rules.len(), 3);
        assert_eq!(compiled.rules[2].origin.to_string(), "ruleSets.us[0]");
        assert_eq!(
            compiled.rules[1].origin.to_string(),
            "transforms[1] (\"dr\")"
        );
    }

    #[test]
    fn parse_errors_say_where() {
        let err = parse_spec("transforms:\n  - storageClass: { from: gp2, too: x }\n").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("line 2") && msg.contains("unknown field `too`"),
            "{msg}"
        );
    }

    #[test]
    fn every_error_names_rule_and_field() {
        let e = errors(
            r#"
transforms:
  - name: two-kinds
    storageClass: { from: a, to: b }
    namespace: { from: c, to: d }
  - namespace: { from: shop, to: Shop_DR }
  - imageRegistry: { regex: "(unclosed", replacement: x }
  - patch:
      match: { name: "/(/" }
      ops: [{ op: add, path: spec/x }]
  - patch:
      ops: [{ op: move, path: /a }, { op: replace, path: /b }]
  - use: missing
  - exclude: {}
  - {}
"#,
        );
        let expected = [
            "transforms[0] (\"two-kinds\"): rule: a rule has exactly one kind, this one has storageClass, namespace",
            "transforms[1]: namespace.to: \"Shop_DR\" is not a valid name",
            "transforms[2]: imageRegistry.regex: invalid regex",
            "transforms[3]: patch.match.name: invalid pattern \"/(/\"",
            "transforms[3]: patch.ops[0].path: \"spec/x\" is not a JSON pointer",
            "transforms[3]: patch.ops[0].value: required for add",
            "transforms[4]: patch.ops[0].from: required for move",
            "transforms[4]: patch.ops[1].value: required for replace",
            "transforms[5]: use: no rule set named \"missing\"",
            "transforms[6]: exclude: needs at least one condition",
            "transforms[7]: rule: a rule needs one of",
        ];
        for want in expected {
            assert!(
                e.iter().any(|got| got.starts_with(want)),
                "missing {want:?} in:\n{}",
                e.join("\n")
            );
        }
        assert_eq!(e.len(), expected.len(), "{}", e.join("\n"));
    }
}
