//! The README's demo: the environment, the reference application in "source", Ferry's hub and a
//! spoke per cluster, and a migration of the application to "target" through `ferry migrate`,
//! shown through kubectl, psql and Helm on both sides.

use crate::harness::ferry::Fleet;
use crate::harness::{kubectl, Environment};
use crate::reference::{self, NAMESPACE, RULES, TARGET_NAMESPACE};
use anyhow::{bail, Context};
use std::time::{Duration, Instant};

pub fn run(env: &Environment) -> anyhow::Result<Fleet> {
    let source = env
        .cluster("source")
        .context("the environment has no source cluster")?;
    let target = env
        .cluster("target")
        .context("the environment has no target cluster")?;
    println!("== Ferry demo ==");
    println!("NATS (JetStream):  {}", env.nats.url);
    println!("object store:      {}", env.store.url);
    println!(
        "source cluster:    {} (kubeconfig {})",
        source.server,
        source.kubeconfig.display()
    );
    println!(
        "target cluster:    {} (kubeconfig {})",
        target.server,
        target.kubeconfig.display()
    );

    reference::deploy(env)?;
    println!("\n-- source cluster --");
    print!(
        "{}",
        kubectl(
            &source.kubeconfig,
            &["get", "all,pvc,ingress,caches", "-n", NAMESPACE]
        )?
    );
    let digest = reference::orders_digest(&source.kubeconfig, NAMESPACE, Duration::from_secs(30))?;
    println!("orders in source (count, sum, md5 of every row): {digest}");

    println!("\n-- starting ferry-hub and a ferry-spoke per cluster --");
    let started = Instant::now();
    let fleet = Fleet::start(env).context("starting Ferry's hub and spokes")?;
    println!(
        "hub and spokes up in {:.1} s (logs in {})",
        started.elapsed().as_secs_f64(),
        env.dir.display()
    );
    let clusters = fleet.ferry(&["clusters"]);
    print!("{}", String::from_utf8_lossy(&clusters.stdout));

    let rules = env.dir.join("rules.yaml");
    std::fs::write(&rules, RULES).context("writing the transform rules")?;
    println!("\n-- ferry migrate --from source --to target -n shop --transforms rules.yaml --");
    print!("{RULES}");
    let started = Instant::now();
    let out = fleet.migrate(NAMESPACE, &rules, &[]);
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    print!("{}", String::from_utf8_lossy(&out.stdout));
    if !out.status.success() {
        bail!("the migration failed (logs in {})", env.dir.display());
    }
    println!(
        "migrated in {:.2} s end to end",
        started.elapsed().as_secs_f64()
    );

    println!("\n-- target cluster, namespace {TARGET_NAMESPACE} --");
    print!(
        "{}",
        kubectl(
            &target.kubeconfig,
            &[
                "get",
                "all,pvc,ingress,configmaps,secrets,caches",
                "-n",
                TARGET_NAMESPACE
            ]
        )?
    );
    let image = kubectl(
        &target.kubeconfig,
        &[
            "get",
            "deploy",
            "web",
            "-n",
            TARGET_NAMESPACE,
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ],
    )?;
    println!("web's image in target: {image}");
    let restored = reference::orders_digest(
        &target.kubeconfig,
        TARGET_NAMESPACE,
        Duration::from_secs(60),
    )?;
    println!("orders in target, read by PostgreSQL from the restored volume: {restored}");
    if restored != digest {
        bail!("the target's rows differ from the source's: {restored} != {digest}");
    }
    let release = crate::helm::run(
        &target.kubeconfig,
        TARGET_NAMESPACE,
        &["status", reference::WEB_RELEASE],
    )?;
    println!(
        "helm status {} in {TARGET_NAMESPACE}: {} (revision {})",
        reference::WEB_RELEASE,
        release["info"]["status"].as_str().unwrap_or("?"),
        release["version"]
    );
    println!("\nLook for yourself (with --keep the environment stays up):");
    println!(
        "  KUBECONFIG={} kubectl get all -n {TARGET_NAMESPACE}",
        target.kubeconfig.display()
    );
    println!(
        "  KUBECONFIG={} kubectl exec -n {TARGET_NAMESPACE} db-0 -- psql -h /var/run/postgresql -U postgres -d shop -c 'select count(*) from orders'",
        target.kubeconfig.display()
    );
    println!(
        "  FERRY_NATS_URL={} {} backup list",
        env.nats.url,
        fleet.bin.join("ferry").display()
    );
    Ok(fleet)
}
