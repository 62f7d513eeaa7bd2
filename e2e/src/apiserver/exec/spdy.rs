//! `pods/exec` over SPDY/3.1, which kubectl up to 1.29 speaks (1.30+ and kube-rs use
//! WebSocket): the `v4.channel.k8s.io` stream protocol, one SPDY stream per channel.
//!
//! The client opens its streams one at a time, each waiting for the reply, in a fixed order —
//! error, then stdin, stdout and stderr as the request asks for them (client-go's
//! `remotecommand`) — so each stream's channel is known from its position, and the client's
//! compressed header blocks need not be read. The server's own header blocks (empty) are zlib
//! without a preset dictionary, which SPDY readers accept.

use super::{spawn_command, Session};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const PING: u16 = 6;
const FLAG_FIN: u8 = 0x01;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    Error,
    Stdin,
    Stdout,
    Stderr,
    Resize,
}

/// What the exec request asked for, in the order the client opens the streams.
pub struct Wanted {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl Wanted {
    fn order(&self) -> Vec<Channel> {
        let mut order = vec![Channel::Error];
        if self.stdin {
            order.push(Channel::Stdin);
        }
        if self.stdout {
            order.push(Channel::Stdout);
        }
        if self.stderr && !self.tty {
            order.push(Channel::Stderr);
        }
        if self.tty {
            order.push(Channel::Resize);
        }
        order
    }
}

fn control(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + payload.len());
    f.extend_from_slice(&(0x8000u16 | 3).to_be_bytes());
    f.extend_from_slice(&kind.to_be_bytes());
    f.push(flags);
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    f.extend_from_slice(payload);
    f
}

fn data(stream: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + payload.len());
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.push(flags);
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    f.extend_from_slice(payload);
    f
}

/// The server's header-block compressor: one zlib stream for the connection, flushed per block.
struct Headers(flate2::Compress);

impl Headers {
    fn empty_block(&mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        // No name/value pairs.
        let _ = self
            .0
            .compress_vec(&[0, 0, 0, 0], &mut out, flate2::FlushCompress::Sync);
        out
    }
}

/// Serves one exec session on an upgraded connection.
pub(super) async fn run<S>(
    io: S,
    session: Session,
    wanted: Wanted,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(io);
    let mut headers = Headers(flate2::Compress::new(flate2::Compression::fast(), true));
    let order = wanted.order();
    let mut streams: Vec<(Channel, u32)> = Vec::new();
    // Frames from the client, read on their own task.
    let (frames_tx, mut frames) = tokio::sync::mpsc::channel::<(bool, u16, u8, Vec<u8>)>(64);
    tokio::spawn(async move {
        loop {
            let mut head = [0u8; 8];
            if reader.read_exact(&mut head).await.is_err() {
                break;
            }
            let is_control = head[0] & 0x80 != 0;
            let kind = u16::from_be_bytes([head[2], head[3]]);
            let word = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) & 0x7fff_ffff;
            let flags = head[4];
            let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
            let mut payload = vec![0u8; len];
            if reader.read_exact(&mut payload).await.is_err() {
                break;
            }
            // For data frames the stream id rides in the first word.
            let kind_or_stream = if is_control { kind } else { 0 };
            if !is_control {
                let mut p = word.to_be_bytes().to_vec();
                p.extend_from_slice(&payload);
                payload = p;
            }
            if frames_tx
                .send((is_control, kind_or_stream, flags, payload))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    // Set-up: one reply per stream, in the client's order.
    while streams.len() < order.len() {
        let Some((is_control, kind, _flags, payload)) = frames.recv().await else {
            return Ok(());
        };
        if !is_control {
            continue;
        }
        match kind {
            SYN_STREAM if payload.len() >= 4 => {
                let id = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
                    & 0x7fff_ffff;
                streams.push((order[streams.len()], id));
                let mut reply = id.to_be_bytes().to_vec();
                reply.extend(headers.empty_block());
                writer.write_all(&control(SYN_REPLY, 0, &reply)).await?;
            }
            PING => writer.write_all(&control(PING, 0, &payload)).await?,
            _ => {}
        }
    }
    let stream_of = |c: Channel| streams.iter().find(|(k, _)| *k == c).map(|(_, id)| *id);
    let mut child = match spawn_command(&session, wanted.stdin) {
        Ok(c) => c,
        Err(e) => {
            let status = json!({"metadata": {}, "status": "Failure", "reason": "InternalError",
                "message": format!("failed to exec in container: {e}")});
            if let Some(err) = stream_of(Channel::Error) {
                writer
                    .write_all(&data(err, FLAG_FIN, status.to_string().as_bytes()))
                    .await?;
            }
            return Ok(());
        }
    };
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<(Channel, Vec<u8>)>(64);
    let pipes: Vec<(Channel, Box<dyn tokio::io::AsyncRead + Unpin + Send>)> = vec![
        (
            Channel::Stdout,
            Box::new(child.stdout.take().expect("piped")),
        ),
        (
            Channel::Stderr,
            Box::new(child.stderr.take().expect("piped")),
        ),
    ];
    for (channel, mut pipe) in pipes {
        let tx = out_tx.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            while let Ok(n) = pipe.read(&mut buf).await {
                if n == 0 || tx.send((channel, buf[..n].to_vec())).await.is_err() {
                    break;
                }
            }
        });
    }
    drop(out_tx);
    let mut stdin = child.stdin.take();
    let stdin_stream = stream_of(Channel::Stdin);
    let mut outputs_open = true;
    while outputs_open {
        tokio::select! {
            out = out_rx.recv() => match out {
                Some((channel, bytes)) => {
                    // Without a stderr stream (a tty), stderr joins stdout.
                    let target = stream_of(channel).or_else(|| stream_of(Channel::Stdout));
                    if let Some(id) = target {
                        writer.write_all(&data(id, 0, &bytes)).await?;
                    }
                }
                None => outputs_open = false,
            },
            frame = frames.recv() => match frame {
                Some((false, _, flags, payload)) if payload.len() >= 4 => {
                    let id = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
                    if Some(id) == stdin_stream {
                        if let Some(s) = stdin.as_mut() {
                            if payload.len() > 4 && s.write_all(&payload[4..]).await.is_err() {
                                stdin = None;
                            }
                        }
                        if flags & FLAG_FIN != 0 {
                            stdin = None;
                        }
                    }
                }
                Some((true, PING, _, payload)) => writer.write_all(&control(PING, 0, &payload)).await?,
                Some(_) => {}
                // The client went away: stop the command.
                None => break,
            },
        }
    }
    drop(stdin);
    let status = child.wait().await?;
    let body = super::exit_status(status.code());
    for channel in [Channel::Stdout, Channel::Stderr, Channel::Stdin] {
        if let Some(id) = stream_of(channel) {
            writer.write_all(&data(id, FLAG_FIN, &[])).await?;
        }
    }
    if let Some(err) = stream_of(Channel::Error) {
        // v4: the error stream carries a Status; a successful command sends one too.
        writer
            .write_all(&data(err, FLAG_FIN, body.to_string().as_bytes()))
            .await?;
    }
    writer.flush().await?;
    // Let the client read everything and hang up first.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while frames.recv().await.is_some() {}
    })
    .await;
    Ok(())
}
