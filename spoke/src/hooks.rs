//! Exec hooks: commands run in application pods just before the volume snapshots (to make the
//! data consistent — `CHECKPOINT`, a write pause, `fsfreeze`) and just after (to resume). They
//! come from the backup spec and from pod annotations (`pre.hook.backup.ferry.dev/command`,
//! the way Velero's annotations work), run through the Kubernetes exec API with a timeout, and
//! their results go into the restore point's manifest.

use crate::cluster::{namespace_and_name, Cluster, ResourceMap};
use crate::error::{Result, SpokeError};
use ferry_protocol::hooks::*;
use ferry_protocol::ObjectRef;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams};
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// One command to run in one container.
#[derive(Debug, Clone)]
pub struct Hook {
    pub name: String,
    pub phase: HookPhase,
    pub namespace: String,
    pub pod: String,
    pub container: Option<String>,
    pub command: Vec<String>,
    pub timeout: Duration,
    pub on_error: OnError,
}

/// Output kept per hook: the end of what it printed.
const OUTPUT_LIMIT: usize = 4096;

fn pod_ref(namespace: &str, name: &str) -> ObjectRef {
    ObjectRef {
        group: String::new(),
        version: "v1".into(),
        kind: "Pod".into(),
        namespace: Some(namespace.into()),
        name: name.into(),
    }
}

/// Refuses a malformed hook spec before the capture reads anything; errors name the field.
pub fn validate(specs: &[HookSpec]) -> Result<()> {
    for (i, spec) in specs.iter().enumerate() {
        if spec.command.is_empty() {
            return Err(SpokeError::invalid(
                format!("hooks[{i}].command"),
                "must not be empty",
            ));
        }
        if let Some(s) = &spec.label_selector {
            ferry_transform::selector::LabelSelector::parse(s)
                .map_err(|e| SpokeError::invalid(format!("hooks[{i}].labelSelector"), e))?;
        }
    }
    Ok(())
}

/// The hooks a captured pod's own annotations ask for (none unless it is running).
pub fn from_pod(pod: &Value) -> Result<Vec<Hook>> {
    let mut hooks = Vec::new();
    if pod.get("kind").and_then(Value::as_str) != Some("Pod")
        || pod.pointer("/status/phase").and_then(Value::as_str) != Some("Running")
    {
        return Ok(hooks);
    }
    for (phase, keys) in [
        (
            HookPhase::Pre,
            [
                POD_PRE_HOOK_COMMAND,
                POD_PRE_HOOK_CONTAINER,
                POD_PRE_HOOK_TIMEOUT,
                POD_PRE_HOOK_ON_ERROR,
            ],
        ),
        (
            HookPhase::Post,
            [
                POD_POST_HOOK_COMMAND,
                POD_POST_HOOK_CONTAINER,
                POD_POST_HOOK_TIMEOUT,
                POD_POST_HOOK_ON_ERROR,
            ],
        ),
    ] {
        if let Some(hook) = from_annotations(pod, phase, keys)? {
            hooks.push(hook);
        }
    }
    Ok(hooks)
}

/// The hooks of a capture: the spec's (checked by [`validate`] before the capture began), on
/// every running pod they select, then those the captured pods' annotations asked for
/// ([`from_pod`]).
pub async fn collect(
    cluster: &Cluster,
    map: &ResourceMap,
    specs: &[HookSpec],
    from_pods: Vec<Hook>,
) -> Result<Vec<Hook>> {
    let mut hooks = Vec::new();
    let pods = map
        .get("", "Pod")
        .cloned()
        .ok_or_else(|| SpokeError::NotFound {
            what: "the Pod resource type".into(),
        })?;
    for spec in specs {
        let mut found = Vec::new();
        cluster
            .list_each(
                &pods,
                Some(&spec.namespace),
                spec.label_selector.as_deref(),
                |p| {
                    if p.pointer("/status/phase").and_then(Value::as_str) == Some("Running") {
                        found.push(
                            p.pointer("/metadata/name")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string(),
                        );
                    }
                    Ok(())
                },
            )
            .await?;
        for pod in found {
            hooks.push(Hook {
                name: spec.name.clone(),
                phase: spec.phase,
                namespace: spec.namespace.clone(),
                pod,
                container: spec.container.clone(),
                command: spec.command.clone(),
                timeout: Duration::from_secs(spec.timeout_seconds.max(1)),
                on_error: spec.on_error,
            });
        }
    }
    hooks.extend(from_pods);
    Ok(hooks)
}

fn from_annotations(
    pod: &Value,
    phase: HookPhase,
    [command, container, timeout, on_error]: [&str; 4],
) -> Result<Option<Hook>> {
    let annotation = |k: &str| {
        pod.pointer(&format!("/metadata/annotations/{}", k.replace('/', "~1")))
            .and_then(Value::as_str)
    };
    let Some(text) = annotation(command) else {
        return Ok(None);
    };
    let (namespace, name) = namespace_and_name(pod);
    let field = |k: &str| format!("pod {namespace}/{name}: annotation {k}");
    // A JSON array, or a plain command line run by the shell.
    let command_line: Vec<String> = if text.trim_start().starts_with('[') {
        serde_json::from_str(text).map_err(|e| {
            SpokeError::invalid(field(command), format!("not a JSON array of strings: {e}"))
        })?
    } else {
        vec!["/bin/sh".into(), "-c".into(), text.into()]
    };
    if command_line.is_empty() {
        return Err(SpokeError::invalid(field(command), "must not be empty"));
    }
    let timeout = match annotation(timeout) {
        None => Duration::from_secs(30),
        Some(t) => Duration::from_secs(t.trim_end_matches('s').parse().map_err(|_| {
            SpokeError::invalid(field(timeout), format!("{t:?} is not a number of seconds"))
        })?),
    };
    let on_error = match annotation(on_error) {
        None | Some("Fail") | Some("fail") => OnError::Fail,
        Some("Continue") | Some("continue") => OnError::Continue,
        Some(other) => {
            return Err(SpokeError::invalid(
                field(on_error),
                format!("{other:?}: use Fail or Continue"),
            ))
        }
    };
    Ok(Some(Hook {
        name: format!(
            "{}-annotation",
            if phase == HookPhase::Pre {
                "pre"
            } else {
                "post"
            }
        ),
        phase,
        namespace,
        pod: name,
        container: annotation(container).map(str::to_string),
        command: command_line,
        timeout,
        on_error,
    }))
}

/// Runs one hook; a failure to run is a failed result, not an error.
pub async fn run(cluster: &Cluster, hook: &Hook) -> HookResult {
    let started = Instant::now();
    let api: Api<Pod> = Api::namespaced(cluster.client(), &hook.namespace);
    let container = match &hook.container {
        Some(c) => c.clone(),
        None => match api.get(&hook.pod).await {
            Ok(p) => p
                .spec
                .and_then(|s| s.containers.first().map(|c| c.name.clone()))
                .unwrap_or_default(),
            Err(_) => String::new(),
        },
    };
    let outcome = tokio::time::timeout(
        hook.timeout,
        exec(&api, &hook.pod, &container, &hook.command),
    )
    .await;
    let (succeeded, exit_code, output) = match outcome {
        Ok(Ok((code, output))) => (code == 0, Some(code), output),
        Ok(Err(e)) => (false, None, format!("could not run: {e}")),
        Err(_) => (
            false,
            None,
            format!("timed out after {} s", hook.timeout.as_secs()),
        ),
    };
    HookResult {
        name: hook.name.clone(),
        phase: hook.phase,
        pod: format!("{}/{}", hook.namespace, hook.pod),
        container,
        succeeded,
        exit_code,
        output,
        duration_ms: started.elapsed().as_millis() as u64,
    }
}

async fn exec(
    api: &Api<Pod>,
    pod: &str,
    container: &str,
    command: &[String],
) -> std::result::Result<(i32, String), kube::Error> {
    let params = AttachParams::default()
        .container(container)
        .stdout(true)
        .stderr(true)
        .stdin(false);
    let mut attached = api.exec(pod, command.to_vec(), &params).await?;
    let mut stdout = attached.stdout();
    let mut stderr = attached.stderr();
    let status = attached.take_status();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let read_out = async {
        if let Some(s) = stdout.as_mut() {
            let _ = s.read_to_end(&mut out).await;
        }
    };
    let read_err = async {
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_end(&mut err).await;
        }
    };
    tokio::join!(read_out, read_err);
    let status = match status {
        Some(s) => s.await,
        None => None,
    };
    let _ = attached.join().await;
    let code = match status {
        Some(s) if s.status.as_deref() == Some("Success") => 0,
        Some(s) => s
            .details
            .and_then(|d| d.causes)
            .into_iter()
            .flatten()
            .find(|c| c.reason.as_deref() == Some("ExitCode"))
            .and_then(|c| c.message.and_then(|m| m.parse().ok()))
            .unwrap_or(1),
        None => 0,
    };
    out.extend_from_slice(&err);
    let text = String::from_utf8_lossy(&out);
    let start = text.len().saturating_sub(OUTPUT_LIMIT);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    Ok((code, text[start..].trim().to_string()))
}

/// Runs every hook of `phase`, in order; the first that fails with `onError: Fail` is the
/// error (after the rest of the phase has run: a post hook must resume what a pre hook paused).
pub async fn run_phase(
    cluster: &Cluster,
    hooks: &[Hook],
    phase: HookPhase,
    results: &mut Vec<HookResult>,
) -> Option<SpokeError> {
    let mut failure = None;
    for hook in hooks.iter().filter(|h| h.phase == phase) {
        let result = run(cluster, hook).await;
        tracing::info!(hook = %hook.name, pod = %result.pod, succeeded = result.succeeded, "hook");
        if !result.succeeded && hook.on_error == OnError::Fail && failure.is_none() {
            failure = Some(SpokeError::Hook {
                object: Box::new(pod_ref(&hook.namespace, &hook.pod)),
                message: format!(
                    "{} hook {:?} failed{}: {}",
                    if phase == HookPhase::Pre {
                        "pre"
                    } else {
                        "post"
                    },
                    hook.name,
                    result
                        .exit_code
                        .map(|c| format!(" with exit code {c}"))
                        .unwrap_or_default(),
                    result.output
                ),
            });
        }
        results.push(result);
    }
    failure
}
