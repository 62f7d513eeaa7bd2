//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses its own subset

use serde_json::Value;
use std::future::Future;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

/// Polls `f` until it yields a value, for state that controllers reach eventually.
pub async fn eventually<T, Fut: Future<Output = Option<T>>>(
    what: &str,
    mut f: impl FnMut() -> Fut,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A kube-rs client from a stand-in's kubeconfig.
pub async fn client(kubeconfig: &Path) -> kube::Client {
    // object_store brings aws-lc-rs and kube brings ring; rustls needs to be told which to use.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// Runs a Helm action through the real library; its JSON result.
pub fn helm(kubeconfig: &Path, namespace: &str, args: &[&str]) -> Value {
    ferry_e2e::helm::run(kubeconfig, namespace, args).unwrap_or_else(|e| panic!("{e:#}"))
}

/// A finished command's status and output, for failure messages.
pub fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The end of every Ferry log, for failure messages.
pub fn logs(dir: &Path) -> String {
    let mut out = String::new();
    for name in [
        "ferry-hub.log",
        "ferry-spoke-source.log",
        "ferry-spoke-target.log",
    ] {
        let t = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        let lines: Vec<&str> = t.lines().collect();
        out.push_str(&format!(
            "== {name}\n{}\n",
            lines[lines.len().saturating_sub(20)..].join("\n")
        ));
    }
    out
}
