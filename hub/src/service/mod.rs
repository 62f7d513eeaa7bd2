//! The hub's runtime: JetStream streams and consumers, the event loop that moves operations on,
//! command dispatch, spoke liveness, the request/reply API ([`api`]) and its metrics.
//!
//! One lock orders every transition of every operation: an event is applied, persisted and
//! flushed, and only then acknowledged; the commands it asks for are sent after. A hub that
//! dies anywhere in between finds on restart either the event again (redelivered) or the step
//! still pending (sent again, with the same message id, which JetStream and the spoke both
//! recognise).

pub mod api;
pub mod metrics;

use crate::machine::{self, command_for};
use crate::store::{Store, StoreError};
use async_nats::jetstream::{self, consumer::pull, message::PublishMessage, stream};
use ferry_protocol::api::{ClusterStatus, RestorePointDetails};
use ferry_protocol::command::{Cancel, Command};
use ferry_protocol::event::{CaptureReport, OperationEvent};
use ferry_protocol::operation::{Operation, OperationSpec, StepState};
use ferry_protocol::restore_point::SourceCluster;
use ferry_protocol::spoke::{Heartbeat, Registration};
use ferry_protocol::subjects::{
    spoke_consumer, Subjects, COMMAND_STREAM, EVENT_STREAM, HUB_CONSUMER,
};
use ferry_protocol::Envelope;
use futures::{FutureExt, StreamExt};
use metrics::Metrics;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct HubConfig {
    pub subjects: Subjects,
    /// A spoke not heard from for this long fails the steps it is working on.
    pub spoke_timeout: Duration,
    /// How long a spoke may hold a command without saying it is still working on it.
    pub ack_wait: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("{what}: {message}")]
    Nats { what: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The most events applied under one flush of the store.
const EVENT_BATCH: usize = 64;

fn nats(what: impl Into<String>, e: impl std::fmt::Display) -> HubError {
    HubError::Nats {
        what: what.into(),
        message: e.to_string(),
    }
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub(crate) fn random_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    format!("{:06x}", h.finish() & 0xff_ffff)
}

pub fn message_id() -> String {
    format!(
        "{:012x}{}",
        chrono::Utc::now().timestamp_millis(),
        random_suffix()
    )
}

pub struct Hub {
    pub(crate) config: HubConfig,
    pub(crate) nats: async_nats::Client,
    js: jetstream::Context,
    pub(crate) store: Store,
    /// When each spoke was last heard from (registration, heartbeat or event).
    last_seen: Mutex<HashMap<String, Instant>>,
    /// Orders transitions of operations.
    transitions: tokio::sync::Mutex<()>,
    pub(crate) metrics: Metrics,
}

impl Hub {
    pub async fn start(
        config: HubConfig,
        nats_client: async_nats::Client,
        store: Store,
    ) -> Result<Arc<Hub>, HubError> {
        let js = jetstream::new(nats_client.clone());
        js.get_or_create_stream(stream::Config {
            name: COMMAND_STREAM.into(),
            subjects: vec![config.subjects.all_spoke_commands()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .map_err(|e| nats(format!("creating stream {COMMAND_STREAM}"), e))?;
        let events = js
            .get_or_create_stream(stream::Config {
                name: EVENT_STREAM.into(),
                subjects: vec![
                    format!(
                        "{}.register",
                        config.subjects.all_spoke_events().trim_end_matches(".>")
                    ),
                    format!(
                        "{}.op",
                        config.subjects.all_spoke_events().trim_end_matches(".>")
                    ),
                ],
                storage: stream::StorageType::File,
                max_age: Duration::from_secs(7 * 24 * 3600),
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .map_err(|e| nats(format!("creating stream {EVENT_STREAM}"), e))?;
        events
            .get_or_create_consumer(
                HUB_CONSUMER,
                pull::Config {
                    durable_name: Some(HUB_CONSUMER.into()),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(30),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| nats("creating the hub's event consumer", e))?;
        let hub = Arc::new(Hub {
            config,
            nats: nats_client,
            js,
            store,
            last_seen: Mutex::new(HashMap::new()),
            transitions: tokio::sync::Mutex::new(()),
            metrics: Metrics::default(),
        });
        // Known spokes get a grace period after a hub restart before they count as lost.
        for c in hub.store.clusters()? {
            hub.ensure_consumer(&c.registration.cluster).await?;
            hub.seen(&c.registration.cluster);
        }
        hub.resume().await?;
        Ok(hub)
    }

    /// Serves until the NATS connection ends.
    pub async fn run(self: Arc<Self>) -> Result<(), HubError> {
        tokio::spawn(self.clone().heartbeats());
        tokio::spawn(self.clone().deadlines());
        tokio::spawn(self.clone().serve_api());
        self.events().await
    }

    fn seen(&self, cluster: &str) {
        self.last_seen
            .lock()
            .expect("last seen")
            .insert(cluster.to_string(), Instant::now());
    }

    pub(crate) fn connected(&self, cluster: &str) -> bool {
        self.last_seen
            .lock()
            .expect("last seen")
            .get(cluster)
            .is_some_and(|t| t.elapsed() < self.config.spoke_timeout)
    }

    async fn ensure_consumer(&self, cluster: &str) -> Result<(), HubError> {
        let name = spoke_consumer(cluster).map_err(|e| nats("naming a consumer", e))?;
        let subject = self
            .config
            .subjects
            .spoke_commands(cluster)
            .map_err(|e| nats("naming a subject", e))?;
        let stream = self
            .js
            .get_stream(COMMAND_STREAM)
            .await
            .map_err(|e| nats(format!("reading stream {COMMAND_STREAM}"), e))?;
        stream
            .get_or_create_consumer(
                &name,
                pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: subject,
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: self.config.ack_wait,
                    max_ack_pending: 1,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| nats(format!("creating consumer {name}"), e))?;
        Ok(())
    }

    /// Sends every step that should be running and is not: after a restart, steps marked sent
    /// are sent again (the same message id makes it harmless).
    async fn resume(&self) -> Result<(), HubError> {
        let _t = self.transitions.lock().await;
        for mut op in self.store.running_operations()? {
            if op.phase.is_final() {
                continue;
            }
            let sent = op
                .steps
                .iter()
                .position(|s| matches!(s.state, StepState::Dispatched | StepState::Running));
            if let Some(n) = sent.or_else(|| machine::next_step(&op)) {
                tracing::info!(operation = %op.id, step = n, "resuming");
                self.dispatch(&mut op, n).await?;
            }
        }
        Ok(())
    }

    /// Publishes step `n`'s command and records it as sent, durably, and tells watchers.
    pub(crate) async fn dispatch(&self, op: &mut Operation, n: usize) -> Result<(), HubError> {
        self.send_command(op, n).await?;
        self.store.flush().await?;
        self.announce(op).await;
        Ok(())
    }

    /// [`Service::dispatch`] without the flush: the event loop flushes once for a batch, and
    /// a command sent but not yet recorded is sent again, under the same message id, which
    /// JetStream drops as a duplicate.
    pub(crate) async fn send_command(&self, op: &mut Operation, n: usize) -> Result<(), HubError> {
        let cluster = op.steps[n].cluster.clone();
        self.ensure_consumer(&cluster).await?;
        let command: Command = command_for(op, n);
        let id = op.steps[n].command.clone();
        let envelope = Envelope::new(id.clone(), now(), command);
        let subject = self
            .config
            .subjects
            .spoke_commands(&cluster)
            .map_err(|e| nats("naming a subject", e))?;
        let payload = envelope
            .to_bytes()
            .map_err(|e| nats("encoding a command", e))?;
        let ack = self
            .js
            .send_publish(
                subject.clone(),
                PublishMessage::build()
                    .payload(payload.into())
                    .message_id(id.clone()),
            )
            .await
            .map_err(|e| nats(format!("sending {id} to {subject}"), e))?
            .await
            .map_err(|e| nats(format!("storing {id} in {COMMAND_STREAM}"), e))?;
        self.store.put_sequence(&id, ack.sequence)?;
        if op.steps[n].state == StepState::Pending {
            machine::dispatched(op, n, &now());
        }
        self.store.put_operation(op)?;
        self.metrics
            .commands
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(operation = %op.id, command = %id, %cluster, "command sent");
        Ok(())
    }

    /// Tells watchers the operation's new state.
    pub(crate) async fn announce(&self, op: &Operation) {
        let Ok(subject) = self.config.subjects.operation_events(&op.id) else {
            return;
        };
        if let Ok(bytes) = Envelope::new(message_id(), now(), op.clone()).to_bytes() {
            let _ = self.nats.publish(subject, bytes.into()).await;
        }
    }

    async fn events(self: Arc<Self>) -> Result<(), HubError> {
        let consumer: jetstream::consumer::Consumer<pull::Config> = self
            .js
            .get_consumer_from_stream(HUB_CONSUMER, EVENT_STREAM)
            .await
            .map_err(|e| nats("opening the hub's event consumer", e))?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| nats("reading events", e))?;
        // Group commit: the events already delivered are applied together, the store is
        // flushed once, and only then are they acknowledged and announced.
        while let Some(first) = messages.next().await {
            let mut batch = vec![first];
            while batch.len() < EVENT_BATCH {
                match messages.next().now_or_never() {
                    Some(Some(m)) => batch.push(m),
                    _ => break,
                }
            }
            let mut applied = Vec::with_capacity(batch.len());
            let mut changed: Vec<Operation> = Vec::new();
            for message in batch {
                let message = match message {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "event stream");
                        continue;
                    }
                };
                self.metrics
                    .events
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                match self.event(&message.subject, &message.payload).await {
                    Ok(op) => {
                        changed.extend(op);
                        applied.push(message);
                    }
                    // Not acknowledged: redelivered after the ack wait, when the store may
                    // work again.
                    Err(e) => {
                        tracing::error!(error = %e, subject = %message.subject, "event not processed")
                    }
                }
            }
            if applied.is_empty() {
                continue;
            }
            if let Err(e) = self.store.flush().await {
                tracing::error!(error = %e, "flushing the hub's store; events left unacknowledged");
                continue;
            }
            for message in applied {
                let _ = message.ack().await;
            }
            for op in &changed {
                self.announce(op).await;
            }
        }
        Ok(())
    }

    /// Applies one event to the store (unflushed); the operation it changed, if any.
    async fn event(&self, subject: &str, payload: &[u8]) -> Result<Option<Operation>, HubError> {
        if subject.ends_with(".evt.register") {
            match Envelope::<Registration>::from_bytes(payload) {
                Ok(e) => self.register(e.body).await?,
                Err(e) => tracing::warn!(%subject, error = %e, "unreadable registration dropped"),
            }
        } else if subject.ends_with(".evt.op") {
            match Envelope::<OperationEvent>::from_bytes(payload) {
                Ok(e) => return self.operation_event(subject, e.body).await,
                Err(e) => {
                    tracing::warn!(%subject, error = %e, "unreadable operation event dropped")
                }
            }
        }
        Ok(None)
    }

    async fn register(&self, registration: Registration) -> Result<(), HubError> {
        let cluster = registration.cluster.clone();
        self.ensure_consumer(&cluster).await?;
        let status = ClusterStatus {
            registration,
            last_seen: now(),
            connected: true,
        };
        self.store.put_cluster(&status)?;
        self.seen(&cluster);
        tracing::info!(%cluster, "spoke registered");
        Ok(())
    }

    async fn operation_event(
        &self,
        subject: &str,
        event: OperationEvent,
    ) -> Result<Option<Operation>, HubError> {
        // The subject says who sent it (NATS permissions make that trustworthy).
        let sender = subject.split('.').rev().nth(2).unwrap_or("").to_string();
        self.seen(&sender);
        let _t = self.transitions.lock().await;
        let Some(mut op) = self.store.operation(&event.operation)? else {
            tracing::warn!(operation = %event.operation, "event for an unknown operation dropped");
            return Ok(None);
        };
        if op
            .steps
            .get(event.step as usize)
            .is_some_and(|s| s.cluster != sender)
        {
            tracing::warn!(operation = %op.id, %sender, "event from a spoke that does not own the step dropped");
            return Ok(None);
        }
        let effects = machine::apply_event(&mut op, &event, &now());
        if !effects.changed {
            return Ok(None);
        }
        if let Some(report) = &effects.captured {
            self.record_restore_point(&op, report)?;
        }
        if let Some(listed) = &effects.listed {
            for details in &listed.restore_points {
                self.store.put_restore_point(details)?;
            }
            tracing::info!(operation = %op.id, restore_points = listed.restore_points.len(), "catalog rebuilt");
        }
        if matches!(op.spec, OperationSpec::DeleteRestorePoint(_))
            && op.phase == ferry_protocol::operation::OperationPhase::Succeeded
        {
            if let Some(rp) = &op.restore_point {
                self.store.remove_restore_point(rp)?;
            }
        }
        self.store.put_operation(&op)?;
        if let Some(n) = effects.dispatch {
            self.send_command(&mut op, n).await?;
        }
        Ok(Some(op))
    }

    fn record_restore_point(&self, op: &Operation, report: &CaptureReport) -> Result<(), HubError> {
        let (cluster, selection) = match &op.spec {
            OperationSpec::Backup(b) => (b.cluster.clone(), b.selection.clone()),
            OperationSpec::Migrate(m) => (m.from.clone(), m.selection.clone()),
            _ => return Ok(()),
        };
        let registration = self.store.cluster(&cluster)?.map(|c| c.registration);
        let details = RestorePointDetails {
            summary: report.restore_point.clone(),
            source: SourceCluster {
                cluster,
                kubernetes_version: registration
                    .as_ref()
                    .map(|r| r.kubernetes_version.clone())
                    .unwrap_or_default(),
                ferry_version: registration
                    .as_ref()
                    .map(|r| r.ferry_version.clone())
                    .unwrap_or_default(),
            },
            selection,
            kinds: report.kinds.clone(),
            hooks: report.hooks.clone(),
            volumes: report.volumes.clone(),
        };
        self.store.put_restore_point(&details)?;
        Ok(())
    }

    async fn heartbeats(self: Arc<Self>) {
        let subject = format!(
            "{}.heartbeat",
            self.config
                .subjects
                .all_spoke_events()
                .trim_end_matches(".>")
        );
        let Ok(mut sub) = self.nats.subscribe(subject.clone()).await else {
            tracing::error!(%subject, "cannot subscribe to heartbeats");
            return;
        };
        while let Some(msg) = sub.next().await {
            if let Ok(beat) = Envelope::<Heartbeat>::from_bytes(&msg.payload) {
                let sender = msg.subject.split('.').rev().nth(2).unwrap_or("");
                if sender == beat.body.cluster {
                    self.seen(sender);
                }
            }
        }
    }

    /// Fails steps whose spoke has gone quiet for longer than the deadline.
    async fn deadlines(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            if let Err(e) = self.check_deadlines().await {
                tracing::error!(error = %e, "checking deadlines");
            }
        }
    }

    async fn check_deadlines(&self) -> Result<(), HubError> {
        let _t = self.transitions.lock().await;
        for mut op in self.store.running_operations()? {
            if op.phase.is_final() {
                continue;
            }
            let waiting: Vec<String> = op
                .steps
                .iter()
                .filter(|s| matches!(s.state, StepState::Dispatched | StepState::Running))
                .map(|s| s.cluster.clone())
                .collect();
            for cluster in waiting {
                let quiet = self
                    .last_seen
                    .lock()
                    .expect("last seen")
                    .get(&cluster)
                    .map(|t| t.elapsed());
                let lost = match quiet {
                    Some(d) if d >= self.config.spoke_timeout => Some(format!(
                        "spoke {cluster} has not been heard from for {} s (deadline {} s)",
                        d.as_secs(),
                        self.config.spoke_timeout.as_secs()
                    )),
                    None => Some(format!(
                        "spoke {cluster} has not been heard from since the hub started"
                    )),
                    _ => None,
                };
                if let Some(why) = lost {
                    if machine::spoke_lost(&mut op, &cluster, &why, &now()) {
                        tracing::warn!(operation = %op.id, %cluster, "spoke lost");
                        self.store.put_operation(&op)?;
                        self.store.flush().await?;
                        self.announce(&op).await;
                    }
                }
            }
        }
        Ok(())
    }

    /// Stops an operation: a command still in the stream is withdrawn, one running is told to
    /// stop.
    pub(crate) async fn cancel(&self, op: &mut Operation, reason: &str) -> Result<(), HubError> {
        if let Some(n) = machine::cancel(op, reason, &now()) {
            let step = &op.steps[n];
            if let Some(seq) = self.store.sequence(&step.command)? {
                if let Ok(stream) = self.js.get_stream(COMMAND_STREAM).await {
                    // Gone already if the spoke took it; then the cancel below reaches it.
                    let _ = stream.delete_message(seq).await;
                }
            }
            let subject = self
                .config
                .subjects
                .spoke_control(&step.cluster)
                .map_err(|e| nats("naming a subject", e))?;
            let cancel = Envelope::new(
                message_id(),
                now(),
                Cancel {
                    operation: op.id.clone(),
                    reason: reason.into(),
                },
            );
            let bytes = cancel
                .to_bytes()
                .map_err(|e| nats("encoding a cancel", e))?;
            self.nats
                .publish(subject, bytes.into())
                .await
                .map_err(|e| nats("sending a cancel", e))?;
        }
        self.store.put_operation(op)?;
        self.store.flush().await?;
        self.announce(op).await;
        Ok(())
    }
}

impl Hub {
    /// The `/metrics` exposition.
    pub fn metrics_text(&self) -> Result<String, HubError> {
        let ops = self.store.operations()?;
        let phases = ["running", "succeeded", "failed", "cancelled"];
        let counts: Vec<(&str, u64)> = phases
            .iter()
            .map(|p| {
                let n = ops
                    .iter()
                    .filter(|o| {
                        serde_json::to_value(o.phase)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .as_deref()
                            == Some(*p)
                    })
                    .count();
                (*p, n as u64)
            })
            .collect();
        let clusters = self.store.clusters()?;
        let connected = clusters
            .iter()
            .filter(|c| self.connected(&c.registration.cluster))
            .count();
        Ok(self
            .metrics
            .render(&counts, clusters.len() as u64, connected as u64))
    }
}
