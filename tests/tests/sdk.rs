//! The client SDKs, end to end: their examples run against a real hub (TLS, a user
//! certificate, the real gRPC stack of each language) with emulated members, their generated
//! code matches proto/, and reflection answers the v1alpha clients the Python and grpcurl
//! ecosystems use.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tether_tests::harness::{Agent, Cluster, Hub, HubOptions, python_has, run, stderr, stdout};

const PATIENCE: Duration = Duration::from_secs(30);
const PYTHON_PACKAGES: &str =
    "grpcio==1.85.1 grpcio-tools==1.85.1 grpcio-reflection==1.85.1 pyyaml";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// A hub and two Ready members labelled env=prod.
fn hub_and_members(dir: &Path) -> (Hub, Vec<(Cluster, Agent)>) {
    let hub = Hub::start(&dir.join("hub"), HubOptions::default());
    let members = ["prod-1", "prod-2"]
        .into_iter()
        .map(|name| {
            let cluster = Cluster::start(dir, name, 1, "v1.33.4");
            let (token, pin) = hub.token(name, &["--labels", "env=prod"]);
            let agent = Agent::start(
                &hub,
                &cluster,
                &dir.join(format!("{name}-state")),
                &["--token", &token, "--ca-pin", &pin],
            );
            hub.wait_status(name, "Ready", PATIENCE);
            (cluster, agent)
        })
        .collect();
    (hub, members)
}

const WEB: &str = r#"
apiVersion: tether.dev/v1alpha1
kind: Workload
metadata: { name: web }
spec:
  manifests:
    - apiVersion: v1
      kind: Namespace
      metadata: { name: web }
    - apiVersion: v1
      kind: ConfigMap
      metadata: { name: web-config, namespace: web }
      data: { from: sdk }
  placement:
    clusterSelector: { matchLabels: { env: prod } }
"#;

fn python() -> Command {
    let mut cmd = Command::new("python3");
    cmd.env("PYTHONPATH", root().join("sdk/python/src"));
    cmd
}

/// Runs an SDK's deploy example (`example` plus its arguments) as a user would: against a
/// hub with two members, then with a viewer's config, which the hub refuses.
fn example_deploys_to_two_clusters(example: impl Fn() -> Command, denied: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (hub, members) = hub_and_members(dir.path());
    let file = dir.path().join("web.yaml");
    std::fs::write(&file, WEB).unwrap();

    let out = run(example()
        .arg("-f")
        .arg(&file)
        .arg("--config")
        .arg(hub.admin_config())
        .args(["--timeout", "60s"]));
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("cluster prod-1: Ready"), "{text}");
    assert!(text.contains("cluster prod-2: Ready"), "{text}");
    assert!(
        text.contains("workload/web created (revision 1, clusters: prod-1, prod-2)"),
        "{text}"
    );
    assert!(
        text.contains("workload/web revision 1: Available on 2 cluster(s): prod-1, prod-2"),
        "{text}"
    );
    for (cluster, _) in &members {
        let cm = cluster
            .get(&["configmap", "web-config", "-n", "web"])
            .unwrap();
        assert_eq!(cm["data"]["from"], "sdk", "{cm}");
    }
    // What the program did is what the hub recorded, for tetherctl too.
    let w = hub.ctl_json(&["get", "workload", "web"]);
    assert_eq!(w["status"]["revision"], 1, "{w}");

    // A refusal reaches the program as the hub's code and message; the example exits 1.
    let viewer = hub.user_config("vera", "viewer");
    let refused = run(example().arg("-f").arg(&file).arg("--config").arg(&viewer));
    let err = stderr(&refused);
    assert_eq!(refused.status.code(), Some(1), "{err}");
    assert!(err.contains(denied) && err.contains("vera"), "{err}");
}

#[test]
fn the_python_example_lists_clusters_applies_a_workload_and_waits_for_it() {
    if !python_has("grpc, yaml", PYTHON_PACKAGES) {
        return;
    }
    example_deploys_to_two_clusters(
        || {
            let mut cmd = python();
            cmd.arg(root().join("sdk/python/examples/deploy.py"));
            cmd
        },
        "PERMISSION_DENIED",
    );
}

/// Go, or a skip (a failure under CI, where the test command requires it).
fn go() -> bool {
    let ok = Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "Go is not installed");
        eprintln!("skipping: Go is not installed");
    }
    ok
}

#[test]
fn the_go_example_lists_clusters_applies_a_workload_and_waits_for_it() {
    if !go() {
        return;
    }
    let sdk = root().join("sdk/go");
    let unformatted = run(Command::new("gofmt").arg("-l").arg(&sdk));
    assert!(
        unformatted.status.success() && stdout(&unformatted).is_empty(),
        "gofmt: {}{}",
        stdout(&unformatted),
        stderr(&unformatted)
    );
    let bin = tempfile::tempdir().unwrap();
    let deploy = bin.path().join("deploy");
    let built = run(Command::new("go")
        .current_dir(&sdk)
        .args(["build", "-mod=readonly", "-o"])
        .arg(&deploy)
        .arg("./examples/deploy"));
    assert!(built.status.success(), "go build: {}", stderr(&built));
    let vet = run(Command::new("go").current_dir(&sdk).args(["vet", "./..."]));
    assert!(vet.status.success(), "go vet: {}", stderr(&vet));
    example_deploys_to_two_clusters(|| Command::new(&deploy), "PermissionDenied");
}

#[test]
fn reflection_answers_v1alpha_clients_with_the_hub_api() {
    if !python_has("grpc, grpc_reflection, yaml", PYTHON_PACKAGES) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(&dir.path().join("hub"), HubOptions::default());
    let out = run(python()
        .arg(root().join("tests/sdk/reflect.py"))
        .arg(hub.admin_config()));
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    for service in [
        "tether.v1.HubApiService",
        "tether.v1.AgentService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(
            text.lines().any(|l| l == service),
            "{service} not listed:\n{text}"
        );
    }
    assert!(
        text.lines()
            .any(|l| l == "tether.v1.HubApiService/ApplyWorkload"),
        "{text}"
    );
}

/// Runs sdk/generate for `language` into a temporary root and compares with the checkout.
fn generated_code_is_current(language: &str, files: &[&str]) {
    let out_root = tempfile::tempdir().unwrap();
    let out = run(Command::new(root().join("sdk/generate"))
        .arg(language)
        .arg(out_root.path()));
    assert!(
        out.status.success(),
        "sdk/generate {language}: {}",
        stderr(&out)
    );
    for f in files {
        let fresh = std::fs::read_to_string(out_root.path().join(f))
            .unwrap_or_else(|e| panic!("sdk/generate wrote no {f}: {e}"));
        let committed = std::fs::read_to_string(root().join(f)).unwrap_or_default();
        assert!(
            fresh == committed,
            "{f} is not what sdk/generate makes of proto/: run `sdk/generate {language}` and commit"
        );
    }
}

#[test]
fn the_go_sdk_is_generated_from_the_current_proto() {
    let buf_found = std::env::var_os("TETHER_BUF").is_some()
        || Command::new("buf").arg("--version").output().is_ok();
    if !go() || !buf_found {
        assert!(
            std::env::var_os("CI").is_none(),
            "buf is missing (./scripts/test builds it)"
        );
        return;
    }
    generated_code_is_current(
        "go",
        &[
            "sdk/go/tether/v1/api.pb.go",
            "sdk/go/tether/v1/api_grpc.pb.go",
        ],
    );
}

#[test]
fn the_python_sdk_is_generated_from_the_current_proto() {
    if !python_has("grpc_tools", PYTHON_PACKAGES) {
        return;
    }
    generated_code_is_current(
        "python",
        &[
            "sdk/python/src/tether/v1/api_pb2.py",
            "sdk/python/src/tether/v1/api_pb2.pyi",
            "sdk/python/src/tether/v1/api_pb2_grpc.py",
        ],
    );
}
