//! Installing and operating Tether: the Helm charts rendered by real Helm, the agent's Lease
//! leader election (a DaemonSet's pods against one emulated cluster), online backup and
//! restore, compaction, the air-gapped bundle, and the agent's metrics.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tether_tests::harness::{
    Agent, Cluster, ElectedAgent, Hub, HubOptions, Proc, bin, bin_dir, eventually, free_port,
    helm_python, http_get, lease_holder, run, stderr, stdout,
};

const PATIENCE: Duration = Duration::from_secs(30);

const APP: &str = r#"
apiVersion: tether.dev/v1alpha1
kind: Workload
metadata: { name: app }
spec:
  manifests:
    - apiVersion: v1
      kind: Namespace
      metadata: { name: app }
    - apiVersion: apps/v1
      kind: Deployment
      metadata: { name: app, namespace: app }
      spec:
        replicas: 2
        selector: { matchLabels: { app: app } }
        template:
          metadata: { labels: { app: app } }
          spec: { containers: [ { name: app, image: "nginx:1.27" } ] }
  placement:
    clusters: [ edge-1 ]
"#;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

#[test]
fn both_helm_charts_lint_and_render_with_real_helm() {
    if !helm_python() {
        return;
    }
    let out = run(Command::new("python3")
        .arg(root().join("tests/helm/check_charts.py"))
        .arg("--bin-dir")
        .arg(bin_dir()));
    assert!(
        out.status.success(),
        "chart checks failed:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("both charts lint clean"),
        "{}",
        stdout(&out)
    );
}

/// One agent pod of the DaemonSet: credential and desired-state cache in Secrets of the
/// cluster (no state directory), leader election on a Lease.
#[test]
fn one_agent_of_a_daemonset_leads_and_a_standby_takes_over_within_the_lease() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(&dir.path().join("hub"), HubOptions::default());
    let cluster = Cluster::start(dir.path(), "edge-1", 3, "v1.33.4");
    // What `helm install --create-namespace` leaves behind.
    let ns_file = dir.path().join("ns.yaml");
    std::fs::write(
        &ns_file,
        "apiVersion: v1\nkind: Namespace\nmetadata: { name: tether-system }\n",
    )
    .unwrap();
    let ns = cluster.kubectl(&["apply", "-f", ns_file.to_str().unwrap()]);
    assert!(ns.status.success(), "{}", stderr(&ns));
    let (token, pin) = hub.token("edge-1", &[]);

    let a = ElectedAgent::start(&hub, &cluster, dir.path(), "pod-a", (&token, &pin));
    hub.wait_status("edge-1", "Ready", PATIENCE);
    assert_eq!(lease_holder(&cluster).as_deref(), Some("pod-a"));
    // The credential went to the cluster's Secret, where any pod finds it.
    assert!(
        cluster
            .get(&["secret", "tether-agent-credential", "-n", "tether-system"])
            .is_some()
    );

    // A second pod stands by: no session of its own, the Lease stays with pod-a. Watched
    // over two lease durations, so a standby that wrongly took over would be seen.
    let b = ElectedAgent::start(&hub, &cluster, dir.path(), "pod-b", (&token, &pin));
    eventually(PATIENCE, "pod-b metrics", || {
        (b.metric("tether_agent_leader") == 0.0).then_some(())
    });
    let watch_until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < watch_until {
        assert_eq!(lease_holder(&cluster).as_deref(), Some("pod-a"));
        assert_eq!(
            b.metric("tether_agent_connected"),
            0.0,
            "a standby opened a session"
        );
        assert_eq!(hub.metric("tether_connected_agents"), 1.0);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        b.proc.log_text().contains("standing by"),
        "{}",
        b.proc.log_text()
    );

    // The leader applies.
    hub.apply_ok("app", APP);
    hub.wait_available("app", "60s");
    let sent_before = hub.metric("tether_desired_sent_total");

    // The leader dies without a word: the standby takes over once the Lease runs out.
    a.proc.signal("KILL");
    let killed = Instant::now();
    eventually(PATIENCE, "pod-b to take the Lease", || {
        (lease_holder(&cluster).as_deref() == Some("pod-b")).then_some(())
    });
    let took_over = killed.elapsed();
    eventually(PATIENCE, "pod-b to hold the session", || {
        (b.metric("tether_agent_connected") == 1.0 && hub.status_of("edge-1") == "Ready")
            .then_some(())
    });
    eprintln!(
        "measured: standby took the Lease {took_over:?} after the leader was killed (lease 3s)"
    );
    // Never two sessions at once, and the new leader resumed from the cluster's cache and
    // credential: nothing was sent again.
    assert_eq!(hub.metric("tether_sessions_superseded_total"), 0.0);
    assert_eq!(hub.metric("tether_desired_sent_total"), sent_before);
    assert!(b.metric("tether_agent_last_hub_contact_timestamp_seconds") > 0.0);

    // A leader that is stopped hands the Lease back: the next pod takes over at once, not
    // after a lease duration.
    let c = ElectedAgent::start(&hub, &cluster, dir.path(), "pod-c", (&token, &pin));
    eventually(PATIENCE, "pod-c to stand by", || {
        (c.metric("tether_agent_leader") == 0.0).then_some(())
    });
    let mut b = b;
    let stopped = Instant::now();
    assert_eq!(b.proc.stop(), 0, "{}", b.proc.log_text());
    eventually(PATIENCE, "pod-c to take the released Lease", || {
        (lease_holder(&cluster).as_deref() == Some("pod-c")).then_some(())
    });
    let handed = stopped.elapsed();
    eprintln!("released Lease taken {handed:?} after the leader stopped");
    assert!(
        b.proc.log_text().contains("released the lease"),
        "{}",
        b.proc.log_text()
    );
    hub.wait_status("edge-1", "Ready", PATIENCE);
    assert_eq!(hub.metric("tether_sessions_superseded_total"), 0.0);
    drop(a);
}

#[test]
fn leader_election_flags_are_checked_before_anything_starts() {
    let out = run(Command::new(bin("tether-agent"))
        .args(["--hub", "localhost:7443", "--kubeconfig", "/nonexistent"])
        .args([
            "--leader-elect",
            "--lease-duration",
            "2s",
            "--lease-renew-deadline",
            "5s",
        ])
        .env_remove("KUBERNETES_SERVICE_HOST"));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--lease-duration must be longer than --lease-renew-deadline"),
        "{}",
        stderr(&out)
    );
    let out = run(Command::new(bin("tether-agent"))
        .args(["--hub", "localhost:7443", "--kubeconfig", "/nonexistent"])
        .args(["--leader-elect", "--lease", "no-slash"])
        .env_remove("KUBERNETES_SERVICE_HOST"));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("invalid --lease"), "{}", stderr(&out));
}

fn hub_cmd(args: &[&str]) -> std::process::Output {
    run(Command::new(bin("tether-hub")).args(args))
}

/// `tether-hub backup --config ADMIN --to FILE` against the running hub.
fn online_backup(hub: &Hub, to: &Path) -> std::process::Output {
    hub_cmd(&[
        "backup",
        "--config",
        hub.admin_config().to_str().unwrap(),
        "--to",
        to.to_str().unwrap(),
    ])
}

/// Stops the hub, deletes its data directory and restores `backup` into it (not started).
fn wipe_and_restore(hub: &mut Hub, backup: &Path) {
    assert_eq!(hub.stop(), 0);
    std::fs::remove_dir_all(&hub.dir).unwrap();
    let restored = hub_cmd(&[
        "restore",
        "--data-dir",
        hub.dir.to_str().unwrap(),
        "--from",
        backup.to_str().unwrap(),
    ]);
    assert!(restored.status.success(), "{}", stderr(&restored));
}

#[test]
fn an_online_backup_restored_into_a_wiped_data_dir_is_the_same_hub_to_its_agents() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = Hub::start(&dir.path().join("hub"), HubOptions::default());
    let cluster = Cluster::start(dir.path(), "edge-1", 1, "v1.33.4");
    let (token, pin) = hub.token("edge-1", &["--labels", "region=eu"]);
    let _agent = Agent::join(&hub, &cluster, &dir.path().join("agent"), &token, &pin);
    hub.wait_status("edge-1", "Ready", PATIENCE);
    hub.apply_ok("app", APP);
    hub.wait_available("app", "60s");

    // Online: the hub keeps serving while the snapshot is read.
    let backup = dir.path().join("hub.backup.tgz");
    let out = online_backup(&hub, &backup);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Backed up"), "{}", stdout(&out));
    let mode = std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the backup holds the CA key");
    // The audit log records who took it.
    let audit = hub.ctl(&["audit", "-o", "json"]);
    assert!(stdout(&audit).contains("Backup"), "{}", stdout(&audit));
    // A viewer may not take one.
    let viewer_cfg = hub.user_config("vera", "viewer");
    let refused = hub_cmd(&[
        "backup",
        "--config",
        viewer_cfg.to_str().unwrap(),
        "--to",
        dir.path().join("nope.tgz").to_str().unwrap(),
    ]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(!dir.path().join("nope.tgz").exists());
    assert!(!dir.path().join("nope.tgz.partial").exists());

    // Offline operations refuse a store the running hub holds.
    let data = hub.dir.to_str().unwrap().to_string();
    let busy = hub_cmd(&["compact", "--data-dir", &data]);
    assert_eq!(busy.status.code(), Some(1));
    assert!(stderr(&busy).contains("in use"), "{}", stderr(&busy));

    // Disaster: the data directory is gone.
    wipe_and_restore(&mut hub, &backup);
    let again = hub_cmd(&[
        "restore",
        "--data-dir",
        &data,
        "--from",
        backup.to_str().unwrap(),
    ]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("--force"), "{}", stderr(&again));
    let compacted = hub_cmd(&["compact", "--data-dir", &data]);
    assert!(compacted.status.success(), "{}", stderr(&compacted));

    hub.serve();
    // Same CA: the agent's certificate is still good; same store: it holds every revision.
    hub.wait_status("edge-1", "Ready", PATIENCE);
    let c = hub.cluster("edge-1").unwrap();
    assert_eq!(c["labels"]["region"], "eu", "{c}");
    hub.wait_available("app", "30s");
    // A few heartbeat rounds later: still nothing re-sent.
    eventually(PATIENCE, "a heartbeat round", || {
        (hub.metric("tether_heartbeats_received_total") >= 3.0).then_some(())
    });
    assert_eq!(
        hub.metric("tether_desired_sent_total"),
        0.0,
        "the restored hub re-sent a workload the agent already held"
    );
    // Store gauges are exported.
    assert!(hub.metric("tether_store_bytes") > 0.0);
}

#[test]
fn a_restore_of_something_that_is_not_a_backup_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.tgz");
    std::fs::write(&junk, b"\x1f\x8b not really gzip").unwrap();
    let target = dir.path().join("data");
    let out = hub_cmd(&[
        "restore",
        "--data-dir",
        target.to_str().unwrap(),
        "--from",
        junk.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("is not a tether-hub backup"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let left: Vec<_> = std::fs::read_dir(&target)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "restore left {left:?}");
}

#[test]
fn init_if_missing_is_idempotent_and_takes_an_existing_ca() {
    let dir = tempfile::tempdir().unwrap();
    // A CA made elsewhere (here: by another hub's init).
    let other = dir.path().join("other");
    assert!(
        hub_cmd(&["init", "--data-dir", other.to_str().unwrap()])
            .status
            .success()
    );
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let first = hub_cmd(&[
        "init",
        "--data-dir",
        d,
        "--if-missing",
        "--ca-cert",
        other.join("ca.crt").to_str().unwrap(),
        "--ca-key",
        other.join("ca.key").to_str().unwrap(),
    ]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(
        std::fs::read_to_string(data.join("ca.crt")).unwrap(),
        std::fs::read_to_string(other.join("ca.crt")).unwrap()
    );
    let key_mode = std::fs::metadata(data.join("ca.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    let admin_before = std::fs::read_to_string(data.join("admin.yaml")).unwrap();
    let second = hub_cmd(&["init", "--data-dir", d, "--if-missing"]);
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(stdout(&second).contains("nothing to do"));
    assert_eq!(
        std::fs::read_to_string(data.join("admin.yaml")).unwrap(),
        admin_before
    );
    let printed = hub_cmd(&["admin-config", "--data-dir", d]);
    assert_eq!(stdout(&printed), admin_before);
    // Without --if-missing an initialised directory is still refused.
    let third = hub_cmd(&["init", "--data-dir", d]);
    assert_eq!(third.status.code(), Some(1));

    // A CA whose key is not its own, or a certificate that is no CA, is refused up front.
    let third_hub = dir.path().join("third");
    assert!(
        hub_cmd(&["init", "--data-dir", third_hub.to_str().unwrap()])
            .status
            .success()
    );
    let pairs = [
        ("ca.crt", third_hub.join("ca.key"), "does not belong"),
        ("hub.crt", other.join("hub.key"), "not a CA"),
    ];
    for (cert, key, words) in pairs {
        let target = dir.path().join(format!("bad-{cert}"));
        let out = hub_cmd(&[
            "init",
            "--data-dir",
            target.to_str().unwrap(),
            "--ca-cert",
            other.join(cert).to_str().unwrap(),
            "--ca-key",
            key.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains(words), "{}", stderr(&out));
        assert!(!target.join("store.redb").exists());
    }
}

#[test]
fn the_air_gapped_bundle_verifies_and_runs_hub_and_agent_offline() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let made = run(Command::new(root().join("deploy/bundle.sh"))
        .args(["--bin-dir", bin_dir().to_str().unwrap()])
        .args(["--out", out_dir.to_str().unwrap()]));
    assert!(made.status.success(), "{}{}", stdout(&made), stderr(&made));
    let tarball = std::fs::read_dir(&out_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .expect("a .tar.gz in the output");

    // Carried in by hand: unpack somewhere else, verify, run.
    let site = dir.path().join("site");
    std::fs::create_dir_all(&site).unwrap();
    let untar = run(Command::new("tar")
        .arg("-xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(&site));
    assert!(untar.status.success(), "{}", stderr(&untar));
    let top = std::fs::read_dir(&site)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let verify = run(Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(&top));
    assert!(
        verify.status.success(),
        "{}{}",
        stdout(&verify),
        stderr(&verify)
    );
    for f in [
        "bin/tether-hub",
        "bin/tether-agent",
        "bin/tetherctl",
        "charts/tether-hub/Chart.yaml",
        "charts/tether-agent/values.schema.json",
        "images/README.md",
        "INSTALL.md",
        "systemd/tether-hub.service",
    ] {
        assert!(top.join(f).exists(), "{f} missing from the bundle");
    }
    // Tampering is caught.
    std::fs::write(
        top.join("charts/tether-hub/values.yaml"),
        "tampered: true\n",
    )
    .unwrap();
    let bad = run(Command::new("sha256sum")
        .args(["-c", "--quiet", "SHA256SUMS"])
        .current_dir(&top));
    assert!(!bad.status.success(), "a changed file passed verification");

    // The bundled binaries run a hub and join an agent with no network beyond loopback.
    let hub_bin = top.join("bin/tether-hub");
    let data = dir.path().join("hubdata");
    let port = free_port();
    let metrics_port = free_port();
    let init = run(Command::new(&hub_bin)
        .args(["init", "--data-dir", data.to_str().unwrap()])
        .args(["--advertise", &format!("127.0.0.1:{port}")])
        .args(["--san", "127.0.0.1"]));
    assert!(init.status.success(), "{}", stderr(&init));
    let _hub = Proc::spawn(
        "bundled hub",
        Command::new(&hub_bin)
            .args(["serve", "--data-dir", data.to_str().unwrap()])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")]),
        dir.path().join("bundled-hub.log"),
    );
    let metrics_addr: std::net::SocketAddr = format!("127.0.0.1:{metrics_port}").parse().unwrap();
    eventually(PATIENCE, "bundled hub /readyz", || {
        (http_get(metrics_addr, "/readyz").0 == 200).then_some(())
    });
    let ctl = |args: &[&str]| {
        run(Command::new(top.join("bin/tetherctl"))
            .arg("--config")
            .arg(data.join("admin.yaml"))
            .args(args))
    };
    let tok = ctl(&["token", "create", "--cluster", "site-1", "-o", "json"]);
    assert!(tok.status.success(), "{}", stderr(&tok));
    let tok: Value = serde_json::from_slice(&tok.stdout).unwrap();
    let cluster = Cluster::start(dir.path(), "site-1", 1, "v1.33.4");
    let _agent = Proc::spawn(
        "bundled agent",
        Command::new(top.join("bin/tether-agent"))
            .args(["--hub", &format!("127.0.0.1:{port}")])
            .arg("--kubeconfig")
            .arg(&cluster.kubeconfig)
            .arg("--state-dir")
            .arg(dir.path().join("agent-state"))
            .args(["--token", tok["token"].as_str().unwrap()])
            .args(["--ca-pin", tok["caPin"].as_str().unwrap()])
            .env_remove("KUBERNETES_SERVICE_HOST"),
        dir.path().join("bundled-agent.log"),
    );
    eventually(
        PATIENCE,
        "site-1 Ready through the bundled binaries",
        || {
            let out = ctl(&["get", "clusters", "-o", "json"]);
            stdout(&out).contains("\"Ready\"").then_some(())
        },
    );
}

#[test]
fn labels_the_agent_asks_for_are_applied_at_join_only_when_the_token_allows_and_the_tokens_win() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(&dir.path().join("hub"), HubOptions::default());
    let cluster = Cluster::start(dir.path(), "edge-1", 1, "v1.33.4");

    // By default a token lets the agent claim no label of its own: labels decide which
    // workloads a cluster receives.
    let (token, pin) = hub.token("edge-1", &["--labels", "region=eu"]);
    let mut refused = Agent::start(
        &hub,
        &cluster,
        &dir.path().join("refused"),
        &[
            "--token",
            &token,
            "--ca-pin",
            &pin,
            "--labels",
            "team=payments",
        ],
    );
    refused.proc.wait_exit(PATIENCE);
    assert!(
        refused.proc.log_text().contains("may not")
            || refused
                .proc
                .log_text()
                .contains("does not let the cluster claim label"),
        "{}",
        refused.proc.log_text()
    );
    assert!(hub.cluster("edge-1").is_none(), "the join must not happen");

    let (token, pin) = hub.token(
        "edge-1",
        &["--labels", "region=eu", "--allow-labels", "site,region"],
    );
    // What the chart's cluster.labels value becomes.
    let _agent = Agent::start(
        &hub,
        &cluster,
        &dir.path().join("agent"),
        &[
            "--token",
            &token,
            "--ca-pin",
            &pin,
            "--labels",
            "site=north,region=us",
        ],
    );
    hub.wait_status("edge-1", "Ready", PATIENCE);
    let c = hub.cluster("edge-1").unwrap();
    assert_eq!(c["labels"]["site"], "north", "{c}");
    assert_eq!(
        c["labels"]["region"], "eu",
        "the token's label must win: {c}"
    );

    let bad = run(Command::new(bin("tether-agent"))
        .args(["--hub", "localhost:7443", "--labels", "Bad Key=v"])
        .env_remove("KUBERNETES_SERVICE_HOST"));
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("--labels"), "{}", stderr(&bad));
}

fn config_workload(value: &str) -> String {
    format!(
        r#"
apiVersion: tether.dev/v1alpha1
kind: Workload
metadata: {{ name: cfg }}
spec:
  manifests:
    - apiVersion: v1
      kind: ConfigMap
      metadata: {{ name: cfg, namespace: default }}
      data: {{ value: "{value}" }}
  placement:
    clusters: [ edge-1 ]
"#
    )
}

fn config_value(cluster: &Cluster) -> Option<String> {
    cluster
        .get(&["configmap", "cfg", "-n", "default"])?
        .pointer("/data/value")
        .and_then(Value::as_str)
        .map(str::to_string)
}

#[test]
fn after_a_restore_an_agent_holding_a_reused_revision_number_still_gets_the_new_copy() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = Hub::start(&dir.path().join("hub"), HubOptions::default());
    let cluster = Cluster::start(dir.path(), "edge-1", 1, "v1.33.4");
    let (token, pin) = hub.token("edge-1", &[]);
    let state = dir.path().join("agent");
    let mut agent = Agent::join(&hub, &cluster, &state, &token, &pin);
    hub.wait_status("edge-1", "Ready", PATIENCE);
    hub.apply_ok("cfg", &config_workload("one")); // revision 1
    hub.wait_available("cfg", "60s");
    let backup = dir.path().join("hub.tgz");
    let out = online_backup(&hub, &backup);
    assert!(out.status.success(), "{}", stderr(&out));
    hub.apply_ok("cfg", &config_workload("two")); // revision 2, after the backup
    eventually(PATIENCE, "revision 2 applied", || {
        (config_value(&cluster).as_deref() == Some("two")).then_some(())
    });

    // The agent is away while the hub is restored and the workload changes again: the
    // restored hub numbers that change 2 as well, with other contents.
    assert_eq!(agent.proc.stop(), 0);
    wipe_and_restore(&mut hub, &backup);
    hub.serve();
    hub.apply_ok("cfg", &config_workload("three"));
    let status = hub.workload_status("cfg").unwrap();
    assert_eq!(
        status["revision"], 2,
        "the restored hub reuses revision 2: {status}"
    );

    // The agent comes back holding "revision 2" = "two"; it must still get "three".
    agent = Agent::start(&hub, &cluster, &state, &[]);
    eventually(
        PATIENCE,
        "the new copy behind the reused revision number",
        || (config_value(&cluster).as_deref() == Some("three")).then_some(()),
    );
    hub.wait_available("cfg", "30s");
    drop(agent);
}
