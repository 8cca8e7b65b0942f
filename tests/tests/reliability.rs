//! Faults and topologies with real processes: through NAT, partitions, hub crashes, agent
//! crashes, reconnect storms, expired credentials and CA rotation.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tether_tests::crashloop::Writes;
use tether_tests::harness::{
    Agent, Cluster, Hub, HubOptions, Proc, bin, eventually, run, stderr, stdout,
};
use tether_tests::netns::{self, Topology};

const PATIENCE: Duration = Duration::from_secs(40);

fn fast_hub() -> HubOptions {
    HubOptions {
        heartbeat_interval: "200ms".into(),
        offline_grace: "1500ms".into(),
        extra: vec!["--resync-interval".into(), "1s".into()],
        ..HubOptions::default()
    }
}

fn configmap_workload(name: &str, cluster_selector: &str, value: &str) -> String {
    format!(
        "apiVersion: tether.dev/v1alpha1\nkind: Workload\nmetadata: {{ name: {name} }}\nspec:\n  manifests:\n    - {{ apiVersion: v1, kind: ConfigMap, metadata: {{ name: {name} }}, data: {{ v: \"{value}\" }} }}\n  placement: {{ clusterSelector: {cluster_selector} }}\n"
    )
}

/// A workload on every cluster labelled `fleet: "yes"`.
fn fleet_workload(name: &str, value: &str) -> String {
    configmap_workload(name, "{ matchLabels: { fleet: \"yes\" } }", value)
}

fn cm_value(c: &Cluster, name: &str) -> Option<String> {
    c.get(&["configmap", name])
        .and_then(|v| v["data"]["v"].as_str().map(str::to_string))
}

#[test]
fn through_nat_an_agent_joins_converges_and_survives_a_partition() {
    if !netns::root_available("through_nat_an_agent_joins_converges_and_survives_a_partition") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let t = Topology::nat();
    let mut hub = Hub::start_in(&dir.path().join("hub"), fast_hub(), &t.hub, netns::HUB_IP);
    let edge = Cluster::start_in(dir.path(), "edge-1", 1, "v1.33.4", "300ms", Some(&t.edge));

    // Something listening on every address of the edge host.
    let mut listener = Command::new("ip");
    listener.args([
        "netns",
        "exec",
        &t.edge,
        "python3",
        "-m",
        "http.server",
        "18080",
        "--bind",
        "0.0.0.0",
    ]);
    let _listener = Proc::spawn(
        "edge listener",
        &mut listener,
        dir.path().join("listener.log"),
    );
    eventually(PATIENCE, "the edge listener", || {
        t.can_connect(&t.edge, "127.0.0.1:18080").then_some(())
    });
    let edge_addr = format!("{}:18080", netns::EDGE_IP);
    assert!(
        !t.can_connect(&t.hub, &edge_addr),
        "the hub host must not be able to reach the edge host"
    );
    assert!(
        t.can_connect(&t.edge, &hub.addr.to_string()),
        "the edge host must reach the hub"
    );

    let (token, pin) = hub.token("edge-1", &["--labels", "site=edge"]);
    let mut agent = Agent::start(
        &hub,
        &edge,
        &dir.path().join("state"),
        &[
            "--token",
            &token,
            "--ca-pin",
            &pin,
            "--resync-interval",
            "500ms",
        ],
    );
    let c = hub.wait_status("edge-1", "Ready", PATIENCE);
    let peer = c["peerAddress"].as_str().unwrap();
    assert!(
        peer.starts_with(&format!("{}:", netns::ROUTER_HUB_SIDE_IP)),
        "the hub sees the router, not the edge: {peer}"
    );

    hub.apply_ok(
        "cfg",
        &configmap_workload("cfg", "{ matchLabels: { site: edge } }", "1"),
    );
    hub.wait_available("cfg", "60s");
    assert_eq!(cm_value(&edge, "cfg").as_deref(), Some("1"));

    // kubectl on the hub's side reaches the cluster behind NAT through the hub.
    let kc = dir.path().join("proxy.kubeconfig");
    assert!(
        hub.ctl(&["kubeconfig", "edge-1", "-o", &kc.display().to_string()])
            .status
            .success()
    );
    let out = run(Command::new("ip")
        .args(["netns", "exec", &t.hub, "kubectl", "--kubeconfig"])
        .arg(&kc)
        .args(["get", "configmap", "cfg", "-o", "jsonpath={.data.v}"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "1");

    // Partition mid-rollout: revision 2 is applied as the link goes down.
    hub.apply_ok(
        "cfg",
        &configmap_workload("cfg", "{ matchLabels: { site: edge } }", "2"),
    );
    t.cut_edge();
    hub.wait_status("edge-1", "Offline", PATIENCE);
    let s = hub.cluster_status("cfg", "edge-1").unwrap();
    assert_eq!(
        s["stale"], true,
        "statuses of an Offline cluster are stale: {s}"
    );

    // Cut off, the agent keeps enforcing what it last heard.
    assert!(
        edge.kubectl(&["delete", "configmap", "cfg"])
            .status
            .success()
    );
    eventually(
        PATIENCE,
        "the agent restores the object while partitioned",
        || cm_value(&edge, "cfg").map(|_| ()),
    );
    hub.apply_ok(
        "cfg",
        &configmap_workload("cfg", "{ matchLabels: { site: edge } }", "3"),
    );

    t.restore_edge();
    hub.wait_status("edge-1", "Ready", PATIENCE);
    eventually(PATIENCE, "the latest revision after the partition", || {
        (cm_value(&edge, "cfg")? == "3").then_some(())
    });
    hub.wait_available("cfg", "60s");
    assert!(agent.proc.exited().is_none());
    hub.stop();
    agent.proc.kill();
}

#[test]
fn hub_crashes_at_random_points_lose_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = Hub::start(&dir.path().join("hub"), fast_hub());
    let mut clusters = Vec::new();
    for name in ["edge-1", "edge-2"] {
        let c = Cluster::start(dir.path(), name, 1, "v1.33.4");
        let (token, pin) = hub.token(name, &["--labels", "fleet=yes"]);
        let a = Agent::join(
            &hub,
            &c,
            &dir.path().join(format!("{name}-state")),
            &token,
            &pin,
        );
        hub.wait_status(name, "Ready", PATIENCE);
        clusters.push((c, a));
    }
    let config = hub.admin_config();
    let yaml_dir = dir.path().join("writes");
    std::fs::create_dir_all(&yaml_dir).unwrap();

    const CRASHES: u32 = 20;
    let mut writes = Writes::new(5, 0x9e3779b97f4a7c15);
    for crash in 0..CRASHES {
        writes.round(&config, &yaml_dir, 6, fleet_workload, || hub.kill());
        hub.serve();
        writes.check(crash, |w| {
            let out = hub.ctl(&["get", "workload", &format!("w{w}"), "-o", "json"]);
            let got: Value = serde_json::from_slice(&out.stdout).ok()?;
            got["spec"]["manifests"][0]["data"]["v"]
                .as_str()?
                .parse()
                .ok()
        });
    }
    eprintln!(
        "measured: crash loop: {CRASHES} kill -9 crashes, {} writes acknowledged, 0 lost",
        writes.acknowledged
    );
    assert!(writes.acknowledged > 0);
    let acked = writes.acked;

    // The agents converge on everything...
    for w in acked.keys() {
        hub.wait_available(&format!("w{w}"), "60s");
    }
    // ...and after one more crash, with nothing changed, nothing is re-sent.
    hub.kill();
    hub.serve();
    for (name, _) in [("edge-1", ()), ("edge-2", ())] {
        hub.wait_status(name, "Ready", PATIENCE);
    }
    for w in acked.keys() {
        hub.wait_available(&format!("w{w}"), "60s");
    }
    assert_eq!(
        hub.metric("tether_desired_sent_total"),
        0.0,
        "unchanged workloads were re-sent after a restart"
    );
    drop(clusters);
}

#[test]
fn an_agent_crash_before_acknowledging_is_made_good() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(&dir.path().join("hub"), fast_hub());
    let c = Cluster::start(dir.path(), "edge-1", 1, "v1.33.4");
    let (token, pin) = hub.token("edge-1", &[]);
    let state = dir.path().join("state");
    let mut agent = Agent::join(&hub, &c, &state, &token, &pin);
    hub.wait_status("edge-1", "Ready", PATIENCE);
    agent.proc.kill();

    // Crash after receiving revision 1 but before saving it: the hub must send it again.
    let flag = dir.path().join("crashed-before-persist");
    let mut crashing = start_crashing_agent(
        &hub,
        &c,
        &state,
        &format!("before-persist:{}", flag.display()),
    );
    hub.wait_status("edge-1", "Ready", PATIENCE);
    hub.apply_ok("cfg", &configmap_workload("cfg", "{}", "1"));
    assert_eq!(crashing.wait_exit(PATIENCE), 137);
    assert!(flag.exists());
    let _agent = Agent::start(&hub, &c, &state, &[]);
    hub.wait_available("cfg", "30s");
    assert_eq!(cm_value(&c, "cfg").as_deref(), Some("1"));
    assert_eq!(
        hub.metric("tether_desired_sent_total"),
        2.0,
        "revision 1 must be re-delivered after the crash"
    );
    drop(_agent);
    hub.wait_status("edge-1", "Offline", PATIENCE);

    // Crash after saving revision 2 but before acknowledging: the agent's Hello already holds
    // it, so the hub need not send it again, and the agent applies it from its cache.
    let flag2 = dir.path().join("crashed-after-persist");
    let mut crashing = start_crashing_agent(
        &hub,
        &c,
        &state,
        &format!("after-persist:{}", flag2.display()),
    );
    hub.wait_status("edge-1", "Ready", PATIENCE);
    let sent = hub.metric("tether_desired_sent_total");
    hub.apply_ok("cfg", &configmap_workload("cfg", "{}", "2"));
    assert_eq!(crashing.wait_exit(PATIENCE), 137);
    assert!(flag2.exists());
    let _agent = Agent::start(&hub, &c, &state, &[]);
    eventually(PATIENCE, "revision 2 applied", || {
        (cm_value(&c, "cfg")? == "2").then_some(())
    });
    hub.wait_available("cfg", "30s");
    assert_eq!(
        hub.metric("tether_desired_sent_total"),
        sent + 1.0,
        "a saved revision is not sent twice"
    );
}

fn start_crashing_agent(hub: &Hub, c: &Cluster, state: &Path, spec: &str) -> Proc {
    let mut cmd = Command::new(bin("tether-agent"));
    cmd.args(["--hub", &hub.addr.to_string()])
        .arg("--kubeconfig")
        .arg(&c.kubeconfig)
        .arg("--state-dir")
        .arg(state)
        .args([
            "--reconnect-max-delay",
            "2s",
            "--progress-interval",
            "200ms",
        ])
        .env("TETHER_TEST_CRASH_ONCE", spec)
        .env_remove("KUBERNETES_SERVICE_HOST");
    Proc::spawn(
        "crashing agent",
        &mut cmd,
        state.with_extension("crashing.log"),
    )
}

#[test]
fn a_reconnect_storm_after_a_hub_restart_is_spread_by_jitter() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = Hub::start(&dir.path().join("hub"), fast_hub());
    let c = Cluster::start(dir.path(), "shared", 1, "v1.33.4");
    const AGENTS: usize = 24;
    let mut agents = Vec::new();
    for i in 0..AGENTS {
        let name = format!("edge-{i}");
        let (token, pin) = hub.token(&name, &[]);
        agents.push(Agent::join(
            &hub,
            &c,
            &dir.path().join(format!("{name}-state")),
            &token,
            &pin,
        ));
    }
    eventually(PATIENCE, "every agent Ready", || {
        let list = hub.ctl_json(&["cluster", "list"]);
        (list
            .as_array()?
            .iter()
            .filter(|c| c["status"] == "Ready")
            .count()
            == AGENTS)
            .then_some(())
    });

    let restarted = Instant::now();
    hub.stop();
    // Down long enough that every agent has failed to reconnect twice, as in any real
    // outage: each is then in its third, widest backoff window ([1 s, 2 s] with equal jitter).
    // Restarting faster would measure the hub's own start-up (connections queue while it
    // comes up and are served together), not the agents' jitter.
    eventually(PATIENCE, "every agent retrying", || {
        agents
            .iter()
            .all(|a| a.proc.log_text().matches("reconnecting in").count() >= 3)
            .then_some(())
    });
    hub.serve();
    eventually(PATIENCE, "every agent back", || {
        let list = hub.ctl_json(&["cluster", "list"]);
        (list
            .as_array()?
            .iter()
            .filter(|c| c["status"] == "Ready")
            .count()
            == AGENTS)
            .then_some(())
    });
    let back = restarted.elapsed();
    // When did each session start, by the new hub's log?
    let log = hub.log_text();
    let mut times: Vec<f64> = log
        .lines()
        .filter(|l| l.contains("agent connected"))
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|ts| humantime::parse_rfc3339(ts).ok())
        .map(|t| {
            t.duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64()
        })
        .collect();
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(times.len(), AGENTS, "{log}");
    let spread = times[AGENTS - 1] - times[0];
    let buckets: std::collections::BTreeSet<i64> =
        times.iter().map(|t| (t * 10.0) as i64).collect();
    eprintln!(
        "measured: reconnect storm: {AGENTS} agents back {back:?} after the restart; arrivals spread over {:.0} ms in {} distinct 100 ms slots",
        spread * 1000.0,
        buckets.len()
    );
    // Without jitter they would all retry after the same delay and arrive together.
    assert!(
        spread > 0.15,
        "arrivals bunched within {:.0} ms",
        spread * 1000.0
    );
    assert!(
        buckets.len() >= 3,
        "arrivals in only {} 100 ms slots",
        buckets.len()
    );
    drop(agents);
}

#[test]
fn an_agent_offline_past_its_certificate_expiry_rejoins_with_a_new_token() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(
        &dir.path().join("hub"),
        HubOptions {
            cert_lifetime: "3s".into(),
            ..fast_hub()
        },
    );
    let c = Cluster::start(dir.path(), "edge-1", 1, "v1.33.4");
    let (token, pin) = hub.token("edge-1", &[]);
    let state = dir.path().join("state");
    let mut agent = Agent::join(&hub, &c, &state, &token, &pin);
    hub.wait_status("edge-1", "Ready", PATIENCE);
    agent.proc.kill();
    let cred: Value =
        serde_json::from_slice(&std::fs::read(state.join("credential.json")).unwrap()).unwrap();
    let not_after = cred["notAfterUnix"].as_i64().unwrap();
    eventually(PATIENCE, "the certificate to expire", || {
        (tether_common::time::unix_now() > not_after).then_some(())
    });

    let out = run(Command::new(bin("tether-agent"))
        .args(["--hub", &hub.addr.to_string()])
        .arg("--kubeconfig")
        .arg(&c.kubeconfig)
        .arg("--state-dir")
        .arg(&state));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("expired") && stderr(&out).contains("--token"),
        "{}",
        stderr(&out)
    );

    // The documented way back: a new token for the same cluster.
    let (token2, _) = hub.token("edge-1", &[]);
    let _agent = Agent::start(&hub, &c, &state, &["--token", &token2, "--ca-pin", &pin]);
    hub.wait_status("edge-1", "Ready", PATIENCE);
}

#[test]
fn a_ca_rotation_keeps_agents_connected_and_retires_the_old_ca() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = Hub::start(&dir.path().join("hub"), fast_hub());
    let c = Cluster::start(dir.path(), "edge-1", 1, "v1.33.4");
    let (token, old_pin) = hub.token("edge-1", &[]);
    let state = dir.path().join("state");
    let _agent = Agent::join(&hub, &c, &state, &token, &old_pin);
    hub.wait_status("edge-1", "Ready", PATIENCE);
    let old_credential = std::fs::read(state.join("credential.json")).unwrap();

    hub.stop();
    let data = hub.dir.display().to_string();
    let out = run(Command::new(bin("tether-hub")).args(["ca", "rotate", "--data-dir", &data]));
    assert!(out.status.success(), "{}", stderr(&out));
    let new_pin = tether_common::pki::spki_pin(
        &tether_common::pki::first_cert_der(
            &std::fs::read_to_string(hub.dir.join("ca.crt")).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_ne!(new_pin, old_pin);
    let again = run(Command::new(bin("tether-hub")).args(["ca", "rotate", "--data-dir", &data]));
    assert_eq!(
        again.status.code(),
        Some(1),
        "a second rotation must wait for the first"
    );

    hub.serve();
    // The agent reconnects with its old-CA certificate and is told to renew at once.
    eventually(PATIENCE, "the agent renewed onto the new CA", || {
        hub.cluster("edge-1")
            .filter(|c| c["certIssuer"] == new_pin.as_str() && c["status"] == "Ready")
    });
    // Joins during the rotation still pin the CA that serves (the old one).
    let c2 = Cluster::start(dir.path(), "edge-2", 1, "v1.33.4");
    let (token2, pin2) = hub.token("edge-2", &[]);
    assert_eq!(pin2, old_pin);
    let _agent2 = Agent::join(&hub, &c2, &dir.path().join("state2"), &token2, &pin2);
    hub.wait_status("edge-2", "Ready", PATIENCE);

    hub.stop();
    let out = run(Command::new(bin("tether-hub")).args(["ca", "finish", "--data-dir", &data]));
    assert!(out.status.success(), "{}", stderr(&out));
    hub.serve();
    hub.wait_status("edge-1", "Ready", PATIENCE);
    hub.wait_status("edge-2", "Ready", PATIENCE);
    assert!(
        hub.ctl(&["cluster", "list"]).status.success(),
        "the admin credential survives the rotation"
    );
    let (_, pin_after) = hub.token("edge-3", &[]);
    assert_eq!(pin_after, new_pin, "after finishing, joins pin the new CA");

    // A credential from before the rotation no longer gets in.
    let stale = dir.path().join("stale");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("credential.json"), old_credential).unwrap();
    let out = run(Command::new(bin("tether-agent"))
        .args(["--hub", &hub.addr.to_string()])
        .arg("--kubeconfig")
        .arg(&c.kubeconfig)
        .arg("--state-dir")
        .arg(&stale));
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stderr(&out).contains("re-join"), "{}", stderr(&out));
}
