//! Child processes the harness owns: started with their output in a log file, waited on until
//! they answer, and killed when dropped so a failing test leaves nothing running.

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("{program} not found on PATH: {hint}")]
    Missing { program: String, hint: String },
    #[error("starting {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} exited before it was ready ({status}); its log {log} ends with:\n{tail}")]
    Exited {
        program: String,
        status: String,
        log: String,
        tail: String,
    },
    #[error("{program} did not become ready within {secs}s; its log {log} ends with:\n{tail}")]
    NotReady {
        program: String,
        secs: u64,
        log: String,
        tail: String,
    },
    #[error("{program} {args}: {detail}")]
    Command {
        program: String,
        args: String,
        detail: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

pub struct Process {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

/// Finds a program on PATH.
pub fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// A port on loopback that was free a moment ago, and that this process has not handed out
/// before: tests run side by side in one process, and two servers told the same port race for
/// it (the loser exits while the winner answers its readiness probe).
pub fn free_port() -> Result<u16, ProcessError> {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    for _ in 0..64 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|source| ProcessError::Io {
                what: "finding a free port".into(),
                source,
            })?;
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if handed_out.insert(port) {
            return Ok(port);
        }
    }
    Err(ProcessError::Io {
        what: "finding a free port".into(),
        source: std::io::Error::other("the kernel kept offering ports already handed out"),
    })
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

impl Process {
    pub fn spawn(name: &str, mut command: Command, log: PathBuf) -> Result<Process, ProcessError> {
        let file = std::fs::File::create(&log).map_err(|source| ProcessError::Io {
            what: format!("creating {}", log.display()),
            source,
        })?;
        let err = file.try_clone().map_err(|source| ProcessError::Io {
            what: "duplicating a log handle".into(),
            source,
        })?;
        let child = command
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .map_err(|source| ProcessError::Spawn {
                program: name.into(),
                source,
            })?;
        Ok(Process {
            name: name.into(),
            child,
            log,
        })
    }

    /// Waits until `addr` accepts TCP connections, failing early if the process exits.
    pub fn wait_for_port(
        &mut self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<(), ProcessError> {
        self.wait_for(timeout, || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                .ok()
                .map(drop)
        })
    }

    /// Waits until `probe` gives an answer, failing early if the process exits.
    pub fn wait_for<T>(
        &mut self,
        timeout: Duration,
        mut probe: impl FnMut() -> Option<T>,
    ) -> Result<T, ProcessError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(ProcessError::Exited {
                    program: self.name.clone(),
                    status: status.to_string(),
                    log: self.log.display().to_string(),
                    tail: tail(&self.log),
                });
            }
            if let Some(answer) = probe() {
                return Ok(answer);
            }
            if Instant::now() > deadline {
                return Err(ProcessError::NotReady {
                    program: self.name.clone(),
                    secs: timeout.as_secs(),
                    log: self.log.display().to_string(),
                    tail: tail(&self.log),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs a command to completion and returns its stdout, or an error with its stderr.
pub fn run(program: &Path, args: &[&str]) -> Result<String, ProcessError> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| ProcessError::Spawn {
            program: program.display().to_string(),
            source,
        })?;
    if !out.status.success() {
        return Err(ProcessError::Command {
            program: program.display().to_string(),
            args: args.join(" "),
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Peak resident memory (`VmHWM`) of a process, in KiB; 0 if it cannot be read.
pub fn peak_rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:")
}

/// Starts a new peak: `VmHWM` is set back to the current resident memory (Linux
/// `clear_refs`); false if the kernel refused.
pub fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// Resident memory (`VmRSS`) of a process now, in KiB; 0 if it cannot be read.
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// CPU time (user and system) a process has used so far, in seconds; 0 if it cannot be read.
pub fn cpu_seconds(pid: u32) -> f64 {
    // Fields 14 and 15 of /proc/<pid>/stat, counted after the command name's closing paren.
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let user: u64 = fields.get(11)?.parse().ok()?;
            let system: u64 = fields.get(12)?.parse().ok()?;
            Some(user + system)
        })
        .unwrap_or(0);
    // SAFETY: sysconf reads a constant and touches no memory.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    ticks as f64 / per_second as f64
}
