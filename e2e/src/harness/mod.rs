//! The end-to-end environment: real NATS with JetStream, an object store, and two stand-in
//! clusters ("source" and "target"), each with its own data directory and kubeconfig.
//!
//! [`Environment::up`] starts everything and [`Environment::down`] (or dropping it) stops
//! everything; every process's log stays in the environment's directory for post-mortems.

pub mod ferry;
pub mod nats;
pub mod object_store;
pub mod process;

use crate::apiserver::kubelet::ImageProgram;
use crate::apiserver::{BackgroundStandIn, StandInConfig, StartError};
use std::path::{Path, PathBuf};

pub use object_store::{S3Access, StoreKind};

#[derive(Debug, Clone)]
pub struct EnvironmentOptions {
    /// Where data, logs and kubeconfigs go.
    pub dir: PathBuf,
    pub store: StoreKind,
    pub clusters: Vec<String>,
    /// Kubernetes minor version the clusters report.
    pub minor_version: u32,
    /// Keep cluster objects across restarts of the environment in the same directory.
    pub persist: bool,
    /// Images whose pods run local programs in every cluster (operators, Ferry's spoke).
    pub image_programs: Vec<ImageProgram>,
}

impl EnvironmentOptions {
    pub fn new(dir: impl Into<PathBuf>) -> EnvironmentOptions {
        EnvironmentOptions {
            dir: dir.into(),
            store: StoreKind::File,
            clusters: vec!["source".into(), "target".into()],
            minor_version: 33,
            persist: false,
            image_programs: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EnvironmentError {
    #[error("starting NATS: {0}")]
    Nats(#[source] process::ProcessError),
    #[error("starting the object store: {0}")]
    ObjectStore(#[source] process::ProcessError),
    #[error("starting cluster {cluster}: {source}")]
    Cluster { cluster: String, source: StartError },
    #[error("creating {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
}

pub struct Cluster {
    pub name: String,
    pub kubeconfig: PathBuf,
    pub server: String,
    standin: BackgroundStandIn,
}

impl Cluster {
    pub fn standin(&self) -> &crate::apiserver::StandIn {
        self.standin.get()
    }
}

pub struct Environment {
    pub dir: PathBuf,
    pub nats: nats::Nats,
    pub store: object_store::ObjectStore,
    pub clusters: Vec<Cluster>,
}

impl Environment {
    pub fn up(opts: &EnvironmentOptions) -> Result<Environment, EnvironmentError> {
        std::fs::create_dir_all(&opts.dir).map_err(|source| EnvironmentError::Dir {
            path: opts.dir.display().to_string(),
            source,
        })?;
        let nats = nats::Nats::start(&opts.dir).map_err(EnvironmentError::Nats)?;
        let store = object_store::ObjectStore::start(opts.store, &opts.dir)
            .map_err(EnvironmentError::ObjectStore)?;
        let mut clusters = Vec::new();
        for name in &opts.clusters {
            let mut config = StandInConfig::new(name.clone(), opts.dir.join("clusters").join(name));
            config.minor_version = opts.minor_version;
            config.persist = opts.persist;
            config.image_programs = opts.image_programs.clone();
            let standin =
                BackgroundStandIn::start(config).map_err(|source| EnvironmentError::Cluster {
                    cluster: name.clone(),
                    source,
                })?;
            clusters.push(Cluster {
                name: name.clone(),
                kubeconfig: standin.get().kubeconfig_path.clone(),
                server: standin.get().url.clone(),
                standin,
            });
        }
        Ok(Environment {
            dir: opts.dir.clone(),
            nats,
            store,
            clusters,
        })
    }

    pub fn cluster(&self, name: &str) -> Option<&Cluster> {
        self.clusters.iter().find(|c| c.name == name)
    }

    /// What a user needs to connect, as shell `export` lines with comments.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "# Ferry end-to-end environment in {}\n",
            self.dir.display()
        ));
        out.push_str(&format!("export FERRY_NATS_URL={}\n", self.nats.url));
        for (k, v) in self.store.env() {
            out.push_str(&format!("export {k}={v}\n"));
        }
        for c in &self.clusters {
            out.push_str(&format!(
                "# cluster {}: {}\nexport FERRY_KUBECONFIG_{}={}\n",
                c.name,
                c.server,
                c.name.to_uppercase().replace('-', "_"),
                c.kubeconfig.display()
            ));
        }
        out.push_str(&format!(
            "# e.g. kubectl --kubeconfig {} get namespaces\n",
            self.clusters
                .first()
                .map(|c| c.kubeconfig.display().to_string())
                .unwrap_or_default()
        ));
        out
    }

    /// Writes [`Environment::describe`] to `env.sh` in the environment's directory.
    pub fn write_env_file(&self) -> std::io::Result<PathBuf> {
        let path = self.dir.join("env.sh");
        std::fs::write(&path, self.describe())?;
        Ok(path)
    }

    pub fn down(mut self) {
        self.stop_all();
    }

    fn stop_all(&mut self) {
        // Clusters first (their controllers may still write), then the store and NATS.
        self.clusters.clear();
        self.store.stop();
        self.nats.stop();
    }
}

impl Drop for Environment {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// Runs kubectl against a cluster's kubeconfig (with a cache of its own); its standard output.
pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> anyhow::Result<String> {
    use anyhow::Context;
    let out = std::process::Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("KUBECACHEDIR", kubeconfig.with_file_name("kubectl-cache"))
        .output()
        .context("running kubectl (is it installed?)")?;
    if !out.status.success() {
        anyhow::bail!(
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}
