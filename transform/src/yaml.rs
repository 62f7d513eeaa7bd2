//! YAML output that every Kubernetes reader takes back as the same values.
//!
//! kubectl, Helm and client-go read YAML through a YAML 1.1 parser, where unquoted `on`, `no`,
//! `y`, `1_000` or `1:20` are booleans and numbers; YAML 1.2 emitters leave those plain. So this
//! emitter writes a string plain only when it cannot be anything but a string under either
//! version, and quotes everything else.

use serde_json::Value;
use std::fmt::Write;

/// How deep flow collections (`[`, `{`) may nest in input; the YAML parser's own limit is 128.
pub const MAX_NESTING: usize = 100;

/// Refuses text whose flow collections nest deeper than `MAX_NESTING`, in one linear pass:
/// the YAML parser takes quadratic time on such input before it reaches its own limit.
/// Brackets count only where they can open a collection (after `:`, `,`, `-`, `?`, another
/// bracket or at the start of a line), so `image: x[1]` or quoted text never counts.
pub fn check_nesting(text: &str) -> Result<(), (usize, usize)> {
    let mut depth = 0usize;
    for (line_no, line) in text.lines().enumerate() {
        let mut previous = None::<char>;
        let mut quote = None::<char>;
        for (col, c) in line.char_indices() {
            if let Some(q) = quote {
                if c == q {
                    quote = None;
                }
                previous = Some(c);
                continue;
            }
            let structural = matches!(previous, None | Some(':' | ',' | '-' | '?' | '[' | '{'));
            match c {
                '#' if previous.is_none_or(char::is_whitespace) => break,
                '\'' | '"' if structural => quote = Some(c),
                '[' | '{' if structural => {
                    depth += 1;
                    if depth > MAX_NESTING {
                        return Err((line_no + 1, col + 1));
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
            if !c.is_whitespace() {
                previous = Some(c);
            }
        }
    }
    Ok(())
}

/// One YAML document (block style, two-space indents, a final newline).
pub fn to_string(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => map(&mut out, m, 0),
        Value::Array(a) if !a.is_empty() => seq(&mut out, a, 0),
        other => {
            out.push_str(&inline(other, 2));
            out.push('\n');
        }
    }
    out
}

fn map(out: &mut String, m: &serde_json::Map<String, Value>, indent: usize) {
    for (k, v) in m {
        pad(out, indent);
        out.push_str(&scalar(k));
        out.push(':');
        value_after_key(out, v, indent);
    }
}

fn seq(out: &mut String, a: &[Value], indent: usize) {
    for v in a {
        pad(out, indent);
        out.push('-');
        match v {
            Value::Object(m) if !m.is_empty() => {
                // The first entry shares the dash's line; the rest align with it.
                out.push(' ');
                let mut first = String::new();
                map(&mut first, m, indent + 2);
                out.push_str(&first[indent + 2..]);
            }
            Value::Array(inner) if !inner.is_empty() => {
                out.push('\n');
                seq(out, inner, indent + 2);
            }
            other => {
                out.push(' ');
                out.push_str(&inline(other, indent + 2));
                out.push('\n');
            }
        }
    }
}

fn value_after_key(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            map(out, m, indent + 2);
        }
        // Sequences under a key sit at the key's indentation, as kubectl writes them.
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            seq(out, a, indent);
        }
        other => {
            out.push(' ');
            out.push_str(&inline(other, indent + 2));
            out.push('\n');
        }
    }
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

/// A value on the current line: a scalar, `{}`, `[]`, or a literal block.
fn inline(v: &Value, indent: usize) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => literal_block(s, indent).unwrap_or_else(|| scalar(s)),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
    }
}

/// Multi-line text as a `|` block, when the block would read back byte-exact.
fn literal_block(s: &str, indent: usize) -> Option<String> {
    if !s.contains('\n')
        || s.starts_with([' ', '\t', '\n'])
        || s.chars()
            .any(|c| (c.is_control() && c != '\n' && c != '\t') || c == '\u{feff}')
    {
        return None;
    }
    let body = s.trim_end_matches('\n');
    // Trailing whitespace on a line or blank lines at the end are kept only by `|+`, and
    // a line of only spaces is ambiguous with indentation: leave those to quoting.
    if body
        .lines()
        .any(|l| l.ends_with([' ', '\t']) || (l.trim().is_empty() && !l.is_empty()))
    {
        return None;
    }
    let trailing = s.len() - body.len();
    let chomp = match trailing {
        0 => "|-",
        1 => "|",
        _ => "|+",
    };
    let mut out = String::from(chomp);
    for line in body.split('\n') {
        out.push('\n');
        if !line.is_empty() {
            out.extend(std::iter::repeat_n(' ', indent));
            out.push_str(line);
        }
    }
    // The caller ends the last line; `|+` keeps the empty lines after it.
    out.extend(std::iter::repeat_n('\n', trailing.saturating_sub(1)));
    Some(out)
}

/// A string as a plain, single-quoted or double-quoted scalar.
fn scalar(s: &str) -> String {
    if plain_is_safe(s) {
        return s.to_string();
    }
    if s.chars().all(|c| !c.is_control() && c != '\u{feff}') {
        return format!("'{}'", s.replace('\'', "''"));
    }
    // Double quotes with JSON's escapes are valid YAML.
    let mut quoted = String::with_capacity(s.len() + 2);
    quoted.push('"');
    for c in s.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\t' => quoted.push_str("\\t"),
            '\r' => quoted.push_str("\\r"),
            c if c.is_control() || c == '\u{feff}' => {
                let _ = write!(quoted, "\\u{:04x}", c as u32);
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// Words YAML 1.1 or 1.2 reads as null, booleans or special floats.
const RESERVED: &[&str] = &[
    "~", "null", "y", "yes", "n", "no", "true", "false", "on", "off", ".inf", "-.inf", "+.inf",
    ".nan", "=", "<<",
];

fn plain_is_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if RESERVED.contains(&s.to_ascii_lowercase().as_str()) {
        return false;
    }
    // Anything that may start a number, a date or a sexagesimal under YAML 1.1.
    if first.is_ascii_digit()
        || (matches!(first, '-' | '+' | '.')
            && s[1..].starts_with(|c: char| c.is_ascii_digit() || c == '.'))
    {
        return false;
    }
    if "-?:,[]{}#&*!|>'\"%@` \t".contains(first) {
        return false;
    }
    if s.ends_with([' ', '\t', ':']) {
        return false;
    }
    !(s.contains(": ")
        || s.contains(" #")
        || s.chars()
            .any(|c| c.is_control() || c == '\u{feff}' || c == '\u{85}'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn yaml_1_1_lookalikes_are_quoted() {
        for s in [
            "on",
            "Off",
            "YES",
            "no",
            "y",
            "N",
            "true",
            "False",
            "1_000",
            "1:20",
            "2024-01-01",
            "0x1F",
            "012",
            "1e3",
            ".5",
            "+1",
            "-1",
            "~",
            "null",
            "",
            " lead",
            "trail ",
            "a: b",
            "a #b",
            "- x",
            "*ref",
            "&anchor",
            "!tag",
            "%x",
            "@x",
            "`x",
            "=",
            "<<",
            ".inf",
            ".NaN",
            "key:",
            "{x}",
            "[x]",
            "#x",
            "?x",
            "|x",
            ">x",
            "'x",
            "\"x",
        ] {
            let out = to_string(&json!({ s: s }));
            let quoted = format!("'{}'", s.replace('\'', "''"));
            assert_eq!(out, format!("{quoted}: {quoted}\n"), "{s:?}");
        }
        for s in [
            "nginx",
            "registry.example.com/app:1.2",
            "http://x.example.com:80/a",
            "a-b_c.d",
            "x-1",
            "kubernetes.io/name",
        ] {
            assert_eq!(to_string(&json!({ "k": s })), format!("k: {s}\n"));
        }
    }

    #[test]
    fn kubernetes_objects_read_naturally() {
        let v = json!({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": "a", "labels": {"on": "yes"}},
                       "data": {"conf": "line 1\nline 2\n", "empty": "", "list": []},
                       "items": [{"name": "x", "ports": [80, 443]}, "plain", []]});
        assert_eq!(
            to_string(&v),
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  labels:\n    'on': 'yes'\ndata:\n  conf: |\n    line 1\n    line 2\n  empty: ''\n  list: []\nitems:\n- name: x\n  ports:\n  - 80\n  - 443\n- plain\n- []\n"
        );
    }

    #[test]
    fn deep_flow_nesting_is_refused_in_linear_time() {
        let deep = format!("a: {}{}", "[".repeat(200_000), "]".repeat(200_000));
        let started = std::time::Instant::now();
        assert_eq!(check_nesting(&deep), Err((1, 104)));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        let ok = format!(
            "a: {}{}\nb: x[[[[1]\nc: '[[[['\n# [[[[[\n",
            "[".repeat(100),
            "]".repeat(100)
        );
        assert_eq!(check_nesting(&ok), Ok(()));
        let mapped = format!("a: {}1{}", "{b: ".repeat(101), "}".repeat(101));
        assert!(check_nesting(&mapped).is_err());
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "\\PC{0,12}".prop_map(Value::String),
            "[a-z0-9 :#\\-\\n\\t'\"]{0,16}".prop_map(Value::String),
            prop::sample::select(vec![
                "on", "no", "1_000", "1:20", "0x10", "\n", "a\n\n", " \n", "x \ny"
            ])
            .prop_map(|s| Value::String(s.into())),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map("[a-zA-Z0-9:_ .-]{0,8}", inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn output_reads_back_as_the_same_value(v in json_value()) {
            let text = to_string(&v);
            let back: Value = serde_yaml_ng::from_str(&text)
                .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
            prop_assert_eq!(back, v, "{}", text);
        }
    }
}
