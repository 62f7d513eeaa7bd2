//! Compiled match conditions: which objects a rule applies to.

use crate::rules::Pointer;
use crate::selector::LabelSelector;
use ferry_protocol::rules::Match;
use regex::Regex;
use serde_json::Value;

/// A name or namespace pattern: a glob (`*`, `?`) or, written `/.../`, a regular expression.
#[derive(Debug, Clone)]
pub struct NamePattern(Regex);

impl NamePattern {
    pub fn parse(pattern: &str) -> Result<NamePattern, String> {
        let source = match pattern.strip_prefix('/').and_then(|p| p.strip_suffix('/')) {
            Some(re) if !re.is_empty() => format!("^(?:{re})$"),
            _ => {
                let mut re = String::from("^");
                for c in pattern.chars() {
                    match c {
                        '*' => re.push_str(".*"),
                        '?' => re.push('.'),
                        c => re.push_str(&regex::escape(&c.to_string())),
                    }
                }
                re.push('$');
                re
            }
        };
        Regex::new(&source)
            .map(NamePattern)
            .map_err(|e| format!("invalid pattern {pattern:?}: {e}"))
    }

    pub fn matches(&self, s: &str) -> bool {
        self.0.is_match(s)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Matcher {
    group: Option<String>,
    version: Option<String>,
    kind: Option<String>,
    namespace: Option<NamePattern>,
    name: Option<NamePattern>,
    labels: Option<LabelSelector>,
}

/// A compile error with the field of the `Match` it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchError {
    pub field: &'static str,
    pub message: String,
}

impl Matcher {
    pub fn compile(m: &Match) -> Result<Matcher, MatchError> {
        let pattern = |field: &'static str, p: &Option<String>| {
            p.as_deref()
                .map(NamePattern::parse)
                .transpose()
                .map_err(|message| MatchError { field, message })
        };
        Ok(Matcher {
            group: m.group.clone(),
            version: m.version.clone(),
            kind: m.kind.clone(),
            namespace: pattern("namespace", &m.namespace)?,
            name: pattern("name", &m.name)?,
            labels: m
                .label_selector
                .as_deref()
                .map(LabelSelector::parse)
                .transpose()
                .map_err(|message| MatchError {
                    field: "labelSelector",
                    message,
                })?,
        })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        let metadata = obj.get("metadata");
        let meta = |f: &str| {
            metadata
                .and_then(|m| m.get(f))
                .and_then(Value::as_str)
                .unwrap_or("")
        };
        self.group.as_deref().is_none_or(|g| g == group)
            && self.version.as_deref().is_none_or(|v| v == version)
            && self.kind.as_deref().is_none_or(|k| k == kind)
            && self
                .namespace
                .as_ref()
                .is_none_or(|p| p.matches(meta("namespace")))
            && self.name.as_ref().is_none_or(|p| p.matches(meta("name")))
            && self
                .labels
                .as_ref()
                .is_none_or(|s| s.matches(obj.ptr("/metadata/labels")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn globs_and_regexes() {
        let g = NamePattern::parse("web-*").unwrap();
        assert!(g.matches("web-1") && !g.matches("api-1") && !g.matches("xweb-1"));
        let r = NamePattern::parse("/(web|api)-[0-9]+/").unwrap();
        assert!(r.matches("api-12") && !r.matches("api-x"));
        assert!(NamePattern::parse("/(/").is_err());
        assert!(NamePattern::parse("a.b").unwrap().matches("a.b"));
        assert!(!NamePattern::parse("a.b").unwrap().matches("axb"));
    }

    #[test]
    fn all_conditions_must_hold() {
        let m = Matcher::compile(&Match {
            group: Some("apps".into()),
            kind: Some("Deployment".into()),
            label_selector: Some("tier=web".into()),
            ..Default::default()
        })
        .unwrap();
        let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                           "metadata": {"name": "w", "labels": {"tier": "web"}}});
        assert!(m.matches(&d));
        d["metadata"]["labels"]["tier"] = json!("db");
        assert!(!m.matches(&d));
        let err = Matcher::compile(&Match {
            label_selector: Some("a in b".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(err.field, "labelSelector");
    }
}
