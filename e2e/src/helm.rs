//! Helm actions through the real Helm library (Go, shipped as a shared library in the PyPI
//! package helm-sdkpy, installed by `./dev install`), driven by `reference/helm_client.py`.

use anyhow::{bail, Context};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where `./dev install` put the Helm library (`FERRY_HELM_LIB` overrides).
pub fn library() -> anyhow::Result<PathBuf> {
    let path = match std::env::var_os("FERRY_HELM_LIB") {
        Some(p) => PathBuf::from(p),
        None => {
            let base = match std::env::var_os("FERRY_TOOLS") {
                Some(t) => PathBuf::from(t),
                None => PathBuf::from(std::env::var("HOME").context("HOME is not set")?)
                    .join(".cache/ferry"),
            };
            base.join("libhelm_sdkpy.so")
        }
    };
    if !path.is_file() {
        bail!("{} is missing: run ./dev install", path.display());
    }
    Ok(path)
}

/// Runs a Helm action (`install NAME CHART [VALUES_JSON]`, `upgrade ...`, `status NAME`,
/// `history NAME`, `get-values NAME`) in `namespace`; its JSON result.
pub fn run(kubeconfig: &Path, namespace: &str, args: &[&str]) -> anyhow::Result<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("reference/helm_client.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(library()?)
        .arg(kubeconfig)
        .arg(namespace)
        .args(args)
        .output()
        .context("running python3 (is it installed?)")?;
    if !out.status.success() {
        bail!(
            "helm {} in {namespace}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout).context("reading Helm's JSON result")
}
