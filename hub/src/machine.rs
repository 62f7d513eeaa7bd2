//! Operations as state machines, without I/O: what steps an operation has, what command each
//! step sends, and how an event or a lost spoke moves an operation on. The service persists the
//! result of each transition before it acknowledges the event that caused it, and sends the
//! commands a transition asks for.

use ferry_protocol::command::{
    CaptureCommand, Command, CommandBody, RestoreCommand, RestorePointCommand,
};
use ferry_protocol::event::{EventBody, FailureReason, OperationEvent, StepFailure, StepOutput};
use ferry_protocol::operation::{Operation, OperationPhase, OperationSpec, StepState, StepStatus};

/// The message id of a step's command: the same every time it is sent, so JetStream and the
/// spoke recognise a resend.
pub fn command_id(operation: &str, step: usize) -> String {
    format!("{operation}.{step}")
}

/// The restore point a capture in this operation writes: derived from the operation, so a
/// redelivered capture finds it.
pub fn restore_point_id(operation: &str) -> String {
    format!("rp-{operation}")
}

/// A new operation with its steps, none started.
pub fn new_operation(id: &str, spec: OperationSpec, now: &str) -> Operation {
    let step = |name: &str, cluster: &str, n: usize| StepStatus {
        name: name.into(),
        cluster: cluster.into(),
        state: StepState::Pending,
        command: command_id(id, n),
        started: None,
        finished: None,
        progress: None,
        output: None,
        failure: None,
    };
    let (steps, restore_point) = match &spec {
        OperationSpec::Backup(b) => (
            vec![step("capture", &b.cluster, 0)],
            Some(restore_point_id(id)),
        ),
        OperationSpec::Restore(r) => (
            vec![step("restore", &r.cluster, 0)],
            Some(r.restore_point.clone()),
        ),
        OperationSpec::Migrate(m) => (
            vec![step("capture", &m.from, 0), step("restore", &m.to, 1)],
            Some(restore_point_id(id)),
        ),
        // The cluster is filled in by the service from its catalog.
        OperationSpec::DeleteRestorePoint(d) => (
            vec![step("delete-restore-point", "", 0)],
            Some(d.restore_point.clone()),
        ),
        OperationSpec::RebuildCatalog(r) => {
            (vec![step("list-restore-points", &r.cluster, 0)], None)
        }
    };
    Operation {
        id: id.into(),
        spec,
        phase: OperationPhase::Running,
        created: now.into(),
        updated: now.into(),
        steps,
        message: None,
        restore_point,
        rpo_ms: None,
        rto_ms: None,
    }
}

/// The command for step `n` of `op`.
pub fn command_for(op: &Operation, n: usize) -> Command {
    let rp = op.restore_point.clone().unwrap_or_default();
    let body = match (&op.spec, n) {
        (OperationSpec::Backup(b), _) => CommandBody::Capture(Box::new(CaptureCommand {
            restore_point: rp,
            selection: b.selection.clone(),
            hooks: b.hooks.clone(),
            volume_data: b.volume_data,
        })),
        (OperationSpec::Migrate(m), 0) => CommandBody::Capture(Box::new(CaptureCommand {
            restore_point: rp,
            selection: m.selection.clone(),
            hooks: m.hooks.clone(),
            volume_data: m.volume_data,
        })),
        (OperationSpec::Migrate(m), _) => CommandBody::Restore(Box::new(RestoreCommand {
            restore_point: rp,
            transforms: m.transforms.clone(),
            existing: m.existing,
            dry_run: m.dry_run,
            volume_data: m.volume_data,
            wait_timeout_seconds: 120,
        })),
        (OperationSpec::Restore(r), _) => CommandBody::Restore(Box::new(RestoreCommand {
            restore_point: rp,
            transforms: r.transforms.clone(),
            existing: r.existing,
            dry_run: r.dry_run,
            volume_data: r.volume_data,
            wait_timeout_seconds: 120,
        })),
        (OperationSpec::DeleteRestorePoint(_), _) => {
            CommandBody::DeleteRestorePoint(RestorePointCommand { restore_point: rp })
        }
        (OperationSpec::RebuildCatalog(_), _) => {
            CommandBody::ListRestorePoints(ferry_protocol::command::ListRestorePointsCommand {})
        }
    };
    Command {
        operation: op.id.clone(),
        step: n as u32,
        body,
    }
}

/// What the service must do after a transition.
#[derive(Debug, Default, PartialEq)]
pub struct Effects {
    /// The operation changed: persist it and tell watchers.
    pub changed: bool,
    /// Send the command of this step.
    pub dispatch: Option<usize>,
    /// A capture finished: record its restore point in the catalog.
    pub captured: Option<ferry_protocol::event::CaptureReport>,
    /// A repository was listed: these restore points go into the catalog.
    pub listed: Option<ferry_protocol::event::ListReport>,
}

/// The first step to send for a new (or resumed) operation: the first step not finished.
pub fn next_step(op: &Operation) -> Option<usize> {
    if op.phase.is_final() {
        return None;
    }
    op.steps
        .iter()
        .position(|s| s.state != StepState::Succeeded)
        .filter(|&n| op.steps[n].state == StepState::Pending)
}

/// Marks step `n` as sent.
pub fn dispatched(op: &mut Operation, n: usize, now: &str) {
    op.steps[n].state = StepState::Dispatched;
    op.updated = now.into();
}

/// Applies a spoke's event to its operation.
pub fn apply_event(op: &mut Operation, event: &OperationEvent, now: &str) -> Effects {
    let n = event.step as usize;
    let mut effects = Effects::default();
    let Some(step) = op.steps.get_mut(n) else {
        return effects;
    };
    // Only this step's own command counts, and only while the step is open: a late duplicate
    // of a finished step's result changes nothing.
    if step.command != event.command
        || matches!(
            step.state,
            StepState::Succeeded | StepState::Failed | StepState::Cancelled
        )
    {
        return effects;
    }
    effects.changed = true;
    op.updated = now.into();
    match &event.body {
        EventBody::Started => {
            step.state = StepState::Running;
            step.started.get_or_insert_with(|| now.to_string());
        }
        EventBody::Progress(p) => {
            if step.state == StepState::Dispatched {
                step.state = StepState::Running;
            }
            step.progress = Some(p.clone());
        }
        EventBody::Succeeded(output) => {
            step.state = StepState::Succeeded;
            step.finished = Some(now.into());
            step.output = Some(output.clone());
            step.progress = None;
            match output {
                StepOutput::Captured(report) => {
                    op.restore_point = Some(report.restore_point.id.clone());
                    effects.captured = Some(report.clone());
                }
                StepOutput::Listed(report) => effects.listed = Some(report.clone()),
                _ => {}
            }
            if op.phase == OperationPhase::Running {
                match next_step(op) {
                    Some(next) => effects.dispatch = Some(next),
                    None => finish(op, OperationPhase::Succeeded, None, now),
                }
            }
        }
        EventBody::Failed(failure) => {
            step.state = if failure.reason == FailureReason::Cancelled {
                StepState::Cancelled
            } else {
                StepState::Failed
            };
            step.finished = Some(now.into());
            step.failure = Some(failure.clone());
            step.progress = None;
            let name = step.name.clone();
            let cluster = step.cluster.clone();
            if op.phase == OperationPhase::Running {
                let phase = if failure.reason == FailureReason::Cancelled {
                    OperationPhase::Cancelled
                } else {
                    OperationPhase::Failed
                };
                let message = format!("{name} in {cluster}: {}", failure.message);
                finish(op, phase, Some(message), now);
            }
        }
    }
    effects
}

/// Ends an operation; steps that never ran are cancelled.
pub fn finish(op: &mut Operation, phase: OperationPhase, message: Option<String>, now: &str) {
    op.phase = phase;
    op.message = message;
    op.updated = now.into();
    for s in &mut op.steps {
        if s.state == StepState::Pending {
            s.state = StepState::Cancelled;
        }
    }
    if phase == OperationPhase::Succeeded {
        measure_recovery(op);
    }
}

/// RTO: how long the restore step took from when it was sent; RPO: how old the restored data
/// was when the restore finished (its capture's consistency time, else creation time).
fn measure_recovery(op: &mut Operation) {
    let ms = |a: &str, b: &str| -> Option<u64> {
        let a = chrono::DateTime::parse_from_rfc3339(a).ok()?;
        let b = chrono::DateTime::parse_from_rfc3339(b).ok()?;
        u64::try_from((b - a).num_milliseconds()).ok()
    };
    let Some(restore) = op.steps.iter().find(|s| s.name == "restore") else {
        return;
    };
    let (Some(started), Some(finished)) = (&restore.started, &restore.finished) else {
        return;
    };
    op.rto_ms = ms(started, finished);
    let captured = op.steps.iter().find_map(|s| match &s.output {
        Some(StepOutput::Captured(c)) => Some(
            c.restore_point
                .consistent_at
                .clone()
                .unwrap_or(c.restore_point.created.clone()),
        ),
        _ => None,
    });
    if let Some(at) = captured {
        op.rpo_ms = ms(&at, finished);
    }
}

/// Fails the operation's open step on `cluster` because its spoke stopped answering.
pub fn spoke_lost(op: &mut Operation, cluster: &str, why: &str, now: &str) -> bool {
    if op.phase.is_final() {
        return false;
    }
    let Some(step) = op.steps.iter_mut().find(|s| {
        s.cluster == cluster && matches!(s.state, StepState::Dispatched | StepState::Running)
    }) else {
        return false;
    };
    step.state = StepState::Failed;
    step.finished = Some(now.into());
    step.failure = Some(StepFailure {
        reason: FailureReason::SpokeLost,
        message: why.into(),
        object: None,
        field: None,
        retryable: true,
    });
    let message = format!("{} in {cluster}: {why}", step.name);
    finish(op, OperationPhase::Failed, Some(message), now);
    true
}

/// Cancels an operation a client asked to stop; returns the step running on a spoke (which must
/// be told) if there is one.
pub fn cancel(op: &mut Operation, reason: &str, now: &str) -> Option<usize> {
    let running = op
        .steps
        .iter()
        .position(|s| matches!(s.state, StepState::Dispatched | StepState::Running));
    for s in &mut op.steps {
        if matches!(s.state, StepState::Dispatched | StepState::Running) {
            s.state = StepState::Cancelled;
            s.finished = Some(now.into());
        }
    }
    finish(op, OperationPhase::Cancelled, Some(reason.into()), now);
    running
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_protocol::event::{CaptureReport, Progress, RestoreReport};
    use ferry_protocol::operation::MigrateSpec;
    use ferry_protocol::restore_point::RestorePointSummary;

    fn migrate() -> Operation {
        let spec = OperationSpec::Migrate(MigrateSpec {
            from: "a".into(),
            to: "b".into(),
            selection: Default::default(),
            hooks: vec![],
            transforms: Default::default(),
            existing: Default::default(),
            dry_run: false,
            volume_data: false,
        });
        new_operation("op1", spec, "2026-12-04T10:00:00Z")
    }

    fn event(op: &Operation, n: usize, body: EventBody) -> OperationEvent {
        OperationEvent {
            operation: op.id.clone(),
            step: n as u32,
            command: op.steps[n].command.clone(),
            body,
        }
    }

    /// Applies the event step `n`'s spoke would send.
    fn send(op: &mut Operation, n: usize, body: EventBody, now: &str) -> Effects {
        let e = event(op, n, body);
        apply_event(op, &e, now)
    }

    fn captured() -> EventBody {
        EventBody::Succeeded(StepOutput::Captured(CaptureReport {
            restore_point: RestorePointSummary {
                id: "rp-op1".into(),
                created: "2026-12-04T10:00:01Z".into(),
                consistent_at: None,
                cluster: "a".into(),
                snapshot: "s".into(),
                objects: 3,
                volumes: 0,
                volume_bytes: 0,
                stored_bytes: 10,
                operation: Some("op1".into()),
            },
            kinds: Default::default(),
            hooks: vec![],
            volumes: vec![],
            phases: vec![],
            warnings: vec![],
        }))
    }

    fn restored() -> EventBody {
        EventBody::Succeeded(StepOutput::Restored(RestoreReport {
            restore_point: "rp-op1".into(),
            dry_run: false,
            created: 3,
            updated: 0,
            skipped: 0,
            omitted: 0,
            volumes: 0,
            volume_bytes: 0,
            objects: vec![],
            objects_truncated: false,
            phases: vec![],
            warnings: vec![],
        }))
    }

    #[test]
    fn a_migration_runs_capture_then_restore_and_measures_recovery() {
        let mut op = migrate();
        assert_eq!(next_step(&op), Some(0));
        dispatched(&mut op, 0, "2026-12-04T10:00:00Z");
        assert_eq!(
            next_step(&op),
            None,
            "nothing else to send while step 0 runs"
        );
        let e = send(&mut op, 0, EventBody::Started, "2026-12-04T10:00:00Z");
        assert!(e.changed && e.dispatch.is_none());
        let e = send(&mut op, 0, captured(), "2026-12-04T10:00:02Z");
        assert_eq!(e.dispatch, Some(1));
        assert!(e.captured.is_some());
        assert_eq!(command_for(&op, 1).body.name(), "restore");
        dispatched(&mut op, 1, "2026-12-04T10:00:02Z");
        send(&mut op, 1, EventBody::Started, "2026-12-04T10:00:03Z");
        send(
            &mut op,
            1,
            EventBody::Progress(Progress::default()),
            "2026-12-04T10:00:04Z",
        );
        let e = send(&mut op, 1, restored(), "2026-12-04T10:00:05.500Z");
        assert!(e.dispatch.is_none());
        assert_eq!(op.phase, OperationPhase::Succeeded);
        assert_eq!(op.rto_ms, Some(2500));
        assert_eq!(op.rpo_ms, Some(4500));
    }

    #[test]
    fn duplicates_and_strangers_change_nothing() {
        let mut op = migrate();
        dispatched(&mut op, 0, "t");
        send(&mut op, 0, captured(), "2026-12-04T10:00:02Z");
        let before = op.clone();
        // The same result again (redelivered), a result for another command, a step out of range.
        assert_eq!(send(&mut op, 0, captured(), "x"), Effects::default());
        let mut stranger = event(&op, 1, restored());
        stranger.command = "other.1".into();
        assert_eq!(apply_event(&mut op, &stranger, "x"), Effects::default());
        let mut far = event(&op, 1, restored());
        far.step = 9;
        assert_eq!(apply_event(&mut op, &far, "x"), Effects::default());
        assert_eq!(op, before);
    }

    #[test]
    fn failures_and_lost_spokes_end_the_operation_with_a_reason() {
        let mut op = migrate();
        dispatched(&mut op, 0, "t");
        assert!(spoke_lost(&mut op, "a", "last seen 31 s ago", "t2"));
        assert_eq!(op.phase, OperationPhase::Failed);
        assert_eq!(
            op.message.as_deref(),
            Some("capture in a: last seen 31 s ago")
        );
        assert_eq!(op.steps[1].state, StepState::Cancelled);
        assert!(!spoke_lost(&mut op, "a", "again", "t3"), "already final");

        let mut op = migrate();
        dispatched(&mut op, 0, "t");
        let failure = StepFailure {
            reason: FailureReason::InvalidSpec,
            message: "selection.labelSelector: bad".into(),
            object: None,
            field: Some("selection.labelSelector".into()),
            retryable: false,
        };
        send(&mut op, 0, EventBody::Failed(failure), "t2");
        assert_eq!(op.phase, OperationPhase::Failed);
        assert!(op.message.unwrap().contains("selection.labelSelector"));

        let mut op = migrate();
        dispatched(&mut op, 0, "t");
        assert_eq!(cancel(&mut op, "by a client", "t2"), Some(0));
        assert_eq!(op.phase, OperationPhase::Cancelled);
        assert!(op.steps.iter().all(|s| s.state == StepState::Cancelled));
    }
}
