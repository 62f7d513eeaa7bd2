//! Malformed rules and objects produce clear errors, and nothing panics on arbitrary input.
//!
//! `tests/corpus/{rules,objects}/*.yaml` each start with `# expect: <text>`: the error the file
//! must produce. The same files seed the fuzz targets in `transform/fuzz`.

use ferry_transform::documents::parse_documents;
use ferry_transform::sanitize::SanitizeOptions;
use ferry_transform::{compile, parse_spec, Transformer};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::path::Path;

fn corpus(kind: &str) -> Vec<(String, String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(kind);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let expect = text
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("# expect: "))
                .unwrap_or_else(|| panic!("{} lacks '# expect:'", p.display()))
                .to_string();
            (
                p.file_name().unwrap().to_string_lossy().to_string(),
                text,
                expect,
            )
        })
        .collect()
}

const ALL_RULES: &str = r#"
transforms:
  - storageClass: { from: gp2, to: premium-rwo }
  - namespace: { from: shop, to: shop-dr, rewriteDns: true }
  - imageRegistry: { from: registry.eu.example.com, to: registry.us.example.com, customPaths: [{ group: example.com, kind: Cache, paths: [/spec/image, /spec/*/image] }] }
  - patch: { match: { name: "*" }, ops: [{ op: test, path: /metadata/name, value: x }, { op: add, path: /metadata/labels, value: {} }] }
  - exclude: { kind: Event }
"#;

fn transformer() -> Transformer {
    Transformer::new(
        compile(&parse_spec(ALL_RULES).unwrap()).unwrap(),
        SanitizeOptions::default(),
    )
}

#[test]
fn malformed_rules_say_what_is_wrong() {
    let cases = corpus("rules");
    assert!(cases.len() >= 10);
    for (file, text, expect) in cases {
        let err = parse_spec(&text).and_then(|spec| compile(&spec).map(|_| ()));
        let msg = err
            .expect_err(&format!("{file} must be refused"))
            .to_string();
        assert!(
            msg.contains(&expect),
            "{file}: expected {expect:?} in:\n{msg}"
        );
    }
}

#[test]
fn malformed_objects_say_what_is_wrong() {
    for (file, text, expect) in corpus("objects") {
        // Refused, or (Helm records, which do not stop a run) passed on with a warning.
        let msg = match parse_documents(&text, &file) {
            Err(e) => e.to_string(),
            Ok(objects) => match transformer().transform(&objects) {
                Err(e) => e.to_string(),
                Ok(outcome) if !outcome.warnings.is_empty() => outcome
                    .warnings
                    .iter()
                    .map(|w| format!("{}: {}", w.source, w.message))
                    .collect::<Vec<_>>()
                    .join("\n"),
                Ok(_) => panic!("{file} must be refused or warned about"),
            },
        };
        assert!(
            msg.contains(&expect),
            "{file}: expected {expect:?} in:\n{msg}"
        );
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-z/.:-]{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("shop"),
            Just("gp2"),
            Just("registry.eu.example.com/x:1"),
            Just("db.shop.svc")
        ]
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("spec".to_string()),
                    Just("template".to_string()),
                    Just("containers".to_string()),
                    Just("image".to_string()),
                    Just("namespace".to_string()),
                    Just("storageClassName".to_string()),
                    Just("volumeClaimTemplates".to_string()),
                    Just("subjects".to_string()),
                    Just("env".to_string()),
                    Just("value".to_string()),
                    Just("data".to_string()),
                    Just("release".to_string()),
                    "[a-z]{1,6}"
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_object() -> impl Strategy<Value = Value> {
    let kinds = prop_oneof![
        Just(("v1", "Pod")),
        Just(("apps/v1", "Deployment")),
        Just(("apps/v1", "StatefulSet")),
        Just(("batch/v1", "CronJob")),
        Just(("v1", "PersistentVolumeClaim")),
        Just(("v1", "Secret")),
        Just(("v1", "ConfigMap")),
        Just(("v1", "Service")),
        Just(("rbac.authorization.k8s.io/v1", "RoleBinding")),
        Just(("example.com/v1", "Cache")),
        Just(("v1", "Namespace")),
    ];
    (kinds, arb_json(), arb_json(), any::<bool>()).prop_map(|((api, kind), spec, extra, helm)| {
        let mut o = json!({"apiVersion": api, "kind": kind, "metadata": {"name": "x", "namespace": "shop",
            "ownerReferences": extra.clone(), "labels": {"a": "b"}}, "spec": spec, "subjects": extra.clone(), "data": extra});
        if helm {
            o["type"] = json!("helm.sh/release.v1");
        }
        o
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn transforming_arbitrary_objects_never_panics(objects in prop::collection::vec(arb_object(), 1..6)) {
        let t = transformer();
        if let Ok(out) = t.transform(&objects) {
            let kept: Vec<Value> = out.objects.into_iter().map(|o| o.object).collect();
            let order = ferry_transform::order::restore_order(&kept);
            prop_assert_eq!(order.steps.len(), kept.len());
        }
    }

    #[test]
    fn parsing_arbitrary_rule_text_never_panics(text in "(transforms:|ruleSets:|- |  |[a-zA-Z{}:,\\[\\]\"/*]|\n){0,80}") {
        if let Ok(spec) = parse_spec(&text) {
            let _ = compile(&spec);
        }
    }

    #[test]
    fn decoding_arbitrary_helm_records_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200), gz in any::<bool>()) {
        use base64::Engine;
        let mut payload = bytes.clone();
        if gz {
            payload.splice(0..0, [0x1f, 0x8b, 8, 0]);
        }
        let helm = base64::engine::general_purpose::STANDARD.encode(&payload);
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
            "metadata": {"name": "sh.helm.release.v1.x.v1", "namespace": "shop"},
            "data": {"release": base64::engine::general_purpose::STANDARD.encode(helm)}});
        let _ = transformer().transform(&[secret]);
    }
}
