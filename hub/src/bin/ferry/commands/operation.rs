//! Operations as the CLI starts, follows and shows them: one progress line per change on
//! stderr, the whole operation (steps, outputs, RTO and RPO) when it ends.

use super::{OperationsCommand, StartOptions};
use crate::client::{Client, OutputFormat};
use crate::output::{age, human_bytes, millis, print, Table};
use ferry_protocol::api::{ById, ListOperations, StartOperation};
use ferry_protocol::event::{ObjectAction, StepOutput};
use ferry_protocol::operation::{Operation, OperationPhase, OperationSpec, StepState};
use std::io::Write;
use std::process::ExitCode;

pub(super) async fn run_operation(
    client: &Client,
    spec: OperationSpec,
    start: &StartOptions,
) -> anyhow::Result<ExitCode> {
    let op: Operation = client
        .call(
            "operations",
            "start",
            StartOperation {
                spec,
                id: start.id.clone(),
            },
        )
        .await?;
    eprintln!("operation {} started ({})", op.id, op.spec.kind());
    if start.no_wait {
        return show_operation(client, &op);
    }
    let done = client.watch(&op.id, progress_line).await?;
    finish(client, done)
}

/// One stderr line per change of step state or phase.
pub(super) fn progress_line(op: &Operation) {
    thread_local! {
        static LAST: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }
    let Some(step) = op
        .steps
        .iter()
        .rev()
        .find(|s| s.state != StepState::Pending && s.state != StepState::Cancelled)
        .or(op.steps.first())
    else {
        return;
    };
    let detail = match &step.progress {
        Some(p) => match p.total {
            Some(t) => format!(" {} {}/{} {}", p.phase, p.done, t, p.message),
            None => format!(" {} {}", p.phase, p.message),
        },
        None => String::new(),
    };
    let line = format!(
        "  {} in {}: {:?}{}",
        step.name, step.cluster, step.state, detail
    );
    LAST.with(|last| {
        if *last.borrow() != line {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{}", line.trim_end());
            *last.borrow_mut() = line;
        }
    });
}

pub(super) fn finish(client: &Client, op: Operation) -> anyhow::Result<ExitCode> {
    show_operation(client, &op)?;
    Ok(if op.phase == OperationPhase::Succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub(super) fn show_operation(client: &Client, op: &Operation) -> anyhow::Result<ExitCode> {
    if client.output != OutputFormat::Table {
        print(client.output, op, || Table::new(&[]))?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("Operation:      {} ({})", op.id, op.spec.kind());
    println!("Phase:          {:?}", op.phase);
    if let Some(m) = &op.message {
        println!("Message:        {m}");
    }
    if let Some(rp) = &op.restore_point {
        println!("Restore point:  {rp}");
    }
    for step in &op.steps {
        let took = match (&step.started, &step.finished) {
            (Some(a), Some(b)) => match (
                chrono::DateTime::parse_from_rfc3339(a),
                chrono::DateTime::parse_from_rfc3339(b),
            ) {
                (Ok(a), Ok(b)) => {
                    format!(" in {}", millis((b - a).num_milliseconds().max(0) as u64))
                }
                _ => String::new(),
            },
            _ => String::new(),
        };
        println!(
            "Step {}:         {} in {}: {:?}{took}",
            step.command.rsplit('.').next().unwrap_or(""),
            step.name,
            step.cluster,
            step.state
        );
        if let Some(f) = &step.failure {
            let object = f
                .object
                .as_ref()
                .map(|o| format!(" ({o})"))
                .unwrap_or_default();
            println!("  failed:       {:?}: {}{object}", f.reason, f.message);
        }
        match &step.output {
            Some(StepOutput::Captured(c)) => {
                let r = &c.restore_point;
                println!(
                    "  captured:     {} objects, {} volumes ({}), {} new in the repository",
                    r.objects,
                    r.volumes,
                    human_bytes(r.volume_bytes),
                    human_bytes(r.stored_bytes)
                );
                let kinds: Vec<String> = c.kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
                println!("  kinds:        {}", kinds.join(", "));
                for p in &c.phases {
                    println!("  {:<13} {}", format!("{}:", p.phase), millis(p.millis));
                }
                for w in &c.warnings {
                    println!("  warning:      {w}");
                }
            }
            Some(StepOutput::Restored(r)) => {
                let verb = if r.dry_run { "would create" } else { "created" };
                println!(
                    "  restored:     {verb} {}, updated {}, skipped {}, omitted {}",
                    r.created, r.updated, r.skipped, r.omitted
                );
                for p in &r.phases {
                    println!("  {:<13} {}", format!("{}:", p.phase), millis(p.millis));
                }
                for w in &r.warnings {
                    println!("  warning:      {w}");
                }
                if r.dry_run {
                    let mut t = Table::new(&["ACTION", "OBJECT", "WHY"]);
                    for o in &r.objects {
                        let action = match o.action {
                            ObjectAction::Create => "create",
                            ObjectAction::Update => "update",
                            ObjectAction::Skip => "skip",
                            ObjectAction::Omit => "omit",
                        };
                        t.row(vec![action.into(), o.object.to_string(), o.reason.clone()]);
                    }
                    print!("{}", t.render());
                    if r.objects_truncated {
                        println!(
                            "(plan cut at {} objects; -o json has the counts)",
                            r.objects.len()
                        );
                    }
                }
            }
            Some(StepOutput::Listed(l)) => {
                println!("  listed:       {} restore points", l.restore_points.len());
                for u in &l.unreadable {
                    println!("  unreadable:   {u}");
                }
            }
            Some(StepOutput::Deleted(d)) => println!(
                "  deleted:      {} snapshots of {}",
                d.snapshots, d.restore_point
            ),
            Some(StepOutput::Verified(v)) => println!(
                "  verified:     {} objects, {} problems",
                v.objects,
                v.problems.len()
            ),
            None => {}
        }
    }
    if let Some(rto) = op.rto_ms {
        println!("Recovery time (RTO):   {}", millis(rto));
    }
    if let Some(rpo) = op.rpo_ms {
        println!("Recovery point (RPO):  {}", millis(rpo));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn operations(client: &Client, command: OperationsCommand) -> anyhow::Result<ExitCode> {
    match command {
        OperationsCommand::List { phase } => {
            let phase = match phase.as_deref() {
                None => None,
                Some(p) => Some(
                    serde_json::from_value::<OperationPhase>(serde_json::Value::String(p.into()))
                        .map_err(|_| {
                        anyhow::anyhow!("--phase: one of running, succeeded, failed, cancelled")
                    })?,
                ),
            };
            let list: Vec<Operation> = client
                .call("operations", "list", ListOperations { phase, limit: None })
                .await?;
            print(client.output, &list, || {
                let mut t = Table::new(&["ID", "KIND", "PHASE", "STEPS", "RESTORE POINT", "AGE"]);
                for o in &list {
                    let steps: Vec<String> = o
                        .steps
                        .iter()
                        .map(|s| format!("{}@{}:{:?}", s.name, s.cluster, s.state))
                        .collect();
                    t.row(vec![
                        o.id.clone(),
                        o.spec.kind().into(),
                        format!("{:?}", o.phase),
                        steps.join(" "),
                        o.restore_point.clone().unwrap_or_default(),
                        age(&o.created),
                    ]);
                }
                t
            })?;
            Ok(ExitCode::SUCCESS)
        }
        OperationsCommand::Get { id } => {
            let op: Operation = client.call("operations", "get", ById { id }).await?;
            show_operation(client, &op)
        }
        OperationsCommand::Watch { id } => {
            let done = client.watch(&id, progress_line).await?;
            finish(client, done)
        }
        OperationsCommand::Cancel { id } => {
            let op: Operation = client.call("operations", "cancel", ById { id }).await?;
            show_operation(client, &op)
        }
    }
}
