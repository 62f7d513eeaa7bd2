//! The process kubelet: pods whose image matches a configured pattern run a local program as a
//! process, so an Operator that Ferry restores really starts and reconciles, and a Ferry spoke
//! can be deployed into a stand-in cluster from its manifests.
//!
//! Without containers there is no filesystem namespace, so a pod sees its world through its
//! sandbox directory (`FERRY_SANDBOX`): volumes appear at `$FERRY_SANDBOX/<mountPath>` (links
//! to the volume's data), and the service-account token, CA and namespace are at
//! `$FERRY_SANDBOX/var/run/secrets/kubernetes.io/serviceaccount/`. The in-cluster environment
//! (`KUBERNETES_SERVICE_HOST`/`PORT`) is set, and so is `KUBECONFIG`, pointing at a kubeconfig
//! with the same token, which kube-rs's `Config::infer` and controller-runtime read first.

use super::controllers::workloads::running_status;
use super::controllers::{claim_names, strings, NODE_NAME};
use super::core::now;
use super::http::Shared;
use super::tls;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// One mapping from container images to a local program.
#[derive(Debug, Clone)]
pub struct ImageProgram {
    /// A glob over the image reference: `*` matches any run of characters, e.g.
    /// `*/cache-operator:*`.
    pub image: String,
    pub program: PathBuf,
}

impl ImageProgram {
    /// Parses `PATTERN=PROGRAM`, the command-line form.
    pub fn parse(s: &str) -> Result<ImageProgram, String> {
        let (image, program) = s
            .split_once('=')
            .ok_or_else(|| format!("image mapping {s:?}: expected IMAGE_GLOB=PROGRAM"))?;
        if image.is_empty() || program.is_empty() {
            return Err(format!("image mapping {s:?}: both sides must be non-empty"));
        }
        Ok(ImageProgram {
            image: image.into(),
            program: program.into(),
        })
    }
}

pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// The program that runs this container, if its image is mapped.
pub fn program_for<'a>(mappings: &'a [ImageProgram], container: &Value) -> Option<&'a Path> {
    let image = container.get("image")?.as_str()?;
    mappings
        .iter()
        .find(|m| glob_match(&m.image, image))
        .map(|m| m.program.as_path())
}

/// Whether the process kubelet (rather than the placeholder kubelet) runs this pod.
pub fn owns(mappings: &[ImageProgram], pod: &Value) -> bool {
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| program_for(mappings, c).is_some()))
}

struct Running {
    child: Child,
    restarts: i64,
    started: Instant,
}

struct Kubelet {
    shared: Arc<Shared>,
    /// Keyed by pod uid and container name.
    running: HashMap<(String, String), Running>,
}

pub async fn run(shared: Arc<Shared>) {
    let mut kubelet = Kubelet {
        shared: shared.clone(),
        running: HashMap::new(),
    };
    let mut changes = shared.core.store.changes();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    // A container's exit is seen when it happens (SIGCHLD), not at the next tick: a pod that
    // runs to completion (a mover) is reported done at once.
    let mut exits = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()).ok();
    loop {
        kubelet.reconcile().await;
        tokio::select! {
            r = changes.changed() => if r.is_err() { break },
            _ = tick.tick() => {}
            Some(()) = next_exit(&mut exits) => {}
        }
    }
    for (_, mut r) in kubelet.running.drain() {
        let _ = r.child.kill().await;
    }
}

/// The next SIGCHLD; never, if the handler could not be installed (the tick still sees exits).
async fn next_exit(exits: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match exits {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

impl Kubelet {
    fn pods(&self) -> Vec<Value> {
        let s = self.shared.core.store.lock();
        s.range("", "pods", None).map(|(_, v)| v.clone()).collect()
    }

    async fn reconcile(&mut self) {
        let shared = self.shared.clone();
        let mappings = &shared.config.image_programs;
        if mappings.is_empty() {
            return;
        }
        let pods = self.pods();
        let live: HashMap<String, &Value> = pods
            .iter()
            .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
            .map(|p| (str_at(p, "/metadata/uid").to_string(), p))
            .collect();
        // Processes of pods that are gone or going are stopped.
        let stale: Vec<(String, String)> = self
            .running
            .keys()
            .filter(|(uid, _)| !live.contains_key(uid))
            .cloned()
            .collect();
        for key in stale {
            if let Some(mut r) = self.running.remove(&key) {
                let _ = r.child.kill().await;
            }
        }
        for pod in live.values() {
            if !owns(mappings, pod) {
                continue;
            }
            match str_at(pod, "/status/phase") {
                "Pending" => self.start_pod(pod),
                "Running" => self.watch_pod(pod),
                _ => {}
            }
        }
    }

    fn claims_bound(&self, pod: &Value) -> bool {
        let ns = str_at(pod, "/metadata/namespace");
        let Some(rt) = self.shared.core.resource("", "persistentvolumeclaims") else {
            return false;
        };
        claim_names(pod).all(|c| {
            self.shared
                .core
                .get(&rt, Some(ns), c)
                .is_ok_and(|pvc| str_at(&pvc, "/status/phase") == "Bound")
        })
    }

    fn start_pod(&mut self, pod: &Value) {
        if !self.claims_bound(pod) {
            return;
        }
        let uid = str_at(pod, "/metadata/uid").to_string();
        let containers = pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for c in &containers {
            let Some(program) = program_for(&self.shared.config.image_programs, c) else {
                continue;
            };
            let name = c["name"].as_str().unwrap_or("").to_string();
            if self.running.contains_key(&(uid.clone(), name.clone())) {
                continue;
            }
            match self.spawn(pod, c, program) {
                Ok(child) => {
                    self.running.insert(
                        (uid.clone(), name),
                        Running {
                            child,
                            restarts: 0,
                            started: Instant::now(),
                        },
                    );
                }
                Err(e) => {
                    tracing::warn!(pod = str_at(pod, "/metadata/name"), container = %name, error = %e, "starting container process failed");
                    self.set_status(pod, |st| {
                        st["phase"] = json!("Failed");
                        st["reason"] = json!("ContainerCannotRun");
                        st["message"] = json!(e);
                    });
                    return;
                }
            }
        }
        let status = running_status(pod, false);
        let _ = self.shared.core.mutate(
            &self.shared.core.resource("", "pods").expect("built in"),
            pod.pointer("/metadata/namespace").and_then(Value::as_str),
            str_at(pod, "/metadata/name"),
            |o| {
                if o.pointer("/spec/nodeName").is_none() {
                    o["spec"]["nodeName"] = json!(NODE_NAME);
                }
                o["status"] = status;
            },
        );
    }

    /// Restarts exited processes as the pod's restart policy says, or ends the pod.
    fn watch_pod(&mut self, pod: &Value) {
        let uid = str_at(pod, "/metadata/uid").to_string();
        let policy = str_at(pod, "/spec/restartPolicy").to_string();
        let keys: Vec<(String, String)> = self
            .running
            .keys()
            .filter(|(u, _)| *u == uid)
            .cloned()
            .collect();
        if keys.is_empty() {
            // The stand-in restarted while the pod ran: start its processes again.
            self.start_pod_again(pod);
            return;
        }
        for key in keys {
            let exited = match self.running.get_mut(&key).map(|r| r.child.try_wait()) {
                Some(Ok(Some(status))) => status.code().unwrap_or(137),
                _ => continue,
            };
            let restart = policy == "Always" || (policy == "OnFailure" && exited != 0);
            let container = key.1.clone();
            if restart {
                let r = self.running.get(&key).expect("present");
                // Crash-looping programs back off, as the kubelet's CrashLoopBackOff does.
                if r.started.elapsed() < Duration::from_secs(1) && r.restarts > 0 {
                    continue;
                }
                let restarts = r.restarts + 1;
                let c = pod
                    .pointer("/spec/containers")
                    .and_then(Value::as_array)
                    .and_then(|cs| cs.iter().find(|c| c["name"] == json!(container)))
                    .cloned()
                    .unwrap_or(Value::Null);
                let Some(program) =
                    program_for(&self.shared.config.image_programs, &c).map(Path::to_path_buf)
                else {
                    continue;
                };
                match self.spawn(pod, &c, &program) {
                    Ok(child) => {
                        self.running.insert(
                            key,
                            Running {
                                child,
                                restarts,
                                started: Instant::now(),
                            },
                        );
                        self.set_status(pod, |st| set_restarts(st, &container, restarts, exited));
                    }
                    Err(e) => {
                        tracing::warn!(container = %container, error = %e, "restarting container process failed")
                    }
                }
            } else {
                self.running.remove(&key);
                let all_done = !self.running.keys().any(|(u, _)| *u == uid);
                self.set_status(pod, |st| {
                    set_terminated(st, &container, exited);
                    if all_done {
                        st["phase"] = json!(if exited == 0 { "Succeeded" } else { "Failed" });
                        for c in st["conditions"].as_array_mut().into_iter().flatten() {
                            if c["type"] == "Ready" || c["type"] == "ContainersReady" {
                                c["status"] = json!("False");
                            }
                        }
                    }
                });
            }
        }
    }

    fn start_pod_again(&mut self, pod: &Value) {
        self.set_status(pod, |st| st["phase"] = json!("Pending"));
    }

    fn set_status(&self, pod: &Value, f: impl FnOnce(&mut Value)) {
        let rt = self.shared.core.resource("", "pods").expect("built in");
        let _ = self.shared.core.mutate(
            &rt,
            pod.pointer("/metadata/namespace").and_then(Value::as_str),
            str_at(pod, "/metadata/name"),
            |o| f(&mut o["status"]),
        );
    }

    fn spawn(&self, pod: &Value, container: &Value, program: &Path) -> Result<Child, String> {
        let ns = str_at(pod, "/metadata/namespace");
        let pod_name = str_at(pod, "/metadata/name");
        let cname = container["name"].as_str().unwrap_or("");
        let sandbox = super::exec::sandbox_dir(&self.shared, ns, pod_name);
        std::fs::create_dir_all(&sandbox)
            .map_err(|e| format!("creating {}: {e}", sandbox.display()))?;
        let identity = RunAs::of(pod, container);
        self.prepare_sandbox(pod, container, &identity, &sandbox)?;
        let log_path = sandbox.join(format!("{cname}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("opening {}: {e}", log_path.display()))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let args = strings(container, "/args");
        let mut cmd = Command::new(program);
        if let Some(uid) = identity.user.filter(|u| *u != current_uid()) {
            if current_uid() != 0 {
                return Err(format!(
                    "securityContext.runAsUser {uid}: the stand-in must run as root to start a process as another user"
                ));
            }
            // Without a mount namespace the process reaches its sandbox and volumes by their
            // host paths, so every directory above them must let it pass (search only).
            for path in [sandbox.as_path(), self.shared.config.data_root.as_path()] {
                allow_traversal(path).map_err(|e| format!("{}: {e}", path.display()))?;
            }
            cmd.uid(uid);
        }
        if let Some(gid) = identity.group.filter(|g| *g != current_gid()) {
            cmd.gid(gid);
        }
        cmd.args(&args)
            .current_dir(&sandbox)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &sandbox)
            .env("HOSTNAME", pod_name)
            .env("FERRY_SANDBOX", &sandbox)
            .env("POD_NAME", pod_name)
            .env("POD_NAMESPACE", ns)
            .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
            .env(
                "KUBERNETES_SERVICE_PORT",
                self.shared.config.listen_port.to_string(),
            )
            .env("KUBECONFIG", sandbox.join("kubeconfig"))
            .envs(self.container_env(ns, container))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .kill_on_drop(true);
        cmd.spawn()
            .map_err(|e| format!("starting {}: {e}", program.display()))
    }

    /// Resolves `env` (values, ConfigMap and Secret keys, downward-API fields) and `envFrom`.
    fn container_env(&self, ns: &str, container: &Value) -> Vec<(String, String)> {
        let core = &self.shared.core;
        let lookup = |plural: &str, name: &str, key: &str| -> Option<String> {
            let obj = core.get(&core.resource("", plural)?, Some(ns), name).ok()?;
            if plural == "secrets" {
                use base64::Engine;
                let b = obj.pointer(&format!("/data/{key}"))?.as_str()?;
                let raw = base64::engine::general_purpose::STANDARD.decode(b).ok()?;
                String::from_utf8(raw).ok()
            } else {
                obj.pointer(&format!("/data/{key}"))?
                    .as_str()
                    .map(str::to_string)
            }
        };
        let mut out = Vec::new();
        for from in container
            .get("envFrom")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for (plural, field) in [("configmaps", "configMapRef"), ("secrets", "secretRef")] {
                let Some(name) = from
                    .pointer(&format!("/{field}/name"))
                    .and_then(Value::as_str)
                else {
                    continue;
                };
                let Some(rt) = core.resource("", plural) else {
                    continue;
                };
                if let Ok(obj) = core.get(&rt, Some(ns), name) {
                    for k in obj
                        .get("data")
                        .and_then(Value::as_object)
                        .map(|m| m.keys().cloned().collect::<Vec<_>>())
                        .unwrap_or_default()
                    {
                        if let Some(v) = lookup(plural, name, &k) {
                            out.push((
                                format!(
                                    "{}{k}",
                                    from.get("prefix").and_then(Value::as_str).unwrap_or("")
                                ),
                                v,
                            ));
                        }
                    }
                }
            }
        }
        for e in container
            .get("env")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(name) = e.get("name").and_then(Value::as_str) else {
                continue;
            };
            let value = if let Some(v) = e.get("value").and_then(Value::as_str) {
                Some(v.to_string())
            } else if let Some(r) = e.pointer("/valueFrom/configMapKeyRef") {
                lookup("configmaps", str_at(r, "/name"), str_at(r, "/key"))
            } else if let Some(r) = e.pointer("/valueFrom/secretKeyRef") {
                lookup("secrets", str_at(r, "/name"), str_at(r, "/key"))
            } else if let Some(path) = e
                .pointer("/valueFrom/fieldRef/fieldPath")
                .and_then(Value::as_str)
            {
                match path {
                    "metadata.namespace" => Some(ns.to_string()),
                    "spec.nodeName" => Some(NODE_NAME.to_string()),
                    _ => None,
                }
            } else {
                None
            };
            if let Some(v) = value {
                out.push((name.to_string(), v));
            }
        }
        out
    }

    /// Service-account files, a kubeconfig, and the pod's volumes linked at their mount paths.
    fn prepare_sandbox(
        &self,
        pod: &Value,
        container: &Value,
        identity: &RunAs,
        sandbox: &Path,
    ) -> Result<(), String> {
        let ns = str_at(pod, "/metadata/namespace");
        let io = |what: &Path| {
            let what = what.display().to_string();
            move |e: std::io::Error| format!("{what}: {e}")
        };
        let token = self.shared.config.token.clone().unwrap_or_default();
        let sa_dir = sandbox.join("var/run/secrets/kubernetes.io/serviceaccount");
        std::fs::create_dir_all(&sa_dir).map_err(io(&sa_dir))?;
        let ca = self.shared.config.ca_pem.clone().unwrap_or_default();
        for (file, contents) in [
            ("token", token.as_str()),
            ("ca.crt", ca.as_str()),
            ("namespace", ns),
        ] {
            std::fs::write(sa_dir.join(file), contents).map_err(io(&sa_dir.join(file)))?;
        }
        let scheme = if self.shared.config.tls {
            "https"
        } else {
            "http"
        };
        let server = format!("{scheme}://127.0.0.1:{}", self.shared.config.listen_port);
        let mut kubeconfig = tls::kubeconfig(
            "in-cluster",
            &server,
            self.shared.config.ca_pem.as_deref(),
            &token,
        );
        kubeconfig["contexts"][0]["context"]["namespace"] = json!(ns);
        std::fs::write(sandbox.join("kubeconfig"), kubeconfig.to_string())
            .map_err(io(&sandbox.join("kubeconfig")))?;

        // Without a mount namespace, each volume is a link at `$FERRY_SANDBOX/<mountPath>`.
        let cname = str_at(container, "/name");
        for (source, mount_path) in container_mounts(&self.shared.core, pod, cname, sandbox)? {
            let read_only = read_only_mount(pod, container, &mount_path);
            // As the kubelet does: a read-only volume's ownership is left as it is.
            if let Some(group) = identity.fs_group.filter(|_| !read_only) {
                apply_fs_group(&source, group, identity.fs_group_always)
                    .map_err(|e| format!("fsGroup {group} on {}: {e}", source.display()))?;
            }
            let target = mount_target(sandbox, &mount_path)?;
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            if std::fs::symlink_metadata(&target).is_ok() {
                continue;
            }
            std::os::unix::fs::symlink(&source, &target).map_err(io(&target))?;
        }
        Ok(())
    }
}

/// Who a container's process runs as: `securityContext` of the container over the pod's.
#[derive(Debug, Default, PartialEq)]
struct RunAs {
    user: Option<u32>,
    /// `runAsGroup`, or else `fsGroup`: std's `Command` cannot add supplementary groups, so the
    /// fsGroup becomes the primary group when no other is asked for.
    group: Option<u32>,
    fs_group: Option<u32>,
    /// `fsGroupChangePolicy: Always` (the default) rather than `OnRootMismatch`.
    fs_group_always: bool,
}

impl RunAs {
    fn of(pod: &Value, container: &Value) -> RunAs {
        let id = |field: &str| {
            container
                .pointer(&format!("/securityContext/{field}"))
                .or_else(|| pod.pointer(&format!("/spec/securityContext/{field}")))
                .and_then(Value::as_u64)
                .and_then(|v| u32::try_from(v).ok())
        };
        let fs_group = pod
            .pointer("/spec/securityContext/fsGroup")
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok());
        RunAs {
            user: id("runAsUser"),
            group: id("runAsGroup").or(fs_group),
            fs_group,
            fs_group_always: str_at(pod, "/spec/securityContext/fsGroupChangePolicy")
                != "OnRootMismatch",
        }
    }
}

/// The stand-in's own user and group, which its processes keep unless a pod asks otherwise
/// (read once: snapshot copies ask for every file).
pub(crate) fn current_uid() -> u32 {
    process_ids().0
}

pub(crate) fn current_gid() -> u32 {
    process_ids().1
}

fn process_ids() -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    static IDS: std::sync::OnceLock<(u32, u32)> = std::sync::OnceLock::new();
    *IDS.get_or_init(|| {
        std::fs::metadata("/proc/self").map_or((u32::MAX, u32::MAX), |m| (m.uid(), m.gid()))
    })
}

/// Adds search permission for others on `path` and each directory above it that lacks it.
fn allow_traversal(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for dir in path.ancestors().filter(|d| d.is_dir()) {
        let mut perms = std::fs::metadata(dir)?.permissions();
        if perms.mode() & 0o001 == 0 {
            perms.set_mode(perms.mode() | 0o001);
            std::fs::set_permissions(dir, perms)?;
        }
    }
    Ok(())
}

/// What the kubelet does for `fsGroup`: the volume's files belong to the group, which may read
/// and write them; directories are set-group-id so new files join the group. With
/// `OnRootMismatch` nothing below the root changes once the root is right, which is what keeps
/// PostgreSQL's 0700 data directory as PostgreSQL requires.
fn apply_fs_group(root: &Path, group: u32, always: bool) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    const DIR_BITS: u32 = 0o2070;
    let meta = std::fs::metadata(root)?;
    if !meta.is_dir() {
        return Ok(());
    }
    let root_right = meta.gid() == group && meta.mode() & DIR_BITS == DIR_BITS;
    if root_right && !always {
        return Ok(());
    }
    fn walk(path: &Path, group: u32) -> std::io::Result<()> {
        let meta = std::fs::symlink_metadata(path)?;
        if meta.file_type().is_symlink() {
            return Ok(());
        }
        std::os::unix::fs::lchown(path, None, Some(group))?;
        let mode = meta.mode() & 0o7777;
        let wanted = if meta.is_dir() {
            mode | DIR_BITS
        } else {
            mode | 0o060
        };
        if wanted != mode {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(wanted))?;
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(path)? {
                walk(&entry?.path(), group)?;
            }
        }
        Ok(())
    }
    walk(root, group)
}

/// Writes one ConfigMap or Secret key into its volume the way the kubelet's atomic writer does:
/// a process reading the file (a database running its init scripts) sees the old content or the
/// new, never a truncated file. Volumes are projected again for every exec into the pod, so an
/// unchanged key is left alone.
fn write_key_file(dir: &Path, key: &str, bytes: &[u8]) -> std::io::Result<()> {
    let path = dir.join(key);
    if std::fs::read(&path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    // Unique per write: two execs projecting at once must not share a staging file.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let staging = dir.join(format!("..{key}.{n}.tmp"));
    std::fs::write(&staging, bytes)?;
    std::fs::rename(&staging, &path)
}

/// Where a pod volume's data is on the host: a claim's volume directory, ConfigMap and Secret
/// keys written as files under the sandbox, a hostPath, or a directory of the pod's own.
pub(crate) fn volume_source(
    core: &super::core::ApiCore,
    ns: &str,
    sandbox: &Path,
    vname: &str,
    v: &Value,
) -> Result<PathBuf, String> {
    let dir = sandbox.join("volumes").join(vname);
    let write_keys = |obj: &Value, decode: bool| -> Result<PathBuf, String> {
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for (k, val) in obj
            .get("data")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
        {
            let text = val.as_str().unwrap_or("");
            let bytes = if decode {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .unwrap_or_default()
            } else {
                text.as_bytes().to_vec()
            };
            write_key_file(&dir, &k, &bytes)
                .map_err(|e| format!("{}: {e}", dir.join(&k).display()))?;
        }
        Ok(dir.clone())
    };
    if let Some(claim) = v
        .pointer("/persistentVolumeClaim/claimName")
        .and_then(Value::as_str)
    {
        let pvc = core
            .get(
                &core
                    .resource("", "persistentvolumeclaims")
                    .expect("built in"),
                Some(ns),
                claim,
            )
            .map_err(|e| e.to_string())?;
        let pv = core
            .get(
                &core.resource("", "persistentvolumes").expect("built in"),
                None,
                str_at(&pvc, "/spec/volumeName"),
            )
            .map_err(|e| e.to_string())?;
        let shared_with = pv
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(super::controllers::storage::SHALLOW_CLONE_OF));
        let read_only = v.pointer("/persistentVolumeClaim/readOnly") == Some(&json!(true));
        if shared_with.is_some() && !read_only {
            // Writes would reach the snapshot it shares its files with.
            return Err(format!(
                "volume {vname}: claim {claim} is a shallow clone of a snapshot (ReadOnlyMany); \
                 set persistentVolumeClaim.readOnly: true"
            ));
        }
        return Ok(PathBuf::from(str_at(&pv, "/spec/hostPath/path")));
    }
    if let Some(name) = v.pointer("/configMap/name").and_then(Value::as_str) {
        let cm = core
            .get(
                &core.resource("", "configmaps").expect("built in"),
                Some(ns),
                name,
            )
            .map_err(|e| e.to_string())?;
        return write_keys(&cm, false);
    }
    if let Some(name) = v.pointer("/secret/secretName").and_then(Value::as_str) {
        let s = core
            .get(
                &core.resource("", "secrets").expect("built in"),
                Some(ns),
                name,
            )
            .map_err(|e| e.to_string())?;
        return write_keys(&s, true);
    }
    if let Some(path) = v.pointer("/hostPath/path").and_then(Value::as_str) {
        return Ok(PathBuf::from(path));
    }
    // emptyDir and anything else: a directory of the pod's own.
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// The (host source, path) pairs of a container's volume mounts and devices (`volumeDevices`:
/// a Block claim's image file stands for the device).
pub(crate) fn container_mounts(
    core: &super::core::ApiCore,
    pod: &Value,
    container: &str,
    sandbox: &Path,
) -> Result<Vec<(PathBuf, String)>, String> {
    let ns = str_at(pod, "/metadata/namespace");
    let volumes = pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let Some(c) = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["name"] == json!(container)))
    else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (field, path_field, device) in [
        ("volumeMounts", "/mountPath", false),
        ("volumeDevices", "/devicePath", true),
    ] {
        for m in c.get(field).and_then(Value::as_array).into_iter().flatten() {
            let vname = str_at(m, "/name");
            let path = str_at(m, path_field);
            mount_target(sandbox, path).map_err(|e| format!("{field} {vname}: {e}"))?;
            let Some(v) = volumes.iter().find(|v| v["name"] == json!(vname)) else {
                continue;
            };
            let source = volume_source(core, ns, sandbox, vname, v)?;
            // As the kubelet refuses it: a claim is used as what its volume mode says.
            if v.get("persistentVolumeClaim").is_some() {
                let block = std::fs::metadata(&source).is_ok_and(|m| m.is_file());
                if block != device {
                    let mode = if block { "Block" } else { "Filesystem" };
                    return Err(format!(
                        "volume {vname} has volumeMode {mode}, but is specified in {field}"
                    ));
                }
            }
            out.push((source, path.to_string()));
        }
    }
    Ok(out)
}

/// Whether a container's mount at `mount_path` is read-only (its own `readOnly`, or its claim's).
fn read_only_mount(pod: &Value, container: &Value, mount_path: &str) -> bool {
    let Some(mount) = container
        .get("volumeMounts")
        .and_then(Value::as_array)
        .and_then(|ms| ms.iter().find(|m| m["mountPath"] == json!(mount_path)))
    else {
        return false;
    };
    mount["readOnly"] == json!(true)
        || pod
            .pointer("/spec/volumes")
            .and_then(Value::as_array)
            .and_then(|vs| vs.iter().find(|v| v["name"] == mount["name"]))
            .is_some_and(|v| v.pointer("/persistentVolumeClaim/readOnly") == Some(&json!(true)))
}

/// Where a mount path appears for a process: inside the sandbox, whatever the manifest says.
fn mount_target(sandbox: &Path, mount_path: &str) -> Result<PathBuf, String> {
    let relative = Path::new(mount_path.trim_start_matches('/'));
    let inside = relative
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    if !inside || relative.as_os_str().is_empty() {
        return Err(format!(
            "mountPath {mount_path:?} must be a path without '..'"
        ));
    }
    Ok(sandbox.join(relative))
}

fn set_restarts(status: &mut Value, container: &str, restarts: i64, last_exit: i32) {
    for c in status["containerStatuses"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        if c["name"] == json!(container) {
            c["restartCount"] = json!(restarts);
            c["lastState"] = json!({"terminated": {"exitCode": last_exit, "reason": if last_exit == 0 { "Completed" } else { "Error" }, "finishedAt": now()}});
            c["state"] = json!({"running": {"startedAt": now()}});
        }
    }
}

fn set_terminated(status: &mut Value, container: &str, exit: i32) {
    for c in status["containerStatuses"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        if c["name"] == json!(container) {
            c["ready"] = json!(false);
            c["started"] = json!(false);
            c["state"] = json!({"terminated": {"exitCode": exit, "reason": if exit == 0 { "Completed" } else { "Error" }, "finishedAt": now()}});
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match(
            "*/cache-operator:*",
            "registry.example.com/acme/cache-operator:1.2"
        ));
        assert!(!glob_match("*/cache-operator:*", "cache-operator:1.2"));
        assert!(glob_match("ferry-spoke*", "ferry-spoke:dev"));
        assert!(glob_match("exact:1", "exact:1"));
        assert!(!glob_match("exact:1", "exact:2"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXcYYb"));
        assert!(ImageProgram::parse("nope").is_err());
        assert_eq!(
            ImageProgram::parse("*/op:*=/bin/op").unwrap().program,
            PathBuf::from("/bin/op")
        );
    }
}
