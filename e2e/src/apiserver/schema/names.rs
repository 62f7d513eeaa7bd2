//! The name syntaxes Kubernetes validates with, and its messages for each.

pub fn dns1123_label(s: &str) -> Option<String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric());
    (!ok).then(|| {
        if s.len() > 63 {
            "must be no more than 63 characters".into()
        } else {
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')".into()
        }
    })
}

pub fn dns1123_subdomain(s: &str) -> Option<String> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
                && label.starts_with(|c: char| c.is_ascii_alphanumeric())
                && label.ends_with(|c: char| c.is_ascii_alphanumeric())
        });
    (!ok).then(|| {
        if s.len() > 253 {
            "must be no more than 253 characters".into()
        } else {
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".into()
        }
    })
}

pub fn dns1035_label(s: &str) -> Option<String> {
    let ok = dns1123_label(s).is_none() && s.starts_with(|c: char| c.is_ascii_lowercase());
    (!ok).then(|| "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')".into())
}

/// RBAC objects are named by path segments, so `system:aggregate-to-admin` is valid.
pub fn path_segment(s: &str) -> Option<String> {
    if s == "." || s == ".." {
        return Some(format!("may not be '{s}'"));
    }
    s.chars()
        .find(|c| *c == '/' || *c == '%')
        .map(|c| format!("may not contain '{c}'"))
        .or_else(|| {
            s.is_empty()
                .then(|| "name or generateName is required".into())
        })
}

fn label_text(s: &str) -> bool {
    s.bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Label and annotation keys: `[prefix/]name`.
pub fn qualified_name(key: &str) -> Option<String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        if p.is_empty() {
            return Some("prefix part must be non-empty".into());
        }
        if let Some(why) = dns1123_subdomain(p) {
            return Some(format!("prefix part {why}"));
        }
    }
    if name.is_empty() || name.len() > 63 || !label_text(name) {
        return Some(if name.len() > 63 {
            "name part must be no more than 63 characters".into()
        } else {
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".into()
        });
    }
    None
}

pub fn label_value(v: &str) -> Option<String> {
    if v.is_empty() {
        return None;
    }
    if v.len() > 63 {
        return Some("must be no more than 63 characters".into());
    }
    (!label_text(v)).then(|| "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".into())
}

/// Keys of ConfigMap and Secret data (they become file names).
pub fn config_key(k: &str) -> Option<String> {
    let ok = !k.is_empty()
        && k.len() <= 253
        && k != "."
        && k != ".."
        && k.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.');
    (!ok).then(|| "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kubernetes_rules() {
        assert!(dns1123_subdomain("web.example-1").is_none());
        assert!(dns1123_subdomain("Web").is_some());
        assert!(dns1123_subdomain("a..b").is_some());
        assert!(dns1123_subdomain("a.-b").is_some());
        assert!(dns1123_label("a.b").is_some());
        assert!(dns1035_label("1abc").is_some());
        assert!(dns1035_label("abc-1").is_none());
        assert!(path_segment("system:aggregated-metrics-reader").is_none());
        assert!(path_segment("a/b").is_some());
        assert!(qualified_name("app.kubernetes.io/name").is_none());
        assert!(qualified_name("Foo_bar.baz").is_none());
        assert!(qualified_name("a/b/c").is_some());
        assert!(qualified_name("-x").is_some());
        assert!(qualified_name(&"x".repeat(64)).is_some());
        assert!(label_value("").is_none());
        assert!(label_value("v1.2_3").is_none());
        assert!(label_value("bad value").is_some());
        assert!(config_key("tls.crt").is_none());
        assert!(config_key("a/b").is_some());
    }
}
