//! A migration through Ferry's real binaries: `ferry-hub`, a `ferry-spoke` per stand-in cluster
//! and the `ferry` CLI, over real NATS (JetStream) and a real object store — and what happens
//! when the hub, a spoke or the input misbehaves.

mod common;

use common::{logs, text};

use ferry_e2e::harness::ferry::Fleet;
use ferry_e2e::harness::{kubectl, Environment, EnvironmentOptions, StoreKind};
use ferry_e2e::reference::{self, volume_path, RULES};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

fn get(kubeconfig: &Path, args: &[&str]) -> Option<Value> {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    kubectl(kubeconfig, &all)
        .ok()
        .map(|s| serde_json::from_str(&s).unwrap())
}

/// `ferry migrate --from source --to target -n shop --transforms <the reference rules>`, and more.
fn migrate(s: &Setup, more: &[&str]) -> Output {
    s.fleet.migrate("shop", Path::new(&s.rules), more)
}

fn http_get(base: &str, path: &str) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

struct Setup {
    env: Environment,
    fleet: Fleet,
    rules: String,
    _dir: tempfile::TempDir,
}

fn setup(spoke_timeout: Duration) -> Setup {
    setup_with(spoke_timeout, StoreKind::File)
}

fn setup_with(spoke_timeout: Duration, store: StoreKind) -> Setup {
    setup_tuned(spoke_timeout, store, Duration::from_secs(30))
}

fn setup_tuned(spoke_timeout: Duration, store: StoreKind, ack_wait: Duration) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = EnvironmentOptions::new(dir.path());
    opts.store = store;
    opts.image_programs = reference::image_programs().unwrap();
    let env = Environment::up(&opts).unwrap();
    reference::deploy(&env).unwrap_or_else(|e| panic!("{e:#}"));
    let fleet = Fleet::start_tuned(&env, spoke_timeout, ack_wait)
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&env.dir)));
    let rules = env.dir.join("rules.yaml");
    std::fs::write(&rules, RULES).unwrap();
    Setup {
        rules: rules.display().to_string(),
        env,
        fleet,
        _dir: dir,
    }
}

#[test]
fn migrate_moves_the_application_through_hub_and_spokes() {
    let s = setup(Duration::from_secs(30));
    let target = s.env.cluster("target").unwrap().kubeconfig.clone();
    let out = migrate(&s, &["--id", "first-move", "-o", "json"]);
    assert!(
        out.status.success(),
        "{}\n{}\n{}",
        text(&out),
        text(&s.fleet.ferry(&["clusters", "-o", "json"])),
        logs(&s.env.dir)
    );
    let op = json(&out);
    assert_eq!(op["phase"], "succeeded", "{op}");
    assert!(
        op["rtoMs"].as_u64().is_some() && op["rpoMs"].as_u64().is_some(),
        "{op}"
    );
    let restored = &op["steps"][1]["output"]["restored"];
    assert!(restored["created"].as_u64().unwrap() >= 8, "{restored}");
    // The database's claim and the cache's (its StatefulSet is the operator's; its data is not).
    assert_eq!(restored["volumes"], 2, "{restored}");

    // PostgreSQL starts on its restored volume in the target, as its own user, and returns the
    // same rows, the one written after it started included; the cache's volume is byte-identical.
    let pv_of = |kubeconfig: &Path, ns: &str| volume_path(kubeconfig, ns, "data-db-0").unwrap();
    let source_cfg = s.env.cluster("source").unwrap().kubeconfig.clone();
    let source_rows =
        reference::orders_digest(&source_cfg, "shop", Duration::from_secs(30)).unwrap();
    let target_rows = reference::orders_digest(&target, "shop-dr", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", logs(&s.env.dir)));
    assert_eq!(target_rows, source_rows);
    assert!(source_rows.starts_with("1001 "), "{source_rows}");
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let pgdata = std::fs::metadata(pv_of(&target, "shop-dr").join("pgdata")).unwrap();
        assert_eq!(pgdata.uid(), reference::POSTGRES_UID);
        assert_eq!(pgdata.permissions().mode() & 0o777, 0o700);
    }
    assert_eq!(
        std::fs::read(
            volume_path(&target, "shop-dr", "data-hot-cache-0")
                .unwrap()
                .join(reference::CACHE_DUMP)
        )
        .unwrap(),
        reference::cache_dump()
    );
    // The operator: started and available before its Cache was created, and the Cache's
    // children made once, by the target's operator, owned by the target's Cache.
    let order: Vec<String> = restored["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            format!(
                "{} {} {}",
                o["object"]["kind"].as_str().unwrap(),
                o["object"]["name"].as_str().unwrap(),
                o["action"].as_str().unwrap()
            )
        })
        .collect();
    let at = |s: &str| {
        order
            .iter()
            .position(|o| o == s)
            .unwrap_or_else(|| panic!("{s} not in {order:?}"))
    };
    assert!(
        at("Deployment cache-operator create") < at("Cache hot create"),
        "{order:?}"
    );
    for child in [
        "StatefulSet hot-cache omit",
        "Service hot-cache omit",
        "ConfigMap hot-cache omit",
    ] {
        at(child);
    }
    let target_cache = get(&target, &["caches", "hot", "-n", "shop-dr"]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let children = loop {
        let sts = get(&target, &["sts", "-n", "shop-dr", "-l", "cache=hot"]).unwrap();
        if !sts["items"].as_array().unwrap().is_empty() || Instant::now() > deadline {
            break sts;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let items = children["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{children}");
    assert_eq!(
        items[0]["metadata"]["ownerReferences"][0]["uid"],
        target_cache["metadata"]["uid"]
    );
    assert!(
        items[0]["metadata"]["annotations"]
            .get("ferry.dev/restored-from")
            .is_none(),
        "made by the operator, not restored"
    );

    // The pre hook's mark is in the snapshot (taken after it), and gone from the source (the
    // post hook ran after the snapshot).
    assert!(pv_of(&target, "shop-dr").join("ferry-checkpoint").exists());
    assert!(!pv_of(&source_cfg, "shop").join("ferry-checkpoint").exists());
    let hooks = &op["steps"][0]["output"]["captured"]["hooks"];
    assert_eq!(hooks.as_array().map(Vec::len), Some(2), "{hooks}");
    assert!(
        hooks
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["succeeded"] == true),
        "{hooks}"
    );
    let claim = get(&target, &["pvc", "data-db-0", "-n", "shop-dr"]).unwrap();
    assert!(
        claim["metadata"]["annotations"]["ferry.dev/filled-from"].is_string(),
        "{claim}"
    );
    // Nothing of the movers is left behind, in either cluster.
    for (cfg, ns) in [(&source_cfg, "shop"), (&target, "shop-dr")] {
        let left = kubectl(
            cfg,
            &[
                "get",
                "pods,pvc,secrets,volumesnapshots",
                "-n",
                ns,
                "-l",
                "app.kubernetes.io/managed-by=ferry",
                "-o",
                "name",
            ],
        )
        .unwrap();
        assert_eq!(left.trim(), "", "{ns}: {left}");
    }

    // Every object, transformed.
    let web = get(&target, &["deploy", "web", "-n", "shop-dr"]).expect("web in shop-dr");
    assert_eq!(
        web["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.us.example.com/shop/web:1.4"
    );
    assert_eq!(
        web["metadata"]["annotations"]["ferry.dev/restored-from"],
        op["restorePoint"]
    );
    let db = get(&target, &["sts", "db", "-n", "shop-dr"]).expect("db in shop-dr");
    assert_eq!(
        db["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.us.example.com/shop/postgres:15"
    );
    assert_eq!(
        db["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"],
        "standard-us"
    );
    assert_eq!(claim["spec"]["storageClassName"], "standard-us", "{claim}");
    assert!(
        get(&target, &["storageclass", "fast-eu"]).is_none(),
        "the source's class is not made where nothing uses it"
    );
    assert!(get(&target, &["ingress", "web", "-n", "shop-dr"]).is_some());
    // Helm reads the release where it now is.
    let status = common::helm(&target, "shop-dr", &["status", "web"]);
    assert_eq!(status["info"]["status"], "deployed", "{status}");
    assert_eq!(status["namespace"], "shop-dr", "{status}");
    let cache =
        get(&target, &["caches", "hot", "-n", "shop-dr"]).expect("the Cache custom resource");
    assert_eq!(
        cache["spec"]["image"],
        "registry.us.example.com/shop/cache:2"
    );
    assert_eq!(cache["spec"]["storageClassName"], "standard-us");
    assert_eq!(
        items[0]["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"], "standard-us",
        "the operator in the target makes its claims of the rewritten class"
    );
    assert!(get(&target, &["secret", "db-credentials", "-n", "shop-dr"]).is_some());
    assert!(get(&target, &["svc", "web", "-n", "shop-dr"]).is_some());
    assert!(get(&target, &["cm", "web-config", "-n", "shop-dr"]).is_some());
    assert!(
        get(&target, &["ns", "shop"]).is_none(),
        "the old namespace is not made"
    );
    // The target's controllers made the pods again; none were copied.
    let pods = get(&target, &["pods", "-n", "shop-dr"]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut pods = pods;
    while pods["items"].as_array().unwrap().len() < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        pods = get(&target, &["pods", "-n", "shop-dr"]).unwrap();
    }
    assert_eq!(
        pods["items"].as_array().unwrap().len(),
        5,
        "2 web, db-0, the operator and hot-cache-0"
    );
    // The restored operator reconciles the restored Cache (its StatefulSet was left to it) and
    // marks it ready, without failing once on the way (a failure restarts it).
    let deadline = Instant::now() + Duration::from_secs(20);
    let ready = || {
        get(&target, &["caches.example.com", "hot", "-n", "shop-dr"])
            .is_some_and(|c| c["status"]["ready"] == true)
    };
    while !ready() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(ready(), "the Cache in the target is reconciled");
    let operator = get(
        &target,
        &["pods", "-n", "shop-dr", "-l", "app=cache-operator"],
    )
    .unwrap();
    let restarts: Vec<&Value> = operator["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["status"]["containerStatuses"][0]["restartCount"])
        .collect();
    assert_eq!(restarts, [&serde_json::json!(0)], "{operator}");

    // The same request again (same idempotency key) is the same operation; a second migration
    // finds everything already restored.
    let again = json(&migrate(&s, &["--id", "first-move", "-o", "json"]));
    assert_eq!(again["id"], op["id"]);
    let second = migrate(&s, &["-o", "json"]);
    let second = json(&second);
    assert_eq!(second["phase"], "succeeded", "{second}");
    assert_eq!(
        second["steps"][1]["output"]["restored"]["created"], 0,
        "{second}"
    );

    // The catalog, the operations, and the restore point readable with the repository alone.
    let list = json(&s.fleet.ferry(&["backup", "list", "-o", "json"]));
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    let described = s
        .fleet
        .ferry(&["backup", "describe", op["restorePoint"].as_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&described.stdout).contains("Deployment.apps"),
        "{}",
        text(&described)
    );
    let ops = s.fleet.ferry(&["operations", "list"]);
    assert!(
        String::from_utf8_lossy(&ops.stdout).contains("first-move"),
        "{}",
        text(&ops)
    );
    let restore_dir = s.env.dir.join("read-back");
    let repo_out = std::process::Command::new(s.fleet.bin.join("ferry-spoke"))
        .args([
            "repo",
            "restore",
            op["steps"][0]["output"]["captured"]["restorePoint"]["snapshot"]
                .as_str()
                .unwrap(),
        ])
        .arg(&restore_dir)
        .env("FERRY_REPOSITORY", &s.fleet.repository)
        .env(
            "FERRY_PASSWORD",
            ferry_e2e::harness::ferry::REPOSITORY_PASSWORD,
        )
        .output()
        .unwrap();
    assert!(repo_out.status.success(), "{}", text(&repo_out));
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(restore_dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["id"], op["restorePoint"]);
    let lines = std::fs::read_to_string(restore_dir.join("objects.jsonl")).unwrap();
    assert_eq!(
        lines.lines().count(),
        manifest["objects"].as_array().unwrap().len()
    );

    // A dry run of the same restore point into another namespace: the plan, and no change.
    let other = s.env.dir.join("other.yaml");
    std::fs::write(
        &other,
        "transforms:\n  - namespace: { from: shop, to: shop-drill }\n",
    )
    .unwrap();
    let dry = s.fleet.ferry(&[
        "restore",
        op["restorePoint"].as_str().unwrap(),
        "--cluster",
        "target",
        "--transforms",
        &other.display().to_string(),
        "--dry-run",
    ]);
    let printed = String::from_utf8_lossy(&dry.stdout);
    assert!(dry.status.success(), "{}", text(&dry));
    assert!(printed.contains("would create"), "{printed}");
    assert!(
        printed.contains("ACTION") && printed.contains("apps/v1 Deployment shop-drill/web"),
        "{printed}"
    );
    assert!(
        get(&target, &["ns", "shop-drill"]).is_none(),
        "a dry run changes nothing"
    );

    // Health and metrics: two migrations and the dry run succeeded.
    assert_eq!(http_get(&s.fleet.hub_http, "/healthz").0, 200);
    let (status, metrics) = http_get(&s.fleet.hub_http, "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("ferry_hub_operations{phase=\"succeeded\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ferry_hub_clusters_connected 2"),
        "{metrics}"
    );
}

#[test]
fn bad_input_is_refused_before_anything_starts() {
    let s = setup(Duration::from_secs(30));
    let refuse = |args: &[&str], expect: &str| {
        let out = s.fleet.ferry(args);
        assert!(!out.status.success(), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect), "expected {expect:?}: {}", text(&out));
    };
    refuse(
        &[
            "migrate",
            "--from",
            "source",
            "--to",
            "nowhere",
            "-n",
            "shop",
            "--no-volume-data",
        ],
        "spec.migrate.to: no spoke has registered as cluster \"nowhere\"",
    );
    refuse(
        &[
            "migrate",
            "--from",
            "source",
            "--to",
            "target",
            "-n",
            "shop",
            "-l",
            "app in (web",
            "--no-volume-data",
        ],
        "spec.migrate.selection.labelSelector",
    );
    refuse(
        &[
            "migrate",
            "--from",
            "source",
            "--to",
            "target",
            "-n",
            "Shop!",
            "--no-volume-data",
        ],
        "spec.migrate.selection.namespaces[0]",
    );
    refuse(
        &[
            "migrate",
            "--from",
            "source",
            "--to",
            "target",
            "--no-volume-data",
        ],
        "spec.migrate.selection: selects nothing",
    );
    let bad_rules = s.env.dir.join("bad.yaml");
    std::fs::write(&bad_rules, "transforms:\n  - imageRegistry: { from: a }\n").unwrap();
    refuse(
        &[
            "migrate",
            "--from",
            "source",
            "--to",
            "target",
            "-n",
            "shop",
            "--no-volume-data",
            "--transforms",
            &bad_rules.display().to_string(),
        ],
        "bad.yaml",
    );
    refuse(
        &["backup", "describe", "rp-none"],
        "no restore point rp-none",
    );
    refuse(&["operations", "cancel", "op-none"], "no operation op-none");
    // Nothing was started by any of them.
    let ops = json(&s.fleet.ferry(&["operations", "list", "-o", "json"]));
    assert_eq!(ops.as_array().unwrap().len(), 0, "{ops}");

    // A namespace that is not there fails in the spoke, named.
    let out = s.fleet.ferry(&[
        "backup",
        "create",
        "--cluster",
        "source",
        "-n",
        "absent",
        "--no-volume-data",
        "-o",
        "json",
    ]);
    assert!(!out.status.success());
    let op = json(&out);
    assert_eq!(op["phase"], "failed");
    assert_eq!(op["steps"][0]["failure"]["reason"], "notFound", "{op}");
    assert!(
        op["message"].as_str().unwrap().contains("namespace absent"),
        "{op}"
    );

    // A hook that fails with onError: fail fails the capture, naming the pod and the exit code;
    // a hook file with a misspelt field is refused before anything starts.
    let hooks = s.env.dir.join("hooks.yaml");
    std::fs::write(&hooks, "- {name: flush, phase: pre, namespace: shop, labelSelector: app=web, command: [/bin/sh, -c, 'exit 3'], onError: fail}\n").unwrap();
    let out = s.fleet.ferry(&[
        "backup",
        "create",
        "--cluster",
        "source",
        "-n",
        "shop",
        "--hooks",
        &hooks.display().to_string(),
        "--no-volume-data",
        "-o",
        "json",
    ]);
    assert!(!out.status.success());
    let op = json(&out);
    assert_eq!(op["steps"][0]["failure"]["reason"], "hook", "{op}");
    let message = op["message"].as_str().unwrap();
    assert!(
        message.contains("exit code 3") && message.contains("Pod shop/web-"),
        "{message}"
    );
    std::fs::write(
        &hooks,
        "- {name: flush, phase: pre, namespace: shop, comand: [x]}\n",
    )
    .unwrap();
    refuse(
        &[
            "backup",
            "create",
            "--cluster",
            "source",
            "-n",
            "shop",
            "--hooks",
            &hooks.display().to_string(),
            "--no-volume-data",
        ],
        "unknown field `comand`",
    );

    // A raw request that is not a request gets an error answer, not silence.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let nc = async_nats::connect(&s.env.nats.url).await.unwrap();
        for (subject, payload) in [
            ("ferry.v1.api.operations.start", "not json"),
            ("ferry.v1.api.operations.start", r#"{"version":1,"messageId":"x","time":"t","body":{"spec":{"migrate":{"from":"a"}}}}"#),
            ("ferry.v1.api.nothing.here", r#"{"version":1,"messageId":"x","time":"t","body":{}}"#),
        ] {
            let reply = nc.request(subject, payload.into()).await.unwrap();
            let v: Value = serde_json::from_slice(&reply.payload).unwrap();
            assert!(v["body"]["error"]["code"].is_string(), "{subject} {payload}: {v}");
        }
    });
}

#[test]
fn operations_survive_restarts_and_fail_clearly_when_a_spoke_is_gone() {
    let mut s = setup(Duration::from_secs(4));
    let target = s.env.cluster("target").unwrap().kubeconfig.clone();
    // The target's spoke is down when the migration starts: the capture runs, the restore
    // command waits in the stream, and the hub is restarted meanwhile.
    s.fleet.stop_spoke("target");
    let out = migrate(
        &s,
        &[
            "--no-volume-data",
            "--no-wait",
            "--id",
            "resumed",
            "-o",
            "json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    // Wait until the capture is done, then restart the hub and bring the spoke back quickly
    // (before the deadline).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let op = json(
            &s.fleet
                .ferry(&["operations", "get", "resumed", "-o", "json"]),
        );
        if op["steps"][0]["state"] == "succeeded" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "capture never finished: {op}\n{}",
            logs(&s.env.dir)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    s.fleet.stop_hub();
    s.fleet.start_spoke("target").unwrap();
    s.fleet.start_hub().unwrap();
    let out = s
        .fleet
        .ferry(&["operations", "watch", "resumed", "-o", "json"]);
    let op = json(&out);
    assert_eq!(op["phase"], "succeeded", "{op}\n{}", logs(&s.env.dir));
    assert!(get(&target, &["deploy", "web", "-n", "shop-dr"]).is_some());

    // The hub loses its database: the repository is the source of truth. Spokes register again
    // by themselves, and the catalog is rebuilt from the repository.
    s.fleet.stop_hub();
    std::fs::remove_dir_all(s.env.dir.join("hub-data")).unwrap();
    s.fleet.start_hub().unwrap();
    s.fleet
        .wait_registered("source", Duration::from_secs(30))
        .unwrap();
    let list = json(&s.fleet.ferry(&["backup", "list", "-o", "json"]));
    assert_eq!(list.as_array().unwrap().len(), 0, "{list}");
    let out = s.fleet.ferry(&[
        "backup",
        "rebuild-catalog",
        "--cluster",
        "source",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let list = json(&s.fleet.ferry(&["backup", "list", "-o", "json"]));
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["rp-resumed"], "{list}");
    let described = json(
        &s.fleet
            .ferry(&["backup", "describe", "rp-resumed", "-o", "json"]),
    );
    assert_eq!(described["source"]["cluster"], "source", "{described}");
    assert!(
        described["kinds"]["Deployment.apps"].as_u64() >= Some(1),
        "{described}"
    );

    // A spoke that goes away mid-operation: the operation fails after the deadline, naming it.
    s.fleet.stop_spoke("source");
    let started = Instant::now();
    let out = s.fleet.ferry(&[
        "backup",
        "create",
        "--cluster",
        "source",
        "-n",
        "shop",
        "--no-volume-data",
        "-o",
        "json",
    ]);
    let op = json(&out);
    assert_eq!(op["phase"], "failed", "{op}");
    assert_eq!(op["steps"][0]["failure"]["reason"], "spokeLost", "{op}");
    assert!(
        op["message"]
            .as_str()
            .unwrap()
            .contains("spoke source has not been heard from"),
        "{op}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
}

/// The same migration with the repository on a real S3 server (Garage): restore point and
/// volume data go through S3, and movers get the store's credentials from their Secret.
#[test]
fn migrate_through_garage_s3() {
    let s = setup_with(Duration::from_secs(30), StoreKind::Garage);
    assert!(
        s.fleet.repository.starts_with("s3://"),
        "{}",
        s.fleet.repository
    );
    let target = s.env.cluster("target").unwrap().kubeconfig.clone();
    let out = migrate(&s, &["-o", "json"]);
    assert!(out.status.success(), "{}\n{}", text(&out), logs(&s.env.dir));
    let op = json(&out);
    assert_eq!(op["steps"][1]["output"]["restored"]["volumes"], 2, "{op}");
    let data = std::fs::read(
        volume_path(&target, "shop-dr", "data-hot-cache-0")
            .unwrap()
            .join(reference::CACHE_DUMP),
    )
    .unwrap();
    assert_eq!(data, reference::cache_dump());
    // The restore point, read from S3 with the repository command alone.
    let mut cmd = std::process::Command::new(s.fleet.bin.join("ferry-spoke"));
    cmd.args(["repo", "snapshots", "--json"])
        .env("FERRY_REPOSITORY", &s.fleet.repository)
        .env(
            "FERRY_PASSWORD",
            ferry_e2e::harness::ferry::REPOSITORY_PASSWORD,
        );
    for (k, v) in s.env.store.env() {
        cmd.env(k, v);
    }
    let listed = cmd.output().unwrap();
    assert!(listed.status.success(), "{}", text(&listed));
    let listed = String::from_utf8_lossy(&listed.stdout);
    let rp = op["restorePoint"].as_str().unwrap();
    assert!(listed.contains(&format!("restore-point/{rp}")), "{listed}");
    assert!(
        listed.contains(&format!("restore-point/{rp}/volumes/shop/data-db-0")),
        "{listed}"
    );
}

/// A spoke killed in the middle of a step: the command comes back to it when it restarts, the
/// step runs again, and nothing is written twice.
#[test]
fn a_spoke_killed_mid_step_completes_after_restart() {
    let mut s = setup_tuned(
        Duration::from_secs(60),
        StoreKind::File,
        Duration::from_secs(3),
    );
    let target = s.env.cluster("target").unwrap().kubeconfig.clone();
    // A slow pre hook keeps the capture busy long enough to kill its spoke.
    let hooks = s.env.dir.join("slow-hooks.yaml");
    std::fs::write(&hooks, "- {name: slow, phase: pre, namespace: shop, labelSelector: app=db, command: [/bin/sh, -c, 'sleep 2'], timeoutSeconds: 20}\n").unwrap();
    let out = migrate(
        &s,
        &[
            "--hooks",
            &hooks.display().to_string(),
            "--no-wait",
            "--id",
            "killed",
            "-o",
            "json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let op = json(
            &s.fleet
                .ferry(&["operations", "get", "killed", "-o", "json"]),
        );
        if op["steps"][0]["state"] == "running" {
            break;
        }
        assert!(Instant::now() < deadline, "the capture never started: {op}");
        std::thread::sleep(Duration::from_millis(50));
    }
    s.fleet.stop_spoke("source");
    std::thread::sleep(Duration::from_millis(300));
    s.fleet.start_spoke("source").unwrap();
    let op = json(
        &s.fleet
            .ferry(&["operations", "watch", "killed", "-o", "json"]),
    );
    assert_eq!(op["phase"], "succeeded", "{op}\n{}", logs(&s.env.dir));
    // One restore point, one of each object, the volume's data whole.
    let list = json(&s.fleet.ferry(&["backup", "list", "-o", "json"]));
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let names = |kind: &str| -> Vec<String> {
        let list = get(&target, &[kind, "-n", "shop-dr"]).unwrap();
        let mut names: Vec<String> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    };
    assert_eq!(names("deploy"), ["cache-operator", "web"]);
    assert_eq!(names("sts"), ["db", "hot-cache"]);
    assert_eq!(names("pvc"), ["data-db-0", "data-hot-cache-0"]);
    let data = std::fs::read(
        volume_path(&target, "shop-dr", "data-hot-cache-0")
            .unwrap()
            .join(reference::CACHE_DUMP),
    )
    .unwrap();
    assert_eq!(data, reference::cache_dump());
    let log = std::fs::read_to_string(s.env.dir.join("ferry-spoke-source.log")).unwrap();
    assert!(
        log.contains("command"),
        "the restarted spoke took the command again: {log}"
    );
}

/// A Helm release selected by name moves with its records: real Helm reads it in the target
/// (status, history), and upgrades it from there. An Operator's resource moves with its operator.
#[test]
fn a_helm_release_or_an_operator_resource_moves_alone() {
    let s = setup(Duration::from_secs(30));
    let target = s.env.cluster("target").unwrap().kubeconfig.clone();
    let out = s.fleet.ferry(&[
        "migrate",
        "--from",
        "source",
        "--to",
        "target",
        "--helm-release",
        "shop/web",
        "--transforms",
        &s.rules,
        "--no-volume-data",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}\n{}", text(&out), logs(&s.env.dir));
    let op = json(&out);
    let kinds = &op["steps"][0]["output"]["captured"]["kinds"];
    assert_eq!(
        kinds["Deployment.apps"], 1,
        "only the release's objects: {kinds}"
    );
    // Its record, its own Secret, and the database password its pods read.
    assert_eq!(kinds["Secret"], 3, "{kinds}");
    assert_eq!(kinds["Ingress.networking.k8s.io"], 1, "{kinds}");
    let web = get(&target, &["deploy", "web", "-n", "shop-dr"]).expect("the release's Deployment");
    assert_eq!(
        web["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.us.example.com/shop/web:1.4"
    );
    assert!(
        get(&target, &["sts", "db", "-n", "shop-dr"]).is_none(),
        "not in the release"
    );
    let status = common::helm(&target, "shop-dr", &["status", "web"]);
    assert_eq!(status["info"]["status"], "deployed", "{status}");
    assert_eq!(status["namespace"], "shop-dr", "{status}");
    let chart = reference::web_chart().display().to_string();
    let upgraded = common::helm(
        &target,
        "shop-dr",
        &["upgrade", "web", &chart, r#"{"replicas": 3}"#],
    );
    assert_eq!(upgraded["version"], 2, "{upgraded}");
    let history = common::helm(&target, "shop-dr", &["history", "web"]);
    assert_eq!(history.as_array().map(Vec::len), Some(2), "{history}");
    let web = get(&target, &["deploy", "web", "-n", "shop-dr"]).unwrap();
    assert_eq!(web["spec"]["replicas"], 3);
    assert_eq!(
        web["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.us.example.com/shop/web:1.4",
        "the upgrade keeps the rewritten values"
    );

    // An Operator's custom resource alone: the Cache, what it owns (and the claim its pod
    // uses, with its data), its CRD, and its operator with the operator's identity and RBAC.
    let migrate_operator = |what: &str| {
        s.fleet.ferry(&[
            "migrate",
            "--from",
            "source",
            "--to",
            "target",
            "--operator-resource",
            what,
            "--transforms",
            &s.rules,
            "-o",
            "json",
        ])
    };
    let out = migrate_operator("Cache.v1.example.com/shop/hot");
    assert!(out.status.success(), "{}\n{}", text(&out), logs(&s.env.dir));
    let op = json(&out);
    let kinds = &op["steps"][0]["output"]["captured"]["kinds"];
    for (kind, n) in [
        ("Cache.example.com", 1),
        ("CustomResourceDefinition.apiextensions.k8s.io", 1),
        ("Deployment.apps", 1),
        ("StatefulSet.apps", 1),
        // The operator's, and `default`, which the cache's pod runs as.
        ("ServiceAccount", 2),
        ("ClusterRole.rbac.authorization.k8s.io", 1),
        ("ClusterRoleBinding.rbac.authorization.k8s.io", 1),
        ("PersistentVolumeClaim", 1),
    ] {
        assert_eq!(kinds[kind], n, "{kind}: {kinds}");
    }
    let objects = &op["steps"][1]["output"]["restored"]["objects"];
    let named = |kind: &str, name: &str| {
        objects
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["object"]["kind"] == kind && o["object"]["name"] == name)
    };
    assert!(named("Deployment", "cache-operator"), "{objects}");
    assert!(!named("StatefulSet", "db"), "not the Cache's: {objects}");
    assert!(get(&target, &["deploy", "cache-operator", "-n", "shop-dr"]).is_some());
    let children = get(&target, &["sts", "-n", "shop-dr", "-l", "cache=hot"]).unwrap();
    assert!(
        children["items"].as_array().unwrap().len() <= 1,
        "{children}"
    );
    assert_eq!(
        std::fs::read(
            volume_path(&target, "shop-dr", "data-hot-cache-0")
                .unwrap()
                .join(reference::CACHE_DUMP)
        )
        .unwrap(),
        reference::cache_dump()
    );
    // Named wrongly, or naming nothing: refused, saying which.
    let out = migrate_operator("Cache/shop");
    assert!(!out.status.success());
    assert!(text(&out).contains("--operator-resource"), "{}", text(&out));
    let out = migrate_operator("Cache.v1.example.com/shop/cold");
    assert!(!out.status.success());
    assert!(
        text(&out).contains("Cache shop/cold (selection.operatorResource)"),
        "{}",
        text(&out)
    );
}

/// Cancelling: a running step is told to stop, the step not yet sent never runs, and the
/// operation ends cancelled.
#[test]
fn a_running_operation_can_be_cancelled() {
    let s = setup(Duration::from_secs(30));
    let target = s.env.cluster("target").unwrap().kubeconfig.clone();
    let hooks = s.env.dir.join("slow.yaml");
    std::fs::write(&hooks, "- {name: slow, phase: pre, namespace: shop, labelSelector: app=db, command: [/bin/sh, -c, 'sleep 5'], timeoutSeconds: 20}\n").unwrap();
    let out = migrate(
        &s,
        &[
            "--hooks",
            &hooks.display().to_string(),
            "--no-wait",
            "--id",
            "stop-me",
            "-o",
            "json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let deadline = Instant::now() + Duration::from_secs(20);
    while json(
        &s.fleet
            .ferry(&["operations", "get", "stop-me", "-o", "json"]),
    )["steps"][0]["state"]
        != "running"
    {
        assert!(Instant::now() < deadline, "the capture never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let cancelled = json(
        &s.fleet
            .ferry(&["operations", "cancel", "stop-me", "-o", "json"]),
    );
    assert_eq!(cancelled["phase"], "cancelled", "{cancelled}");
    assert_eq!(cancelled["steps"][1]["state"], "cancelled", "{cancelled}");
    // Cancelling again is refused: it is over.
    let again = s.fleet.ferry(&["operations", "cancel", "stop-me"]);
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already Cancelled"),
        "{}",
        text(&again)
    );
    // The spoke stops the capture at its next safe point — after the pre hooks, whose work the
    // post hooks then undo (the database's checkpoint mark is gone again) — so no restore point
    // is written, nothing reaches the target, and the spoke takes the next command.
    let log = s.env.dir.join("ferry-spoke-source.log");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log).unwrap().contains("cancelled") {
        assert!(
            Instant::now() < deadline,
            "the spoke never stopped: {}",
            logs(&s.env.dir)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let source = s.env.cluster("source").unwrap().kubeconfig.clone();
    assert!(
        !volume_path(&source, "shop", "data-db-0")
            .unwrap()
            .join("ferry-checkpoint")
            .exists(),
        "post hooks ran"
    );
    let list = json(&s.fleet.ferry(&["backup", "list", "-o", "json"]));
    assert_eq!(list.as_array().unwrap().len(), 0, "{list}");
    assert!(get(&target, &["ns", "shop-dr"]).is_none());
    let next = json(&s.fleet.ferry(&[
        "backup",
        "create",
        "--cluster",
        "source",
        "-n",
        "shop",
        "--no-volume-data",
        "-o",
        "json",
    ]));
    assert_eq!(next["phase"], "succeeded", "{next}\n{}", logs(&s.env.dir));
}

/// A target that starts answering 500 in the middle of a restore: the step fails with a reason
/// naming the cluster and the object, after retries, and nothing half-made is lost — a second
/// restore of the same restore point, once the cluster is back, finishes the job without
/// duplicating what the first one made.
#[test]
fn a_failing_target_fails_the_step_and_a_second_restore_finishes_it() {
    let s = setup(Duration::from_secs(30));
    let target_cluster = s.env.cluster("target").unwrap();
    let target = target_cluster.kubeconfig.clone();
    target_cluster.standin().fail_after_writes(4);
    let out = migrate(&s, &["--no-volume-data", "-o", "json"]);
    target_cluster.standin().heal();
    assert!(!out.status.success(), "{}", text(&out));
    let op = json(&out);
    assert_eq!(op["phase"], "failed", "{op}");
    let failure = &op["steps"][1]["failure"];
    assert_eq!(failure["reason"], "clusterUnavailable", "{op}");
    assert_eq!(failure["retryable"], true, "{op}");
    assert!(
        failure["object"]["name"].is_string(),
        "names the object: {failure}"
    );
    assert!(
        failure["message"].as_str().unwrap().contains("500")
            || failure["message"]
                .as_str()
                .unwrap()
                .contains("injected fault"),
        "{failure}"
    );
    let made_before: Vec<String> = kubectl(
        &target,
        &["get", "all,cm,secrets", "-n", "shop-dr", "-o", "name"],
    )
    .unwrap_or_default()
    .lines()
    .map(str::to_string)
    .collect();

    let rp = op["restorePoint"].as_str().unwrap();
    let again = s.fleet.ferry(&[
        "restore",
        rp,
        "--cluster",
        "target",
        "--transforms",
        &s.rules,
        "--no-volume-data",
        "-o",
        "json",
    ]);
    assert!(
        again.status.success(),
        "{}\n{}",
        text(&again),
        logs(&s.env.dir)
    );
    let again = json(&again);
    let objects = again["steps"][0]["output"]["restored"]["objects"]
        .as_array()
        .unwrap()
        .clone();
    let already = objects
        .iter()
        .filter(|o| {
            o["action"] == "skip" && o["reason"].as_str().unwrap().contains("already restored")
        })
        .count();
    assert!(
        already >= 1,
        "what the first restore made is recognised: {objects:?}"
    );
    assert!(
        get(&target, &["deploy", "web", "-n", "shop-dr"]).is_some()
            && get(&target, &["caches", "hot", "-n", "shop-dr"]).is_some(),
        "the rest is made"
    );
    for name in made_before {
        assert!(
            kubectl(&target, &["get", &name, "-n", "shop-dr"]).is_ok(),
            "{name}"
        );
    }
    let deploys = get(&target, &["deploy", "-n", "shop-dr"]).unwrap();
    assert_eq!(deploys["items"].as_array().unwrap().len(), 2, "{deploys}");
}
