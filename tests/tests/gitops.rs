//! The GitOps paths, end to end with real processes and real tools: real Helm output
//! (`helm template`, through the Helm SDK) piped into `tetherctl workload create --from -`,
//! real Kustomize output (`kubectl kustomize`) piped into `tetherctl apply -f -`, and the
//! real kubectl running tetherctl as its `tether` plugin.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tether_tests::harness::{
    Agent, Cluster, Hub, HubOptions, bin, bin_dir, helm_python, pipe, run, run_with_input, stderr,
    stdout,
};

const PATIENCE: Duration = Duration::from_secs(30);

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// A hub and one Ready member labelled `labels`.
fn hub_and_member(dir: &Path, name: &str, labels: &str) -> (Hub, Cluster, Agent) {
    let hub = Hub::start(&dir.join("hub"), HubOptions::default());
    let cluster = Cluster::start(dir, name, 1, "v1.33.4");
    let (token, pin) = hub.token(name, &["--labels", labels]);
    let agent = Agent::start(
        &hub,
        &cluster,
        &dir.join(format!("{name}-state")),
        &["--token", &token, "--ca-pin", &pin],
    );
    hub.wait_status(name, "Ready", PATIENCE);
    (hub, cluster, agent)
}

/// `helm template shop CHART -n shop --set ...` with real Helm.
fn helm_template(sets: &[&str]) -> Command {
    let mut cmd = Command::new("python3");
    cmd.arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("helm/template.py"))
        .arg("shop")
        .arg(fixtures().join("charts/shop"))
        .args(["--namespace", "shop"]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    cmd
}

#[test]
fn helm_template_piped_into_workload_create_reaches_the_cluster_with_the_chart_values() {
    if !helm_python() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (hub, cluster, _agent) = hub_and_member(dir.path(), "shop-1", "env=prod");

    let create = [
        "workload",
        "create",
        "shop",
        "--from",
        "-",
        "--selector",
        "env=prod",
    ];
    let out = pipe(
        &mut helm_template(&["mode=blue", "replicas=2"]),
        &mut hub.ctl_command(&create),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "workload/shop created (revision 1, 1 cluster)\n"
    );
    hub.wait_available("shop", "60s");

    let cm = cluster
        .get(&["configmap", "shop-config", "-n", "shop"])
        .unwrap();
    assert_eq!(cm["data"]["mode"], "blue", "{cm}");
    let d = cluster.get(&["deployment", "shop", "-n", "shop"]).unwrap();
    assert_eq!(d["spec"]["replicas"], 2, "{d}");
    assert_eq!(
        d["metadata"]["labels"]["helm.sh/chart"], "shop-0.1.0",
        "{d}"
    );
    assert_eq!(
        d["metadata"]["labels"]["tether.dev/workload"], "shop",
        "{d}"
    );

    // The same render again changes nothing; a new value is a new revision.
    let again = pipe(
        &mut helm_template(&["mode=blue", "replicas=2"]),
        &mut hub.ctl_command(&create),
    );
    assert_eq!(
        stdout(&again),
        "workload/shop unchanged (revision 1, 1 cluster)\n",
        "{}",
        stderr(&again)
    );
    let changed = pipe(
        &mut helm_template(&["mode=green", "replicas=2"]),
        &mut hub.ctl_command(&create),
    );
    assert_eq!(
        stdout(&changed),
        "workload/shop configured (revision 2, 1 cluster)\n",
        "{}",
        stderr(&changed)
    );
    hub.wait_available("shop", "60s");
    let cm = cluster
        .get(&["configmap", "shop-config", "-n", "shop"])
        .unwrap();
    assert_eq!(cm["data"]["mode"], "green", "{cm}");
}

#[test]
fn kustomize_build_piped_into_apply_creates_the_overlay_workload() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, cluster, _agent) = hub_and_member(dir.path(), "prod-1", "env=prod");

    let mut kustomize = Command::new("kubectl");
    kustomize
        .arg("kustomize")
        .arg(fixtures().join("kustomize/overlays/prod"));
    let out = pipe(&mut kustomize, &mut hub.ctl_command(&["apply", "-f", "-"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "workload/prod-web created (revision 1, 1 cluster)\n"
    );
    hub.wait_available("prod-web", "60s");

    // The overlay's name prefix, label, placement patch and JSON patch all arrived.
    let w = hub.ctl_json(&["get", "workload", "prod-web"]);
    assert_eq!(w["metadata"]["labels"]["env"], "prod", "{w}");
    let cm = cluster
        .get(&["configmap", "web-config", "-n", "web"])
        .unwrap();
    assert_eq!(cm["data"]["mode"], "prod", "{cm}");
    assert_eq!(cm["metadata"]["labels"]["tether.dev/workload"], "prod-web");
}

#[test]
fn mistakes_on_standard_input_are_usage_errors_that_send_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(&dir.path().join("hub"), HubOptions::default());

    let cases: [(&[&str], &[u8], &str); 5] = [
        (
            &["apply", "-f", "-"],
            b"",
            "<stdin>, document 1: no Workload found",
        ),
        (
            &["apply", "-f", "-", "-f", "-"],
            b"",
            "standard input (-) can be read only once",
        ),
        (
            &["workload", "create", "x", "--from", "-"],
            b"# Source: shop/templates/empty.yaml\n---\n",
            "standard input holds no manifest",
        ),
        (
            &["workload", "create", "x", "--from", "-"],
            b"kind: ConfigMap\nmetadata: {name: a}\n",
            "<stdin>, document 1, field apiVersion: required",
        ),
        (
            &["workload", "create", "x", "--from", "-"],
            b"a: [unclosed\n",
            "<stdin>: not valid YAML",
        ),
    ];
    for (args, input, message) in cases {
        let out = run_with_input(&mut hub.ctl_command(args), input);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(message), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    }
    let ws = hub.ctl_json(&["get", "workloads"]);
    assert_eq!(ws.as_array().map(Vec::len), Some(0), "{ws}");
}

#[test]
fn kubectl_runs_tetherctl_as_its_tether_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, _cluster, _agent) = hub_and_member(dir.path(), "edge-1", "env=edge");

    // The built kubectl-tether, and tetherctl linked under the plugin's name.
    let linked = dir.path().join("plugins");
    std::fs::create_dir(&linked).unwrap();
    std::os::unix::fs::symlink(bin("tetherctl"), linked.join("kubectl-tether")).unwrap();
    let built = bin_dir();
    assert!(
        built.join("kubectl-tether").exists(),
        "kubectl-tether was not built"
    );

    for plugin_dir in [built, linked] {
        let path = format!(
            "{}:{}",
            plugin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let kubectl = |args: &[&str]| run(Command::new("kubectl").env("PATH", &path).args(args));

        let list = kubectl(&["plugin", "list", "--name-only"]);
        assert!(
            stdout(&list).lines().any(|l| l.trim() == "kubectl-tether"),
            "{}{}",
            stdout(&list),
            stderr(&list)
        );

        let config = hub.admin_config().display().to_string();
        let clusters = kubectl(&["tether", "--config", &config, "get", "clusters"]);
        assert!(clusters.status.success(), "{}", stderr(&clusters));
        let table = stdout(&clusters);
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("edge-1") && l.contains("Ready")),
            "{table}"
        );

        let help = kubectl(&["tether", "get", "--help"]);
        assert!(
            stdout(&help).contains("Usage: kubectl tether get"),
            "{}",
            stdout(&help)
        );
        let wrong = kubectl(&["tether", "--no-such-flag"]);
        assert_eq!(wrong.status.code(), Some(2), "{}", stderr(&wrong));
        let err = stderr(&wrong);
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains("(usage: kubectl tether"), "{err}");
    }
}
