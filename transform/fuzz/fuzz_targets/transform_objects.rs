//! Arbitrary objects (JSON or YAML documents) through every kind of rule and the restore order.
#![no_main]
use ferry_transform::documents::parse_documents;
use ferry_transform::sanitize::SanitizeOptions;
use ferry_transform::{compile, parse_spec, Transformer};
use libfuzzer_sys::fuzz_target;

const RULES: &str = r#"
transforms:
  - storageClass: { from: gp2, to: premium-rwo }
  - namespace: { from: shop, to: shop-dr, rewriteDns: true }
  - imageRegistry: { from: registry.eu.example.com, to: registry.us.example.com, customPaths: [{ kind: Cache, paths: [/spec/*/image] }] }
  - patch: { match: { kind: Deployment }, ops: [{ op: test, path: /spec/replicas, value: 1 }, { op: replace, path: /spec/replicas, value: 0 }] }
"#;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(objects) = parse_documents(text, "fuzz") else {
        return;
    };
    let rules = compile(&parse_spec(RULES).expect("valid rules")).expect("valid rules");
    if let Ok(out) = Transformer::new(rules, SanitizeOptions::default()).transform(&objects) {
        let kept: Vec<_> = out.objects.into_iter().map(|o| o.object).collect();
        let _ = ferry_transform::order::restore_order(&kept);
    }
});
