//! Helm release records: any payload in a release Secret or ConfigMap decodes or fails cleanly.
#![no_main]
use base64::Engine;
use ferry_transform::helm::{decode, Driver};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let helm = base64::engine::general_purpose::STANDARD.encode(data);
    let secret = serde_json::json!({"data": {"release": base64::engine::general_purpose::STANDARD.encode(&helm)}});
    let _ = decode(&secret, Driver::Secret);
    let cm = serde_json::json!({"data": {"release": helm}});
    let _ = decode(&cm, Driver::ConfigMap);
});
