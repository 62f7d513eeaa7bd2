//! The intermediate object store: a local directory (`file://`, the default) or a real S3 server
//! (Garage, single node on loopback, with a bucket and a key made for the run).

use super::process::{find, free_port, run, Process, ProcessError};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StoreKind {
    #[default]
    File,
    Garage,
}

/// S3 connection details of a Garage store.
#[derive(Debug, Clone)]
pub struct S3Access {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

pub struct ObjectStore {
    /// An `object_store` URL: `file:///...` or `s3://bucket`.
    pub url: String,
    pub s3: Option<S3Access>,
    process: Option<Process>,
}

const BUCKET: &str = "ferry";
const REGION: &str = "garage";

pub fn garage_binary() -> Result<PathBuf, ProcessError> {
    find("garage")
        .or_else(|| {
            let home = std::env::var_os("CARGO_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
            Some(home.join("bin/garage")).filter(|p| p.is_file())
        })
        .ok_or_else(|| ProcessError::Missing {
            program: "garage".into(),
            hint: "install it with `cargo install garage --locked` (.ci/run does)".into(),
        })
}

impl ObjectStore {
    pub fn start(kind: StoreKind, dir: &Path) -> Result<ObjectStore, ProcessError> {
        match kind {
            StoreKind::File => {
                let root = dir.join("objects");
                std::fs::create_dir_all(&root).map_err(|source| ProcessError::Io {
                    what: format!("creating {}", root.display()),
                    source,
                })?;
                Ok(ObjectStore {
                    url: format!("file://{}", root.display()),
                    s3: None,
                    process: None,
                })
            }
            StoreKind::Garage => start_garage(dir),
        }
    }

    /// Environment variables a Ferry process (or the AWS CLI) needs to reach the store.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![("FERRY_STORE_URL".to_string(), self.url.clone())];
        if let Some(s3) = &self.s3 {
            env.extend([
                ("AWS_ENDPOINT_URL".into(), s3.endpoint.clone()),
                ("AWS_REGION".into(), s3.region.clone()),
                ("AWS_ACCESS_KEY_ID".into(), s3.access_key_id.clone()),
                ("AWS_SECRET_ACCESS_KEY".into(), s3.secret_access_key.clone()),
                ("AWS_ALLOW_HTTP".into(), "true".into()),
            ]);
        }
        env
    }

    pub fn stop(&mut self) {
        if let Some(p) = self.process.as_mut() {
            p.stop();
        }
    }
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

fn start_garage(dir: &Path) -> Result<ObjectStore, ProcessError> {
    let bin = garage_binary()?;
    let root = dir.join("garage");
    for sub in ["meta", "data"] {
        std::fs::create_dir_all(root.join(sub)).map_err(|source| ProcessError::Io {
            what: format!("creating {}", root.join(sub).display()),
            source,
        })?;
    }
    let (rpc, s3, admin) = (free_port()?, free_port()?, free_port()?);
    let config = format!(
        r#"metadata_dir = "{meta}"
data_dir = "{data}"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "127.0.0.1:{s3}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin}"
admin_token = "{admin_token}"
"#,
        meta = root.join("meta").display(),
        data = root.join("data").display(),
        secret = random_hex(32),
        admin_token = random_hex(16),
    );
    let config_path = root.join("garage.toml");
    std::fs::write(&config_path, config).map_err(|source| ProcessError::Io {
        what: format!("writing {}", config_path.display()),
        source,
    })?;
    restrict(&config_path)?;
    let cfg = config_path.display().to_string();
    let mut cmd = Command::new(&bin);
    cmd.args(["-c", &cfg, "server"])
        .env("RUST_LOG", "garage=warn");
    let mut process = Process::spawn("garage", cmd, root.join("garage.log"))?;
    for port in [rpc, s3, admin] {
        process.wait_for_port(
            SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(30),
        )?;
    }
    let garage = |args: &[&str]| -> Result<String, ProcessError> {
        let mut full = vec!["-c", cfg.as_str()];
        full.extend_from_slice(args);
        run(&bin, &full)
    };
    let node = garage(&["node", "id", "-q"])?;
    let node_id = node.trim().split('@').next().unwrap_or("").to_string();
    garage(&["layout", "assign", "-z", "dc1", "-c", "10G", &node_id])?;
    garage(&["layout", "apply", "--version", "1"])?;
    garage(&["bucket", "create", BUCKET])?;
    let access_key_id = format!("GK{}", random_hex(12));
    let secret_access_key = random_hex(32);
    garage(&[
        "key",
        "import",
        "--yes",
        "-n",
        "ferry-e2e",
        &access_key_id,
        &secret_access_key,
    ])?;
    garage(&[
        "bucket",
        "allow",
        "--read",
        "--write",
        "--owner",
        BUCKET,
        "--key",
        &access_key_id,
    ])?;
    Ok(ObjectStore {
        url: format!("s3://{BUCKET}"),
        s3: Some(S3Access {
            endpoint: format!("http://127.0.0.1:{s3}"),
            region: REGION.into(),
            bucket: BUCKET.into(),
            access_key_id,
            secret_access_key,
        }),
        process: Some(process),
    })
}

/// Garage refuses configuration files holding secrets that others can read.
fn restrict(path: &Path) -> Result<(), ProcessError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
        ProcessError::Io {
            what: format!("restricting {}", path.display()),
            source,
        }
    })
}
