//! The JSONPath subset CRD printer columns use: fields (`.a.b`), indices (`[0]`), wildcards
//! (`[*]`) and filters (`[?(@.type=="Ready")]`, also `!=`), as in cert-manager's
//! `.status.conditions[?(@.type=="Ready")].status`.

use serde_json::Value;

/// Every value the path reaches, in order.
pub fn eval(obj: &Value, path: &str) -> Vec<Value> {
    let mut current = vec![obj];
    let mut rest = path.trim().trim_start_matches('{').trim_end_matches('}');
    while !rest.is_empty() {
        let mut next = Vec::new();
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            let field = &after[..end];
            rest = &after[end..];
            if field.is_empty() {
                continue;
            }
            next.extend(current.iter().filter_map(|v| v.get(field)));
        } else if let Some(after) = rest.strip_prefix('[') {
            let Some(end) = closing_bracket(after) else {
                return Vec::new();
            };
            let inside = &after[..end];
            rest = &after[end + 1..];
            for v in &current {
                let items: Vec<&Value> = match v {
                    Value::Array(a) => a.iter().collect(),
                    _ => Vec::new(),
                };
                if inside == "*" {
                    next.extend(items);
                } else if let Some(filter) =
                    inside.strip_prefix("?(").and_then(|f| f.strip_suffix(')'))
                {
                    next.extend(items.into_iter().filter(|item| matches(item, filter)));
                } else if let Ok(i) = inside.parse::<i64>() {
                    let index = if i < 0 { items.len() as i64 + i } else { i };
                    next.extend(
                        usize::try_from(index)
                            .ok()
                            .and_then(|i| items.get(i).copied()),
                    );
                }
            }
        } else {
            return Vec::new();
        }
        current = next;
    }
    current.into_iter().cloned().collect()
}

fn closing_bracket(s: &str) -> Option<usize> {
    let mut depth = 0;
    let mut quote = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[') => depth += 1,
            (None, ']') if depth == 0 => return Some(i),
            (None, ']') => depth -= 1,
            _ => {}
        }
    }
    None
}

/// `@.field op literal`, with `==` or `!=`, and a quoted string or bare literal.
fn matches(item: &Value, filter: &str) -> bool {
    let (op_at, op) = match (filter.find("=="), filter.find("!=")) {
        (Some(i), _) => (i, "=="),
        (None, Some(i)) => (i, "!="),
        _ => return !eval(item, filter.trim().trim_start_matches('@')).is_empty(),
    };
    let left = filter[..op_at].trim().trim_start_matches('@');
    let right = filter[op_at + 2..].trim();
    let literal = right.trim_matches(|c| c == '"' || c == '\'');
    let found = eval(item, left);
    let equal = found.iter().any(|v| match v {
        Value::String(s) => s == literal,
        other => serde_json::from_str::<Value>(literal).ok().as_ref() == Some(other),
    });
    (op == "==") == equal
}

#[cfg(test)]
mod tests {
    use super::eval;
    use serde_json::json;

    #[test]
    fn fields_indices_wildcards_and_filters() {
        let o = json!({"spec": {"size": 3, "items": [{"n": "a"}, {"n": "b"}]},
                       "status": {"conditions": [{"type": "Issuing", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        assert_eq!(eval(&o, ".spec.size"), [json!(3)]);
        assert_eq!(eval(&o, ".spec.items[0].n"), [json!("a")]);
        assert_eq!(eval(&o, ".spec.items[-1].n"), [json!("b")]);
        assert_eq!(eval(&o, ".spec.items[*].n"), [json!("a"), json!("b")]);
        assert_eq!(
            eval(&o, ".status.conditions[?(@.type==\"Ready\")].status"),
            [json!("True")]
        );
        assert_eq!(
            eval(&o, ".status.conditions[?(@.type!='Ready')].type"),
            [json!("Issuing")]
        );
        assert!(eval(&o, ".spec.missing").is_empty());
        assert!(eval(&o, ".spec.items[9]").is_empty());
    }
}
