//! The harness's binaries as a person runs them: `kube-standin`, `ferry-e2e up` and the
//! README's `ferry-e2e demo` (a migration through Ferry's hub, spokes and CLI).

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Reads the child's stdout on a thread, returning a receiver of its lines.
fn lines(child: &mut Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_for_line(rx: &mpsc::Receiver<String>, prefix: &str) -> String {
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no line starting with {prefix:?}"));
        if line.starts_with(prefix) {
            return line;
        }
    }
}

fn interrupt(child: &mut Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    for _ in 0..200 {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    panic!("process {pid} did not stop on SIGINT");
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> String {
    let out = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("KUBECACHEDIR", kubeconfig.with_file_name("cache"))
        .output()
        .expect("kubectl is installed");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn kube_standin_binary_serves_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        Command::new(env!("CARGO_BIN_EXE_kube-standin"))
            .args([
                "--data-dir",
                dir.path().to_str().unwrap(),
                "--persist",
                "--minor",
                "33",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut child = start();
    let rx = lines(&mut child);
    let kubeconfig = wait_for_line(&rx, "kubeconfig: ")
        .trim_start_matches("kubeconfig: ")
        .to_string();
    let kubeconfig = Path::new(&kubeconfig);
    kubectl(kubeconfig, &["create", "namespace", "kept"]);
    assert!(interrupt(&mut child).success());

    let mut child = start();
    let rx = lines(&mut child);
    wait_for_line(&rx, "kubeconfig: ");
    let namespaces = kubectl(kubeconfig, &["get", "namespaces", "-o", "name"]);
    assert!(namespaces.contains("namespace/kept"), "{namespaces}");
    assert!(interrupt(&mut child).success());
}

#[test]
fn ferry_e2e_up_runs_until_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry-e2e"))
        .args(["up", "--dir", dir.path().to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines(&mut child);
    let nats = wait_for_line(&rx, "export FERRY_NATS_URL=");
    let port: u16 = nats.rsplit(':').next().unwrap().parse().unwrap();
    wait_for_line(&rx, "# written to");
    let env = std::fs::read_to_string(dir.path().join("env.sh")).unwrap();
    for cluster in ["SOURCE", "TARGET"] {
        let line = env
            .lines()
            .find(|l| l.starts_with(&format!("export FERRY_KUBECONFIG_{cluster}=")))
            .unwrap();
        let path = line.split_once('=').unwrap().1;
        assert!(kubectl(Path::new(path), &["get", "namespaces"]).contains("default"));
    }
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "NATS answers"
    );
    assert!(interrupt(&mut child).success());
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "NATS stopped with the harness"
    );
}

#[test]
fn readme_demo_runs() {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry-e2e"))
        .arg("demo")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "deployment.apps/web",
        "2/2",
        "statefulset.apps/db",
        "Bound",
        "cache.example.com/hot",
        "Phase:          Succeeded",
        "-- target cluster, namespace shop-dr --",
        "deployment.apps/web",
        "web's image in target: registry.us.example.com/shop/web:1.4",
        "helm release web: deployed",
        "helm status web in shop-dr: deployed",
        "standard-us",
    ] {
        assert!(
            stdout.contains(expected),
            "demo output lacks {expected:?}:\n{stdout}"
        );
    }
    // PostgreSQL in the target answers from the restored volume with the source's rows (the
    // demo itself fails if they differ; here the two lines are compared too).
    let rows = |prefix: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .map(|r| r.trim().to_string())
            .unwrap_or_else(|| panic!("no {prefix:?} line:\n{stdout}"))
    };
    let source = rows("orders in source (count, sum, md5 of every row):");
    assert!(source.starts_with("1001 "), "{source}");
    assert_eq!(
        rows("orders in target, read by PostgreSQL from the restored volume:"),
        source
    );
}
