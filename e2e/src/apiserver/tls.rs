//! The stand-in's certificate authority, serving certificate and kubeconfig.
//!
//! Certificates live in the cluster's data directory and are reused on restart, so a kubeconfig
//! handed out before a restart keeps working after it.

use base64::Engine;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;

pub struct ServingCert {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("loading the serving certificate: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("{0}: no usable PEM certificate or key")]
    Pem(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Loads the certificates from `dir`, or makes and stores new ones.
pub fn load_or_create(dir: &Path) -> Result<ServingCert, TlsError> {
    let (ca, cert, key) = (
        dir.join("ca.crt"),
        dir.join("apiserver.crt"),
        dir.join("apiserver.key"),
    );
    if ca.exists() && cert.exists() && key.exists() {
        return Ok(ServingCert {
            ca_pem: std::fs::read_to_string(&ca).map_err(io(&ca))?,
            cert_pem: std::fs::read_to_string(&cert).map_err(io(&cert))?,
            key_pem: std::fs::read_to_string(&key).map_err(io(&key))?,
        });
    }
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "ferry-standin-ca");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "kubernetes.default.svc".to_string(),
    ])?;
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    let server_cert = params.signed_by(&server_key, &issuer)?;
    let out = ServingCert {
        ca_pem: ca_cert.pem(),
        cert_pem: server_cert.pem(),
        key_pem: server_key.serialize_pem(),
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    for (path, contents) in [
        (&ca, &out.ca_pem),
        (&cert, &out.cert_pem),
        (&key, &out.key_pem),
    ] {
        std::fs::write(path, contents).map_err(io(path))?;
    }
    Ok(out)
}

pub fn server_config(cert: &ServingCert) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut cert.cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|_| TlsError::Pem("apiserver.crt".into()))?;
    let key = rustls_pemfile::private_key(&mut cert.key_pem.as_bytes())
        .ok()
        .flatten()
        .ok_or_else(|| TlsError::Pem("apiserver.key".into()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    // HTTP/1.1 only: exec's WebSocket upgrade needs it, and every client falls back to it.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A kubeconfig for one cluster. JSON is valid YAML, and both kubectl and kube-rs read it.
pub fn kubeconfig(
    cluster: &str,
    server: &str,
    ca_pem: Option<&str>,
    token: &str,
) -> serde_json::Value {
    let mut c = json!({"server": server});
    if let Some(ca) = ca_pem {
        c["certificate-authority-data"] =
            json!(base64::engine::general_purpose::STANDARD.encode(ca.as_bytes()));
    }
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": c}],
        "users": [{"name": format!("{cluster}-admin"), "user": {"token": token}}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": format!("{cluster}-admin"), "namespace": "default"}}],
        "current-context": cluster,
        "preferences": {},
    })
}
