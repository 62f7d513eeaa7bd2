//! A pod's world without containers: its sandbox directory with service-account files and a
//! kubeconfig, its environment, and its volumes linked at their mount paths.

use super::identity::{apply_fs_group, RunAs};
use super::{str_at, Kubelet};
use crate::apiserver::controllers::NODE_NAME;
use crate::apiserver::tls;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

impl Kubelet {
    /// Resolves `env` (values, ConfigMap and Secret keys, downward-API fields) and `envFrom`.
    pub(super) fn container_env(&self, ns: &str, container: &Value) -> Vec<(String, String)> {
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
    pub(super) fn prepare_sandbox(
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
fn volume_source(
    core: &crate::apiserver::core::ApiCore,
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
    let get = |plural: &str, ns: Option<&str>, name: &str| -> Result<Value, String> {
        let rt = core
            .resource("", plural)
            .ok_or_else(|| format!("no resource type {plural}"))?;
        core.get(&rt, ns, name).map_err(|e| e.to_string())
    };
    if let Some(claim) = v
        .pointer("/persistentVolumeClaim/claimName")
        .and_then(Value::as_str)
    {
        let pvc = get("persistentvolumeclaims", Some(ns), claim)?;
        let pv = get("persistentvolumes", None, str_at(&pvc, "/spec/volumeName"))?;
        let shared_with = pv
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(crate::apiserver::controllers::storage::SHALLOW_CLONE_OF));
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
        return write_keys(&get("configmaps", Some(ns), name)?, false);
    }
    if let Some(name) = v.pointer("/secret/secretName").and_then(Value::as_str) {
        return write_keys(&get("secrets", Some(ns), name)?, true);
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
    core: &crate::apiserver::core::ApiCore,
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
