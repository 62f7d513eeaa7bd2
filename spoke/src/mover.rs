//! Volume data, the way it must move on a real cluster: the spoke never reads a volume itself.
//! For capture it takes a VolumeSnapshot of each claim, makes a claim from the snapshot and runs
//! a **mover pod** (the `ferry-spoke` image, `ferry-spoke mover backup`) that mounts it and
//! writes it into the repository; for restore it runs a mover pod (`ferry-spoke mover restore`)
//! on the new, empty claim before anything else mounts it. Snapshots, temporary claims, pods
//! and the credentials Secret are removed when the volume is done, whatever the outcome.

use crate::cluster::{namespace_and_name, Cluster, Resource, ResourceMap};
use crate::error::{Result, SpokeError};
use ferry_protocol::restore_point::{volume_source, VolumeMode};
use ferry_protocol::ObjectRef;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Labels and annotations the mover's objects carry.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// On a restored claim once its data is in: a redelivered restore does not fill it twice.
pub const FILLED_FROM_ANNOTATION: &str = "ferry.dev/filled-from";
/// Tag on a volume's repository snapshot: `<namespace>/<claim>` in the source.
pub const VOLUME_TAG: &str = "ferry.volume";

/// How mover pods reach the repository: its location, passphrase and storage credentials,
/// handed to the pod through a Secret (never logged, never in the pod spec).
#[derive(Clone)]
pub struct MoverConfig {
    pub image: String,
    pub repository: String,
    pub password: Vec<u8>,
    /// `AWS_*`, `GOOGLE_*`, `AZURE_*` variables the repository URL needs.
    pub store_env: Vec<(String, String)>,
    pub timeout: Duration,
    /// Storage classes (`*`: all) whose driver makes a `ReadOnlyMany` claim from a snapshot
    /// without copying it (CephFS's shallow volumes, the stand-in's local-path): the capture's
    /// mover reads such a clone instead of a full copy. Other classes get a `ReadWriteOnce`
    /// clone, which every snapshot-capable driver can make.
    pub read_only_clones: Vec<String>,
}

impl MoverConfig {
    /// The access mode of the claim a capture's mover reads a snapshot through.
    fn clone_access_mode(&self, class: Option<&str>) -> &'static str {
        let shallow = self
            .read_only_clones
            .iter()
            .any(|r| r == "*" || Some(r.as_str()) == class);
        if shallow {
            "ReadOnlyMany"
        } else {
            "ReadWriteOnce"
        }
    }
}

impl std::fmt::Debug for MoverConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MoverConfig")
            .field("image", &self.image)
            .field("repository", &self.repository)
            .finish_non_exhaustive()
    }
}

/// The store variables of the spoke's own environment, to pass on to movers.
pub fn store_env_from_process() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("AWS_") || k.starts_with("GOOGLE_") || k.starts_with("AZURE_")
        })
        .collect()
}

/// The types the mover needs, resolved once.
pub struct Kinds {
    pods: Resource,
    claims: Resource,
    secrets: Resource,
    snapshots: Option<Resource>,
}

impl Kinds {
    pub fn new(map: &ResourceMap) -> Result<Kinds> {
        let need = |g: &str, k: &str| {
            map.get(g, k).cloned().ok_or_else(|| SpokeError::NotFound {
                what: format!("the {k} resource type"),
            })
        };
        Ok(Kinds {
            pods: need("", "Pod")?,
            claims: need("", "PersistentVolumeClaim")?,
            secrets: need("", "Secret")?,
            snapshots: map
                .get("snapshot.storage.k8s.io", "VolumeSnapshot")
                .cloned(),
        })
    }
}

/// A name for a mover object: short, valid, and the same for the same volume of the same
/// restore point (so a resumed step finds what an interrupted one left).
fn object_name(prefix: &str, restore_point: &str, claim: &str) -> String {
    let h = blake3::hash(format!("{restore_point}/{claim}").as_bytes()).to_hex();
    format!("{prefix}-{}", &h[..16])
}

fn reference(kind: &str, group: &str, namespace: &str, name: &str) -> ObjectRef {
    ObjectRef {
        group: group.into(),
        version: "v1".into(),
        kind: kind.into(),
        namespace: Some(namespace.into()),
        name: name.into(),
    }
}

/// One mover pod: `ferry-spoke mover <args>` with the claim at `/data` (or, for block
/// volumes, the device at `/dev/ferry-volume`) and the repository's credentials from `secret`.
struct MoverPod<'a> {
    namespace: &'a str,
    name: &'a str,
    secret: &'a str,
    claim: &'a str,
    mode: VolumeMode,
    read_only: bool,
    args: Vec<String>,
}

impl MoverPod<'_> {
    fn manifest(self, image: &str) -> Value {
        let mut args = self.args;
        let mut container = json!({"name": "mover", "image": image,
            "envFrom": [{"secretRef": {"name": self.secret}}]});
        match self.mode {
            VolumeMode::Filesystem => {
                args.extend(["--path".into(), "/data".into()]);
                container["volumeMounts"] =
                    json!([{"name": "data", "mountPath": "/data", "readOnly": self.read_only}]);
            }
            VolumeMode::Block => {
                args.extend([
                    "--block".into(),
                    "--path".into(),
                    "/dev/ferry-volume".into(),
                ]);
                container["volumeDevices"] =
                    json!([{"name": "data", "devicePath": "/dev/ferry-volume"}]);
            }
        }
        container["args"] = json!(args);
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": self.name, "namespace": self.namespace,
                         "labels": {MANAGED_BY: "ferry", "app.kubernetes.io/name": "ferry-mover"}},
            "spec": {"restartPolicy": "Never", "containers": [container],
                     "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": self.claim, "readOnly": self.read_only}}]}})
    }
}

pub struct Mover<'a> {
    pub cluster: &'a Cluster,
    pub config: &'a MoverConfig,
    pub kinds: &'a Kinds,
}

impl Mover<'_> {
    async fn delete(&self, r: &Resource, namespace: &str, name: &str) {
        let api: kube::Api<kube::api::DynamicObject> =
            kube::Api::namespaced_with(self.cluster.client(), namespace, &r.api);
        let params = kube::api::DeleteParams::background();
        if let Err(e) = api.delete(name, &params).await {
            if !crate::cluster::is_not_found(&e) {
                tracing::warn!(namespace, name, error = %e, "mover clean-up");
            }
        }
    }

    /// The Secret mover pods read the repository's location and credentials from.
    async fn credentials(&self, namespace: &str, name: &str) -> Result<()> {
        use base64::Engine;
        let b64 = |v: &[u8]| base64::engine::general_purpose::STANDARD.encode(v);
        let mut data = serde_json::Map::new();
        data.insert(
            "FERRY_REPOSITORY".into(),
            json!(b64(self.config.repository.as_bytes())),
        );
        data.insert("FERRY_PASSWORD".into(), json!(b64(&self.config.password)));
        for (k, v) in &self.config.store_env {
            data.insert(k.clone(), json!(b64(v.as_bytes())));
        }
        let secret = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace, "labels": {MANAGED_BY: "ferry"}},
            "type": "Opaque", "data": data});
        match self
            .cluster
            .create(&self.kinds.secrets, &secret, false)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(409) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Runs a mover pod to completion; its log's end is the error if it fails.
    async fn run_pod(&self, pod: Value) -> Result<()> {
        let (ns, name) = namespace_and_name(&pod);
        let r = reference("Pod", "", &ns, &name);
        // A pod left by an interrupted attempt is replaced: its outcome is unknown.
        self.delete(&self.kinds.pods, &ns, &name).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.cluster.create(&self.kinds.pods, &pod, false).await {
                Ok(_) => break,
                Err(e) if e.status() == Some(409) && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => return Err(e),
            }
        }
        let finished = self
            .cluster
            .watch_until(
                &self.kinds.pods,
                Some(&ns),
                &name,
                self.config.timeout,
                |p| {
                    let phase = p?.pointer("/status/phase")?.as_str()?;
                    matches!(phase, "Succeeded" | "Failed").then(|| phase == "Succeeded")
                },
            )
            .await;
        let result = match finished {
            Ok(Some(true)) => Ok(()),
            Ok(Some(false)) => {
                let log = self.log_tail(&ns, &name).await;
                Err(SpokeError::Mover {
                    object: Box::new(r.clone()),
                    message: format!("failed: {log}"),
                })
            }
            Ok(None) => Err(SpokeError::Timeout {
                what: format!("mover pod {ns}/{name}"),
                object: Some(Box::new(r.clone())),
                seconds: self.config.timeout.as_secs(),
            }),
            Err(e) => Err(e),
        };
        self.delete(&self.kinds.pods, &ns, &name).await;
        result
    }

    async fn log_tail(&self, ns: &str, name: &str) -> String {
        let api: kube::Api<k8s_openapi::api::core::v1::Pod> =
            kube::Api::namespaced(self.cluster.client(), ns);
        let params = kube::api::LogParams {
            tail_lines: Some(5),
            ..Default::default()
        };
        api.logs(name, &params)
            .await
            .unwrap_or_else(|e| format!("(no log: {e})"))
            .trim()
            .to_string()
    }

    /// Takes a VolumeSnapshot of a claim and waits until it is ready; all of an application's
    /// snapshots are taken before any data moves, so they sit between the same hooks.
    pub async fn snapshot(&self, restore_point: &str, claim: &Value) -> Result<String> {
        let (ns, name) = namespace_and_name(claim);
        let snapshots = self.snapshot_type()?;
        let snap_name = object_name("ferry-snap", restore_point, &format!("{ns}/{name}"));
        let snap = json!({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
            "metadata": {"name": snap_name, "namespace": ns, "labels": {MANAGED_BY: "ferry"}},
            "spec": {"source": {"persistentVolumeClaimName": name}}});
        create_or_keep(self.cluster, snapshots, &snap).await?;
        self.wait(
            snapshots,
            &ns,
            &snap_name,
            "/status/readyToUse",
            &json!(true),
        )
        .await?;
        Ok(snap_name)
    }

    fn snapshot_type(&self) -> Result<&Resource> {
        self.kinds.snapshots.as_ref().ok_or_else(|| SpokeError::NotFound {
            what: "the VolumeSnapshot resource type (snapshot.storage.k8s.io): volume data needs a CSI snapshotter".into(),
        })
    }

    /// Deletes a snapshot taken by [`Mover::snapshot`] (after its data moved, or on failure).
    pub async fn drop_snapshot(&self, claim: &Value, snap_name: &str) {
        if let Ok(snapshots) = self.snapshot_type() {
            let (ns, _) = namespace_and_name(claim);
            self.delete(snapshots, &ns, snap_name).await;
        }
    }

    /// Moves one snapshot's data into the repository: a claim made from the snapshot, and a
    /// mover pod that mounts it read-only and backs it up. Returns the repository snapshot's
    /// name (found by its tags, so an earlier attempt's result is found too).
    pub async fn export(
        &self,
        restore_point: &str,
        claim: &Value,
        snap_name: &str,
        repo: &ferry_repository::repo::Repository,
    ) -> Result<String> {
        let (ns, name) = namespace_and_name(claim);
        let mode = mode_of(claim);
        let source = volume_source(restore_point, &ns, &name);
        let tag = format!("{VOLUME_TAG}={ns}/{name}");
        let rp_tag = crate::restore_point::id_tag(restore_point);
        if let Some(found) = find_volume(repo, &rp_tag, &tag).await? {
            return Ok(found);
        }
        let temp_claim = object_name("ferry-clone", restore_point, &format!("{ns}/{name}"));
        // One Secret per mover, not per namespace: movers of one namespace run at once, and
        // each removes its own when done.
        let pod_name = object_name("ferry-mover", restore_point, &format!("{ns}/{name}"));
        let secret = pod_name.clone();
        let result = async {
            let class = claim
                .pointer("/spec/storageClassName")
                .and_then(Value::as_str);
            let mut spec = json!({
                "accessModes": [self.config.clone_access_mode(class)],
                "resources": {"requests": {"storage": claim.pointer("/spec/resources/requests/storage").cloned().unwrap_or(json!("1Gi"))}},
                "dataSource": {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": snap_name},
                "volumeMode": if mode == VolumeMode::Block { "Block" } else { "Filesystem" }});
            if let Some(sc) = claim.pointer("/spec/storageClassName") {
                spec["storageClassName"] = sc.clone();
            }
            let clone = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": temp_claim, "namespace": ns, "labels": {MANAGED_BY: "ferry"}}, "spec": spec});
            create_or_keep(self.cluster, &self.kinds.claims, &clone).await?;
            self.credentials(&ns, &secret).await?;
            let args = ["mover", "backup", "--source", &source, "--tag", &rp_tag, "--tag", &tag];
            let pod = MoverPod {
                namespace: &ns,
                name: &pod_name,
                secret: &secret,
                claim: &temp_claim,
                mode,
                read_only: true,
                args: args.iter().map(|s| s.to_string()).collect(),
            };
            self.run_pod(pod.manifest(&self.config.image)).await?;
            repo.reload_index().await?;
            find_volume(repo, &rp_tag, &tag).await?.ok_or_else(|| SpokeError::Mover {
                object: Box::new(reference("PersistentVolumeClaim", "", &ns, &name)),
                message: "the mover finished but its snapshot is not in the repository".into(),
            })
        }
        .await;
        self.delete(&self.kinds.pods, &ns, &pod_name).await;
        self.delete(&self.kinds.claims, &ns, &temp_claim).await;
        self.delete(&self.kinds.secrets, &ns, &secret).await;
        result
    }

    /// Fills a restored (empty) claim with a volume snapshot's data.
    pub async fn restore(
        &self,
        restore_point: &str,
        claim: &ObjectRef,
        mode: VolumeMode,
        snapshot: &str,
    ) -> Result<()> {
        let ns = claim.namespace.clone().unwrap_or_default();
        let pod_name = object_name("ferry-fill", restore_point, &format!("{ns}/{}", claim.name));
        let secret = pod_name.clone();
        let result = async {
            self.credentials(&ns, &secret).await?;
            let pod = MoverPod {
                namespace: &ns,
                name: &pod_name,
                secret: &secret,
                claim: &claim.name,
                mode,
                read_only: false,
                args: ["mover", "restore", "--snapshot", snapshot]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            };
            self.run_pod(pod.manifest(&self.config.image)).await
        }
        .await;
        self.delete(&self.kinds.secrets, &ns, &secret).await;
        result
    }

    async fn wait(
        &self,
        r: &Resource,
        ns: &str,
        name: &str,
        pointer: &str,
        want: &Value,
    ) -> Result<()> {
        let reached = self
            .cluster
            .watch_until(r, Some(ns), name, self.config.timeout, |o| {
                (o.and_then(|o| o.pointer(pointer)) == Some(want)).then_some(())
            })
            .await?;
        reached.ok_or_else(|| SpokeError::Timeout {
            what: format!("{} {ns}/{name} ({pointer})", r.api.kind),
            object: Some(Box::new(reference(&r.api.kind, &r.api.group, ns, name))),
            seconds: self.config.timeout.as_secs(),
        })
    }
}

async fn create_or_keep(cluster: &Cluster, r: &Resource, obj: &Value) -> Result<()> {
    match cluster.create(r, obj, false).await {
        Ok(_) => Ok(()),
        Err(e) if e.status() == Some(409) => Ok(()),
        Err(e) => Err(e),
    }
}

pub fn mode_of(claim: &Value) -> VolumeMode {
    match claim.pointer("/spec/volumeMode").and_then(Value::as_str) {
        Some("Block") => VolumeMode::Block,
        _ => VolumeMode::Filesystem,
    }
}

/// The repository snapshot a mover wrote for one volume of one restore point.
async fn find_volume(
    repo: &ferry_repository::repo::Repository,
    rp_tag: &str,
    volume_tag: &str,
) -> Result<Option<String>> {
    Ok(repo
        .snapshots()
        .await?
        .into_iter()
        .rev()
        .find(|(_, s)| s.tags.iter().any(|t| t == rp_tag) && s.tags.iter().any(|t| t == volume_tag))
        .map(|(n, _)| n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(read_only_clones: &[&str]) -> MoverConfig {
        MoverConfig {
            image: "ferry-spoke".into(),
            repository: "/repo".into(),
            password: Vec::new(),
            store_env: Vec::new(),
            timeout: Duration::from_secs(1),
            read_only_clones: read_only_clones.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn clones_are_read_only_only_for_listed_classes() {
        let none = config(&[]);
        assert_eq!(none.clone_access_mode(Some("fast-eu")), "ReadWriteOnce");
        assert_eq!(none.clone_access_mode(None), "ReadWriteOnce");
        let listed = config(&["cephfs", "fast-eu"]);
        assert_eq!(listed.clone_access_mode(Some("fast-eu")), "ReadOnlyMany");
        assert_eq!(listed.clone_access_mode(Some("gp3")), "ReadWriteOnce");
        // A claim without a class gets the cluster's default, which only `*` vouches for.
        assert_eq!(listed.clone_access_mode(None), "ReadWriteOnce");
        let all = config(&["*"]);
        assert_eq!(all.clone_access_mode(Some("gp3")), "ReadOnlyMany");
        assert_eq!(all.clone_access_mode(None), "ReadOnlyMany");
    }
}
