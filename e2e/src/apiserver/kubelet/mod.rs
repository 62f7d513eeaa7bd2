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

mod identity;
mod images;
mod sandbox;

use identity::{allow_traversal, RunAs};
pub(crate) use identity::{current_gid, current_uid};
pub use images::{glob_match, owns, program_for, ImageProgram};
pub(crate) use sandbox::container_mounts;

use super::controllers::workloads::running_status;
use super::controllers::{claim_names, strings, NODE_NAME};
use super::core::now;
use super::http::Shared;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

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
}

fn set_restarts(status: &mut Value, container: &str, restarts: i64, last_exit: i32) {
    with_container(status, container, |c| {
        c["restartCount"] = json!(restarts);
        c["lastState"] = terminated(last_exit);
        c["state"] = json!({"running": {"startedAt": now()}});
    });
}

fn set_terminated(status: &mut Value, container: &str, exit: i32) {
    with_container(status, container, |c| {
        c["ready"] = json!(false);
        c["started"] = json!(false);
        c["state"] = terminated(exit);
    });
}

/// Runs `change` on the named container's status.
fn with_container(status: &mut Value, container: &str, change: impl FnOnce(&mut Value)) {
    let found = status["containerStatuses"]
        .as_array_mut()
        .and_then(|cs| cs.iter_mut().find(|c| c["name"] == json!(container)));
    if let Some(c) = found {
        change(c);
    }
}

/// A container state `terminated` with `exit`, as of now.
fn terminated(exit: i32) -> Value {
    let reason = if exit == 0 { "Completed" } else { "Error" };
    json!({"terminated": {"exitCode": exit, "reason": reason, "finishedAt": now()}})
}
