//! `ferry-e2e bench-hub`: one real `ferry-hub` with many simulated spokes on the same NATS. Each
//! simulated spoke registers, takes commands from its own durable consumer and answers each
//! capture at once (started, then succeeded), as a spoke with nothing to capture would; the
//! clients start backups spread over the spokes and time each from the start request to the
//! hub announcing it succeeded: a command's round trip hub → spoke → hub, with the hub's
//! bookkeeping (sled, JetStream acks) on the way. The hub's peak memory is read from /proc.

use crate::harness::ferry::bin_dir;
use crate::harness::nats::Nats;
use crate::harness::process::{free_port, Process};
use anyhow::{bail, Context};
use async_nats::jetstream::{self, consumer::pull, message::PublishMessage};
use ferry_protocol::api::{ApiReply, StartOperation};
use ferry_protocol::command::{Command, CommandBody};
use ferry_protocol::event::{CaptureReport, EventBody, OperationEvent, StepOutput};
use ferry_protocol::operation::{BackupSpec, Operation, OperationPhase, OperationSpec};
use ferry_protocol::restore_point::RestorePointSummary;
use ferry_protocol::selection::Selection;
use ferry_protocol::spoke::{Registration, RepositoryInfo};
use ferry_protocol::subjects::{spoke_consumer, SpokeEvent, Subjects, COMMAND_STREAM};
use ferry_protocol::Envelope;
use futures::StreamExt;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn publish<T: serde::Serialize + serde::de::DeserializeOwned>(
    js: &jetstream::Context,
    subject: String,
    id: String,
    body: T,
) -> anyhow::Result<()> {
    let bytes = Envelope::new(id.clone(), now(), body).to_bytes()?;
    js.send_publish(
        subject,
        PublishMessage::build().payload(bytes.into()).message_id(id),
    )
    .await?
    .await?;
    Ok(())
}

/// One simulated spoke: registers, then answers every command it is given.
async fn spoke(js: jetstream::Context, subjects: Subjects, cluster: String) -> anyhow::Result<()> {
    let registration = Registration {
        cluster: cluster.clone(),
        kubernetes_version: "v1.33.0-simulated".into(),
        ferry_version: env!("CARGO_PKG_VERSION").into(),
        capabilities: vec!["capture".into(), "restore".into()],
        storage_classes: vec![],
        snapshot_classes: vec![],
        repository: RepositoryInfo {
            id: "simulated".into(),
            location: "memory://".into(),
        },
        started: now(),
    };
    publish(
        &js,
        subjects.spoke_event(&cluster, SpokeEvent::Register)?,
        format!("reg-{cluster}"),
        registration,
    )
    .await?;
    let consumer = loop {
        match js
            .get_consumer_from_stream::<pull::Config, _, _>(
                spoke_consumer(&cluster)?,
                COMMAND_STREAM,
            )
            .await
        {
            Ok(c) => break c,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(1)
        .expires(Duration::from_secs(5))
        .messages()
        .await?;
    let events = subjects.spoke_event(&cluster, SpokeEvent::Operation)?;
    while let Some(Ok(message)) = messages.next().await {
        let command = Envelope::<Command>::from_bytes(&message.payload)?;
        let CommandBody::Capture(capture) = &command.body.body else {
            continue;
        };
        let event = |body| OperationEvent {
            operation: command.body.operation.clone(),
            step: command.body.step,
            command: command.message_id.clone(),
            body,
        };
        publish(
            &js,
            events.clone(),
            format!("{}-started", command.message_id),
            event(EventBody::Started),
        )
        .await?;
        let report = CaptureReport {
            restore_point: RestorePointSummary {
                id: capture.restore_point.clone(),
                created: now(),
                consistent_at: None,
                cluster: cluster.clone(),
                snapshot: "simulated".into(),
                objects: 0,
                volumes: 0,
                volume_bytes: 0,
                stored_bytes: 0,
                operation: Some(command.body.operation.clone()),
            },
            kinds: Default::default(),
            hooks: vec![],
            volumes: vec![],
            phases: vec![],
            warnings: vec![],
        };
        publish(
            &js,
            events.clone(),
            format!("{}-done", command.message_id),
            event(EventBody::Succeeded(StepOutput::Captured(report))),
        )
        .await?;
        message
            .double_ack()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(())
}

pub fn run(
    dir: &Path,
    spokes: usize,
    operations: usize,
    in_flight_max: usize,
) -> anyhow::Result<()> {
    if operations == 0 || spokes == 0 {
        anyhow::bail!("--operations and --spokes must be at least 1");
    }
    let nats = Nats::start(dir).context("starting NATS")?;
    let port = free_port()?;
    let mut cmd = std::process::Command::new(bin_dir()?.join("ferry-hub"));
    cmd.env("FERRY_NATS_URL", &nats.url)
        .env("FERRY_HUB_DATA", dir.join("hub-data"))
        .env("FERRY_HUB_LISTEN", format!("127.0.0.1:{port}"))
        .env("FERRY_LOG", "warn");
    let mut hub = Process::spawn("ferry-hub", cmd, dir.join("ferry-hub.log"))?;
    hub.wait_for_port(([127, 0, 0, 1], port).into(), Duration::from_secs(30))?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let subjects = Subjects::new("ferry")?;
        let nc = async_nats::connect(&nats.url).await?;
        let js = jetstream::new(nc.clone());
        let started = Instant::now();
        for i in 0..spokes {
            let (js, subjects) = (js.clone(), subjects.clone());
            tokio::spawn(async move {
                if let Err(e) = spoke(js, subjects, format!("sim-{i}")).await {
                    eprintln!("simulated spoke sim-{i}: {e}");
                }
            });
        }
        // Every spoke registered with the hub.
        loop {
            let reply = nc.request(subjects.api("clusters", "list")?, Envelope::new("c", now(), ferry_protocol::api::Empty {}).to_bytes()?.into()).await?;
            if let ApiReply::Ok(list) = Envelope::<ApiReply<Vec<serde_json::Value>>>::from_bytes(&reply.payload)?.body {
                if list.len() == spokes {
                    break;
                }
            }
            if started.elapsed() > Duration::from_secs(120) {
                bail!("not every spoke registered in 120 s");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        println!("{spokes} spokes registered in {:.1} s", started.elapsed().as_secs_f64());
        // Operations: started a few at a time, each timed until the hub announces its end.
        let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let mut done_sub = nc.subscribe("ferry.v1.op.*.events").await?;
        let mut latencies = Vec::new();
        let run_started = Instant::now();
        let mut next = 0;
        let mut in_flight = 0;
        while latencies.len() < operations {
            while in_flight < in_flight_max && next < operations {
                let spec = OperationSpec::Backup(BackupSpec {
                    cluster: format!("sim-{}", next % spokes),
                    selection: Selection { namespaces: vec!["app".into()], ..Default::default() },
                    hooks: vec![],
                    volume_data: false,
                });
                let id = format!("bench-{next}");
                sent.lock().unwrap().insert(id.clone(), Instant::now());
                let body = StartOperation { spec, id: Some(id) };
                let reply = nc.request(subjects.api("operations", "start")?, Envelope::new(format!("s{next}"), now(), body).to_bytes()?.into()).await?;
                if let ApiReply::Error(e) = Envelope::<ApiReply<Operation>>::from_bytes(&reply.payload)?.body {
                    bail!("starting an operation: {e}");
                }
                next += 1;
                in_flight += 1;
            }
            let Some(msg) = tokio::time::timeout(Duration::from_secs(30), done_sub.next()).await.context("no operation ended in 30 s")? else {
                bail!("the NATS connection closed");
            };
            let op = Envelope::<Operation>::from_bytes(&msg.payload)?.body;
            if op.phase == OperationPhase::Succeeded {
                if let Some(t) = sent.lock().unwrap().remove(&op.id) {
                    latencies.push(t.elapsed());
                    in_flight -= 1;
                }
            } else if op.phase.is_final() {
                bail!("operation {} ended {:?}: {:?}", op.id, op.phase, op.message);
            }
        }
        latencies.sort();
        let pct = |p: f64| latencies[((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1).min(latencies.len() - 1)];
        println!(
            "{operations} operations over {spokes} spokes in {:.1} s ({in_flight_max} in flight): round trip p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; hub peak RSS {} MiB",
            run_started.elapsed().as_secs_f64(),
            pct(0.50).as_secs_f64() * 1000.0,
            pct(0.99).as_secs_f64() * 1000.0,
            latencies.last().unwrap().as_secs_f64() * 1000.0,
            crate::harness::process::peak_rss_kib(hub.pid()) / 1024
        );
        Ok::<_, anyhow::Error>(())
    })?;
    hub.stop();
    Ok(())
}
