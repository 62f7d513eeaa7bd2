//! Golden messages: every message version ever written must stay readable. Each file under
//! `tests/golden/v<N>/` is a message as that protocol version wrote it; this test decodes each
//! with today's types and checks what it says.

use ferry_protocol::api::{ApiErrorCode, ApiReply, StartOperation};
use ferry_protocol::command::{Cancel, Command, CommandBody, ExistingPolicy};
use ferry_protocol::event::{EventBody, FailureReason, OperationEvent, StepOutput};
use ferry_protocol::hooks::{HookPhase, OnError};
use ferry_protocol::operation::OperationSpec;
use ferry_protocol::spoke::{Heartbeat, Registration};
use ferry_protocol::{Envelope, PROTOCOL_VERSION};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::{json, Value};

fn golden(version: u32, name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/golden/v{version}/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Decodes a golden file and checks that today's encoding of it decodes to the same message.
fn decode<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
    name: &str,
) -> Envelope<T> {
    let e = Envelope::<T>::from_bytes(&golden(1, name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(e.version, 1);
    let again = Envelope::<T>::from_bytes(&e.to_bytes().unwrap()).unwrap();
    assert_eq!(again, e, "{name} re-encoded");
    e
}

#[test]
fn version_1_envelopes_stay_readable() {
    let e = decode::<Value>("envelope.json");
    assert_eq!(e.message_id, "01JEXAMPLE0000000000000001");
    assert_eq!(
        e.correlation_id.as_deref(),
        Some("01JEXAMPLE0000000000000000")
    );
    assert_eq!(e.time, "2026-12-04T16:00:00Z");
    assert_eq!(e.body, json!({"any": "body"}));
    const { assert!(PROTOCOL_VERSION >= 1) };
}

#[test]
fn version_1_spoke_messages_stay_readable() {
    let r = decode::<Registration>("registration.json").body;
    assert_eq!(r.cluster, "source");
    assert_eq!(r.storage_classes[0].name, "fast-eu");
    assert!(r.storage_classes[0].default);
    assert_eq!(r.repository.id, "4f1c0e2a9b");
    let h = decode::<Heartbeat>("heartbeat.json").body;
    assert_eq!(h.started, r.started);
    assert_eq!(h.active_commands, ["op-7.0"]);
}

#[test]
fn version_1_commands_stay_readable() {
    let c = decode::<Command>("command-capture.json");
    assert_eq!(c.message_id, "op-7.0");
    let CommandBody::Capture(capture) = c.body.body else {
        panic!("not a capture: {:?}", c.body.body)
    };
    assert_eq!(capture.selection.namespaces, ["shop"]);
    assert_eq!(capture.selection.helm_release.as_ref().unwrap().name, "web");
    assert_eq!(capture.hooks[0].phase, HookPhase::Pre);
    assert_eq!(capture.hooks[0].on_error, OnError::Fail);
    assert_eq!(capture.hooks[0].timeout_seconds, 20);
    let r = decode::<Command>("command-restore.json").body;
    let CommandBody::Restore(restore) = r.body else {
        panic!("not a restore")
    };
    assert_eq!(restore.existing, ExistingPolicy::Update);
    assert_eq!(
        restore.transforms.transforms[0]
            .namespace
            .as_ref()
            .unwrap()
            .to,
        "shop-dr"
    );
    assert!(restore.volume_data, "defaults to moving data");
    assert_eq!(restore.wait_timeout_seconds, 120);
    let cancel = decode::<Cancel>("cancel.json").body;
    assert_eq!(cancel.operation, "op-7");
}

#[test]
fn version_1_events_stay_readable() {
    let p = decode::<OperationEvent>("event-progress.json");
    assert_eq!(p.correlation_id.as_deref(), Some("op-7.0"));
    let EventBody::Progress(progress) = p.body.body else {
        panic!("not progress")
    };
    assert_eq!((progress.done, progress.total), (1, Some(3)));
    let s = decode::<OperationEvent>("event-captured.json").body;
    assert!(s.body.is_final());
    let EventBody::Succeeded(StepOutput::Captured(report)) = s.body else {
        panic!("not a capture result")
    };
    assert_eq!(report.restore_point.objects, 42);
    assert_eq!(report.kinds["Deployment.apps"], 2);
    let f = decode::<OperationEvent>("event-failed.json").body;
    let EventBody::Failed(failure) = f.body else {
        panic!("not a failure")
    };
    assert_eq!(failure.reason, FailureReason::AlreadyExists);
    assert_eq!(
        failure.object.unwrap().to_string(),
        "apps/v1 Deployment shop-dr/web"
    );
}

#[test]
fn version_1_api_messages_stay_readable() {
    let start = decode::<StartOperation>("api-start-migrate.json").body;
    assert_eq!(start.id.as_deref(), Some("nightly-42"));
    let OperationSpec::Migrate(m) = start.spec else {
        panic!("not a migration")
    };
    assert_eq!((m.from.as_str(), m.to.as_str()), ("source", "target"));
    assert!(!m.dry_run && m.volume_data);
    let reply = decode::<ApiReply<Value>>("api-reply-error.json").body;
    let ApiReply::Error(error) = reply else {
        panic!("not an error")
    };
    assert_eq!(error.code, ApiErrorCode::Invalid);
    assert_eq!(error.field.as_deref(), Some("spec.migrate.to"));
}

#[test]
fn version_1_catalog_messages_stay_readable() {
    let c = decode::<Command>("command-list-restore-points.json").body;
    assert_eq!(c.body.name(), "list-restore-points");
    let e = decode::<OperationEvent>("event-listed.json").body;
    let EventBody::Succeeded(StepOutput::Listed(listed)) = e.body else {
        panic!("not a listing")
    };
    let rp = &listed.restore_points[0];
    assert_eq!(rp.summary.id, "rp-op-7");
    assert_eq!(rp.hooks[0].exit_code, Some(0));
    assert_eq!(
        rp.volumes[0].mode,
        ferry_protocol::restore_point::VolumeMode::Filesystem
    );
    assert_eq!(rp.volumes[0].claim.name, "data-db-0");
    assert_eq!(listed.unreadable.len(), 1);
    let r = decode::<ferry_protocol::api::RebuildCatalog>("api-rebuild.json").body;
    assert_eq!(r.cluster, "source");
}

#[test]
fn every_golden_file_is_checked() {
    // A golden file nobody decodes protects nothing: each must be named by a test above.
    let checked = [
        "v1/api-rebuild.json",
        "v1/api-reply-error.json",
        "v1/api-start-migrate.json",
        "v1/cancel.json",
        "v1/command-capture.json",
        "v1/command-list-restore-points.json",
        "v1/command-restore.json",
        "v1/envelope.json",
        "v1/event-captured.json",
        "v1/event-failed.json",
        "v1/event-listed.json",
        "v1/event-progress.json",
        "v1/heartbeat.json",
        "v1/registration.json",
    ];
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
