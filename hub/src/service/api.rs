//! The request/reply API: each request is checked (malformed and invalid requests get an error
//! naming the field), then answered from the store or turned into an operation.

use super::{message_id, now, random_suffix, Hub, HubError};
use crate::machine;
use ferry_protocol::api::{
    ApiError, ApiErrorCode, ApiReply, ById, ClusterStatus, Empty, ListOperations,
    ListRestorePoints, StartOperation,
};
use ferry_protocol::operation::{Operation, OperationSpec};
use ferry_protocol::spoke::capability;
use ferry_protocol::Envelope;
use futures::StreamExt;
use serde::{de::DeserializeOwned, Serialize};
use std::sync::Arc;

fn error(code: ApiErrorCode, message: impl Into<String>, field: Option<&str>) -> ApiError {
    ApiError {
        code,
        message: message.into(),
        field: field.map(str::to_string),
    }
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    error(ApiErrorCode::Invalid, message, Some(field))
}

impl From<HubError> for ApiError {
    fn from(e: HubError) -> ApiError {
        error(ApiErrorCode::Internal, e.to_string(), None)
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        error(ApiErrorCode::Internal, e.to_string(), None)
    }
}

type Answer = Result<serde_json::Value, ApiError>;

fn decode<T: Serialize + DeserializeOwned>(payload: &[u8]) -> Result<Envelope<T>, ApiError> {
    Envelope::<T>::from_bytes(payload)
        .map_err(|e| error(ApiErrorCode::Malformed, e.to_string(), None))
}

fn json<T: Serialize>(v: T) -> Answer {
    Ok(serde_json::to_value(v).expect("replies serialize"))
}

impl Hub {
    pub(crate) async fn serve_api(self: Arc<Self>) {
        let subject = self.config.subjects.all_api();
        let mut sub = match self
            .nats
            .queue_subscribe(subject.clone(), "ferry-hub".into())
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(%subject, error = %e, "cannot serve the API");
                return;
            }
        };
        while let Some(msg) = sub.next().await {
            let hub = self.clone();
            tokio::spawn(async move {
                let Some(reply) = msg.reply.clone() else {
                    return;
                };
                let correlation = serde_json::from_slice::<serde_json::Value>(&msg.payload)
                    .ok()
                    .and_then(|v| v["messageId"].as_str().map(str::to_string));
                let answer = hub.answer(&msg.subject, &msg.payload).await;
                hub.metrics
                    .api_requests
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let body = match answer {
                    Ok(v) => ApiReply::Ok(v),
                    Err(e) => {
                        hub.metrics
                            .api_errors
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        ApiReply::Error(e)
                    }
                };
                let mut envelope = Envelope::new(message_id(), now(), body);
                if let Some(c) = correlation {
                    envelope = envelope.correlated(c);
                }
                if let Ok(bytes) = envelope.to_bytes() {
                    let _ = hub.nats.publish(reply, bytes.into()).await;
                }
            });
        }
    }

    async fn answer(&self, subject: &str, payload: &[u8]) -> Answer {
        let mut parts = subject.rsplit('.');
        let verb = parts.next().unwrap_or("");
        let resource = parts.next().unwrap_or("");
        match (resource, verb) {
            ("operations", "start") => {
                self.start_operation(decode::<StartOperation>(payload)?.body)
                    .await
            }
            ("operations", "get") => {
                let id = decode::<ById>(payload)?.body.id;
                json(self.operation(&id)?)
            }
            ("operations", "list") => {
                let q = decode::<ListOperations>(payload)?.body;
                let mut ops: Vec<Operation> = self
                    .store
                    .operations()?
                    .into_iter()
                    .filter(|o| q.phase.is_none_or(|p| o.phase == p))
                    .collect();
                ops.sort_by(|a, b| b.created.cmp(&a.created));
                ops.truncate(q.limit.unwrap_or(100) as usize);
                json(ops)
            }
            ("operations", "cancel") => {
                let id = decode::<ById>(payload)?.body.id;
                let _t = self.transitions.lock().await;
                let mut op = self.operation(&id)?;
                if op.phase.is_final() {
                    return Err(error(
                        ApiErrorCode::Conflict,
                        format!("operation {id} is already {:?}", op.phase),
                        Some("id"),
                    ));
                }
                self.cancel(&mut op, "cancelled by a client").await?;
                json(op)
            }
            ("clusters", "list") => {
                decode::<Empty>(payload)?;
                let clusters: Vec<ClusterStatus> = self
                    .store
                    .clusters()?
                    .into_iter()
                    .map(|mut c| {
                        c.connected = self.connected(&c.registration.cluster);
                        c
                    })
                    .collect();
                json(clusters)
            }
            ("restorepoints", "list") => {
                let q = decode::<ListRestorePoints>(payload)?.body;
                let mut list: Vec<_> = self
                    .store
                    .restore_points()?
                    .into_iter()
                    .filter(|r| q.cluster.as_ref().is_none_or(|c| *c == r.summary.cluster))
                    .map(|r| r.summary)
                    .collect();
                list.sort_by(|a, b| b.created.cmp(&a.created));
                json(list)
            }
            ("restorepoints", "describe") => {
                let id = decode::<ById>(payload)?.body.id;
                match self.store.restore_point(&id)? {
                    Some(d) => json(d),
                    None => Err(error(
                        ApiErrorCode::NotFound,
                        format!("no restore point {id}"),
                        Some("id"),
                    )),
                }
            }
            ("restorepoints", "rebuild") => {
                let cluster = decode::<ferry_protocol::api::RebuildCatalog>(payload)?
                    .body
                    .cluster;
                let spec =
                    OperationSpec::RebuildCatalog(ferry_protocol::operation::RebuildCatalogSpec {
                        cluster,
                    });
                self.start_operation(StartOperation { spec, id: None })
                    .await
            }
            ("restorepoints", "delete") => {
                let id = decode::<ById>(payload)?.body.id;
                let spec = OperationSpec::DeleteRestorePoint(
                    ferry_protocol::operation::DeleteRestorePointSpec { restore_point: id },
                );
                self.start_operation(StartOperation { spec, id: None })
                    .await
            }
            _ => Err(error(
                ApiErrorCode::UnknownEndpoint,
                format!("no API endpoint {resource}.{verb} (see docs/protocol.md)"),
                None,
            )),
        }
    }

    fn operation(&self, id: &str) -> Result<Operation, ApiError> {
        self.store.operation(id)?.ok_or_else(|| {
            error(
                ApiErrorCode::NotFound,
                format!("no operation {id}"),
                Some("id"),
            )
        })
    }

    /// Checks a spec against the fleet before anything starts.
    fn check(&self, spec: &OperationSpec) -> Result<(), ApiError> {
        let cluster = |field: &str, name: &str, need: &[&str]| -> Result<ClusterStatus, ApiError> {
            let c = self.store.cluster(name)?.ok_or_else(|| {
                invalid(
                    field,
                    format!("no spoke has registered as cluster {name:?}"),
                )
            })?;
            for cap in need {
                if !c.registration.capabilities.iter().any(|c| c == cap) {
                    return Err(invalid(
                        field,
                        format!("the spoke of cluster {name:?} cannot {cap}"),
                    ));
                }
            }
            Ok(c)
        };
        let transforms = |field: &str, t: &ferry_protocol::rules::TransformSpec| {
            ferry_transform::compile(t)
                .map(|_| ())
                .map_err(|e| invalid(field, e.to_string()))
        };
        let selection = |field: &str, s: &ferry_protocol::selection::Selection| {
            ferry_transform::selection::validate(s, field).map_err(|e| invalid(&e.field, e.message))
        };
        let needs = |first: &'static str, volume_data: bool, hooks: bool| {
            let mut need = vec![first];
            if volume_data {
                need.push(capability::VOLUME_DATA);
            }
            if hooks {
                need.push(capability::HOOKS);
            }
            need
        };
        match spec {
            OperationSpec::Backup(b) => {
                selection("spec.backup.selection", &b.selection)?;
                cluster(
                    "spec.backup.cluster",
                    &b.cluster,
                    &needs(capability::CAPTURE, b.volume_data, !b.hooks.is_empty()),
                )?;
            }
            OperationSpec::Restore(r) => {
                transforms("spec.restore.transforms", &r.transforms)?;
                cluster(
                    "spec.restore.cluster",
                    &r.cluster,
                    &needs(capability::RESTORE, r.volume_data, false),
                )?;
            }
            OperationSpec::Migrate(m) => {
                selection("spec.migrate.selection", &m.selection)?;
                transforms("spec.migrate.transforms", &m.transforms)?;
                let from = cluster(
                    "spec.migrate.from",
                    &m.from,
                    &needs(capability::CAPTURE, m.volume_data, !m.hooks.is_empty()),
                )?;
                let to = cluster(
                    "spec.migrate.to",
                    &m.to,
                    &needs(capability::RESTORE, m.volume_data, false),
                )?;
                if from.registration.repository.id != to.registration.repository.id {
                    return Err(invalid(
                        "spec.migrate.to",
                        format!(
                            "clusters {:?} and {:?} use different repositories ({} and {}); a migration needs one both can reach",
                            m.from, m.to, from.registration.repository.location, to.registration.repository.location
                        ),
                    ));
                }
            }
            OperationSpec::RebuildCatalog(r) => {
                cluster(
                    "spec.rebuildCatalog.cluster",
                    &r.cluster,
                    &[capability::CAPTURE],
                )?;
            }
            OperationSpec::DeleteRestorePoint(d) => {
                if self.store.restore_point(&d.restore_point)?.is_none() {
                    return Err(error(
                        ApiErrorCode::NotFound,
                        format!("no restore point {}", d.restore_point),
                        Some("spec.deleteRestorePoint.restorePoint"),
                    ));
                }
            }
        }
        Ok(())
    }

    async fn start_operation(&self, request: StartOperation) -> Answer {
        if let Some(key) = &request.id {
            ferry_protocol::subjects::validate_token(key)
                .map_err(|e| invalid("id", e.to_string()))?;
            if let Some(existing) = self.store.started_by(key)? {
                return json(self.operation(&existing)?);
            }
        }
        self.check(&request.spec)?;
        // The transition lock covers what other tasks may change at the same time (the
        // idempotency key, the operation once its command is out); the flushes happen outside
        // it, so concurrent starts share them.
        let id = {
            let _t = self.transitions.lock().await;
            // Again under the lock: two requests with one key may both have passed the check above.
            if let Some(key) = &request.id {
                if let Some(existing) = self.store.started_by(key)? {
                    return json(self.operation(&existing)?);
                }
            }
            let id = match &request.id {
                Some(key) => key.clone(),
                None => format!(
                    "{}-{}",
                    chrono::Utc::now().format("%Y%m%d-%H%M%S"),
                    random_suffix()
                ),
            };
            let mut op = machine::new_operation(&id, request.spec, &now());
            if let OperationSpec::DeleteRestorePoint(d) = &op.spec {
                // Checked above, but a concurrent delete may have removed it since.
                let rp = self.store.restore_point(&d.restore_point)?.ok_or_else(|| {
                    error(
                        ApiErrorCode::NotFound,
                        format!("no restore point {}", d.restore_point),
                        Some("spec.deleteRestorePoint.restorePoint"),
                    )
                })?;
                op.steps[0].cluster = rp.summary.cluster.clone();
            }
            self.store.put_operation(&op)?;
            if let Some(key) = &request.id {
                self.store.put_started_by(key, &id)?;
            }
            id
        };
        self.store.flush().await?;
        tracing::info!(operation = %id, "operation started");
        let op = {
            let _t = self.transitions.lock().await;
            // Read again: it may have been cancelled meanwhile.
            let mut op = self.operation(&id)?;
            if let Some(n) = machine::next_step(&op) {
                self.send_command(&mut op, n).await?;
            }
            op
        };
        self.store.flush().await?;
        self.announce(&op).await;
        json(op)
    }
}
