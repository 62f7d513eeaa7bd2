//! `ferry-e2e bench-capture`: one namespace filled with ConfigMaps (two labels, 200 bytes of
//! data each), captured without volume data by the real hub, spoke and CLI at growing sizes; it
//! prints each capture's phases, the spoke's CPU time and its peak memory during that capture
//! (docs/benchmarks.md). The objects are created through the stand-in's API, many requests at a
//! time.

use crate::harness::ferry::Fleet;
use crate::harness::process::{cpu_seconds, peak_rss_kib, reset_peak_rss, rss_kib};
use crate::harness::Environment;
use anyhow::{bail, Context};
use futures::{stream, StreamExt, TryStreamExt};
use kube::api::{Api, PostParams};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Instant;

const NAMESPACE: &str = "big";
/// Creates in flight while the namespace is filled.
const CREATING: usize = 32;

fn config_map(i: usize) -> k8s_openapi::api::core::v1::ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": format!("cm-{i:07}"), "namespace": NAMESPACE,
                     "labels": {"app": "big", "shard": (i % 100).to_string()}},
        "data": {"payload": format!("{i:0>200}")}
    }))
    .expect("a ConfigMap")
}

/// Creates ConfigMaps `from..to` in the namespace (and the namespace first).
async fn fill(kubeconfig: &Path, from: usize, to: usize) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    let client = kube::Client::try_from(config)?;
    if from == 0 {
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        let ns = serde_json::from_value(json!({"metadata": {"name": NAMESPACE}}))?;
        namespaces.create(&PostParams::default(), &ns).await?;
    }
    let api: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client, NAMESPACE);
    let params = PostParams::default();
    stream::iter(from..to)
        .map(|i| {
            let (api, params) = (&api, &params);
            async move { api.create(params, &config_map(i)).await.map(|_| ()) }
        })
        .buffer_unordered(CREATING)
        .try_collect::<()>()
        .await
        .context("creating ConfigMaps")
}

pub fn run(env: &Environment, sizes: &[usize]) -> anyhow::Result<()> {
    let mut sizes = sizes.to_vec();
    sizes.sort_unstable();
    sizes.dedup();
    if sizes.first() == Some(&0) || sizes.is_empty() {
        bail!("--objects takes sizes of at least 1");
    }
    let source = env.cluster("source").context("no source cluster")?;
    let fleet = Fleet::start(env).context("starting Ferry")?;
    let spoke = fleet
        .spokes
        .iter()
        .find(|(c, _)| c == "source")
        .map(|(_, p)| p.pid())
        .context("no spoke for the source cluster")?;
    let rt = tokio::runtime::Runtime::new()?;
    println!(
        "spoke before the first capture: {} MB resident",
        rss_kib(spoke) / 1024
    );
    println!("objects  fill(s)  capture(s)  objects listed+written(s)  manifest(s)  spoke CPU(s)  spoke peak RSS(MB)");
    let mut filled = 0;
    for size in sizes {
        let started = Instant::now();
        rt.block_on(fill(&source.kubeconfig, filled, size))?;
        let fill_s = started.elapsed().as_secs_f64();
        filled = size;
        let started = Instant::now();
        let cpu_before = cpu_seconds(spoke);
        // Each row shows its own capture's peak, not the largest so far.
        let peak_reset = reset_peak_rss(spoke);
        let out = fleet.ferry(&[
            "backup",
            "create",
            "--cluster",
            "source",
            "-n",
            NAMESPACE,
            "--no-volume-data",
            "--request-timeout",
            "900",
            "-o",
            "json",
        ]);
        let capture_s = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds(spoke) - cpu_before;
        if !out.status.success() {
            bail!(
                "capture of {size} objects failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let op: Value = serde_json::from_slice(&out.stdout)?;
        let report = &op["steps"][0]["output"]["captured"];
        let phase = |name: &str| -> f64 {
            report["phases"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["phase"] == name)
                .filter_map(|p| p["millis"].as_u64())
                .sum::<u64>() as f64
                / 1000.0
        };
        let objects = report["restorePoint"]["objects"].as_u64().unwrap_or(0);
        if objects < size as u64 {
            bail!("the restore point holds {objects} objects, fewer than the {size} created");
        }
        println!(
            "{objects:>7}  {fill_s:>7.1}  {capture_s:>10.1}  {:>25.1}  {:>11.2}  {cpu:>12.1}  {:>18}",
            phase("discover"),
            phase("write"),
            peak_rss_kib(spoke) / 1024
        );
        if !peak_reset {
            println!("         (peak memory could not be reset: it is the process's peak so far)");
        }
    }
    Ok(())
}
