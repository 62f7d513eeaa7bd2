//! Reading objects from text: multi-document YAML (or JSON), with `kind: List` flattened, as
//! `kubectl get -o yaml` and Helm produce them.

use crate::rules::Pointer;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
#[error("{source_name}: document {document}: {message}")]
pub struct DocumentError {
    pub source_name: String,
    /// 1-based, counting `---` separated documents.
    pub document: usize,
    pub message: String,
}

/// Parses every document of `text`; empty documents are skipped, and every object must have
/// `apiVersion`, `kind` and `metadata.name`. Documents are parsed in parallel: a restore point
/// of 100,000 objects is one text, and YAML parsing is most of the time spent on it.
pub fn parse_documents(text: &str, source_name: &str) -> Result<Vec<Value>, DocumentError> {
    parse_documents_into(text, source_name, |obj| obj)
}

/// `parse_documents`, handing each object to `keep` as soon as it is parsed (on the parsing
/// thread) and holding only what `keep` returns: a caller that transforms each object and
/// keeps its YAML, or its place in a restore order, never holds the whole set of objects.
pub fn parse_documents_into<R: Send>(
    text: &str,
    source_name: &str,
    keep: impl Fn(Value) -> R + Sync,
) -> Result<Vec<R>, DocumentError> {
    use rayon::prelude::*;
    let chunks = split_documents(text);
    let parsed: Vec<Result<Vec<R>, DocumentError>> = chunks
        .par_iter()
        .enumerate()
        .map(|(i, chunk)| match parse_document(chunk) {
            Ok(objects) => Ok(objects.into_iter().map(&keep).collect()),
            Err(message) => Err(DocumentError {
                source_name: source_name.to_string(),
                document: i + 1,
                message,
            }),
        })
        .collect();
    let mut out = Vec::with_capacity(chunks.len());
    for objects in parsed {
        out.extend(objects?);
    }
    Ok(out)
}

/// `text` cut at its document markers (`---` at the start of a line, which YAML does not
/// allow inside a document's content). Comments and blank lines before the first marker are
/// no document.
fn split_documents(text: &str) -> Vec<&str> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let is_marker = line == "---"
            || (line.starts_with("---") && line[3..].starts_with([' ', '\t', '\n', '\r']));
        if is_marker && offset > start {
            chunks.push(&text[start..offset]);
            start = offset;
        }
        offset += line.len();
    }
    chunks.push(&text[start..]);
    let blank = |c: &str| {
        c.lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    };
    if chunks
        .first()
        .is_some_and(|c| blank(c) && !c.starts_with("---"))
    {
        chunks.remove(0);
    }
    chunks
}

/// One document's objects (a `kind: List` flattened); an empty document has none.
fn parse_document(text: &str) -> Result<Vec<Value>, String> {
    crate::yaml::check_nesting(text).map_err(|(line, column)| {
        format!(
            "collections nest deeper than {} levels at line {line} column {column}",
            crate::yaml::MAX_NESTING
        )
    })?;
    let mut out = Vec::new();
    // Restore points and `kubectl get -o json` hold JSON documents: read directly, they parse
    // several times faster than through the YAML parser, which reads them the same way.
    if let Some(json) = json_document(text) {
        add_objects(json, &mut out)?;
        return Ok(out);
    }
    // A chunk is one document, but the parser decides: anything it sees as more is read too.
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let value: Value = serde::Deserialize::deserialize(doc).map_err(|e| e.to_string())?;
        add_objects(value, &mut out)?;
    }
    Ok(out)
}

/// The document as JSON, when it is a JSON object after its `---` marker; anything else
/// (YAML, JSON with comments, a parse error) is left to the YAML parser.
fn json_document(text: &str) -> Option<Value> {
    let body = text.strip_prefix("---").unwrap_or(text).trim_start();
    if !body.starts_with('{') {
        return None;
    }
    serde_json::from_str(body).ok()
}

/// One parsed document's objects (`kind: List` flattened), each checked for a name.
fn add_objects(value: Value, out: &mut Vec<Value>) -> Result<(), String> {
    match value {
        Value::Null => return Ok(()),
        Value::Object(_) => {}
        other => return Err(format!("expected an object, found {}", kind_name(&other))),
    }
    let items = if value
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k == "List" || k.ends_with("List"))
        && value.get("items").is_some_and(Value::is_array)
    {
        match value {
            Value::Object(mut m) => match m.remove("items") {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        }
    } else {
        vec![value]
    };
    for (j, item) in items.into_iter().enumerate() {
        for (field, pointer) in [
            ("apiVersion", "/apiVersion"),
            ("kind", "/kind"),
            ("metadata.name", "/metadata/name"),
        ] {
            if item
                .ptr(pointer)
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                return Err(format!("item {j}: {field} is required"));
            }
        }
        out.push(item);
    }
    Ok(())
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Objects as multi-document YAML.
pub fn to_yaml_documents(objects: &[Value]) -> String {
    objects
        .iter()
        .map(crate::yaml::to_string)
        .collect::<Vec<_>>()
        .join("---\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_documents_read_as_the_yaml_parser_reads_them() {
        let json = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","labels":{"on":"yes"}},"data":{"n":"1_000","x":"y"},"binaryData":null,"spec":{"n":1.5,"m":-3,"b":true}}"#;
        let yaml_read: Value = serde_yaml_ng::from_str(json).unwrap();
        for text in [
            json.to_string(),
            format!("---\n{json}\n"),
            format!("--- {json}\n"),
            format!("---\n{json}\n---\n{json}"),
        ] {
            let objs = parse_documents(&text, "in").unwrap();
            assert!(
                !objs.is_empty() && objs.iter().all(|o| *o == yaml_read),
                "{text}"
            );
        }
        // Not JSON, but YAML: flow style without quotes, a comment, a List.
        let text = "--- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}} # flow\n---\n{\"apiVersion\": \"v1\", \"kind\": \"List\", \"items\": [{\"apiVersion\": \"v1\", \"kind\": \"Secret\", \"metadata\": {\"name\": \"b\"}}]}\n";
        let objs = parse_documents(text, "in").unwrap();
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[1]["kind"], "Secret");
        // A JSON document is checked like any other.
        let err = parse_documents(
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{}}"#,
            "in",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("metadata.name is required"),
            "{err}"
        );
    }

    #[test]
    fn multi_documents_and_lists() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\nkind: List\napiVersion: v1\nitems:\n- {apiVersion: v1, kind: Secret, metadata: {name: b}}\n";
        let objs = parse_documents(text, "in.yaml").unwrap();
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[1]["kind"], "Secret");
        let back = parse_documents(&to_yaml_documents(&objs), "out").unwrap();
        assert_eq!(back, objs);
    }

    #[test]
    fn strings_kubectl_would_misread_are_quoted() {
        let objs = vec![serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "flags"}, "data": {"enabled": "on", "count": "1_000", "ratio": "1:20"}})];
        let text = to_yaml_documents(&objs);
        for line in ["enabled: 'on'", "count: '1_000'", "ratio: '1:20'"] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert_eq!(parse_documents(&text, "out").unwrap(), objs);
    }

    #[test]
    fn errors_name_the_document() {
        let err = parse_documents(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n- 1\n",
            "x.yaml",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "x.yaml: document 2: expected an object, found a list"
        );
        let err = parse_documents("kind: ConfigMap\nmetadata: {name: a}\n", "y.yaml").unwrap_err();
        assert_eq!(
            err.to_string(),
            "y.yaml: document 1: item 0: apiVersion is required"
        );
        assert!(parse_documents("a: [", "z.yaml")
            .unwrap_err()
            .to_string()
            .starts_with("z.yaml: document 1:"));
    }
}
