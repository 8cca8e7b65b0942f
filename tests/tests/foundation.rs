//! The foundation, end to end with real processes: join over mutual TLS, the live stream,
//! Ready/Offline, fencing, renewal, a durable store across restarts, and clear refusals.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tether_tests::harness::{
    Agent, Cluster, Hub, HubOptions, bin, eventually, metric, run, stderr, stdout,
};

const PATIENCE: Duration = Duration::from_secs(30);

fn setup() -> (tempfile::TempDir, Hub) {
    setup_with(HubOptions::default())
}

fn setup_with(opts: HubOptions) -> (tempfile::TempDir, Hub) {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub::start(&dir.path().join("hub"), opts);
    (dir, hub)
}

/// One line on stderr, no panic, the expected exit code, and the expected words.
fn assert_refused(out: &std::process::Output, code: i32, words: &str) {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(code),
        "exit code for {words:?}; stderr: {err}"
    );
    assert!(err.contains(words), "expected {words:?} in: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "not a clean refusal: {err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {err}");
}

fn agent_cmd(hub: &Hub, cluster: &Cluster, state: &Path, args: &[&str]) -> std::process::Output {
    run(Command::new(bin("tether-agent"))
        .args(["--hub", &hub.addr.to_string()])
        .arg("--kubeconfig")
        .arg(&cluster.kubeconfig)
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .env_remove("KUBERNETES_SERVICE_HOST"))
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn join_reports_ready_with_the_clusters_facts() {
    let (dir, hub) = setup();
    let cluster = Cluster::start(dir.path(), "edge-1", 3, "v1.33.4");
    let (token, pin) = hub.token("edge-1", &["--labels", "region=eu,tier=edge"]);
    let started = Instant::now();
    let agent = Agent::join(&hub, &cluster, &dir.path().join("state"), &token, &pin);
    let c = hub.wait_status("edge-1", "Ready", PATIENCE);
    eprintln!(
        "measured: agent start to Ready on loopback: {:?}",
        started.elapsed()
    );

    let version: Value =
        serde_json::from_str(&stdout(&cluster.kubectl(&["get", "--raw", "/version"])))
            .unwrap_or_default();
    let nodes = cluster.kubectl_json(&["get", "nodes"]);
    assert_eq!(c["kubernetesVersion"], version["gitVersion"], "{c}");
    assert_eq!(
        c["nodeCount"].as_u64(),
        nodes["items"].as_array().map(|a| a.len() as u64)
    );
    assert_eq!(c["nodeCount"], 3);
    assert_eq!(c["apiReachable"], true);
    assert_eq!(c["labels"]["region"], "eu");
    assert_eq!(c["labels"]["tier"], "edge");
    assert!(!c["agentVersion"].as_str().unwrap_or_default().is_empty());

    let table = stdout(&hub.ctl(&["cluster", "list"]));
    let header = table.lines().next().unwrap_or_default();
    for col in [
        "NAME",
        "STATUS",
        "LABELS",
        "KUBERNETES",
        "AGENT",
        "LAST SEEN",
    ] {
        assert!(header.contains(col), "missing column {col}: {table}");
    }
    let row = table
        .lines()
        .find(|l| l.starts_with("edge-1"))
        .unwrap_or_default();
    assert!(row.contains("Ready") && row.contains("v1.33.4"), "{table}");

    let m = hub.metrics_text();
    assert_eq!(metric(&m, "tether_connected_agents"), 1.0, "{m}");
    assert_eq!(metric(&m, "tether_joins_total{result=\"ok\"}"), 1.0, "{m}");

    // The credential is owner-only; no secret reached a log.
    let cred = dir.path().join("state/credential.json");
    assert_eq!(
        std::fs::metadata(&cred)
            .expect("credential")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let secret = token.split('.').nth(1).unwrap_or_default().to_string();
    let key: Value = serde_json::from_slice(&std::fs::read(&cred).expect("read")).expect("json");
    let key_line = key["keyPem"]
        .as_str()
        .unwrap_or_default()
        .lines()
        .nth(1)
        .unwrap_or("x")
        .to_string();
    for log in [hub.log_text(), agent.proc.log_text()] {
        assert!(!log.contains(&secret), "token secret in a log");
        assert!(!log.contains(&key_line), "private key material in a log");
    }
    let hub_pid = hub.proc.as_ref().map_or(0, |p| p.pid());
    eprintln!("measured: hub RSS with one agent: {} KiB", rss_kib(hub_pid));
}

#[test]
fn hub_restart_restores_clusters_and_tokens_and_agents_return_without_the_token() {
    let (dir, mut hub) = setup();
    let cluster = Cluster::start(dir.path(), "edge-1", 1, "v1.33.4");
    let (token, pin) = hub.token("edge-1", &["--labels", "region=eu"]);
    hub.token("edge-2", &["--labels", "tier=edge", "--ttl", "2h"]);
    let revoked = hub.ctl_json(&["token", "create", "--cluster", "edge-3"]);
    let revoked_id = revoked["id"].as_str().unwrap_or_default();
    assert!(hub.ctl(&["token", "revoke", revoked_id]).status.success());
    let mut agent = Agent::join(&hub, &cluster, &dir.path().join("state"), &token, &pin);
    hub.wait_status("edge-1", "Ready", PATIENCE);
    hub.ctl(&["cluster", "label", "edge-1", "ring=canary"]);

    let clusters_before = hub.ctl_json(&["cluster", "list"]);
    let tokens_before = hub.ctl_json(&["token", "list"]);
    assert_eq!(tokens_before.as_array().map(Vec::len), Some(3));

    assert_eq!(hub.stop(), 0, "hub did not stop cleanly");
    hub.serve();

    let clusters_after = hub.ctl_json(&["cluster", "list"]);
    let tokens_after = hub.ctl_json(&["token", "list"]);
    let pick = |v: &Value, fields: &[&str]| -> Vec<Vec<Value>> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|c| fields.iter().map(|f| c[*f].clone()).collect())
            .collect()
    };
    let cf = [
        "name",
        "labels",
        "joined",
        "certSerial",
        "certExpires",
        "kubernetesVersion",
    ];
    assert_eq!(pick(&clusters_before, &cf), pick(&clusters_after, &cf));
    let tf = [
        "id", "cluster", "labels", "created", "expires", "reusable", "uses", "state",
    ];
    assert_eq!(pick(&tokens_before, &tf), pick(&tokens_after, &tf));

    // The same agent process comes back on its own, with its stored credential.
    hub.wait_status("edge-1", "Ready", PATIENCE);
    let log = agent.proc.log_text();
    assert_eq!(
        log.matches("joined the hub").count(),
        1,
        "the agent joined twice: {log}"
    );

    // A restarted agent needs no token either.
    agent.proc.kill();
    hub.wait_status("edge-1", "Offline", PATIENCE);
    let _agent = Agent::start(&hub, &cluster, &dir.path().join("state"), &[]);
    hub.wait_status("edge-1", "Ready", PATIENCE);
}

#[test]
fn a_silent_or_killed_agent_goes_offline_and_comes_back_ready() {
    let (dir, hub) = setup_with(HubOptions {
        heartbeat_interval: "200ms".into(),
        offline_grace: "1500ms".into(),
        ..HubOptions::default()
    });
    let cluster = Cluster::start(dir.path(), "edge-1", 1, "v1.33.4");
    let (token, pin) = hub.token("edge-1", &[]);
    let mut agent = Agent::join(&hub, &cluster, &dir.path().join("state"), &token, &pin);
    hub.wait_status("edge-1", "Ready", PATIENCE);

    // Frozen, the agent keeps its TCP connection open: only the heartbeat grace notices.
    agent.proc.signal("STOP");
    let offline = hub.wait_status("edge-1", "Offline", PATIENCE);
    assert!(
        !offline["lastSeen"].as_str().unwrap_or_default().is_empty(),
        "{offline}"
    );
    agent.proc.signal("CONT");
    hub.wait_status("edge-1", "Ready", PATIENCE);

    agent.proc.kill();
    hub.wait_status("edge-1", "Offline", PATIENCE);
    let _agent = Agent::start(&hub, &cluster, &dir.path().join("state"), &[]);
    hub.wait_status("edge-1", "Ready", PATIENCE);
}

#[test]
fn a_second_agent_with_the_same_identity_supersedes_the_first() {
    let (dir, hub) = setup();
    let cluster = Cluster::start(dir.path(), "edge-1", 1, "v1.33.4");
    let (token, pin) = hub.token("edge-1", &[]);
    let mut first = Agent::join(&hub, &cluster, &dir.path().join("one"), &token, &pin);
    let before = hub.wait_status("edge-1", "Ready", PATIENCE);

    std::fs::create_dir_all(dir.path().join("two")).expect("mkdir");
    std::fs::copy(
        dir.path().join("one/credential.json"),
        dir.path().join("two/credential.json"),
    )
    .expect("copy");
    let _second = Agent::start(&hub, &cluster, &dir.path().join("two"), &[]);

    let code = first.proc.wait_exit(PATIENCE);
    assert_eq!(code, 1);
    assert!(
        first.proc.log_text().contains("another agent"),
        "{}",
        first.proc.log_text()
    );
    let after = hub.wait_status("edge-1", "Ready", PATIENCE);
    assert_ne!(before["session"], after["session"]);
    assert_eq!(
        metric(&hub.metrics_text(), "tether_sessions_superseded_total"),
        1.0
    );
}

#[test]
fn bad_join_inputs_are_refused_with_one_clear_line_and_the_hub_serves_on() {
    let (dir, hub) = setup();
    let cluster = Cluster::start(dir.path(), "edge-1", 1, "v1.33.4");
    let (good_token, pin) = hub.token("edge-1", &[]);
    let _good = Agent::join(&hub, &cluster, &dir.path().join("good"), &good_token, &pin);
    hub.wait_status("edge-1", "Ready", PATIENCE);
    let state = |n: &str| dir.path().join(n);

    let (t, _) = hub.token("edge-2", &[]);
    assert_refused(
        &agent_cmd(
            &hub,
            &cluster,
            &state("a"),
            &["--token", "nonsense", "--ca-pin", &pin],
        ),
        2,
        "malformed join token",
    );
    assert_refused(
        &agent_cmd(
            &hub,
            &cluster,
            &state("b"),
            &["--token", &t, "--ca-pin", "sha256:xyz"],
        ),
        2,
        "invalid CA pin",
    );
    assert_refused(
        &agent_cmd(&hub, &cluster, &state("c"), &["--token", &t]),
        2,
        "--ca-pin",
    );
    let wrong_pin = format!("sha256:{}", "0".repeat(64));
    assert_refused(
        &agent_cmd(
            &hub,
            &cluster,
            &state("d"),
            &["--token", &t, "--ca-pin", &wrong_pin],
        ),
        1,
        "does not match the pin",
    );
    assert_refused(
        &agent_cmd(&hub, &cluster, &state("e"), &[]),
        2,
        "no --token",
    );
    let unknown = format!("zzzzzz.{}", "a".repeat(32));
    assert_refused(
        &agent_cmd(
            &hub,
            &cluster,
            &state("f"),
            &["--token", &unknown, "--ca-pin", &pin],
        ),
        1,
        "not known to this hub",
    );
    let wrong_secret = format!(
        "{}.{}",
        t.split('.').next().unwrap_or_default(),
        "b".repeat(32)
    );
    assert_refused(
        &agent_cmd(
            &hub,
            &cluster,
            &state("g"),
            &["--token", &wrong_secret, "--ca-pin", &pin],
        ),
        1,
        "wrong secret",
    );

    // Single use: the good agent already used its token.
    assert_refused(
        &agent_cmd(
            &hub,
            &cluster,
            &state("h"),
            &["--token", &good_token, "--ca-pin", &pin],
        ),
        1,
        "already used",
    );

    let revoked = hub.ctl_json(&["token", "create", "--cluster", "edge-3"]);
    hub.ctl(&[
        "token",
        "revoke",
        revoked["id"].as_str().unwrap_or_default(),
    ]);
    assert_refused(
        &agent_cmd(
            &hub,
            &cluster,
            &state("i"),
            &[
                "--token",
                revoked["token"].as_str().unwrap_or_default(),
                "--ca-pin",
                &pin,
            ],
        ),
        1,
        "revoked",
    );

    let expiring = hub.ctl_json(&["token", "create", "--cluster", "edge-4", "--ttl", "1s"]);
    let id = expiring["id"].as_str().unwrap_or_default().to_string();
    eventually(PATIENCE, "the token to expire", || {
        let list = hub.ctl_json(&["token", "list"]);
        list.as_array()?
            .iter()
            .any(|t| t["id"] == id.as_str() && t["state"] == "expired")
            .then_some(())
    });
    assert_refused(
        &agent_cmd(
            &hub,
            &cluster,
            &state("j"),
            &[
                "--token",
                expiring["token"].as_str().unwrap_or_default(),
                "--ca-pin",
                &pin,
            ],
        ),
        1,
        "expired",
    );

    // None of that disturbed anyone else, and none of it created a cluster.
    assert_eq!(hub.status_of("edge-1"), "Ready");
    let names: Vec<Value> = hub
        .ctl_json(&["cluster", "list"])
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(names, vec![Value::from("edge-1")]);
    let m = hub.metrics_text();
    for result in ["unknown", "bad_secret", "used", "revoked", "expired"] {
        assert_eq!(
            metric(&m, &format!("tether_joins_total{{result=\"{result}\"}}")),
            1.0,
            "{result}: {m}"
        );
    }
}

#[test]
fn removing_a_cluster_revokes_its_certificate_and_a_new_token_brings_it_back() {
    let (dir, hub) = setup();
    let cluster = Cluster::start(dir.path(), "edge-1", 1, "v1.33.4");
    let (token, pin) = hub.token("edge-1", &[]);
    let state = dir.path().join("state");
    let mut agent = Agent::join(&hub, &cluster, &state, &token, &pin);
    hub.wait_status("edge-1", "Ready", PATIENCE);

    let out = hub.ctl(&["cluster", "remove", "edge-1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(agent.proc.wait_exit(PATIENCE), 1);
    let log = agent.proc.log_text();
    assert!(log.contains("was removed from the hub"), "{log}");
    assert_refused(
        &hub.ctl(&["cluster", "get", "edge-1"]),
        1,
        "not found (see: tetherctl cluster list)",
    );

    // Its certificate is refused at the handshake now: the agent says so and stops.
    assert_refused(
        &agent_cmd(&hub, &cluster, &state, &[]),
        1,
        "refused this agent's certificate",
    );

    // The documented way back: a new token given to the same agent.
    let (token2, _) = hub.token("edge-1", &[]);
    let _back = Agent::start(
        &hub,
        &cluster,
        &state,
        &["--token", &token2, "--ca-pin", &pin],
    );
    hub.wait_status("edge-1", "Ready", PATIENCE);
}

#[test]
fn api_calls_need_a_valid_user_credential() {
    let (dir, hub) = setup();
    let cluster = Cluster::start(dir.path(), "edge-1", 1, "v1.33.4");
    let (token, pin) = hub.token("edge-1", &[]);
    let _agent = Agent::join(&hub, &cluster, &dir.path().join("state"), &token, &pin);
    hub.wait_status("edge-1", "Ready", PATIENCE);

    let admin: Value = serde_saphyr_yaml(&hub.admin_config());
    let write_config = |name: &str, hub_addr: &str, ca: &str, cert: &str, key: &str| {
        let p = dir.path().join(name);
        let v = serde_json::json!({
            "apiVersion": "tether.dev/v1alpha1", "kind": "ClientConfig", "hub": hub_addr,
            "user": "x", "ca": ca, "cert": cert, "key": key,
        });
        std::fs::write(&p, serde_json::to_string(&v).expect("json")).expect("write");
        p
    };
    let ctl = |config: &Path, args: &[&str]| {
        run(Command::new(bin("tetherctl"))
            .arg("--config")
            .arg(config)
            .args(args))
    };
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();

    // A cluster's own certificate cannot use the client API.
    let cred: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("state/credential.json")).expect("cred"),
    )
    .expect("json");
    let as_cluster = write_config(
        "cluster.yaml",
        &hub.addr.to_string(),
        &s(&admin["ca"]),
        &s(&cred["certPem"]),
        &s(&cred["keyPem"]),
    );
    assert_refused(
        &ctl(&as_cluster, &["cluster", "list"]),
        1,
        "cannot use the client API",
    );

    // A certificate from another hub's CA is refused at the handshake.
    let other = Hub::start(&dir.path().join("other-hub"), HubOptions::default());
    let other_admin: Value = serde_saphyr_yaml(&other.admin_config());
    let foreign = write_config(
        "foreign.yaml",
        &hub.addr.to_string(),
        &s(&admin["ca"]),
        &s(&other_admin["cert"]),
        &s(&other_admin["key"]),
    );
    let out = ctl(&foreign, &["cluster", "list"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());

    // No certificate at all.
    let status = call_without_certificate(&hub);
    assert_eq!(status, tonic::Code::Unauthenticated);

    // Unreachable hub, unknown names and bad flags.
    let port = tether_tests::harness::free_port();
    let nowhere = write_config(
        "nowhere.yaml",
        &format!("127.0.0.1:{port}"),
        &s(&admin["ca"]),
        &s(&admin["cert"]),
        &s(&admin["key"]),
    );
    assert_refused(&ctl(&nowhere, &["cluster", "list"]), 1, "cannot reach hub");
    assert_refused(
        &hub.ctl(&["cluster", "get", "nope"]),
        1,
        "cluster \"nope\" not found",
    );
    assert_refused(
        &hub.ctl(&["token", "create", "--cluster", "Bad_Name"]),
        2,
        "invalid --cluster",
    );
    assert_refused(
        &hub.ctl(&["token", "create", "--cluster", "ok", "--ttl", "30d"]),
        2,
        "exceeds",
    );
    assert_refused(
        &hub.ctl(&["token", "create", "--cluster", "ok", "--labels", "novalue"]),
        2,
        "invalid --labels",
    );
    assert_refused(&hub.ctl(&["token", "revoke", "x"]), 2, "invalid token id");
    assert_refused(
        &hub.ctl(&["cluster", "label", "edge-1", "justakey"]),
        2,
        "neither key=value nor key-",
    );
    assert_eq!(hub.ctl(&["--bogus"]).status.code(), Some(2));
    assert_eq!(hub.ctl(&["token", "create"]).status.code(), Some(2));
    let missing = run(Command::new(bin("tetherctl")).args([
        "--config",
        "/nonexistent/c.yaml",
        "cluster",
        "list",
    ]));
    assert_refused(&missing, 1, "no tetherctl config found");

    let hub_bin = |args: &[&str]| run(Command::new(bin("tether-hub")).args(args));
    let d = dir.path().join("hub").display().to_string();
    assert_refused(
        &hub_bin(&[
            "serve",
            "--data-dir",
            &d,
            "--heartbeat-interval",
            "2s",
            "--offline-grace",
            "1s",
        ]),
        2,
        "--offline-grace",
    );
    assert_refused(&hub_bin(&["init", "--data-dir", &d]), 1, "--force");
    let empty = dir.path().join("empty").display().to_string();
    assert_refused(
        &hub_bin(&["serve", "--data-dir", &empty, "--listen", "127.0.0.1:0"]),
        1,
        "not initialized",
    );
    let bad_hub = run(Command::new(bin("tether-agent"))
        .args(["--hub", "no-port", "--state-dir"])
        .arg(dir.path().join("z")));
    assert_refused(&bad_hub, 2, "expected HOST:PORT");

    // Through all of it the hub kept serving.
    assert_eq!(hub.status_of("edge-1"), "Ready");
}

#[test]
fn agents_renew_short_lived_certificates_and_stay_ready() {
    let (dir, mut hub) = setup_with(HubOptions {
        cert_lifetime: "4s".into(),
        ..HubOptions::default()
    });
    let cluster = Cluster::start(dir.path(), "edge-1", 1, "v1.33.4");
    let (token, pin) = hub.token("edge-1", &[]);
    let state = dir.path().join("state");
    let mut agent = Agent::join(&hub, &cluster, &state, &token, &pin);
    let first = hub.wait_status("edge-1", "Ready", PATIENCE);

    let mut serials = vec![first["certSerial"].clone()];
    eventually(Duration::from_secs(40), "three renewals", || {
        let c = hub.cluster("edge-1")?;
        assert_eq!(
            c["status"], "Ready",
            "the cluster left Ready while renewing: {c}"
        );
        if !serials.contains(&c["certSerial"]) {
            serials.push(c["certSerial"].clone());
        }
        (serials.len() >= 4).then_some(())
    });

    let m = hub.metrics_text();
    assert!(
        metric(&m, "tether_certificate_renewals_total{result=\"ok\"}") >= 3.0,
        "{m}"
    );

    // The first certificate expired long ago: coming back after a hub restart proves the
    // agent now holds a renewed one.
    hub.stop();
    hub.serve();
    hub.wait_status("edge-1", "Ready", PATIENCE);
    assert!(
        agent.proc.exited().is_none(),
        "the agent stopped: {}",
        agent.proc.log_text()
    );
    assert!(agent.proc.log_text().contains("certificate renewed"));
}

fn serde_saphyr_yaml(p: &Path) -> Value {
    serde_saphyr::from_str(&std::fs::read_to_string(p).expect("read config")).expect("yaml")
}

/// Calls the client API over TLS with no client certificate.
fn call_without_certificate(hub: &Hub) -> tonic::Code {
    tether_common::tls::install_default_provider();
    let admin = serde_saphyr_yaml(&hub.admin_config());
    let ca = admin["ca"].as_str().unwrap_or_default().to_string();
    let addr = hub.addr.to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let roots = tether_common::tls::root_store(&ca).expect("roots");
        let mut config =
            rustls::ClientConfig::builder_with_provider(tether_common::tls::provider())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .expect("versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let channel =
            tether_common::tls::connect(&addr, std::sync::Arc::new(config), &Default::default())
                .await
                .expect("connect");
        let mut api = tether_common::pb::hub_api_service_client::HubApiServiceClient::new(channel);
        match api
            .list_clusters(tether_common::pb::ListClustersRequest {})
            .await
        {
            Ok(_) => tonic::Code::Ok,
            Err(s) => s.code(),
        }
    })
}
