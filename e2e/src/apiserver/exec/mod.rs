//! `pods/exec` over WebSocket, with the channel protocol (`v5.channel.k8s.io`,
//! `v4.channel.k8s.io`) that kubectl 1.30+ and kube-rs speak, and over SPDY (`spdy`) for
//! kubectl up to 1.29. The command runs as a local
//! process in the pod's sandbox directory, so exec hooks do real work that a test can observe.

use super::error::{ApiError, ApiResult};
use super::http::{full, Body, Query, Shared};
use futures::{SinkExt, StreamExt};
use http::{header, Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

mod spdy;

/// One exec'd command, ready for either transport: already wrapped to run in the pod's root.
struct Session {
    command: Vec<String>,
    sandbox: PathBuf,
    env: Vec<(String, String)>,
}

const PROTOCOLS: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io"];

/// The directory a pod's processes run in; exec hooks and the process kubelet share it.
pub fn sandbox_dir(shared: &Shared, namespace: &str, pod: &str) -> PathBuf {
    shared
        .config
        .data_root
        .join("pods")
        .join(namespace)
        .join(pod)
}

pub fn pod_log(shared: &Shared, pod: &Value, container: Option<&str>) -> String {
    let ns = pod
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let container = container
        .map(str::to_string)
        .or_else(|| {
            pod.pointer("/spec/containers/0/name")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_default();
    std::fs::read_to_string(sandbox_dir(shared, ns, name).join(format!("{container}.log")))
        .unwrap_or_default()
}

pub fn serve(
    shared: Arc<Shared>,
    namespace: &str,
    pod_name: &str,
    mut req: Request<Incoming>,
    q: &Query,
) -> ApiResult<Response<Body>> {
    let pods = shared.core.resource("", "pods").expect("pods are built in");
    let pod = shared.core.get(&pods, Some(namespace), pod_name)?;
    let containers: Vec<String> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
        .collect();
    let container = match q.get("container") {
        Some(c) if containers.iter().any(|x| x == c) => c.to_string(),
        Some(c) => {
            return Err(ApiError::bad_request(format!(
                "container {c} is not valid for pod {pod_name}"
            )))
        }
        None if containers.len() == 1 => containers[0].clone(),
        None => {
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                containers.join(" ")
            )))
        }
    };
    if pod.pointer("/status/phase").and_then(Value::as_str) != Some("Running") {
        return Err(ApiError::bad_request(format!(
            "pod {pod_name} is not running: cannot exec into a container in a completed or pending pod"
        )));
    }
    let command = q.all("command");
    if command.is_empty() {
        return Err(ApiError::bad_request("you must specify at least 1 command"));
    }
    // What either transport runs: the command in the pod's own root, with the pod's identity.
    let sandbox = sandbox_dir(&shared, namespace, pod_name);
    let mounts = super::kubelet::container_mounts(&shared.core, &pod, &container, &sandbox)
        .map_err(|e| ApiError::bad_request(format!("pod {pod_name}: {e}")))?;
    let session = Session {
        command: isolated(&command, &sandbox, &mounts),
        env: vec![
            ("POD_NAME".into(), pod_name.into()),
            ("POD_NAMESPACE".into(), namespace.into()),
            ("CONTAINER_NAME".into(), container.clone()),
        ],
        sandbox,
    };
    let spdy_upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|u| u.eq_ignore_ascii_case("SPDY/3.1"));
    if spdy_upgrade {
        return serve_spdy(session, req, q);
    }
    let key = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or_else(|| ApiError::bad_request("exec needs a WebSocket or SPDY/3.1 upgrade"))?
        .clone();
    let offered = req
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    let protocol = PROTOCOLS
        .iter()
        .find(|p| offered.split(',').any(|o| o.trim() == **p))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "unsupported exec subprotocols {offered:?}; the stand-in speaks {}",
                PROTOCOLS.join(", ")
            ))
        })?;
    let want_stdin = q.flag("stdin");
    let v5 = *protocol == "v5.channel.k8s.io";
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => {
                let ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None)
                        .await;
                if let Err(e) = run(ws, session, want_stdin, v5).await {
                    tracing::warn!(error = %e, "exec session ended with an error");
                }
            }
            Err(e) => tracing::warn!(error = %e, "exec upgrade failed"),
        }
    });
    Ok(Response::builder()
        .status(101)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(
            header::SEC_WEBSOCKET_ACCEPT,
            derive_accept_key(key.as_bytes()),
        )
        .header(header::SEC_WEBSOCKET_PROTOCOL, *protocol)
        .body(full(""))
        .expect("valid"))
}

/// The root an exec'd command sees: `<sandbox>/rootfs`, with the host's system directories
/// (read-only) for its tools, the container's volume mounts at their mount paths, and the
/// service-account files. Anything it writes elsewhere stays in the root: `kubectl cp` to
/// `/etc/passwd` writes the pod's copy, never the host's.
const ISOLATE: &str = r#"set -e
PATH="$PATH:/usr/sbin:/sbin"   # chroot lives there, and a non-root PATH may not list it
root=$1; shift
mkdir -p "$root/tmp" "$root/var/run"
for d in usr bin sbin lib lib32 lib64 libx32 etc; do
  if [ -e "/$d" ]; then
    mkdir -p "$root/$d"
    mount --rbind "/$d" "$root/$d"
    mount -o remount,bind,ro "$root/$d" 2>/dev/null || true
  fi
done
for d in dev proc sys; do mkdir -p "$root/$d"; mount --rbind "/$d" "$root/$d"; done
while [ "$1" != "--" ]; do
  mkdir -p "$root$2"
  mount --bind "$1" "$root$2"
  shift 2
done
shift
exec chroot "$root" "$@"
"#;

/// `command` wrapped to run in its own mount namespace, chrooted into the pod's root (as root;
/// otherwise in a user namespace too).
fn isolated(
    command: &[String],
    sandbox: &std::path::Path,
    mounts: &[(PathBuf, String)],
) -> Vec<String> {
    let as_root = crate::apiserver::kubelet::current_uid() == 0;
    let mut wrapped: Vec<String> = vec!["unshare".into()];
    if !as_root {
        wrapped.extend(["--user".into(), "--map-root-user".into()]);
    }
    wrapped.extend([
        "--mount".into(),
        "--".into(),
        "/bin/sh".into(),
        "-c".into(),
        ISOLATE.into(),
        "isolate".into(),
        sandbox.join("rootfs").display().to_string(),
    ]);
    let secrets = sandbox.join("var/run/secrets");
    if secrets.is_dir() {
        wrapped.extend([secrets.display().to_string(), "/var/run/secrets".into()]);
    }
    for (source, path) in mounts {
        wrapped.extend([source.display().to_string(), path.clone()]);
    }
    wrapped.push("--".into());
    wrapped.extend(command.iter().cloned());
    wrapped
}

async fn run<S>(
    ws: WebSocketStream<S>,
    session: Session,
    want_stdin: bool,
    v5: bool,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut source) = ws.split();
    let spawned = spawn_command(&session, want_stdin);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let status = json!({"metadata": {}, "status": "Failure", "reason": "InternalError",
                "message": format!("failed to exec in container: starting {:?}: {e}", session.command[0])});
            sink.send(Message::binary(channel_frame(
                3,
                status.to_string().as_bytes(),
            )))
            .await?;
            return close(sink).await;
        }
    };
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<(u8, Vec<u8>)>(64);
    for (ch, mut pipe) in [
        (
            1u8,
            Box::new(child.stdout.take().expect("piped"))
                as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
        ),
        (2u8, Box::new(child.stderr.take().expect("piped"))),
    ] {
        let tx = out_tx.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            while let Ok(n) = pipe.read(&mut buf).await {
                if n == 0 || tx.send((ch, buf[..n].to_vec())).await.is_err() {
                    break;
                }
            }
        });
    }
    drop(out_tx);
    let mut stdin = child.stdin.take();
    let mut outputs_open = true;
    loop {
        tokio::select! {
            out = out_rx.recv(), if outputs_open => match out {
                Some((ch, data)) => sink.send(Message::binary(channel_frame(ch, &data))).await?,
                None => outputs_open = false,
            },
            msg = source.next(), if stdin.is_some() => match msg {
                Some(Ok(Message::Binary(b))) if !b.is_empty() => match b[0] {
                    0 => {
                        if let Some(s) = stdin.as_mut() {
                            if s.write_all(&b[1..]).await.is_err() {
                                stdin = None;
                            }
                        }
                    }
                    255 if v5 && b.get(1) == Some(&0) => stdin = None,
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => stdin = None,
                _ => {}
            },
            else => break,
        }
        if !outputs_open {
            break;
        }
    }
    drop(stdin);
    let status = child.wait().await?;
    let body = exit_status(status.code());
    sink.send(Message::binary(channel_frame(
        3,
        body.to_string().as_bytes(),
    )))
    .await?;
    close(sink).await
}

/// Starts an exec'd command (already wrapped by `isolated`) with piped output.
fn spawn_command(session: &Session, want_stdin: bool) -> std::io::Result<tokio::process::Child> {
    let Session {
        command,
        sandbox,
        env,
    } = session;
    std::fs::create_dir_all(sandbox)?;
    tokio::process::Command::new(&command[0])
        .args(&command[1..])
        .current_dir(sandbox)
        .envs(env.iter().cloned())
        .stdin(if want_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
}

/// The Status an exec session ends with, from the command's exit code.
fn exit_status(code: Option<i32>) -> Value {
    match code {
        Some(0) => json!({"metadata": {}, "status": "Success"}),
        code => {
            let code = code.unwrap_or(137);
            json!({"metadata": {}, "status": "Failure",
                   "message": format!("command terminated with non-zero exit code: exit status {code}"),
                   "reason": "NonZeroExitCode",
                   "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}})
        }
    }
}

/// Answers an exec request that asks for SPDY/3.1 (kubectl up to 1.29).
fn serve_spdy(
    session: Session,
    mut req: Request<Incoming>,
    q: &Query,
) -> ApiResult<Response<Body>> {
    let offered: Vec<String> = req
        .headers()
        .get_all("X-Stream-Protocol-Version")
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(',').map(|p| p.trim().to_string()))
        .collect();
    if !offered.iter().any(|p| p == "v4.channel.k8s.io") {
        return Err(ApiError::bad_request(format!(
            "unsupported stream protocols {offered:?}; over SPDY the stand-in speaks v4.channel.k8s.io"
        )));
    }
    let wanted = spdy::Wanted {
        stdin: q.flag("stdin"),
        stdout: q.flag("stdout"),
        stderr: q.flag("stderr"),
        tty: q.flag("tty"),
    };
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => {
                if let Err(e) = spdy::run(TokioIo::new(upgraded), session, wanted).await {
                    tracing::warn!(error = %e, "SPDY exec session ended with an error");
                }
            }
            Err(e) => tracing::warn!(error = %e, "SPDY exec upgrade failed"),
        }
    });
    Ok(Response::builder()
        .status(101)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "SPDY/3.1")
        .header("X-Stream-Protocol-Version", "v4.channel.k8s.io")
        .body(full(""))
        .expect("valid"))
}

/// Ends the session with a normal closure: clients (gorilla/websocket in kubectl) treat a close
/// without a status code as an error rather than the end of the streams.
async fn close<S>(mut sink: S) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    S: futures::Sink<Message> + Unpin,
    S::Error: std::error::Error + Send + Sync + 'static,
{
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    sink.send(Message::Close(Some(frame))).await?;
    Ok(())
}

fn channel_frame(ch: u8, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(ch);
    v.extend_from_slice(data);
    v
}
