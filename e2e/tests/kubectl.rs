//! The real `kubectl` against the stand-in, for every kubectl minor the machine has.
//!
//! The machine's kubectl is a dispatcher that runs the kubectl release matching the server's
//! reported minor version, so each test starts a stand-in reporting one minor and thereby
//! exercises that kubectl release. Each test has its own discovery cache.

use ferry_e2e::apiserver::{BackgroundStandIn, StandInConfig};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Kubectl {
    kubeconfig: PathBuf,
    cache: PathBuf,
}

impl Kubectl {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("kubectl");
        c.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("KUBECACHEDIR", &self.cache)
            .env_remove("KUBECTL_REMOTE_COMMAND_WEBSOCKETS");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .expect("kubectl must be installed (.ci/run installs it)")
    }

    /// Runs kubectl and returns stdout, failing the test with stderr if it failed.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "kubectl {args:?} failed ({}):\nstdout: {stdout}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl must be installed")
    }

    /// Polls until `f` holds for kubectl's output, for state that controllers reach eventually.
    fn eventually(&self, args: &[&str], what: &str, f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = self.run(args);
            let stdout = String::from_utf8_lossy(&out.stdout).to_string();
            if f(&stdout) {
                return stdout;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last output of kubectl {args:?}:\n{stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn cache_size(k: &Kubectl) -> String {
    k.ok(&[
        "get",
        "cache",
        "hot",
        "-n",
        "shop",
        "-o",
        "jsonpath={.spec.size}",
    ])
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn kubectl_release_exists(minor: u32) -> bool {
    // The dispatcher keeps its releases next to itself as kubectl.1.NN.
    let Ok(path) = which("kubectl") else {
        return false;
    };
    let real = std::fs::canonicalize(&path).unwrap_or(path);
    real.parent()
        .is_some_and(|d| d.join(format!("kubectl.1.{minor}")).exists())
}

fn which(bin: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(bin))
                .find(|c| c.exists())
        })
        .ok_or(())
}

fn suite(minor: u32) {
    assert!(
        which("kubectl").is_ok(),
        "kubectl is not on PATH; .ci/run installs it"
    );
    if !kubectl_release_exists(minor) {
        // A single-release kubectl (not the dispatcher) serves whatever minor it is; the suite
        // still runs, against that release.
        eprintln!("no kubectl.1.{minor} beside the dispatcher; using the kubectl on PATH");
    }
    let dir = tempfile::tempdir().unwrap();
    let mut config = StandInConfig::new(format!("kubectl-{minor}"), dir.path().join("cluster"));
    config.minor_version = minor;
    let server = BackgroundStandIn::start(config).unwrap();
    let k = Kubectl {
        kubeconfig: server.get().kubeconfig_path.clone(),
        cache: dir.path().join("cache"),
    };

    let version = k.ok(&["version"]);
    assert!(
        version.contains(&format!("v1.{minor}.0-ferry-standin")),
        "{version}"
    );
    if kubectl_release_exists(minor) {
        // The dispatcher ran the release matching the server (1.27 prints a struct).
        let client = version.lines().next().unwrap_or("");
        assert!(
            client.contains(&format!("v1.{minor}."))
                || client.contains(&format!("Minor:\"{minor}\"")),
            "{version}"
        );
    }

    let resources = k.ok(&["api-resources"]);
    for expected in [
        "deployments",
        "customresourcedefinitions",
        "volumesnapshots",
        "poddisruptionbudgets",
        "horizontalpodautoscalers",
    ] {
        assert!(
            resources.contains(expected),
            "api-resources lacks {expected}:\n{resources}"
        );
    }
    let pods_line = resources.lines().find(|l| l.starts_with("pods ")).unwrap();
    assert!(
        pods_line.contains("po") && pods_line.contains("true") && pods_line.contains("Pod"),
        "{pods_line}"
    );

    assert!(k
        .ok(&["create", "namespace", "shop"])
        .contains("namespace/shop created"));
    assert!(
        k.run(&["create", "namespace", "shop"]).status.code() == Some(1),
        "second create must fail with AlreadyExists"
    );

    // As against a real cluster, kubectl maps every document before applying any, so the CR
    // of a CRD created by the same apply cannot be mapped yet ("ensure CRDs are installed
    // first"); everything else is applied, and the next apply completes the set.
    let app = fixture("app.yaml");
    let first = k.run(&["apply", "-f", app.to_str().unwrap()]);
    let (out, err) = (
        String::from_utf8_lossy(&first.stdout),
        String::from_utf8_lossy(&first.stderr),
    );
    assert!(!first.status.success(), "{out}{err}");
    assert!(
        out.contains("customresourcedefinition.apiextensions.k8s.io/caches.example.com created"),
        "{out}{err}"
    );
    assert!(out.contains("deployment.apps/web created"), "{out}{err}");
    assert!(
        err.contains(r#"no matches for kind "Cache" in version "example.com/v1""#),
        "{err}"
    );
    let applied = k.ok(&["apply", "-f", app.to_str().unwrap()]);
    for line in [
        "customresourcedefinition.apiextensions.k8s.io/caches.example.com unchanged",
        "cache.example.com/hot created",
        "deployment.apps/web unchanged",
    ] {
        assert!(
            applied.contains(line),
            "apply output lacks {line:?}:\n{applied}"
        );
    }

    let listed = k.eventually(
        &["get", "-A", "-l", "app=web", "deployments,caches"],
        "the deployment to become ready",
        |out| out.contains("2/2"),
    );
    assert!(
        listed.contains("shop") && listed.contains("hot"),
        "{listed}"
    );
    let caches = k.ok(&["get", "caches", "-n", "shop"]);
    assert!(
        caches.contains("SIZE") && caches.contains(" 3 "),
        "printer column missing:\n{caches}"
    );
    assert!(k
        .ok(&["get", "-A", "-l", "app=nothing", "caches"])
        .trim()
        .is_empty());

    let yaml = k.ok(&["get", "deployment", "web", "-n", "shop", "-o", "yaml"]);
    assert!(
        yaml.contains("image: registry.eu.example.com/web:1.0"),
        "{yaml}"
    );
    assert!(
        yaml.contains("kubectl.kubernetes.io/last-applied-configuration"),
        "{yaml}"
    );

    // A second apply with changes goes through strategic merge (built-ins) and merge patch (CRs).
    let changed = std::fs::read_to_string(fixture("app.yaml"))
        .unwrap()
        .replace("web:1.0", "web:1.1")
        .replace("size: 3", "size: 5");
    let changed_path = dir.path().join("app-v2.yaml");
    std::fs::write(&changed_path, changed).unwrap();
    let reapplied = k.ok(&["apply", "-f", changed_path.to_str().unwrap()]);
    assert!(
        reapplied.contains("deployment.apps/web configured"),
        "{reapplied}"
    );
    assert!(
        reapplied
            .contains("customresourcedefinition.apiextensions.k8s.io/caches.example.com unchanged"),
        "{reapplied}"
    );
    let image = k.ok(&["get", "deploy", "web", "-n", "shop", "-o", "jsonpath={.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].ports[0].containerPort} {.metadata.generation}"]);
    assert_eq!(image, "registry.eu.example.com/web:1.1 80 2");
    assert_eq!(cache_size(&k), "5");

    // Rollout history and undo: each template is a revision, and undo brings one back.
    let history = k.eventually(
        &["rollout", "history", "deployment/web", "-n", "shop"],
        "two revisions",
        |out| out.lines().any(|l| l.starts_with("1 ")) && out.lines().any(|l| l.starts_with("2 ")),
    );
    assert!(history.contains("REVISION"), "{history}");
    let undone = k.ok(&["rollout", "undo", "deployment/web", "-n", "shop"]);
    assert!(undone.contains("rolled back"), "{undone}");
    k.eventually(
        &["get", "deploy", "web", "-n", "shop", "-o", "jsonpath={.spec.template.spec.containers[0].image} {.metadata.annotations.deployment\\.kubernetes\\.io/revision}"],
        "revision 3 running the first template",
        |out| out == "registry.eu.example.com/web:1.0 3",
    );
    let history = k.ok(&["rollout", "history", "deployment/web", "-n", "shop"]);
    assert!(
        history.lines().any(|l| l.starts_with("2 "))
            && history.lines().any(|l| l.starts_with("3 "))
            && !history.lines().any(|l| l.starts_with("1 ")),
        "revision 1 became 3:\n{history}"
    );
    k.ok(&[
        "rollout",
        "status",
        "deployment/web",
        "-n",
        "shop",
        "--timeout=20s",
    ]);

    k.ok(&[
        "patch",
        "cache",
        "hot",
        "-n",
        "shop",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"size":7}}"#,
    ]);
    k.ok(&[
        "patch",
        "deployment",
        "web",
        "-n",
        "shop",
        "-p",
        r#"{"metadata":{"labels":{"patched":"yes"}}}"#,
    ]);
    k.ok(&[
        "patch",
        "cache",
        "hot",
        "-n",
        "shop",
        "--type",
        "json",
        "-p",
        r#"[{"op":"replace","path":"/spec/size","value":9}]"#,
    ]);
    assert_eq!(cache_size(&k), "9");
    assert_eq!(
        k.ok(&[
            "get",
            "deploy",
            "web",
            "-n",
            "shop",
            "-o",
            "jsonpath={.metadata.labels.patched}"
        ]),
        "yes"
    );
    let bad = k.run(&[
        "patch",
        "cache",
        "hot",
        "-n",
        "shop",
        "--type",
        "json",
        "-p",
        r#"[{"op":"test","path":"/spec/size","value":1}]"#,
    ]);
    assert!(
        !bad.status.success(),
        "a failing JSON patch test must fail the patch"
    );

    assert!(k
        .ok(&["scale", "deployment", "web", "-n", "shop", "--replicas=3"])
        .contains("scaled"));
    k.eventually(
        &["get", "pods", "-n", "shop", "-l", "app=web", "--no-headers"],
        "three running pods",
        |out| {
            out.lines()
                .filter(|l| l.contains("Running") && l.contains("1/1"))
                .count()
                == 3
        },
    );

    // kubectl's generator commands send protobuf; every one must create its object.
    k.ok(&["create", "namespace", "gen"]);
    for args in [
        &[
            "create",
            "deployment",
            "d1",
            "--image=nginx:1",
            "--replicas=2",
            "-n",
            "gen",
        ][..],
        &[
            "create",
            "service",
            "clusterip",
            "s1",
            "--tcp=80:8080",
            "-n",
            "gen",
        ],
        &[
            "create",
            "service",
            "nodeport",
            "s2",
            "--tcp=80:80",
            "-n",
            "gen",
        ],
        &["create", "job", "j1", "--image=busybox:1", "-n", "gen"],
        &[
            "create",
            "cronjob",
            "c1",
            "--image=busybox:1",
            "--schedule=@daily",
            "-n",
            "gen",
        ],
        &[
            "create",
            "role",
            "r1",
            "--verb=get",
            "--resource=pods",
            "-n",
            "gen",
        ],
        &[
            "create",
            "rolebinding",
            "rb1",
            "--role=r1",
            "--user=u",
            "-n",
            "gen",
        ],
        &[
            "create",
            "clusterrole",
            "gen-reader",
            "--verb=get",
            "--resource=pods",
        ],
        &[
            "create",
            "clusterrolebinding",
            "gen-reader",
            "--clusterrole=gen-reader",
            "--user=u",
        ],
        &["create", "quota", "q1", "--hard=pods=10", "-n", "gen"],
        &[
            "create",
            "poddisruptionbudget",
            "p1",
            "--selector=app=d1",
            "--min-available=1",
            "-n",
            "gen",
        ],
        &[
            "create",
            "ingress",
            "i1",
            "--rule=foo.example.com/bar=s1:80",
            "-n",
            "gen",
        ],
        &["create", "priorityclass", "gen-high", "--value=1000"],
        &[
            "create",
            "secret",
            "generic",
            "sec1",
            "--from-literal=a=b",
            "-n",
            "gen",
        ],
    ] {
        let out = k.ok(args);
        assert!(out.contains("created"), "kubectl {args:?}: {out}");
    }
    let port = k.ok(&[
        "get",
        "service",
        "s1",
        "-n",
        "gen",
        "-o",
        "jsonpath={.spec.ports[0].port}/{.spec.ports[0].targetPort}",
    ]);
    assert_eq!(port, "80/8080");
    let ingress = k.ok(&[
        "get",
        "ingress",
        "i1",
        "-n",
        "gen",
        "-o",
        "jsonpath={.spec.rules[0].host} {.spec.rules[0].http.paths[0].backend.service.name}",
    ]);
    assert_eq!(ingress, "foo.example.com s1");

    // Tables as a real cluster prints them: wide columns, nodes, services, CRD columns with
    // JSONPath filters and dates.
    let wide = k.ok(&["get", "pods", "-n", "shop", "-l", "app=web", "-o", "wide"]);
    let header = wide.lines().next().unwrap_or("");
    assert!(
        header.contains("IP") && header.contains("NODE") && wide.contains("standin-node"),
        "{wide}"
    );
    let nodes = k.ok(&["get", "nodes", "-o", "wide"]);
    assert!(
        nodes.contains("Ready")
            && nodes.contains("control-plane")
            && nodes.contains("INTERNAL-IP")
            && nodes.contains("127.0.0.1"),
        "{nodes}"
    );
    let services = k.ok(&["get", "services", "-A", "-o", "wide"]);
    assert!(
        services.contains("PORT(S)") && services.contains("SELECTOR"),
        "{services}"
    );
    let deployments = k.ok(&["get", "deployments", "-n", "shop", "-o", "wide"]);
    assert!(
        deployments.contains("IMAGES") && deployments.contains("registry.eu.example.com/web:1.0"),
        "{deployments}"
    );
    let caches = k.ok(&["get", "caches", "-n", "shop"]);
    let header = caches.lines().next().unwrap_or("");
    assert!(
        header.contains("SIZE") && header.contains("READY") && header.contains("CREATED"),
        "{caches}"
    );

    {
        // kubectl 1.30+ speaks WebSocket for exec, older releases SPDY/3.1: both are served.
        let pod = k.ok(&[
            "get",
            "pods",
            "-n",
            "shop",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ]);
        let out = k.run(&[
            "exec",
            "-n",
            "shop",
            &pod,
            "--",
            "sh",
            "-c",
            "echo hello from $POD_NAME; echo oops >&2; exit 3",
        ]);
        // Standard input travels too (`kubectl exec -i`).
        let mut cat = k
            .command(&["exec", "-i", "-n", "shop", &pod, "--", "cat"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let mut input = cat.stdin.take().unwrap();
            input.write_all(b"through stdin\n").unwrap();
        }
        let echoed = cat.wait_with_output().unwrap();
        assert!(echoed.status.success(), "{echoed:?}");
        assert_eq!(String::from_utf8_lossy(&echoed.stdout), "through stdin\n");
        assert_eq!(
            out.status.code(),
            Some(3),
            "exit code must travel back: {out:?}"
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("hello from {pod}")
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("oops"));

        // kubectl cp runs tar in the pod: both ways, inside the pod's own root.
        let local = tempfile::tempdir().unwrap();
        let file = local.path().join("note.txt");
        std::fs::write(&file, "copied in\n").unwrap();
        let target = format!("shop/{pod}:/tmp/note.txt");
        k.ok(&["cp", file.to_str().unwrap(), &target]);
        let inside = k.ok(&["exec", "-n", "shop", &pod, "--", "cat", "/tmp/note.txt"]);
        assert_eq!(inside, "copied in\n");
        assert!(
            !std::path::Path::new("/tmp/note.txt").exists()
                || std::fs::read_to_string("/tmp/note.txt").unwrap_or_default() != "copied in\n",
            "kubectl cp wrote to the host"
        );
        let back = local.path().join("back.txt");
        k.ok(&["cp", &target, back.to_str().unwrap()]);
        assert_eq!(std::fs::read_to_string(&back).unwrap(), "copied in\n");
    }

    // A bounded watch sees a ConfigMap come and go.
    let mut watch = k.spawn(&[
        "get",
        "configmaps",
        "-n",
        "shop",
        "--watch",
        "--output-watch-events",
    ]);
    std::thread::sleep(Duration::from_millis(1500));
    k.ok(&[
        "create",
        "configmap",
        "watched",
        "-n",
        "shop",
        "--from-literal=a=b",
    ]);
    k.ok(&["delete", "configmap", "watched", "-n", "shop"]);
    std::thread::sleep(Duration::from_millis(1000));
    watch.kill().unwrap();
    let watched = watch.wait_with_output().unwrap();
    let events = String::from_utf8_lossy(&watched.stdout);
    assert!(
        events.contains("ADDED") && events.contains("watched") && events.contains("DELETED"),
        "watch output:\n{events}\n{}",
        String::from_utf8_lossy(&watched.stderr)
    );

    assert!(k
        .ok(&["delete", "deployment", "web", "-n", "shop"])
        .contains("deleted"));
    k.eventually(
        &["get", "pods,replicasets", "-n", "shop", "--no-headers"],
        "garbage collection of the deployment's pods",
        |out| out.trim().is_empty(),
    );
    assert!(k.ok(&["delete", "namespace", "shop"]).contains("deleted"));
    k.eventually(
        &["get", "namespaces", "--no-headers"],
        "the namespace to go",
        |out| !out.contains("shop"),
    );
    k.ok(&["delete", "crd", "caches.example.com"]);
    let gone = k.run(&["get", "caches", "-A"]);
    assert!(!gone.status.success(), "caches must be gone with their CRD");
}

macro_rules! kubectl_minor {
    ($name:ident, $minor:expr) => {
        #[test]
        fn $name() {
            suite($minor);
        }
    };
}

kubectl_minor!(kubectl_1_27, 27);
kubectl_minor!(kubectl_1_28, 28);
kubectl_minor!(kubectl_1_29, 29);
kubectl_minor!(kubectl_1_30, 30);
kubectl_minor!(kubectl_1_31, 31);
kubectl_minor!(kubectl_1_32, 32);
kubectl_minor!(kubectl_1_33, 33);
