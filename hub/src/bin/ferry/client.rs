//! The hub's API over NATS, as the CLI calls it: one request per call, the reply's error turned
//! into a message naming the field.

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use ferry_protocol::api::ApiReply;
use ferry_protocol::operation::Operation;
use ferry_protocol::subjects::{Subjects, DEFAULT_PREFIX};
use ferry_protocol::Envelope;
use futures::StreamExt;
use serde::{de::DeserializeOwned, Serialize};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
    Yaml,
}

#[derive(Args)]
pub struct Global {
    /// NATS server URL.
    #[arg(
        long,
        global = true,
        env = "FERRY_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats: String,
    /// NATS credentials file.
    #[arg(long, global = true, env = "FERRY_NATS_CREDS")]
    pub nats_creds: Option<std::path::PathBuf>,
    /// Subject prefix of the Ferry installation.
    #[arg(long, global = true, env = "FERRY_PREFIX", default_value = DEFAULT_PREFIX)]
    pub prefix: String,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value = "table")]
    pub output: OutputFormat,
    /// Seconds to wait for the hub to answer a request.
    #[arg(long, global = true, default_value_t = 10)]
    pub request_timeout: u64,
}

pub struct Client {
    pub nats: async_nats::Client,
    pub subjects: Subjects,
    pub output: OutputFormat,
    timeout: Duration,
}

fn message_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_i64(chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default());
    format!("cli-{:016x}", h.finish())
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Client {
    pub async fn connect(g: &Global) -> anyhow::Result<Client> {
        let subjects = Subjects::new(&g.prefix).context("--prefix")?;
        let mut options = async_nats::ConnectOptions::new()
            .name("ferry")
            .connection_timeout(Duration::from_secs(5));
        if let Some(creds) = &g.nats_creds {
            options = options
                .credentials_file(creds)
                .await
                .with_context(|| format!("reading {}", creds.display()))?;
        }
        let nats = options
            .connect(&g.nats)
            .await
            .with_context(|| format!("connecting to NATS at {}", g.nats))?;
        Ok(Client {
            nats,
            subjects,
            output: g.output,
            timeout: Duration::from_secs(g.request_timeout.max(1)),
        })
    }

    /// One request to `<resource>.<verb>`.
    pub async fn call<Req, Resp>(
        &self,
        resource: &str,
        verb: &str,
        body: Req,
    ) -> anyhow::Result<Resp>
    where
        Req: Serialize + DeserializeOwned,
        Resp: Serialize + DeserializeOwned,
    {
        let subject = self.subjects.api(resource, verb)?;
        let payload = Envelope::new(message_id(), now(), body).to_bytes()?;
        let reply = tokio::time::timeout(
            self.timeout,
            self.nats.request(subject.clone(), payload.into()),
        )
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "no answer on {subject} within {} s: is ferry-hub running?",
                self.timeout.as_secs()
            )
        })?
        .map_err(|e| anyhow::anyhow!("{subject}: {e} (is ferry-hub running?)"))?;
        match Envelope::<ApiReply<Resp>>::from_bytes(&reply.payload)
            .with_context(|| format!("reading the hub's answer on {subject}"))?
            .body
        {
            ApiReply::Ok(v) => Ok(v),
            ApiReply::Error(e) => bail!("{e}"),
        }
    }

    /// Every state of an operation until it ends, starting with the current one.
    pub async fn watch(
        &self,
        id: &str,
        mut on_change: impl FnMut(&Operation),
    ) -> anyhow::Result<Operation> {
        // Subscribe before reading, so no change between the two is missed.
        let mut updates = self
            .nats
            .subscribe(self.subjects.operation_events(id)?)
            .await?;
        let mut current: Operation = self
            .call(
                "operations",
                "get",
                ferry_protocol::api::ById { id: id.into() },
            )
            .await?;
        on_change(&current);
        while !current.phase.is_final() {
            // A watcher that missed a message still catches the end by asking again.
            match tokio::time::timeout(Duration::from_secs(5), updates.next()).await {
                Ok(Some(msg)) => {
                    if let Ok(e) = Envelope::<Operation>::from_bytes(&msg.payload) {
                        if e.body.updated >= current.updated {
                            current = e.body;
                        }
                    }
                }
                Ok(None) => bail!("the NATS connection closed while watching {id}"),
                Err(_) => {
                    current = self
                        .call(
                            "operations",
                            "get",
                            ferry_protocol::api::ById { id: id.into() },
                        )
                        .await?;
                }
            }
            on_change(&current);
        }
        Ok(current)
    }
}
