//! Real Kubernetes control planes as member clusters: etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler and KWOK, built from Go modules and started on
//! loopback by `scripts/real-cluster` (see there and `tests/real-cluster/`).
//!
//! Without Go or the built binaries the tests that need one skip with a message, except under
//! `CI=true`, where they fail: `./scripts/test` builds them first.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{Cluster, run, stderr, stdout};

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn script() -> PathBuf {
    repo_root().join("scripts/real-cluster")
}

/// Where the built control-plane binaries are (kubectl among them), or why not.
pub fn bin_dir() -> Result<PathBuf, String> {
    let out = Command::new(script())
        .arg("bin-dir")
        .output()
        .map_err(|e| format!("cannot run scripts/real-cluster: {e}"))?;
    if !out.status.success() {
        return Err(stderr(&out).trim().to_string());
    }
    Ok(PathBuf::from(stdout(&out).trim()))
}

/// `Some(bin_dir)` when real clusters can be started; `None` (with a message) when the test
/// should skip. Under `CI=true` a missing control plane is a failure.
pub fn available(test: &str) -> Option<PathBuf> {
    match bin_dir() {
        Ok(dir) => Some(dir),
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{test}: the real control plane is required under CI=true: {why}")
        }
        Err(why) => {
            eprintln!("skipping {test}: {why}");
            None
        }
    }
}

/// A running real cluster; taken down (`scripts/real-cluster down`) when dropped.
#[derive(Debug)]
pub struct RealCluster {
    pub dir: PathBuf,
    pub name: String,
}

impl Drop for RealCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for component in ["kube-apiserver", "kwok"] {
                let log = self.dir.join("logs").join(format!("{component}.log"));
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                eprintln!(
                    "--- {} {component} (last lines) ---\n{}",
                    self.name,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        }
        let _ = Command::new(script())
            .args(["down", "--dir"])
            .arg(&self.dir)
            .status();
    }
}

/// Starts a real cluster called `name` with `nodes` KWOK nodes in `parent/name`.
pub fn start(parent: &Path, name: &str, nodes: u32) -> Cluster {
    start_with(parent, name, nodes, &[])
}

/// [`start`] with more `scripts/real-cluster up` arguments.
pub fn start_with(parent: &Path, name: &str, nodes: u32, extra: &[&str]) -> Cluster {
    let bin = bin_dir().unwrap_or_else(|e| panic!("real cluster {name}: {e}"));
    let dir = parent.join(format!("{name}-k8s"));
    let out = run(Command::new(script())
        .args(["up", "--name", name, "--nodes", &nodes.to_string()])
        .arg("--dir")
        .arg(&dir)
        // An interrupted test run leaves nothing behind.
        .args(["--owner-pid", &std::process::id().to_string()])
        .args(extra));
    let guard = RealCluster {
        dir: dir.clone(),
        name: name.to_string(),
    };
    assert!(
        out.status.success(),
        "scripts/real-cluster up {name} failed: {}{}",
        stdout(&out),
        stderr(&out)
    );
    eprintln!("{}", stdout(&out).trim());
    Cluster {
        kubeconfig: dir.join("kubeconfig"),
        proc: None,
        netns: None,
        kubectl: bin.join("kubectl"),
        real: Some(guard),
    }
}

/// `scripts/real-cluster status` of a running cluster: its components and their memory.
pub fn status(cluster: &Cluster) -> String {
    let Some(real) = &cluster.real else {
        return String::new();
    };
    stdout(&run(Command::new(script())
        .args(["status", "--dir"])
        .arg(&real.dir)))
}

/// A kubeconfig that authenticates as ServiceAccount `namespace/name` of `cluster` (a
/// token from the TokenRequest API), so a process runs with exactly that account's RBAC.
pub fn service_account_kubeconfig(cluster: &Cluster, namespace: &str, name: &str, out: &Path) {
    let token = cluster.kubectl(&["create", "token", name, "-n", namespace, "--duration=2h"]);
    assert!(
        token.status.success(),
        "kubectl create token {namespace}/{name}: {}",
        stderr(&token)
    );
    let admin = std::fs::read_to_string(&cluster.kubeconfig).unwrap_or_default();
    let field = |key: &str| {
        admin
            .lines()
            .find_map(|l| l.trim().strip_prefix(key).map(|v| v.trim().to_string()))
            .unwrap_or_default()
    };
    let config = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: {namespace}-{name}\n  user:\n    token: {}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: {namespace}-{name}\ncurrent-context: c\n",
        field("server:"),
        field("certificate-authority-data:"),
        stdout(&token).trim()
    );
    std::fs::write(out, config).unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}

/// Renders `chart` (deploy/helm/CHART) with `values` (YAML) in release namespace
/// `namespace`, with real Helm (tests/helm/check_charts.py --render).
pub fn render_chart(chart: &str, values: &str, namespace: &str, scratch: &Path) -> String {
    let file = scratch.join(format!("{chart}-{namespace}-values.yaml"));
    std::fs::write(&file, values)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", file.display()));
    let out = run(Command::new("python3")
        .arg(repo_root().join("tests/helm/check_charts.py"))
        .args(["--render", chart, "--namespace", namespace])
        .arg("--values")
        .arg(&file));
    assert!(out.status.success(), "rendering {chart}: {}", stderr(&out));
    stdout(&out)
}

/// `kubectl apply --server-side` of `yaml` (from stdin), with more kubectl arguments.
pub fn apply_yaml(cluster: &Cluster, yaml: &str, extra: &[&str]) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(&cluster.kubectl)
        .arg("--kubeconfig")
        .arg(&cluster.kubeconfig)
        .args(["apply", "--server-side", "-f", "-"])
        .args(extra)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run kubectl: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(yaml.as_bytes());
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("kubectl apply: {e}"))
}
