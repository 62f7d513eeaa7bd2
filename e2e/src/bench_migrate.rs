//! `ferry-e2e bench-migrate`: the reference application with its cache's claim filled with
//! incompressible data (2 GiB by default), migrated end to end by `ferry migrate` (hub, spokes,
//! snapshots, mover pods), then by `e2e/bench/baseline-migrate.sh` (kubectl get -o yaml, restic,
//! kubectl apply) into another namespace of the same target, in one run; both results are
//! checked (PostgreSQL's rows, every byte of the data) and the times printed
//! (docs/benchmarks.md).

use crate::harness::ferry::Fleet;
use crate::harness::Environment;
use crate::reference::{self, orders_digest, volume_path, NAMESPACE, RULES, TARGET_NAMESPACE};
use anyhow::{bail, Context};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const FILE_BYTES: usize = 64 << 20;
const BASELINE_NAMESPACE: &str = "shop-baseline";

/// Incompressible, reproducible bytes (xorshift), `FILE_BYTES` per file.
fn fill(path: &Path, files: usize) -> anyhow::Result<()> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = vec![0u8; FILE_BYTES];
    for f in 0..files {
        for chunk in buf.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes());
        }
        std::fs::write(path.join(format!("segment-{f:03}.bin")), &buf)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn same_files(a: &Path, b: &Path, files: usize) -> anyhow::Result<()> {
    for f in 0..files {
        let name = format!("segment-{f:03}.bin");
        if std::fs::read(a.join(&name))? != std::fs::read(b.join(&name))? {
            bail!("{name} differs between {} and {}", a.display(), b.display());
        }
    }
    Ok(())
}

/// Puts the machine in the same memory state before each timed migration: page cache dropped,
/// the source volume read back into it, a pause. On a virtual machine whose hypervisor takes
/// back free memory, memory touched for the first time costs several times memory just freed,
/// so otherwise each side's time depends on what ran before it (spoke/repository/bench/compare.sh
/// does the same). Without root it does nothing, and the results are noisier.
fn settle(volume: &Path) {
    let _ = Command::new("sync").status();
    if std::fs::write("/proc/sys/vm/drop_caches", "3").is_err() {
        return;
    }
    let mut dirs = vec![volume.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if let Ok(mut f) = std::fs::File::open(&path) {
                let _ = std::io::copy(&mut f, &mut std::io::sink());
            }
        }
    }
    std::thread::sleep(Duration::from_secs(4));
}

pub fn run(env: &Environment, gib: usize) -> anyhow::Result<()> {
    let source = env.cluster("source").context("no source cluster")?;
    let target = env.cluster("target").context("no target cluster")?;
    reference::deploy(env)?;
    let files = gib * (1 << 30) / FILE_BYTES;
    let data = volume_path(&source.kubeconfig, NAMESPACE, "data-hot-cache-0")?;
    println!("writing {gib} GiB of incompressible data to the cache's claim ({files} files)");
    fill(&data, files)?;
    let rows = orders_digest(&source.kubeconfig, NAMESPACE, Duration::from_secs(30))?;

    let fleet = Fleet::start(env).context("starting Ferry")?;
    let rules = env.dir.join("rules.yaml");
    std::fs::write(&rules, RULES)?;
    settle(&data);
    let started = Instant::now();
    let out = fleet.migrate(NAMESPACE, &rules, &[]);
    let ferry = started.elapsed();
    if !out.status.success() {
        bail!(
            "ferry migrate failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    print!("{}", String::from_utf8_lossy(&out.stdout));
    reference::wait_ready(&target.kubeconfig, TARGET_NAMESPACE, &["db", "web"])?;
    let ferry_ready = started.elapsed();
    check(env, TARGET_NAMESPACE, &rows, &data, files)?;

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/baseline-migrate.sh");
    settle(&data);
    let started = Instant::now();
    let status = Command::new("bash")
        .arg(&script)
        .arg(&source.kubeconfig)
        .arg(&target.kubeconfig)
        .args([NAMESPACE, BASELINE_NAMESPACE])
        .arg(env.dir.join("baseline"))
        .status()
        .context("running the baseline script")?;
    let baseline = started.elapsed();
    if !status.success() {
        bail!("the baseline script failed ({status})");
    }
    check(env, BASELINE_NAMESPACE, &rows, &data, files)?;

    println!("\n{gib} GiB migrated, same data, same run:");
    println!("| | end to end | workloads ready |");
    println!("|---|---|---|");
    println!(
        "| ferry migrate | {:.1} s | {:.1} s |",
        ferry.as_secs_f64(),
        ferry_ready.as_secs_f64()
    );
    println!(
        "| kubectl + restic script | {:.1} s | {:.1} s |",
        baseline.as_secs_f64(),
        baseline.as_secs_f64()
    );
    println!(
        "ferry is {:.1}x faster (workloads ready)",
        baseline.as_secs_f64() / ferry_ready.as_secs_f64()
    );
    Ok(())
}

/// PostgreSQL answers with the source's rows and the cache's data is byte-identical.
fn check(
    env: &Environment,
    namespace: &str,
    rows: &str,
    data: &Path,
    files: usize,
) -> anyhow::Result<()> {
    let target = env.cluster("target").context("no target cluster")?;
    let got = orders_digest(&target.kubeconfig, namespace, Duration::from_secs(60))?;
    if got != rows {
        bail!("{namespace}: rows differ: {got} != {rows}");
    }
    let restored = volume_path(&target.kubeconfig, namespace, "data-hot-cache-0")?;
    same_files(data, &restored, files).with_context(|| format!("{namespace}: volume data"))
}
