//! Ferry's own processes in the environment: the hub, one spoke per cluster, and the `ferry`
//! CLI, each the real binary (built on first use if it is not beside this one).

use super::process::{free_port, Process, ProcessError};
use super::Environment;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The passphrase the environment's repository is created with (a test fixture, not a secret).
pub const REPOSITORY_PASSWORD: &str = "ferry-e2e-demo";

static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// Ferry's binaries.
const BINARIES: [&str; 3] = ["ferry", "ferry-hub", "ferry-spoke"];
/// The sources they are built from, relative to the workspace root.
const SOURCES: [&str; 5] = [
    "hub/src",
    "spoke/src",
    "spoke/repository/src",
    "protocol/src",
    "transform/src",
];

fn newest(dir: &Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).ok()?.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else if let Ok(t) = m.modified() {
                newest = newest.max(Some(t));
            }
        }
    }
    newest
}

/// Whether every binary is there and newer than every source file.
fn fresh(dir: &Path) -> bool {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let sources = SOURCES.iter().filter_map(|s| newest(&root.join(s))).max();
    BINARIES.iter().all(|b| {
        let built = std::fs::metadata(dir.join(b))
            .and_then(|m| m.modified())
            .ok();
        matches!((built, sources), (Some(b), Some(s)) if b >= s)
    })
}

/// The directory of Ferry's binaries: `FERRY_BIN_DIR`, else this executable's target directory,
/// where `cargo test --workspace`, `cargo build --workspace --bins` and `./dev` put them. They
/// are not built from here: a cargo run inside `cargo test` would wait for the build lock the
/// outer one holds. Binaries older than their sources are used with a warning.
pub fn bin_dir() -> Result<PathBuf, ProcessError> {
    let found = BUILT.get_or_init(|| {
        if let Some(dir) = std::env::var_os("FERRY_BIN_DIR") {
            return Ok(PathBuf::from(dir));
        }
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        // target/<profile>/deps/<test> or target/<profile>/<binary>
        let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
        if dir.file_name().is_some_and(|n| n == "deps") {
            dir.pop();
        }
        if let Some(missing) = BINARIES.iter().find(|b| !dir.join(b).is_file()) {
            return Err(format!(
                "{missing} is not in {}: run `cargo build --workspace --bins` first",
                dir.display()
            ));
        }
        if !fresh(&dir) {
            eprintln!(
                "warning: Ferry's binaries in {} are older than their sources; `cargo build --workspace --bins` updates them",
                dir.display()
            );
        }
        Ok(dir)
    });
    found.clone().map_err(|message| ProcessError::Io {
        what: "finding Ferry's binaries".into(),
        source: std::io::Error::other(message),
    })
}

pub struct Fleet {
    pub bin: PathBuf,
    pub dir: PathBuf,
    pub nats_url: String,
    pub repository: String,
    store_env: Vec<(String, String)>,
    clusters: Vec<(String, PathBuf)>,
    pub hub: Option<Process>,
    pub hub_http: String,
    /// How long the hub waits for a silent spoke.
    pub spoke_timeout: Duration,
    /// How long a command may go unacknowledged before it is delivered again.
    pub ack_wait: Duration,
    pub spokes: Vec<(String, Process)>,
}

impl Fleet {
    /// Starts the hub and a spoke for every cluster, all sharing one repository in the
    /// environment's object store, and waits until every spoke has registered.
    pub fn start(env: &Environment) -> Result<Fleet, ProcessError> {
        Fleet::start_with(env, Duration::from_secs(30))
    }

    pub fn start_with(env: &Environment, spoke_timeout: Duration) -> Result<Fleet, ProcessError> {
        Fleet::start_tuned(env, spoke_timeout, Duration::from_secs(30))
    }

    /// With the hub's deadlines chosen: how long a spoke may be silent, and how long a command
    /// may go unacknowledged before it is delivered again.
    pub fn start_tuned(
        env: &Environment,
        spoke_timeout: Duration,
        ack_wait: Duration,
    ) -> Result<Fleet, ProcessError> {
        let bin = bin_dir()?;
        let repository = match &env.store.s3 {
            Some(_) => format!("{}/ferry", env.store.url.trim_end_matches('/')),
            None => format!("{}/ferry-repository", env.store.url.trim_end_matches('/')),
        };
        let mut fleet = Fleet {
            bin,
            dir: env.dir.clone(),
            nats_url: env.nats.url.clone(),
            repository,
            store_env: env.store.env(),
            clusters: env
                .clusters
                .iter()
                .map(|c| (c.name.clone(), c.kubeconfig.clone()))
                .collect(),
            hub: None,
            hub_http: String::new(),
            spoke_timeout,
            ack_wait,
            spokes: Vec::new(),
        };
        fleet.init_repository()?;
        fleet.start_hub()?;
        let names: Vec<String> = fleet.clusters.iter().map(|(n, _)| n.clone()).collect();
        for name in &names {
            fleet.start_spoke(name)?;
        }
        for name in &names {
            fleet.wait_registered(name, Duration::from_secs(60))?;
        }
        Ok(fleet)
    }

    /// Creates the shared repository once, before any spoke starts: not every S3 server honours
    /// create-only writes, so spokes racing to create it could each write a config.
    fn init_repository(&self) -> Result<(), ProcessError> {
        let mut cmd = Command::new(self.bin.join("ferry-spoke"));
        cmd.args(["repo", "init"])
            .env("FERRY_REPOSITORY", &self.repository)
            .env("FERRY_PASSWORD", REPOSITORY_PASSWORD);
        for (k, v) in &self.store_env {
            cmd.env(k, v);
        }
        let out = cmd.output().map_err(|source| ProcessError::Spawn {
            program: "ferry-spoke repo init".into(),
            source,
        })?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() || stderr.contains("already") {
            return Ok(());
        }
        Err(ProcessError::Io {
            what: "creating the repository".into(),
            source: std::io::Error::other(stderr.into_owned()),
        })
    }

    pub fn start_hub(&mut self) -> Result<(), ProcessError> {
        let port = free_port()?;
        let mut cmd = Command::new(self.bin.join("ferry-hub"));
        cmd.env("FERRY_NATS_URL", &self.nats_url)
            .env("FERRY_HUB_DATA", self.dir.join("hub-data"))
            .env("FERRY_HUB_LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "FERRY_HUB_SPOKE_TIMEOUT",
                self.spoke_timeout.as_secs().to_string(),
            )
            .env("FERRY_HUB_ACK_WAIT", self.ack_wait.as_secs().to_string())
            .env("FERRY_LOG", "info");
        let mut hub = Process::spawn("ferry-hub", cmd, self.dir.join("ferry-hub.log"))?;
        hub.wait_for_port(([127, 0, 0, 1], port).into(), Duration::from_secs(30))?;
        self.hub_http = format!("http://127.0.0.1:{port}");
        self.hub = Some(hub);
        Ok(())
    }

    pub fn stop_hub(&mut self) {
        if let Some(mut h) = self.hub.take() {
            h.stop();
        }
    }

    pub fn start_spoke(&mut self, cluster: &str) -> Result<(), ProcessError> {
        let kubeconfig = self
            .clusters
            .iter()
            .find(|(n, _)| n == cluster)
            .map(|(_, k)| k.clone())
            .ok_or_else(|| ProcessError::Io {
                what: format!("starting the spoke of {cluster}"),
                source: std::io::Error::other("no such cluster in the environment"),
            })?;
        let mut cmd = Command::new(self.bin.join("ferry-spoke"));
        cmd.args(["run", "--heartbeat", "1"])
            .env("KUBECONFIG", kubeconfig)
            .env("FERRY_CLUSTER", cluster)
            .env("FERRY_NATS_URL", &self.nats_url)
            .env("FERRY_REPOSITORY", &self.repository)
            .env("FERRY_PASSWORD", REPOSITORY_PASSWORD)
            // The stand-in's provisioner makes read-only claims from snapshots shallow.
            .env("FERRY_READ_ONLY_CLONES", "*")
            .env("FERRY_LOG", "info");
        for (k, v) in &self.store_env {
            cmd.env(k, v);
        }
        let spoke = Process::spawn(
            &format!("ferry-spoke {cluster}"),
            cmd,
            self.dir.join(format!("ferry-spoke-{cluster}.log")),
        )?;
        self.spokes.retain(|(n, _)| n != cluster);
        self.spokes.push((cluster.to_string(), spoke));
        Ok(())
    }

    pub fn stop_spoke(&mut self, cluster: &str) {
        if let Some(i) = self.spokes.iter().position(|(n, _)| n == cluster) {
            let (_, mut p) = self.spokes.remove(i);
            p.stop();
        }
    }

    /// Runs the `ferry` CLI against this fleet's NATS.
    pub fn ferry(&self, args: &[&str]) -> Output {
        Command::new(self.bin.join("ferry"))
            .args(args)
            .env("FERRY_NATS_URL", &self.nats_url)
            .output()
            .expect("the ferry CLI runs")
    }

    /// `ferry migrate --from source --to target -n <namespace> --transforms <rules>`, and more.
    pub fn migrate(&self, namespace: &str, rules: &Path, more: &[&str]) -> Output {
        let rules = rules.display().to_string();
        let mut args = vec![
            "migrate",
            "--from",
            "source",
            "--to",
            "target",
            "-n",
            namespace,
            "--transforms",
            &rules,
        ];
        args.extend_from_slice(more);
        self.ferry(&args)
    }

    /// Waits until the hub lists `cluster` as connected.
    pub fn wait_registered(&self, cluster: &str, timeout: Duration) -> Result<(), ProcessError> {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.ferry(&["clusters", "-o", "json"]);
            if out.status.success() {
                let list: serde_json::Value =
                    serde_json::from_slice(&out.stdout).unwrap_or_default();
                let connected = list.as_array().into_iter().flatten().any(|c| {
                    c.pointer("/registration/cluster").and_then(|v| v.as_str()) == Some(cluster)
                        && c["connected"] == serde_json::json!(true)
                });
                if connected {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                let log = self.dir.join(format!("ferry-spoke-{cluster}.log"));
                return Err(ProcessError::NotReady {
                    program: format!("ferry-spoke {cluster}"),
                    secs: timeout.as_secs(),
                    tail: std::fs::read_to_string(&log).unwrap_or_default(),
                    log: log.display().to_string(),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Makes the clusters' process kubelet run Ferry's spoke binary for the spoke's image, so the
/// mover pods a spoke creates really run `ferry-spoke mover`.
pub fn mover_program() -> Result<crate::apiserver::kubelet::ImageProgram, ProcessError> {
    Ok(crate::apiserver::kubelet::ImageProgram {
        image: "*/ferry-spoke:*".into(),
        program: bin_dir()?.join("ferry-spoke"),
    })
}

/// Makes the clusters' process kubelet run the e2e Cache operator for its image, so the sample
/// application's operator really reconciles in both clusters.
pub fn operator_program() -> Result<crate::apiserver::kubelet::ImageProgram, ProcessError> {
    let program = bin_dir()?.join("standin-cache-operator");
    if !program.is_file() {
        return Err(ProcessError::Io {
            what: "finding the Cache operator".into(),
            source: std::io::Error::other(format!(
                "{} is missing: run `cargo build --workspace --bins`",
                program.display()
            )),
        });
    }
    Ok(crate::apiserver::kubelet::ImageProgram {
        image: "*/cache-operator:*".into(),
        program,
    })
}
