//! The commands that talk to the hub. Each builds one API request; those that start an
//! operation wait for it (unless `--no-wait`), showing progress on stderr, and exit non-zero
//! when it fails.

use crate::client::{Client, OutputFormat};
use crate::output::{age, human_bytes, print, Table};
use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use ferry_protocol::api::{ById, ClusterStatus, Empty, ListRestorePoints, RestorePointDetails};
use ferry_protocol::command::ExistingPolicy;
use ferry_protocol::operation::{BackupSpec, MigrateSpec, Operation, OperationSpec, RestoreSpec};
use ferry_protocol::restore_point::RestorePointSummary;
use ferry_protocol::rules::TransformSpec;
use ferry_protocol::selection::{HelmReleaseSelector, OperatorResourceSelector, Selection};
use std::path::PathBuf;
use std::process::ExitCode;

mod operation;

pub use operation::operations;
use operation::{finish, progress_line, run_operation, show_operation};

#[derive(Args)]
pub struct SelectionArgs {
    /// Namespaces to capture (repeat or comma-separate).
    #[arg(long = "namespace", short = 'n', value_delimiter = ',')]
    namespaces: Vec<String>,
    /// Only objects with these labels (a Kubernetes label selector); dependencies always come.
    #[arg(long = "selector", short = 'l')]
    selector: Option<String>,
    /// Only these resource types (`deployments.apps`), repeat or comma-separate.
    #[arg(long = "include-resources", value_delimiter = ',')]
    include: Vec<String>,
    /// Never these resource types.
    #[arg(long = "exclude-resources", value_delimiter = ',')]
    exclude: Vec<String>,
    /// A Helm release, as namespace/name.
    #[arg(long)]
    helm_release: Option<String>,
    /// An Operator's custom resource, as Kind.version.group/namespace/name
    /// (`Cache.v1.example.com/shop/hot`): it, what it owns, its CRD and its operator.
    #[arg(long)]
    operator_resource: Option<String>,
    /// Exec hooks around the volume snapshots: a YAML or JSON list of
    /// `{name, phase: pre|post, namespace, labelSelector, container, command, timeoutSeconds, onError: fail|continue}`.
    #[arg(long)]
    hooks: Option<PathBuf>,
}

impl SelectionArgs {
    fn hooks(&self) -> anyhow::Result<Vec<ferry_protocol::hooks::HookSpec>> {
        let Some(path) = &self.hooks else {
            return Ok(Vec::new());
        };
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let de = serde_yaml_ng::Deserializer::from_str(&text);
        serde_path_to_error::deserialize(de)
            .map_err(|e| anyhow::anyhow!("{}: {}: {}", path.display(), e.path(), e.inner()))
    }

    fn selection(&self) -> anyhow::Result<Selection> {
        let helm_release = match &self.helm_release {
            None => None,
            Some(s) => {
                let Some((namespace, name)) = s.split_once('/') else {
                    bail!("--helm-release: write namespace/name, not {s:?}");
                };
                Some(HelmReleaseSelector {
                    name: name.into(),
                    namespace: namespace.into(),
                })
            }
        };
        let operator_resource = self
            .operator_resource
            .as_deref()
            .map(operator_resource)
            .transpose()?;
        Ok(Selection {
            namespaces: self.namespaces.clone(),
            label_selector: self.selector.clone(),
            include_resources: self.include.clone(),
            exclude_resources: self.exclude.clone(),
            helm_release,
            operator_resource,
        })
    }
}

/// `Kind.version.group/namespace/name` (`Cache.v1.example.com/shop/hot`; `Kind.v1/...` for the
/// core group).
fn operator_resource(s: &str) -> anyhow::Result<OperatorResourceSelector> {
    let wrong = || {
        anyhow::anyhow!("--operator-resource: write Kind.version.group/namespace/name (Cache.v1.example.com/shop/hot), not {s:?}")
    };
    let mut parts = s.splitn(3, '/');
    let (Some(kind_version_group), Some(namespace), Some(name)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return Err(wrong());
    };
    let (kind, version_group) = kind_version_group.split_once('.').ok_or_else(wrong)?;
    let api_version = match version_group.split_once('.') {
        Some((version, group)) => format!("{group}/{version}"),
        None => version_group.to_string(),
    };
    Ok(OperatorResourceSelector {
        api_version,
        kind: kind.into(),
        namespace: namespace.into(),
        name: name.into(),
    })
}

#[derive(Clone, Copy, ValueEnum)]
enum Existing {
    Skip,
    Update,
    Fail,
}

impl From<Existing> for ExistingPolicy {
    fn from(e: Existing) -> Self {
        match e {
            Existing::Skip => ExistingPolicy::Skip,
            Existing::Update => ExistingPolicy::Update,
            Existing::Fail => ExistingPolicy::Fail,
        }
    }
}

#[derive(Args)]
pub struct RestoreOptions {
    /// Transform rules (YAML or JSON), checked before anything starts.
    #[arg(long)]
    transforms: Option<PathBuf>,
    /// What to do with objects already in the target.
    #[arg(long, value_enum, default_value = "skip")]
    existing: Existing,
    /// Show the plan against the live target and change nothing.
    #[arg(long)]
    dry_run: bool,
}

impl RestoreOptions {
    fn transforms(&self) -> anyhow::Result<TransformSpec> {
        let Some(path) = &self.transforms else {
            return Ok(TransformSpec::default());
        };
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let spec =
            ferry_transform::parse_spec(&text).with_context(|| format!("in {}", path.display()))?;
        ferry_transform::compile(&spec).with_context(|| format!("in {}", path.display()))?;
        Ok(spec)
    }
}

#[derive(Args)]
pub struct StartOptions {
    /// Objects only: no volume data.
    #[arg(long)]
    no_volume_data: bool,
    /// Return once the operation is started instead of waiting for it.
    #[arg(long)]
    no_wait: bool,
    /// Idempotency key: starting again with the same id returns the first operation.
    #[arg(long)]
    id: Option<String>,
}

#[derive(Subcommand)]
pub enum BackupCommand {
    /// Capture a restore point of an application.
    Create {
        /// The cluster to capture in.
        #[arg(long)]
        cluster: String,
        #[command(flatten)]
        selection: SelectionArgs,
        #[command(flatten)]
        start: StartOptions,
    },
    /// Restore points in the hub's catalog.
    List {
        #[arg(long)]
        cluster: Option<String>,
    },
    /// One restore point: where it came from, what it holds.
    Describe { id: String },
    /// Refill the hub's catalog from the repository of a cluster's spoke (after the hub lost its
    /// database: the repository is the source of truth).
    RebuildCatalog {
        #[arg(long)]
        cluster: String,
        #[arg(long)]
        no_wait: bool,
    },
    /// Forget a restore point's snapshots in the repository.
    Delete {
        id: String,
        #[arg(long)]
        no_wait: bool,
    },
}

#[derive(Args)]
pub struct RestoreArgs {
    /// The restore point.
    restore_point: String,
    /// The cluster to restore into.
    #[arg(long)]
    cluster: String,
    #[command(flatten)]
    options: RestoreOptions,
    #[command(flatten)]
    start: StartOptions,
}

#[derive(Args)]
pub struct MigrateArgs {
    #[arg(long)]
    from: String,
    #[arg(long)]
    to: String,
    #[command(flatten)]
    selection: SelectionArgs,
    #[command(flatten)]
    options: RestoreOptions,
    #[command(flatten)]
    start: StartOptions,
}

#[derive(Subcommand)]
pub enum OperationsCommand {
    List {
        /// Only operations in this phase (running, succeeded, failed, cancelled).
        #[arg(long)]
        phase: Option<String>,
    },
    Get {
        id: String,
    },
    /// Follow an operation until it ends.
    Watch {
        id: String,
    },
    Cancel {
        id: String,
    },
}

pub async fn clusters(client: &Client) -> anyhow::Result<ExitCode> {
    let list: Vec<ClusterStatus> = client.call("clusters", "list", Empty {}).await?;
    print(client.output, &list, || {
        let mut t = Table::new(&[
            "NAME",
            "CONNECTED",
            "KUBERNETES",
            "FERRY",
            "STORAGE CLASSES",
            "REPOSITORY",
            "LAST SEEN",
        ]);
        for c in &list {
            let r = &c.registration;
            let classes: Vec<String> = r
                .storage_classes
                .iter()
                .map(|s| {
                    if s.default {
                        format!("{} (default)", s.name)
                    } else {
                        s.name.clone()
                    }
                })
                .collect();
            t.row(vec![
                r.cluster.clone(),
                if c.connected { "True" } else { "False" }.into(),
                r.kubernetes_version.clone(),
                r.ferry_version.clone(),
                classes.join(","),
                r.repository.location.clone(),
                age(&c.last_seen),
            ]);
        }
        t
    })?;
    Ok(ExitCode::SUCCESS)
}

pub async fn backup(client: &Client, command: BackupCommand) -> anyhow::Result<ExitCode> {
    match command {
        BackupCommand::Create {
            cluster,
            selection,
            start,
        } => {
            let spec = OperationSpec::Backup(BackupSpec {
                cluster,
                hooks: selection.hooks()?,
                selection: selection.selection()?,
                volume_data: !start.no_volume_data,
            });
            run_operation(client, spec, &start).await
        }
        BackupCommand::List { cluster } => {
            let list: Vec<RestorePointSummary> = client
                .call("restorepoints", "list", ListRestorePoints { cluster })
                .await?;
            print(client.output, &list, || {
                let mut t = Table::new(&[
                    "ID", "CLUSTER", "OBJECTS", "VOLUMES", "DATA", "STORED", "AGE",
                ]);
                for r in &list {
                    t.row(vec![
                        r.id.clone(),
                        r.cluster.clone(),
                        r.objects.to_string(),
                        r.volumes.to_string(),
                        human_bytes(r.volume_bytes),
                        human_bytes(r.stored_bytes),
                        age(&r.created),
                    ]);
                }
                t
            })?;
            Ok(ExitCode::SUCCESS)
        }
        BackupCommand::Describe { id } => {
            let d: RestorePointDetails = client
                .call("restorepoints", "describe", ById { id })
                .await?;
            if client.output != OutputFormat::Table {
                print(client.output, &d, || Table::new(&[]))?;
                return Ok(ExitCode::SUCCESS);
            }
            let s = &d.summary;
            println!("Restore point:  {}", s.id);
            println!(
                "Cluster:        {} (Kubernetes {}, Ferry {})",
                d.source.cluster, d.source.kubernetes_version, d.source.ferry_version
            );
            println!("Created:        {} ({} ago)", s.created, age(&s.created));
            if let Some(op) = &s.operation {
                println!("Operation:      {op}");
            }
            println!("Snapshot:       {}", s.snapshot);
            println!("Selection:      {}", serde_json::to_string(&d.selection)?);
            println!("Objects:        {}", s.objects);
            let mut t = Table::new(&["KIND", "COUNT"]);
            for (k, n) in &d.kinds {
                t.row(vec![k.clone(), n.to_string()]);
            }
            for line in t.render().lines() {
                println!("  {line}");
            }
            println!(
                "Volumes:        {} ({}, {} stored)",
                s.volumes,
                human_bytes(s.volume_bytes),
                human_bytes(s.stored_bytes)
            );
            Ok(ExitCode::SUCCESS)
        }
        BackupCommand::RebuildCatalog { cluster, no_wait } => {
            let op: Operation = client
                .call(
                    "restorepoints",
                    "rebuild",
                    ferry_protocol::api::RebuildCatalog { cluster },
                )
                .await?;
            if no_wait {
                return show_operation(client, &op);
            }
            let done = client.watch(&op.id, progress_line).await?;
            finish(client, done)
        }
        BackupCommand::Delete { id, no_wait } => {
            let op: Operation = client.call("restorepoints", "delete", ById { id }).await?;
            if no_wait {
                return show_operation(client, &op);
            }
            let done = client.watch(&op.id, progress_line).await?;
            finish(client, done)
        }
    }
}

pub async fn restore(client: &Client, args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let spec = OperationSpec::Restore(RestoreSpec {
        cluster: args.cluster,
        restore_point: args.restore_point,
        transforms: args.options.transforms()?,
        existing: args.options.existing.into(),
        dry_run: args.options.dry_run,
        volume_data: !args.start.no_volume_data,
    });
    run_operation(client, spec, &args.start).await
}

pub async fn migrate(client: &Client, args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let spec = OperationSpec::Migrate(MigrateSpec {
        from: args.from,
        to: args.to,
        selection: args.selection.selection()?,
        hooks: args.selection.hooks()?,
        transforms: args.options.transforms()?,
        existing: args.options.existing.into(),
        dry_run: args.options.dry_run,
        volume_data: !args.start.no_volume_data,
    });
    run_operation(client, spec, &args.start).await
}
