//! Which pods the process kubelet runs: container images mapped to local programs by glob.

use serde_json::Value;
use std::path::{Path, PathBuf};

/// One mapping from container images to a local program.
#[derive(Debug, Clone)]
pub struct ImageProgram {
    /// A glob over the image reference: `*` matches any run of characters, e.g.
    /// `*/cache-operator:*`.
    pub image: String,
    pub program: PathBuf,
}

impl ImageProgram {
    /// Parses `PATTERN=PROGRAM`, the command-line form.
    pub fn parse(s: &str) -> Result<ImageProgram, String> {
        let (image, program) = s
            .split_once('=')
            .ok_or_else(|| format!("image mapping {s:?}: expected IMAGE_GLOB=PROGRAM"))?;
        if image.is_empty() || program.is_empty() {
            return Err(format!("image mapping {s:?}: both sides must be non-empty"));
        }
        Ok(ImageProgram {
            image: image.into(),
            program: program.into(),
        })
    }
}

pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// The program that runs this container, if its image is mapped.
pub fn program_for<'a>(mappings: &'a [ImageProgram], container: &Value) -> Option<&'a Path> {
    let image = container.get("image")?.as_str()?;
    mappings
        .iter()
        .find(|m| glob_match(&m.image, image))
        .map(|m| m.program.as_path())
}

/// Whether the process kubelet (rather than the placeholder kubelet) runs this pod.
pub fn owns(mappings: &[ImageProgram], pod: &Value) -> bool {
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| program_for(mappings, c).is_some()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match(
            "*/cache-operator:*",
            "registry.example.com/acme/cache-operator:1.2"
        ));
        assert!(!glob_match("*/cache-operator:*", "cache-operator:1.2"));
        assert!(glob_match("ferry-spoke*", "ferry-spoke:dev"));
        assert!(glob_match("exact:1", "exact:1"));
        assert!(!glob_match("exact:1", "exact:2"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXcYYb"));
        assert!(ImageProgram::parse("nope").is_err());
        assert_eq!(
            ImageProgram::parse("*/op:*=/bin/op").unwrap().program,
            PathBuf::from("/bin/op")
        );
    }
}
