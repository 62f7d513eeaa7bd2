//! Golden messages: every message version ever written must stay readable. Each file under
//! `tests/golden/v<N>/` is a message as that protocol version wrote it; this test decodes each
//! with today's types and checks what it says.

use ferry_protocol::{Envelope, PROTOCOL_VERSION};
use serde_json::{json, Value};

fn golden(version: u32, name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/golden/v{version}/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn version_1_envelopes_stay_readable() {
    let e = Envelope::<Value>::from_bytes(&golden(1, "envelope.json")).unwrap();
    assert_eq!(e.version, 1);
    assert_eq!(e.message_id, "01JEXAMPLE0000000000000001");
    assert_eq!(
        e.correlation_id.as_deref(),
        Some("01JEXAMPLE0000000000000000")
    );
    assert_eq!(e.time, "2026-12-04T16:00:00Z");
    assert_eq!(e.body, json!({"any": "body"}));
    // Re-encoded by today's code, it says the same.
    let again = Envelope::<Value>::from_bytes(&e.to_bytes().unwrap()).unwrap();
    assert_eq!(again, e);
    const { assert!(PROTOCOL_VERSION >= 1) };
}

#[test]
fn every_golden_file_is_checked() {
    // A golden file nobody decodes protects nothing: each must be named by a test above.
    let checked = ["v1/envelope.json"];
    let dir = format!("{}/tests/golden", env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    for version in std::fs::read_dir(&dir).unwrap() {
        let version = version.unwrap();
        for file in std::fs::read_dir(version.path()).unwrap() {
            found.push(format!(
                "{}/{}",
                version.file_name().to_string_lossy(),
                file.unwrap().file_name().to_string_lossy()
            ));
        }
    }
    found.sort();
    assert_eq!(found, checked);
}
