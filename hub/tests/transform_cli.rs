//! `ferry transform` through the real binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn ferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = ferry(args);
    assert!(
        out.status.success(),
        "ferry {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn preview_shows_diffs_and_plan() {
    let objects = fixture("shop.yaml");
    let rules = fixture("rules.yaml");
    let text = ok(&[
        "transform",
        "preview",
        objects.to_str().unwrap(),
        "--rules",
        rules.to_str().unwrap(),
    ]);
    assert!(text.contains("~ apps/v1 Deployment shop/web (changed by transforms[1] (\"dr-namespace\"), transforms[2], transforms[3])"), "{text}");
    assert!(
        text.contains("+      - image: registry.us.example.com/shop/web:1.4")
            || text.contains("+    image: registry.us.example.com/shop/web:1.4")
            || text.contains("registry.us.example.com/shop/web:1.4"),
        "{text}"
    );
    assert!(text.contains("+  replicas: 0"), "{text}");
    assert!(
        text.contains("- v1 Event shop/web.1 dropped by sanitize"),
        "{text}"
    );

    let json = ok(&[
        "transform",
        "preview",
        "--json",
        objects.to_str().unwrap(),
        "--rules",
        rules.to_str().unwrap(),
    ]);
    let plan: serde_json::Value = serde_json::from_str(&json).unwrap();
    let entries = plan["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 5);
    assert_eq!(entries[3]["target"]["namespace"], "shop-dr");
    assert_eq!(entries[4]["action"], "drop");
}

#[test]
fn apply_and_order() {
    let objects = fixture("shop.yaml");
    let rules = fixture("rules.yaml");
    let applied = ok(&[
        "transform",
        "apply",
        objects.to_str().unwrap(),
        "--rules",
        rules.to_str().unwrap(),
    ]);
    assert!(
        applied.contains("storageClassName: premium-rwo") && applied.contains("namespace: shop-dr"),
        "{applied}"
    );
    assert!(
        applied.contains("DB: db.shop-dr.svc.cluster.local"),
        "DNS rewrite was asked for: {applied}"
    );
    assert!(
        !applied.contains("resourceVersion") && !applied.contains("volumeName"),
        "{applied}"
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), &applied).unwrap();
    let order = ok(&["transform", "order", dir.path().to_str().unwrap()]);
    let lines: Vec<&str> = order
        .lines()
        .filter(|l| {
            l.trim_start()
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit())
        })
        .collect();
    assert!(lines[0].contains("Namespace shop-dr"), "{order}");
    let pos = |needle: &str| lines.iter().position(|l| l.contains(needle)).unwrap();
    assert!(
        pos("ConfigMap shop-dr/web-config") < pos("Deployment shop-dr/web"),
        "{order}"
    );
    assert!(order.contains("[wait: Bound]"), "{order}");
}

#[test]
fn bad_rules_fail_with_rule_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "transforms:\n  - name: oops\n    imageRegistry: { regex: \"(\", replacement: x }\n",
    )
    .unwrap();
    let out = ferry(&[
        "transform",
        "preview",
        fixture("shop.yaml").to_str().unwrap(),
        "--rules",
        bad.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("transforms[0] (\"oops\"): imageRegistry.regex: invalid regex"),
        "{err}"
    );

    std::fs::write(
        &bad,
        "transforms:\n  - storageClass: { from: gp2, to: x, extra: 1 }\n",
    )
    .unwrap();
    let out = ferry(&[
        "transform",
        "apply",
        fixture("shop.yaml").to_str().unwrap(),
        "--rules",
        bad.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("unknown field `extra`") && err.contains("line 2"),
        "{err}"
    );

    let broken = dir.path().join("objects.yaml");
    std::fs::write(&broken, "apiVersion: v1\nkind: ConfigMap\n").unwrap();
    let out = ferry(&["transform", "order", broken.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("document 1: item 0: metadata.name is required"),
        "{err}"
    );
}
