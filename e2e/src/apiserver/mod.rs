//! A Kubernetes API server stand-in that speaks the real REST protocol, for tests and demos on
//! machines where no kube-apiserver can run.
//!
//! The request path reads top to bottom: `http` parses and routes, [`core`] applies the verb
//! with Kubernetes' semantics over the [`store`], `watch` streams changes, [`controllers`]
//! play controller-manager, scheduler, kubelet and CSI driver. See `docs/standin.md` for what is
//! implemented, what is not, and how it was checked against kubectl and kube-rs.

pub mod controllers;
pub mod core;
mod discovery;
pub mod error;
mod exec;
mod http;
pub mod kubelet;
mod managed;
pub mod protobuf;
pub mod resources;
mod scale;
pub mod schema;
pub mod store;
mod table;
pub mod tls;
mod watch;

use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How to run one stand-in cluster. Plain data with public fields, so tests set what they need.
#[derive(Debug, Clone)]
pub struct StandInConfig {
    /// Names the cluster in its kubeconfig (context, cluster and user).
    pub cluster_name: String,
    /// Volumes, snapshots, pod sandboxes, certificates and (optionally) persisted objects.
    pub data_root: PathBuf,
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Serve HTTPS (the default) or plain HTTP.
    pub tls: bool,
    /// The Kubernetes minor version `/version` reports. The machine's kubectl dispatcher picks
    /// the kubectl release matching it.
    pub minor_version: u32,
    /// Keep objects in `data_root/objects.json`, so the cluster survives a restart.
    pub persist: bool,
    /// How many events watches can replay before a version counts as expired (410).
    pub watch_history: usize,
    pub bookmark_interval: Duration,
    /// The bearer token clients must present; `None` accepts any request.
    pub token: Option<String>,
    /// Pods whose image matches one of these run the mapped program as a local process.
    pub image_programs: Vec<kubelet::ImageProgram>,
    /// Filled in at start: the CA that signed the serving certificate.
    pub ca_pem: Option<String>,
    /// Filled in at start: the port the server listens on.
    pub listen_port: u16,
}

impl StandInConfig {
    pub fn new(cluster_name: impl Into<String>, data_root: impl Into<PathBuf>) -> StandInConfig {
        StandInConfig {
            cluster_name: cluster_name.into(),
            data_root: data_root.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: true,
            minor_version: 33,
            persist: false,
            watch_history: 10_000,
            bookmark_interval: Duration::from_secs(5),
            token: Some(format!("ferry-{:016x}", rand::random::<u64>())),
            image_programs: Vec::new(),
            ca_pem: None,
            listen_port: 0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("creating data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("loading persisted objects from {path}: {source}")]
    Load {
        path: String,
        source: std::io::Error,
    },
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("writing kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        source: std::io::Error,
    },
}

/// A running stand-in. Dropping it stops the server and its controllers.
pub struct StandIn {
    pub addr: SocketAddr,
    pub url: String,
    pub kubeconfig_path: PathBuf,
    pub kubeconfig: serde_json::Value,
    shared: Arc<http::Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl StandIn {
    pub async fn start(mut config: StandInConfig) -> Result<StandIn, StartError> {
        std::fs::create_dir_all(&config.data_root).map_err(|source| StartError::DataDir {
            path: config.data_root.display().to_string(),
            source,
        })?;
        let tls_config = if config.tls {
            let cert = tls::load_or_create(&config.data_root.join("pki"))?;
            config.ca_pem = Some(cert.ca_pem.clone());
            Some(tls::server_config(&cert)?)
        } else {
            None
        };
        let persist_dir = config.persist.then(|| config.data_root.clone());
        let store =
            store::Store::new(config.watch_history, persist_dir.as_deref()).map_err(|source| {
                StartError::Load {
                    path: config.data_root.join("objects.json").display().to_string(),
                    source,
                }
            })?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        config.listen_port = addr.port();
        let url = format!(
            "{}://127.0.0.1:{}",
            if config.tls { "https" } else { "http" },
            addr.port()
        );
        let kubeconfig = tls::kubeconfig(
            &config.cluster_name,
            &url,
            config.ca_pem.as_deref(),
            config.token.as_deref().unwrap_or("anonymous"),
        );
        let kubeconfig_path = config.data_root.join("kubeconfig");
        std::fs::write(
            &kubeconfig_path,
            serde_json::to_vec_pretty(&kubeconfig).unwrap_or_default(),
        )
        .map_err(|source| StartError::Kubeconfig {
            path: kubeconfig_path.display().to_string(),
            source,
        })?;
        let core = core::ApiCore::new(store);
        controllers::bootstrap(&core);
        // A cluster is up when its system objects exist: settle the controllers once before
        // serving, so the first client already finds `default/kube-root-ca.crt`.
        for _ in 0..20 {
            if !controllers::reconcile_once(&core, &config) {
                break;
            }
        }
        let shared = Arc::new(http::Shared {
            core,
            config,
            writes_before_failing: std::sync::atomic::AtomicU64::new(u64::MAX),
        });
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(serve(listener, tls_config, shared.clone())));
        tasks.push(tokio::spawn(controllers::run(shared.clone())));
        tasks.push(tokio::spawn(kubelet::run(shared.clone())));
        if shared.config.persist {
            tasks.push(tokio::spawn(persist_loop(shared.clone())));
        }
        tracing::info!(cluster = %shared.config.cluster_name, %url, "stand-in API server listening");
        Ok(StandIn {
            addr,
            url,
            kubeconfig_path,
            kubeconfig,
            shared,
            tasks,
        })
    }

    pub fn config(&self) -> &StandInConfig {
        &self.shared.config
    }

    /// Fault injection: after `writes` more client writes, every request answers 500 until
    /// [`StandIn::heal`]. `fail_after_writes(0)` fails at once.
    pub fn fail_after_writes(&self, writes: u64) {
        self.shared
            .writes_before_failing
            .store(writes, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn heal(&self) {
        self.fail_after_writes(u64::MAX);
    }

    /// Direct access to the API's semantics, for harness code that seeds objects.
    pub fn core(&self) -> &core::ApiCore {
        &self.shared.core
    }

    /// Stops serving, writing persisted state one last time.
    pub async fn shutdown(mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
            // Waiting for the cancellation frees the listening socket before we return.
            let _ = t.await;
        }
        if self.shared.config.persist {
            if let Err(e) = self.shared.core.store.persist() {
                tracing::warn!(error = %e, "persisting stand-in state at shutdown failed");
            }
        }
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn persist_loop(shared: Arc<http::Shared>) {
    let mut changes = shared.core.store.changes();
    while changes.changed().await.is_ok() {
        tokio::time::sleep(Duration::from_millis(200)).await;
        changes.borrow_and_update();
        let s = shared.clone();
        match tokio::task::spawn_blocking(move || s.core.store.persist()).await {
            Ok(Err(e)) => tracing::warn!(error = %e, "persisting stand-in state failed"),
            Err(e) => tracing::warn!(error = %e, "persist task failed"),
            Ok(Ok(())) => {}
        }
    }
}

async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    shared: Arc<http::Shared>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = shared.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let shared = shared.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(authorize_then_handle(shared, req).await)
                }
            });
            let builder = hyper::server::conn::http1::Builder::new();
            let result = match acceptor {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(tls) => {
                        builder
                            .serve_connection(TokioIo::new(tls), svc)
                            .with_upgrades()
                            .await
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "TLS handshake failed");
                        return;
                    }
                },
                None => {
                    builder
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
}

async fn authorize_then_handle(
    shared: Arc<http::Shared>,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<http::Body> {
    if let Some(token) = &shared.config.token {
        let presented = req
            .headers()
            .get(::http::header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "));
        let open = matches!(
            req.uri().path(),
            "/healthz" | "/livez" | "/readyz" | "/version"
        );
        if presented != Some(token.as_str()) && !open {
            let mut e = error::ApiError::forbidden("Unauthorized");
            e.code = 401;
            e.reason = "Unauthorized";
            return http::error_response(&e);
        }
    }
    let resp = http::handle(shared, req).await;
    let (parts, body) = resp.into_parts();
    hyper::Response::from_parts(parts, body.boxed())
}

/// A stand-in on its own runtime thread, for synchronous callers (tests that drive kubectl,
/// the harness command).
pub struct BackgroundStandIn {
    standin: Option<StandIn>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl BackgroundStandIn {
    pub fn start(config: StandInConfig) -> Result<BackgroundStandIn, StartError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("standin")
            .enable_all()
            .build()
            .map_err(|source| StartError::DataDir {
                path: "tokio runtime".into(),
                source,
            })?;
        let standin = runtime.block_on(StandIn::start(config))?;
        Ok(BackgroundStandIn {
            standin: Some(standin),
            runtime: Some(runtime),
        })
    }

    pub fn get(&self) -> &StandIn {
        self.standin.as_ref().expect("present until drop")
    }
}

impl Drop for BackgroundStandIn {
    fn drop(&mut self) {
        if let (Some(s), Some(rt)) = (self.standin.take(), self.runtime.as_ref()) {
            rt.block_on(s.shutdown());
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
