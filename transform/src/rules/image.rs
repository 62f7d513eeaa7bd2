//! `imageRegistry`: rewrites image references in every container of Pods and workload templates,
//! and at configured paths of custom resources.

use super::{
    compile_paths, for_each_string_at, group_of, kind_of, pod_spec_pointer, set, KindPointers,
    CONTAINER_LISTS,
};
use ferry_protocol::rules::ImageRegistryRule;
use regex::Regex;
use serde_json::Value;

#[derive(Debug, Clone)]
enum How {
    /// Registry (or registry/path) prefix, matched at a path boundary.
    Prefix {
        from: String,
        to: String,
    },
    Regex {
        re: Regex,
        replacement: String,
    },
}

#[derive(Debug, Clone)]
pub struct ImageRewrite {
    how: How,
    custom_paths: Vec<KindPointers>,
    /// Also container arguments and commands.
    args: bool,
}

/// The names Docker Hub answers to; all of them mean `docker.io`.
const DOCKER_HUB_ALIASES: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/// An image reference in full: Docker Hub images may omit the registry (`nginx:1`,
/// `bitnami/redis`) and its official images the `library/` path, and Docker Hub has several
/// names. A rule written for `docker.io` must reach all of them, and rewrite `nginx` and
/// `docker.io/nginx` alike.
fn normalized(image: &str) -> String {
    let (first, rest) = image.split_once('/').unwrap_or(("", image));
    let has_registry =
        !first.is_empty() && (first.contains('.') || first.contains(':') || first == "localhost");
    let (registry, path) = if has_registry {
        (first, rest)
    } else {
        ("docker.io", image)
    };
    if DOCKER_HUB_ALIASES.contains(&registry) {
        if path.contains('/') {
            format!("docker.io/{path}")
        } else {
            format!("docker.io/library/{path}")
        }
    } else {
        format!("{registry}/{path}")
    }
}

/// A rule's `from` with Docker Hub's other names folded into `docker.io`.
fn normalized_prefix(from: &str) -> String {
    let (first, rest) = from
        .split_once('/')
        .map_or((from, None), |(f, r)| (f, Some(r)));
    let registry = if DOCKER_HUB_ALIASES.contains(&first) {
        "docker.io"
    } else {
        first
    };
    match rest {
        Some(r) => format!("{registry}/{r}"),
        None => registry.to_string(),
    }
}

impl ImageRewrite {
    /// Errors name the field of the rule (`from`, `regex`, `customPaths[0].paths[1]`).
    pub fn compile(rule: &ImageRegistryRule) -> Result<ImageRewrite, (String, String)> {
        let how = match (&rule.from, &rule.to, &rule.regex, &rule.replacement) {
            (Some(from), Some(to), None, None) => {
                let from = from.trim_end_matches('/');
                if from.is_empty() {
                    return Err(("from".into(), "must not be empty".into()));
                }
                let to = to.trim_end_matches('/');
                if to.is_empty() {
                    return Err(("to".into(), "must not be empty".into()));
                }
                How::Prefix {
                    from: from.into(),
                    to: to.into(),
                }
            }
            (None, None, Some(re), Some(replacement)) => How::Regex {
                re: Regex::new(re)
                    .map_err(|e| ("regex".to_string(), format!("invalid regex: {e}")))?,
                replacement: replacement.clone(),
            },
            (Some(_), None, _, _) => return Err(("to".into(), "required with from".into())),
            (None, Some(_), _, _) => return Err(("from".into(), "required with to".into())),
            (None, None, Some(_), None) => {
                return Err(("replacement".into(), "required with regex".into()))
            }
            (None, None, None, Some(_)) => {
                return Err(("regex".into(), "required with replacement".into()))
            }
            (None, None, None, None) => {
                return Err((
                    "from".into(),
                    "give from/to (a registry prefix) or regex/replacement".into(),
                ))
            }
            _ => {
                return Err((
                    "regex".into(),
                    "use either from/to or regex/replacement, not both".into(),
                ))
            }
        };
        let custom_paths = compile_paths(&rule.custom_paths)?;
        Ok(ImageRewrite {
            how,
            custom_paths,
            args: rule.args,
        })
    }

    /// The rewritten reference, or `None` when the rule does not apply to it.
    pub fn rewrite(&self, image: &str) -> Option<String> {
        match &self.how {
            How::Prefix { from, to } => {
                // After a bare registry host, `:` starts a port: `host:5000/app` is another
                // registry. After a path, it starts a tag.
                let from_is_host = !from.contains('/');
                for (candidate, prefix) in [
                    (normalized(image), normalized_prefix(from)),
                    (image.to_string(), from.clone()),
                ] {
                    if let Some(rest) = candidate.strip_prefix(prefix.as_str()) {
                        let boundary = if from_is_host {
                            rest.starts_with('/')
                        } else {
                            rest.is_empty() || rest.starts_with(['/', ':', '@'])
                        };
                        if boundary {
                            return Some(format!("{to}{rest}"));
                        }
                    }
                }
                None
            }
            How::Regex { re, replacement } => re
                .is_match(image)
                .then(|| re.replace(image, replacement.as_str()).into_owned()),
        }
    }

    /// Rewrites every image of the object; returns the changes.
    pub fn apply(&self, obj: &mut Value) -> Vec<String> {
        let mut changes = Vec::new();
        let (group, kind) = (group_of(obj).to_string(), kind_of(obj).to_string());
        let mut pointers: Vec<String> = Vec::new();
        if let Some(spec) = pod_spec_pointer(&group, &kind) {
            for list in CONTAINER_LISTS {
                pointers.push(format!("{spec}/{list}/*/image"));
            }
        }
        for (g, k, paths) in &self.custom_paths {
            if *g == group && *k == kind {
                pointers.extend(paths.iter().cloned());
            }
        }
        for p in pointers {
            for_each_string_at(obj, &p, &mut |at, s| {
                if let Some(new) = self.rewrite(s) {
                    set(at, s, new, &mut changes);
                }
            });
        }
        if let (true, Some(spec)) = (self.args, pod_spec_pointer(&group, &kind)) {
            for list in CONTAINER_LISTS {
                for field in ["args/*", "command/*"] {
                    for_each_string_at(obj, &format!("{spec}/{list}/*/{field}"), &mut |at, s| {
                        // A flag's value (`--x=<image>`) or the whole argument.
                        let (flag, value) = match s.split_once('=') {
                            Some((flag, value)) if flag.starts_with('-') => (Some(flag), value),
                            _ => (None, s.as_str()),
                        };
                        // Only what reads as an image with a registry host: arguments are
                        // free text, and `nginx` alone is more likely a word than an image.
                        if !value.contains('/') || value.contains(char::is_whitespace) {
                            return;
                        }
                        if let Some(image) = self.rewrite(value) {
                            let new = match flag {
                                Some(flag) => format!("{flag}={image}"),
                                None => image,
                            };
                            set(at, s, new, &mut changes);
                        }
                    });
                }
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_protocol::rules::KindPaths;

    fn prefix(from: &str, to: &str) -> ImageRewrite {
        ImageRewrite::compile(&ImageRegistryRule {
            from: Some(from.into()),
            to: Some(to.into()),
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn prefixes_respect_path_boundaries() {
        let r = prefix("registry.eu.example.com", "registry.us.example.com");
        assert_eq!(
            r.rewrite("registry.eu.example.com/shop/web:1.4").as_deref(),
            Some("registry.us.example.com/shop/web:1.4")
        );
        assert_eq!(r.rewrite("registry.eu.example.com.evil/x:1"), None);
        let hub = prefix("docker.io", "mirror.example.com");
        assert_eq!(
            hub.rewrite("nginx:1.27").as_deref(),
            Some("mirror.example.com/library/nginx:1.27")
        );
        assert_eq!(
            hub.rewrite("bitnami/redis@sha256:ab").as_deref(),
            Some("mirror.example.com/bitnami/redis@sha256:ab")
        );
        assert_eq!(hub.rewrite("quay.io/x/y:1"), None);
    }

    #[test]
    fn docker_hub_names_and_ports_are_understood() {
        let hub = prefix("docker.io", "mirror.example.com");
        let expected = Some("mirror.example.com/library/nginx:1".to_string());
        for image in [
            "nginx:1",
            "docker.io/nginx:1",
            "docker.io/library/nginx:1",
            "index.docker.io/nginx:1",
            "registry-1.docker.io/library/nginx:1",
        ] {
            assert_eq!(hub.rewrite(image), expected, "{image}");
        }
        let index = prefix("index.docker.io", "mirror.example.com");
        assert_eq!(index.rewrite("nginx:1"), expected);
        // A registry host is not another registry's host with a port.
        let eu = prefix("registry.eu.example.com", "registry.us.example.com");
        assert_eq!(eu.rewrite("registry.eu.example.com:5000/app:1"), None);
        let with_port = prefix(
            "registry.eu.example.com:5000",
            "registry.us.example.com:5000",
        );
        assert_eq!(
            with_port
                .rewrite("registry.eu.example.com:5000/app:1")
                .as_deref(),
            Some("registry.us.example.com:5000/app:1")
        );
        assert_eq!(with_port.rewrite("registry.eu.example.com/app:1"), None);
        // A repository prefix may be followed by a tag or digest.
        let repo = prefix(
            "registry.eu.example.com/shop/web",
            "registry.us.example.com/web",
        );
        assert_eq!(
            repo.rewrite("registry.eu.example.com/shop/web:2")
                .as_deref(),
            Some("registry.us.example.com/web:2")
        );
    }

    #[test]
    fn regex_with_captures() {
        let r = ImageRewrite::compile(&ImageRegistryRule {
            regex: Some(r"^registry\.(eu|us)\.example\.com/(.*)$".into()),
            replacement: Some("mirror.example.com/$1/$2".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            r.rewrite("registry.eu.example.com/a/b:1").as_deref(),
            Some("mirror.example.com/eu/a/b:1")
        );
        assert_eq!(r.rewrite("other/a:1"), None);
    }

    #[test]
    fn reaches_every_container_list_and_custom_paths() {
        let r = ImageRewrite::compile(&ImageRegistryRule {
            from: Some("old.example.com".into()),
            to: Some("new.example.com".into()),
            custom_paths: vec![KindPaths {
                group: "example.com".into(),
                kind: "Cache".into(),
                paths: vec!["/spec/image".into(), "/spec/sidecars/*/image".into()],
            }],
            ..Default::default()
        })
        .unwrap();
        let mut cj = serde_json::json!({"apiVersion": "batch/v1", "kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": {
            "initContainers": [{"image": "old.example.com/init:1"}],
            "containers": [{"image": "old.example.com/app:1"}, {"image": "keep.example.com/x:1"}]}}}}}});
        let changes = r.apply(&mut cj);
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert_eq!(
            cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][1]["image"],
            "keep.example.com/x:1"
        );
        let mut cr = serde_json::json!({"apiVersion": "example.com/v1", "kind": "Cache",
                                        "spec": {"image": "old.example.com/cache:2", "sidecars": [{"image": "old.example.com/s:1"}]}});
        assert_eq!(r.apply(&mut cr).len(), 2);
        assert_eq!(cr["spec"]["sidecars"][0]["image"], "new.example.com/s:1");
    }

    #[test]
    fn compile_errors_name_the_field() {
        let e = ImageRewrite::compile(&ImageRegistryRule {
            from: Some("a".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(e.0, "to");
        let e = ImageRewrite::compile(&ImageRegistryRule {
            from: Some("a".into()),
            to: Some("b".into()),
            regex: Some("x".into()),
            replacement: Some("y".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.1.contains("not both"));
    }
}
