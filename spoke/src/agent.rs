//! The spoke's side of the protocol: it registers, sends heartbeats, takes its commands from its
//! durable JetStream consumer one at a time, reports progress and results as events, and
//! acknowledges a command only after its result event is stored — so a spoke, hub or NATS
//! restart redelivers any command whose result was not recorded, and the step (idempotent by
//! design) runs again without duplicating anything.

use crate::cancel::Cancellation;
use crate::capture::{capture, Source};
use crate::cluster::Cluster;
use crate::error::SpokeError;
use crate::restore::restore;
use crate::restore_point;
use async_nats::jetstream::{self, consumer::pull, message::PublishMessage, AckKind};
use ferry_protocol::command::{Cancel, Command, CommandBody};
use ferry_protocol::event::{
    DeleteReport, EventBody, FailureReason, OperationEvent, Progress, StepFailure, StepOutput,
};
use ferry_protocol::spoke::{
    capability, Heartbeat, Registration, RepositoryInfo, StorageClassInfo,
};
use ferry_protocol::subjects::{spoke_consumer, SpokeEvent, Subjects, COMMAND_STREAM};
use ferry_protocol::Envelope;
use ferry_repository::repo::Repository;
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

pub struct AgentConfig {
    pub cluster_name: String,
    pub subjects: Subjects,
    pub heartbeat: Duration,
    /// How volume data moves; without it the spoke does not offer `volume-data`.
    pub mover: Option<crate::mover::MoverConfig>,
}

/// Heartbeats between two registrations.
const REREGISTER_EVERY: u32 = 10;

/// A command being worked on: its message id, and the channel that stops it with a reason.
type Running = (String, watch::Sender<Option<String>>);

/// The subjects of this spoke, named once (the cluster name is checked when the agent is made).
struct SpokeSubjects {
    register: String,
    heartbeat: String,
    operation: String,
    control: String,
    consumer: String,
}

pub struct Agent {
    config: AgentConfig,
    subjects: SpokeSubjects,
    nats: async_nats::Client,
    js: jetstream::Context,
    cluster: Cluster,
    repo: Arc<Repository>,
    started: String,
    /// Operations being worked on, and how to stop each.
    running: Arc<Mutex<HashMap<String, Running>>>,
}

/// Errors of the agent's own plumbing (NATS), as opposed to a command's failure.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{what}: {message}")]
    Nats { what: String, message: String },
    #[error(transparent)]
    Spoke(#[from] SpokeError),
}

fn nats_err(what: impl Into<String>) -> impl FnOnce(&dyn std::fmt::Display) -> AgentError {
    let what = what.into();
    move |e| AgentError::Nats {
        what,
        message: e.to_string(),
    }
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A message id unique enough to tell messages apart: time, then randomness.
pub fn message_id() -> String {
    let millis = chrono::Utc::now().timestamp_millis();
    format!("{millis:012x}{:016x}", rand_u64())
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}

/// A location without credentials (`s3://key:secret@host/b` → `s3://host/b`).
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

impl Agent {
    /// Fails when the cluster name cannot be a subject token.
    pub async fn new(
        config: AgentConfig,
        nats: async_nats::Client,
        cluster: Cluster,
        repo: Arc<Repository>,
    ) -> Result<Agent, AgentError> {
        let name = &config.cluster_name;
        let checked = |r: Result<String, ferry_protocol::subjects::InvalidToken>| {
            r.map_err(|e| nats_err("the cluster name")(&e))
        };
        let subjects = SpokeSubjects {
            register: checked(config.subjects.spoke_event(name, SpokeEvent::Register))?,
            heartbeat: checked(config.subjects.spoke_event(name, SpokeEvent::Heartbeat))?,
            operation: checked(config.subjects.spoke_event(name, SpokeEvent::Operation))?,
            control: checked(config.subjects.spoke_control(name))?,
            consumer: checked(spoke_consumer(name))?,
        };
        Ok(Agent {
            subjects,
            js: jetstream::new(nats.clone()),
            config,
            nats,
            cluster,
            repo,
            started: now(),
            running: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    async fn registration(&self) -> Result<Registration, AgentError> {
        let kubernetes_version = self.cluster.version().await?;
        let resources = self.cluster.discover().await?;
        let map = crate::cluster::ResourceMap::new(&resources);
        let mut storage_classes = Vec::new();
        if let Some(t) = map.get("storage.k8s.io", "StorageClass") {
            self.cluster
                .list_each(t, None, None, |sc| {
                    storage_classes.push(StorageClassInfo {
                        name: sc.pointer("/metadata/name").and_then(|v| v.as_str()).unwrap_or("").into(),
                        provisioner: sc.get("provisioner").and_then(|v| v.as_str()).unwrap_or("").into(),
                        default: sc.pointer("/metadata/annotations/storageclass.kubernetes.io~1is-default-class").and_then(|v| v.as_str()) == Some("true"),
                    });
                    Ok(())
                })
                .await?;
        }
        let mut snapshot_classes = Vec::new();
        if let Some(t) = map.get("snapshot.storage.k8s.io", "VolumeSnapshotClass") {
            self.cluster
                .list_each(t, None, None, |c| {
                    snapshot_classes.push(
                        c.pointer("/metadata/name")
                            .and_then(|v| v.as_str())
                            .unwrap_or("")
                            .to_string(),
                    );
                    Ok(())
                })
                .await?;
        }
        Ok(Registration {
            cluster: self.config.cluster_name.clone(),
            kubernetes_version,
            ferry_version: env!("CARGO_PKG_VERSION").into(),
            capabilities: {
                let mut c: Vec<String> = vec![
                    capability::CAPTURE.into(),
                    capability::RESTORE.into(),
                    capability::HELM.into(),
                    capability::HOOKS.into(),
                ];
                if self.config.mover.is_some() {
                    c.push(capability::VOLUME_DATA.into());
                }
                c
            },
            storage_classes,
            snapshot_classes,
            repository: RepositoryInfo {
                id: self.repo.config().id.clone(),
                location: redact(self.repo.backend().url()),
            },
            started: self.started.clone(),
        })
    }

    fn subject(&self, event: SpokeEvent) -> &str {
        match event {
            SpokeEvent::Register => &self.subjects.register,
            SpokeEvent::Heartbeat => &self.subjects.heartbeat,
            SpokeEvent::Operation => &self.subjects.operation,
        }
    }

    /// Publishes into the event stream and waits until the server has stored it.
    async fn publish_stored<T: serde::Serialize + serde::de::DeserializeOwned>(
        &self,
        event: SpokeEvent,
        envelope: &Envelope<T>,
    ) -> Result<(), AgentError> {
        let payload = envelope
            .to_bytes()
            .map_err(|e| nats_err("encoding an event")(&e))?;
        let publish = PublishMessage::build()
            .payload(payload.into())
            .message_id(envelope.message_id.clone());
        let subject = self.subject(event).to_string();
        let ack = self
            .js
            .send_publish(subject.clone(), publish)
            .await
            .map_err(|e| nats_err(format!("publishing to {subject}"))(&e))?;
        ack.await.map_err(|e| {
            nats_err(format!(
                "storing the event on {subject} (is the hub's event stream there?)"
            ))(&e)
        })?;
        Ok(())
    }

    /// Runs until the NATS connection is closed for good.
    pub async fn run(self: Arc<Self>) -> Result<(), AgentError> {
        let registration = self.registration().await?;
        // The hub may not be up yet (its stream is not there): keep trying.
        let mut pause = Duration::from_millis(200);
        loop {
            let envelope = Envelope::new(message_id(), now(), registration.clone());
            match self.publish_stored(SpokeEvent::Register, &envelope).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "registration not stored yet; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
        tracing::info!(cluster = %self.config.cluster_name, "registered");
        tokio::spawn(self.clone().heartbeats(registration));
        tokio::spawn(self.clone().cancellations());
        let consumer_name = self.subjects.consumer.clone();
        // The hub creates the consumer when it sees the registration.
        let mut pause = Duration::from_millis(100);
        let consumer: jetstream::consumer::Consumer<pull::Config> = loop {
            match self
                .js
                .get_consumer_from_stream(&consumer_name, COMMAND_STREAM)
                .await
            {
                Ok(c) => break c,
                Err(e) => {
                    tracing::debug!(error = %e, "waiting for the hub to create consumer {consumer_name}");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        };
        // "Still working" acks well inside the consumer's ack wait.
        let ack_wait = consumer.cached_info().config.ack_wait;
        let keepalive = (ack_wait / 3).clamp(Duration::from_millis(500), Duration::from_secs(10));
        // One command at a time, and short pull requests: a pull left open by a spoke that died
        // would otherwise take the redelivered command (into nowhere) until it expires.
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(1)
            .expires(Duration::from_secs(5))
            .heartbeat(Duration::from_secs(2))
            .messages()
            .await
            .map_err(|e| nats_err("reading commands")(&e))?;
        while let Some(message) = messages.next().await {
            let message = match message {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "command stream");
                    continue;
                }
            };
            self.handle(message, keepalive).await;
        }
        Ok(())
    }

    /// Heartbeats, and every [`REREGISTER_EVERY`] of them the registration again: a hub that
    /// lost its database learns the fleet back within a minute.
    async fn heartbeats(self: Arc<Self>, registration: Registration) {
        let subject = self.subject(SpokeEvent::Heartbeat).to_string();
        let mut beats: u32 = 0;
        loop {
            beats = beats.wrapping_add(1);
            if beats.is_multiple_of(REREGISTER_EVERY) {
                let envelope = Envelope::new(message_id(), now(), registration.clone());
                if let Err(e) = self.publish_stored(SpokeEvent::Register, &envelope).await {
                    tracing::warn!(error = %e, "registration again");
                }
            }
            let active = self
                .running
                .lock()
                .expect("running")
                .values()
                .map(|(c, _)| c.clone())
                .collect();
            let beat = Envelope::new(
                message_id(),
                now(),
                Heartbeat {
                    cluster: self.config.cluster_name.clone(),
                    started: self.started.clone(),
                    active_commands: active,
                },
            );
            if let Ok(bytes) = beat.to_bytes() {
                if let Err(e) = self.nats.publish(subject.clone(), bytes.into()).await {
                    tracing::warn!(error = %e, "heartbeat");
                }
            }
            tokio::time::sleep(self.config.heartbeat).await;
        }
    }

    async fn cancellations(self: Arc<Self>) {
        let subject = self.subjects.control.clone();
        let Ok(mut sub) = self.nats.subscribe(subject.clone()).await else {
            tracing::error!(%subject, "cannot subscribe: cancellations will not reach this spoke");
            return;
        };
        while let Some(msg) = sub.next().await {
            match Envelope::<Cancel>::from_bytes(&msg.payload) {
                Ok(e) => {
                    if let Some((_, stop)) =
                        self.running.lock().expect("running").get(&e.body.operation)
                    {
                        let _ = stop.send(Some(e.body.reason.clone()));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "unreadable cancellation ignored"),
            }
        }
    }

    async fn event(
        &self,
        command: &str,
        operation: &str,
        step: u32,
        body: EventBody,
    ) -> Result<(), AgentError> {
        let envelope = Envelope::new(
            message_id(),
            now(),
            OperationEvent {
                operation: operation.to_string(),
                step,
                command: command.to_string(),
                body,
            },
        )
        .correlated(command);
        self.publish_stored(SpokeEvent::Operation, &envelope).await
    }

    async fn handle(&self, message: jetstream::Message, keepalive: Duration) {
        let command = match Envelope::<Command>::from_bytes(&message.payload) {
            Ok(c) => c,
            Err(e) => {
                // Unreadable: say so on whatever it names, and never see it again.
                let raw: serde_json::Value =
                    serde_json::from_slice(&message.payload).unwrap_or_default();
                let id = raw["messageId"].as_str().unwrap_or("unknown").to_string();
                let operation = raw
                    .pointer("/body/operation")
                    .and_then(|v| v.as_str())
                    .unwrap_or("unknown")
                    .to_string();
                let step = raw
                    .pointer("/body/step")
                    .and_then(|v| v.as_u64())
                    .unwrap_or(0) as u32;
                let failure = StepFailure {
                    reason: FailureReason::Malformed,
                    message: format!("command {id}: {e}"),
                    object: None,
                    field: None,
                    retryable: false,
                };
                tracing::warn!(command = %id, error = %e, "malformed command");
                if self
                    .event(&id, &operation, step, EventBody::Failed(failure))
                    .await
                    .is_ok()
                {
                    let _ = message.ack_with(AckKind::Term).await;
                }
                return;
            }
        };
        let (id, op, step) = (
            command.message_id.clone(),
            command.body.operation.clone(),
            command.body.step,
        );
        tracing::info!(command = %id, operation = %op, kind = command.body.body.name(), "command");
        let (stop_tx, stop_rx) = watch::channel(None);
        self.running
            .lock()
            .expect("running")
            .insert(op.clone(), (id.clone(), stop_tx));
        if let Err(e) = self.event(&id, &op, step, EventBody::Started).await {
            tracing::warn!(error = %e, "could not report the start; the command will be redelivered");
            self.running.lock().expect("running").remove(&op);
            return;
        }
        // Progress goes out through a channel (the engines report from synchronous code);
        // acks with "in progress" keep the command ours while it runs.
        let (progress_tx, mut progress_rx) = mpsc::unbounded_channel::<Progress>();
        let sink = move |p: Progress| {
            let _ = progress_tx.send(p);
        };
        // A cancellation is observed by the step at its next safe point (see `cancel`), not by
        // dropping it half-way.
        let cancel = Cancellation::new(stop_rx);
        let work = self.execute(&op, &command.body.body, &cancel, &sink);
        tokio::pin!(work);
        let mut keepalive = tokio::time::interval(keepalive);
        let result = loop {
            tokio::select! {
                r = &mut work => break r,
                Some(p) = progress_rx.recv() => {
                    let _ = self.event(&id, &op, step, EventBody::Progress(p)).await;
                }
                _ = keepalive.tick() => {
                    let _ = message.ack_with(AckKind::Progress).await;
                }
            }
        };
        self.running.lock().expect("running").remove(&op);
        let body = match result {
            Ok(output) => EventBody::Succeeded(output),
            Err(e) => {
                tracing::warn!(command = %id, error = %e, "command failed");
                EventBody::Failed(e.to_failure())
            }
        };
        match self.event(&id, &op, step, body).await {
            // The result is stored: the command is done.
            Ok(()) => {
                if let Err(e) = message.double_ack().await {
                    tracing::warn!(error = %e, "ack lost; the command will be redelivered and recognised");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "result not stored; the command will be redelivered");
                let _ = message
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                    .await;
            }
        }
    }

    async fn execute(
        &self,
        operation: &str,
        body: &CommandBody,
        cancel: &Cancellation,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<StepOutput, SpokeError> {
        match body {
            CommandBody::Capture(c) => {
                let source = Source {
                    cluster: &self.cluster,
                    name: &self.config.cluster_name,
                    operation: Some(operation),
                    mover: self.config.mover.as_ref(),
                    cancel,
                };
                Ok(StepOutput::Captured(
                    capture(source, self.repo.clone(), c, progress).await?,
                ))
            }
            CommandBody::Restore(r) => Ok(StepOutput::Restored(
                restore(
                    &self.cluster,
                    self.repo.clone(),
                    r,
                    self.config.mover.as_ref(),
                    cancel,
                    progress,
                )
                .await?,
            )),
            CommandBody::DeleteRestorePoint(d) => {
                let names = restore_point::snapshots_of(&self.repo, &d.restore_point).await?;
                if names.is_empty() {
                    return Err(SpokeError::NotFound {
                        what: format!("restore point {}", d.restore_point),
                    });
                }
                self.repo.forget(&names).await?;
                Ok(StepOutput::Deleted(DeleteReport {
                    restore_point: d.restore_point.clone(),
                    snapshots: names.len() as u64,
                }))
            }
            CommandBody::ListRestorePoints(_) => {
                let (restore_points, unreadable) =
                    restore_point::catalog(self.repo.clone()).await?;
                Ok(StepOutput::Listed(ferry_protocol::event::ListReport {
                    restore_points,
                    unreadable,
                }))
            }
            CommandBody::VerifyRestorePoint(v) => {
                // Reading it checks every object against the manifest; with read_data, every pack
                // of the repository is downloaded and authenticated too.
                let (manifest, objects) =
                    restore_point::read(self.repo.clone(), &v.restore_point).await?;
                let mut problems = Vec::new();
                if v.read_data {
                    let options = ferry_repository::check::CheckOptions {
                        read_data: true,
                        progress: None,
                    };
                    let report = ferry_repository::check::check(self.repo.clone(), options).await?;
                    problems.extend(report.errors);
                }
                Ok(StepOutput::Verified(ferry_protocol::event::VerifyReport {
                    restore_point: v.restore_point.clone(),
                    objects: objects.len() as u64,
                    volumes: manifest.volumes.len() as u64,
                    read_data: v.read_data,
                    problems,
                }))
            }
        }
    }
}
