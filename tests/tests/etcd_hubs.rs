//! Hubs on etcd: a real 3-member etcd cluster (mTLS), real hub, agent and emulator
//! processes. One hub serves and the others stand by; these tests kill hubs and etcd members
//! and check what users and agents see: nothing acknowledged lost, nothing unchanged sent
//! again, writes refused clearly while etcd has no majority, reads answered meanwhile.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tether_hub::store::{Batch, Contents, EtcdConfig, EtcdStore, Store, Tree};
use tether_tests::crashloop::Writes;
use tether_tests::etcd::{self, EtcdCluster};
use tether_tests::harness::{
    self, Agent, Cluster, Hub, HubOptions, HubSpec, bin, eventually, run, stderr, stdout,
};
use tether_tests::netns;

const PATIENCE: Duration = Duration::from_secs(30);

/// A member cluster (emulated, copies ready after `ready_after`) whose agent was given every
/// hub's address and joined through the serving hub `hubs[0]` with `labels`.
fn member(
    dir: &Path,
    hubs: &[Hub],
    name: &str,
    labels: &str,
    ready_after: &str,
) -> (Cluster, Agent) {
    let cluster = Cluster::start_with(dir, name, 1, "v1.33.4", ready_after);
    let extra: Vec<&str> = if labels.is_empty() {
        vec![]
    } else {
        vec!["--labels", labels]
    };
    let (token, pin) = hubs[0].token(name, &extra);
    let agent = Agent::start_to(
        &Hub::addresses(hubs),
        &cluster,
        &dir.join(format!("agent-{name}")),
        &["--token", &token, "--ca-pin", &pin],
        "info",
    );
    hubs[0].wait_status(name, "Ready", PATIENCE);
    (cluster, agent)
}

fn workload(name: &str, value: &str) -> String {
    format!(
        r#"
apiVersion: tether.dev/v1alpha1
kind: Workload
metadata: {{ name: {name} }}
spec:
  manifests:
    - apiVersion: v1
      kind: ConfigMap
      metadata: {{ name: {name}, namespace: default }}
      data: {{ value: "{value}" }}
  placement:
    clusterSelector: {{}}
"#
    )
}

/// Hub settings for these tests: a 3 s lease and 2 s etcd calls, so faults show quickly.
fn options() -> HubOptions {
    options_with_lease("3s")
}

fn options_with_lease(ttl: &str) -> HubOptions {
    HubOptions {
        extra: vec![
            "--etcd-lease-ttl".into(),
            ttl.into(),
            "--etcd-request-timeout".into(),
            "2s".into(),
        ],
        ..HubOptions::default()
    }
}

/// The workloads a hub lists, by name, with their revisions.
fn revisions(hub: &Hub) -> Vec<(String, u64)> {
    let v = hub.ctl_json(&["get", "workloads"]);
    let items = v["items"]
        .as_array()
        .or(v.as_array())
        .cloned()
        .unwrap_or_default();
    let mut out: Vec<(String, u64)> = items
        .iter()
        .map(|w| {
            (
                w["name"].as_str().unwrap_or_default().to_string(),
                w["revision"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    out.sort();
    out
}

fn configmap_value(cluster: &Cluster, name: &str) -> Option<String> {
    cluster
        .get(&["configmap", name, "-n", "default"])
        .and_then(|cm| cm["data"]["value"].as_str().map(str::to_string))
}

#[test]
fn a_standby_hub_takes_over_from_a_killed_one_and_its_agents_follow_with_nothing_lost_or_resent() {
    let test = "a_standby_hub_takes_over_from_a_killed_one";
    let Some(binary) = etcd::require(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdCluster::start(&binary, &dir.path().join("etcd"), 3);
    let mut hubs = Hub::etcd_group(
        &dir.path().join("hubs"),
        2,
        &etcd.hub_flags("/tether"),
        options(),
    );
    assert!(!hubs[1].serving(), "two hubs serve");
    let (clusters, agents): (Vec<Cluster>, Vec<Agent>) = ["edge-1", "edge-2"]
        .iter()
        .map(|name| member(dir.path(), &hubs, name, "", "300ms"))
        .unzip();
    for (i, name) in ["web", "api", "jobs"].iter().enumerate() {
        hubs[0].apply_ok(name, &workload(name, &format!("v{i}")));
        hubs[0].wait_available(name, "60s");
    }
    let acknowledged = revisions(&hubs[0]);
    assert_eq!(acknowledged.len(), 3);
    // The standby's copy is as current as what the serving hub wrote.
    eventually(PATIENCE, "the standby's copy to be current", || {
        let written = hubs[0].metric("tether_etcd_revision");
        (written > 0.0 && hubs[1].metric("tether_etcd_revision") >= written).then_some(())
    });

    // kill -9 of the serving hub: the standby takes the lease once it ends, and the agents,
    // which list both hubs, reconnect to it.
    let killed = Instant::now();
    hubs[0].kill();
    eventually(Duration::from_secs(20), "the standby to serve", || {
        hubs[1].serving().then_some(())
    });
    let took_over = killed.elapsed();
    for name in ["edge-1", "edge-2"] {
        hubs[1].wait_status(name, "Ready", PATIENCE);
    }
    let reconnected = killed.elapsed();
    eprintln!(
        "hub killed -> standby serving: {:.1}s; -> last agent reconnected: {:.1}s",
        took_over.as_secs_f64(),
        reconnected.as_secs_f64()
    );
    assert_eq!(hubs[1].metric("tether_connected_agents"), 2.0);
    assert_eq!(hubs[1].metric("tether_hub_serving"), 1.0);
    // It served from the copy its watch kept while it stood by, not from a new read of
    // every record.
    assert_eq!(hubs[1].metric("tether_etcd_warm_takeovers"), 1.0);
    assert_eq!(hubs[1].metric("tether_etcd_loads"), 1.0);

    // Every acknowledged write is there; nothing the agents already hold was sent again.
    assert_eq!(revisions(&hubs[1]), acknowledged);
    for name in ["web", "api", "jobs"] {
        hubs[1].wait_available(name, "30s");
    }
    assert_eq!(hubs[1].metric("tether_desired_sent_total"), 0.0);

    // tetherctl given both hubs reaches whichever serves.
    let both = Hub::config_listing(&hubs, &dir.path().join("both.yaml"));
    let out = run(Command::new(bin("tetherctl"))
        .arg("--config")
        .arg(&both)
        .args(["get", "workloads"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("jobs"), "{}", stdout(&out));

    // The new hub serves writes, and they reach both clusters: one copy each.
    hubs[1].apply_ok("web", &workload("web", "changed"));
    for c in &clusters {
        eventually(PATIENCE, "the change on the member", || {
            (configmap_value(c, "web").as_deref() == Some("changed")).then_some(())
        });
    }
    assert_eq!(hubs[1].metric("tether_desired_sent_total"), 2.0);

    // The killed hub comes back as a standby: it serves nothing while the other holds the
    // lease, and the agents stay where they are.
    hubs[0].serve_standby();
    assert_eq!(hubs[0].metric("tether_connected_agents"), 0.0);
    assert_eq!(hubs[0].metric("tether_hub_serving"), 0.0);
    assert_eq!(hubs[1].metric("tether_connected_agents"), 2.0);
    drop(agents);
}

#[test]
fn a_hub_that_does_not_serve_relays_agents_tetherctl_and_kubectl_to_the_one_that_does() {
    let test = "a_hub_that_does_not_serve_relays";
    let Some(binary) = etcd::require(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdCluster::start(&binary, &dir.path().join("etcd"), 3);
    let mut hubs = Hub::etcd_group(
        &dir.path().join("hubs"),
        3,
        &etcd.hub_flags("/tether"),
        options(),
    );
    // hubs[0] serves. hubs[2] does not, and it is all that the agent, tetherctl and kubectl
    // are told about: as behind one Service address that picked it.
    let front = &hubs[2];
    eventually(PATIENCE, "the standby to be ready to relay", || {
        (front.readyz() == 200).then_some(())
    });
    assert!(hubs[0].serving() && !front.serving());
    let cluster = Cluster::start_with(dir.path(), "edge-1", 1, "v1.33.4", "300ms");
    let (token, pin) = front.token("edge-1", &[]);
    let agent = Agent::start_to(
        &front.addr.to_string(),
        &cluster,
        &dir.path().join("agent-edge-1"),
        &["--token", &token, "--ca-pin", &pin],
        "info",
    );
    front.wait_status("edge-1", "Ready", PATIENCE);
    front.apply_ok("web", &workload("web", "1"));
    eventually(PATIENCE, "the workload on the member", || {
        (configmap_value(&cluster, "web").as_deref() == Some("1")).then_some(())
    });
    // The session lives on the serving hub. The standby terminated the agent's connection
    // (its handshake, its TLS) and forwards its requests there.
    assert_eq!(hubs[0].metric("tether_connected_agents"), 1.0);
    assert_eq!(front.metric("tether_connected_agents"), 0.0);
    assert_eq!(front.metric("tether_forwarded_agents"), 1.0);
    assert!(hubs[0].metric("tether_forwarded_requests") >= 1.0);

    // kubectl through the standby reaches the member's API through the serving hub.
    let kubeconfig = dir.path().join("edge-1.kubeconfig");
    let out = front.ctl(&[
        "kubeconfig",
        "edge-1",
        "-o",
        &kubeconfig.display().to_string(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args([
            "get",
            "configmap",
            "web",
            "-n",
            "default",
            "-o",
            "jsonpath={.data.value}",
        ]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "1");

    // The serving hub dies: another takes over, and the agent, which knows only the front
    // hub, is back through it — relayed, or served there if the front hub took the lease.
    hubs[0].kill();
    let next = eventually(Duration::from_secs(20), "another hub to serve", || {
        (1..3).find(|i| hubs[*i].serving())
    });
    eventually(PATIENCE, "the agent back on the serving hub", || {
        (hubs[next].metric("tether_connected_agents") == 1.0).then_some(())
    });
    let front = &hubs[2];
    front.apply_ok("web", &workload("web", "2"));
    eventually(PATIENCE, "the change on the member", || {
        (configmap_value(&cluster, "web").as_deref() == Some("2")).then_some(())
    });
    assert_eq!(hubs[3 - next].metric("tether_connected_agents"), 0.0);
    // Through the takeover the agent's connection waited on the front hub for a serving hub
    // (or for the front hub itself to serve) instead of being dropped.
    assert_eq!(
        front.metric("tether_relay_failures_total"),
        0.0,
        "{}",
        front.log_text()
    );
    drop(agent);
}

#[test]
fn a_connection_held_through_a_takeover_is_served_by_the_hub_that_held_it_when_it_takes_over() {
    let test = "a_connection_held_through_a_takeover";
    let Some(binary) = etcd::require(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdCluster::start(&binary, &dir.path().join("etcd"), 3);
    // A 6 s lease: the standby takes over 4-6 s after the kill, well within the 15 s a
    // connection is held.
    let mut hubs = Hub::etcd_group(
        &dir.path().join("hubs"),
        2,
        &etcd.hub_flags("/tether"),
        options_with_lease("6s"),
    );
    eventually(PATIENCE, "the standby to be ready to relay", || {
        (hubs[1].readyz() == 200).then_some(())
    });
    assert!(hubs[0].serving() && !hubs[1].serving());
    let cluster = Cluster::start_with(dir.path(), "edge-1", 1, "v1.33.4", "300ms");
    let (token, pin) = hubs[1].token("edge-1", &[]);
    let agent = Agent::start_to(
        &hubs[1].addr.to_string(),
        &cluster,
        &dir.path().join("agent-edge-1"),
        &["--token", &token, "--ca-pin", &pin],
        "info",
    );
    hubs[1].wait_status("edge-1", "Ready", PATIENCE);
    assert_eq!(hubs[0].metric("tether_connected_agents"), 1.0);
    assert_eq!(hubs[1].metric("tether_forwarded_agents"), 1.0);

    // The serving hub dies. A tetherctl call to the standby, the only hub left to take the
    // lease, waits there: once the standby serves, it serves that connection itself.
    hubs[0].kill();
    let held = hubs[1]
        .ctl_command(&["get", "clusters", "-o", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    eventually(Duration::from_secs(20), "the standby to serve", || {
        hubs[1].serving().then_some(())
    });
    let out = held.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("edge-1"), "{}", stdout(&out));
    let front = &hubs[1];
    assert!(
        front.metric("tether_relay_served_here_total") >= 1.0,
        "the held connection was not served by the hub that held it: {}",
        front.log_text()
    );
    // Not relayed to its own port (a relay inside the hub, two more TLS handshakes), and
    // not dropped.
    assert_eq!(front.metric("tether_relayed_connections"), 0.0);
    assert_eq!(
        front.metric("tether_relay_failures_total"),
        0.0,
        "{}",
        front.log_text()
    );
    // The agent's new connection, terminated there while no hub served, is answered there
    // now that it serves.
    eventually(PATIENCE, "the agent back on the new serving hub", || {
        (front.metric("tether_connected_agents") == 1.0
            && front.metric("tether_forwarded_agents") == 1.0
            && front.metric("tether_forwarded_requests") >= 1.0)
            .then_some(())
    });
    front.apply_ok("web", &workload("web", "1"));
    eventually(PATIENCE, "the workload on the member", || {
        (configmap_value(&cluster, "web").as_deref() == Some("1")).then_some(())
    });
    drop(agent);
}

#[test]
fn an_agent_a_standby_forwards_is_removed_and_refused_as_one_served_directly() {
    let test = "an_agent_a_standby_forwards_is_removed";
    let Some(binary) = etcd::require(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdCluster::start(&binary, &dir.path().join("etcd"), 3);
    let hubs = Hub::etcd_group(
        &dir.path().join("hubs"),
        2,
        &etcd.hub_flags("/tether"),
        options(),
    );
    eventually(PATIENCE, "the standby to be ready", || {
        (hubs[1].readyz() == 200).then_some(())
    });
    let front = &hubs[1];
    let cluster = Cluster::start_with(dir.path(), "edge-1", 1, "v1.33.4", "300ms");
    let (token, pin) = front.token("edge-1", &[]);
    let state = dir.path().join("agent-edge-1");
    let mut agent = Agent::start_to(
        &front.addr.to_string(),
        &cluster,
        &state,
        &["--token", &token, "--ca-pin", &pin],
        "info",
    );
    front.wait_status("edge-1", "Ready", PATIENCE);
    assert_eq!(front.metric("tether_forwarded_agents"), 1.0);

    // Removed: the serving hub's goodbye reaches the agent through the standby, and the
    // forwarded session ends on both hubs.
    let out = front.ctl(&["cluster", "remove", "edge-1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(agent.proc.wait_exit(PATIENCE), 1);
    let log = agent.proc.log_text();
    assert!(log.contains("was removed from the hub"), "{log}");
    eventually(
        PATIENCE,
        "the forwarded session gone from both hubs",
        || {
            (hubs[0].metric("tether_forwarded_requests") == 0.0
                && hubs[0].metric("tether_connected_agents") == 0.0
                && front.metric("tether_forwarded_agents") == 0.0)
                .then_some(())
        },
    );
    // Its certificate is refused through the standby too, and the agent stops instead of
    // retrying (the certificate is too new for the standby's copy to judge, so the serving
    // hub refuses it).
    let mut again = Agent::start_to(&front.addr.to_string(), &cluster, &state, &[], "info");
    assert_eq!(again.proc.wait_exit(PATIENCE), 1);
    let log = again.proc.log_text();
    assert!(log.contains("refused this agent's certificate"), "{log}");
}

/// `connected_agents` of a hub, asked from the root namespace (-1 when it does not answer).
fn sessions(hub: &Hub) -> f64 {
    let (code, text) = harness::http_get(hub.metrics, "/metrics");
    if code != 200 {
        return -1.0;
    }
    harness::metric(&text, "tether_connected_agents")
}

#[test]
fn a_hub_cut_off_from_etcd_stops_serving_within_its_lease_and_its_agents_move() {
    let test = "a_hub_cut_off_from_etcd_stops_serving_within_its_lease";
    if !netns::root_available(test) {
        return;
    }
    let Some(binary) = etcd::require(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Hub A in a namespace of its own (etcd reached over a veth pair), hub B on the host's
    // end of the pair (so A can relay to it once healed).
    let pair = netns::Pair::up();
    let etcd = EtcdCluster::start_with(&binary, &dir.path().join("etcd"), 3, Some(&pair.host_ip));
    let specs = [
        HubSpec {
            netns: Some(pair.ns.clone()),
            ip: pair.ns_ip.clone(),
            etcd_flags: etcd.hub_flags_on("/tether", &pair.host_ip),
        },
        HubSpec {
            netns: None,
            ip: pair.host_ip.clone(),
            etcd_flags: etcd.hub_flags("/tether"),
        },
    ];
    let hubs = Hub::etcd_group_with(&dir.path().join("hubs"), &specs, options());
    let members: Vec<(Cluster, Agent)> = ["edge-1", "edge-2"]
        .iter()
        .map(|name| member(dir.path(), &hubs, name, "", "300ms"))
        .collect();
    hubs[0].apply_ok("web", &workload("web", "1"));
    hubs[0].wait_available("web", "60s");
    assert_eq!(sessions(&hubs[0]), 2.0);

    // Every session on either hub, sampled B first: a sample where B already holds a
    // cluster's session and A still does is a real overlap.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (a, b) = (hubs[0].metrics, hubs[1].metrics);
    let watcher = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let read = |addr| {
                let (code, text) = harness::http_get(addr, "/metrics");
                if code == 200 {
                    harness::metric(&text, "tether_connected_agents")
                } else {
                    0.0
                }
            };
            let mut samples = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let on_b = read(b);
                let on_a = read(a);
                samples.push((on_a, on_b));
            }
            samples
        })
    };

    // Cut A off from etcd, and only from etcd: agents still reach it.
    let cut = Instant::now();
    pair.cut(&etcd.client_ports());
    eventually(Duration::from_secs(15), "hub A to stop serving", || {
        (harness::http_get(a, "/readyz").0 == 503 && sessions(&hubs[0]) == 0.0).then_some(())
    });
    let stopped = cut.elapsed();
    eventually(PATIENCE, "both agents on hub B", || {
        (sessions(&hubs[1]) == 2.0).then_some(())
    });
    let moved = cut.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let samples = watcher.join().unwrap();
    eprintln!(
        "hub cut off from etcd -> stopped serving: {:.1}s; -> both agents on the other hub: {:.1}s ({} samples)",
        stopped.as_secs_f64(),
        moved.as_secs_f64(),
        samples.len()
    );
    // A 3 s lease: A stops within it (plus a renewal's timeout and a probe's poll).
    assert!(
        stopped < Duration::from_secs(8),
        "hub A served on for {stopped:?}"
    );
    let overlap: Vec<_> = samples.iter().filter(|(x, y)| x + y > 2.0).collect();
    assert!(
        overlap.is_empty(),
        "two sessions for one cluster at once: {overlap:?}"
    );
    assert!(
        samples.iter().any(|(x, _)| *x == 2.0),
        "the watcher never saw A's sessions"
    );
    assert!(
        samples.iter().any(|(_, y)| *y == 2.0),
        "the watcher never saw B's sessions"
    );

    // Cut off, A still answers reads from what it knew, and refuses writes.
    let out = hubs[0].ctl(&["get", "workloads"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("web"));
    assert!(!hubs[0].apply("web", &workload("web", "2")).status.success());
    // B serves, with everything A acknowledged.
    hubs[1].apply_ok("web", &workload("web", "3"));
    for (cluster, _) in &members {
        eventually(PATIENCE, "the change on the member", || {
            (configmap_value(cluster, "web").as_deref() == Some("3")).then_some(())
        });
    }

    // Healed, A stands by: B keeps the lease and the agents, and A relays what reaches it to
    // B, so tetherctl pointed at A alone writes again.
    pair.heal();
    eventually(PATIENCE, "hub A to stand by", || {
        hubs[0]
            .log_text()
            .contains("another hub serves this etcd prefix")
            .then_some(())
    });
    eventually(PATIENCE, "hub A to be ready to relay", || {
        (harness::http_get(a, "/readyz").0 == 200).then_some(())
    });
    hubs[0].apply_ok("web", &workload("web", "4"));
    for (cluster, _) in &members {
        eventually(PATIENCE, "the change made through A on the member", || {
            (configmap_value(cluster, "web").as_deref() == Some("4")).then_some(())
        });
    }
    assert_eq!(sessions(&hubs[1]), 2.0);
    assert_eq!(sessions(&hubs[0]), 0.0);
}

fn deployment(image: &str) -> String {
    format!(
        "apiVersion: tether.dev/v1alpha1\nkind: Workload\nmetadata: {{ name: web }}\nspec:\n  manifests:\n    - apiVersion: apps/v1\n      kind: Deployment\n      metadata: {{ name: web }}\n      spec: {{ replicas: 1, selector: {{ matchLabels: {{ app: web }} }}, template: {{ metadata: {{ labels: {{ app: web }} }}, spec: {{ containers: [ {{ name: web, image: \"{image}\" }} ] }} }} }}\n  placement: {{ clusterSelector: {{}} }}\n  rollout:\n    maxUnavailable: 1\n    waves: [ {{ clusterSelector: {{ matchLabels: {{ ring: a }} }} }}, {{ clusterSelector: {{ matchLabels: {{ ring: b }} }} }} ]\n"
    )
}

/// The messages of `reason` events of `web`, as the serving hub lists them.
fn events(hub: &Hub, reason: &str) -> Vec<String> {
    hub.ctl_json(&["events", "--workload", "web"])
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|e| e["reason"] == reason)
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn a_staged_rollout_goes_on_from_where_it_stopped_when_its_hub_is_killed() {
    let test = "a_staged_rollout_goes_on_from_where_it_stopped";
    let Some(binary) = etcd::require(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdCluster::start(&binary, &dir.path().join("etcd"), 3);
    let mut hubs = Hub::etcd_group(
        &dir.path().join("hubs"),
        2,
        &etcd.hub_flags("/tether"),
        options(),
    );
    // Each copy becomes Available 3 s after it changes: a wave takes that long.
    let members: Vec<(Cluster, Agent)> = [("ring-a", "a"), ("ring-b", "b"), ("ring-c", "c")]
        .iter()
        .map(|(name, ring)| member(dir.path(), &hubs, name, &format!("ring={ring}"), "3s"))
        .collect();
    hubs[0].apply_ok("web", &deployment("web:1"));
    hubs[0].wait_available("web", "60s");

    // Revision 2, wave by wave; the serving hub dies once the first wave is done.
    hubs[0].apply_ok("web", &deployment("web:2"));
    eventually(
        Duration::from_secs(60),
        "wave 2 of revision 2 to start",
        || {
            events(&hubs[0], "WaveStarted")
                .iter()
                .any(|m| m.contains("revision 2: wave 2 of 3"))
                .then_some(())
        },
    );
    hubs[0].kill();
    eventually(Duration::from_secs(20), "the standby to serve", || {
        hubs[1].serving().then_some(())
    });
    hubs[1].wait_available("web", "90s");

    // Every cluster runs revision 2; each wave started once, and the rollout completed once.
    for (cluster, _) in &members {
        let d = cluster.get(&["deployment", "web"]).unwrap();
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["image"],
            "web:2"
        );
    }
    let started = events(&hubs[1], "WaveStarted");
    for wave in 1..=3 {
        let n = started
            .iter()
            .filter(|m| m.contains(&format!("revision 2: wave {wave} of 3")))
            .count();
        assert_eq!(n, 1, "wave {wave} started {n} times: {started:#?}");
    }
    // Completed is decided by the pass after the last report.
    eventually(PATIENCE, "revision 2 to complete", || {
        let completed = events(&hubs[1], "Completed");
        (completed
            .iter()
            .filter(|m| m.contains("revision 2 "))
            .count()
            == 1)
            .then_some(())
    });
    // The new hub sent revision 2 only to clusters of the waves it ran itself: the first
    // wave's cluster already held it.
    let sent = hubs[1].metric("tether_desired_sent_total");
    assert!(
        (1.0..=2.0).contains(&sent),
        "the standby sent {sent} copies"
    );
}

#[test]
fn etcd_losing_its_majority_refuses_writes_keeps_reads_and_loses_nothing() {
    let test = "etcd_losing_its_majority";
    let Some(binary) = etcd::require(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = EtcdCluster::start(&binary, &dir.path().join("etcd"), 3);
    // A lease that outlasts etcd electing a new leader (about 1-2 s) with room to spare, as
    // the 10 s default does: losing one member must not cost the hub its lease.
    let mut hubs = Hub::etcd_group(
        &dir.path().join("hubs"),
        1,
        &etcd.hub_flags("/tether"),
        options_with_lease("5s"),
    );
    let hub = &mut hubs[0];
    hub.apply_ok("one", &workload("one", "1"));

    // One member down (the hub's first endpoint; perhaps etcd's leader): a majority is
    // left, and the next write goes through without the user doing anything.
    etcd.kill_member(0);
    hub.apply_ok("two", &workload("two", "2"));

    // Two down: no majority. Writes are refused, saying why; reads answer from the last
    // known state; the hub is not ready.
    etcd.kill_member(1);
    let out = hub.apply("three", &workload("three", "3"));
    assert!(
        !out.status.success(),
        "a write without an etcd majority succeeded"
    );
    let err = stderr(&out);
    assert!(err.contains("etcd"), "the refusal does not say why: {err}");
    assert_eq!(
        err.trim().lines().count(),
        1,
        "one line, not a trace: {err}"
    );
    let names: Vec<String> = revisions(hub).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["one", "two"]);
    eventually(PATIENCE, "the hub to report not ready", || {
        (hub.readyz() == 503).then_some(())
    });

    // A hub (re)started while etcd cannot answer stands by, alive and not ready, instead of
    // exiting into a restart loop.
    hub.kill();
    hub.serve_standby();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        assert_eq!(
            hub.proc.as_mut().and_then(|p| p.exited()),
            None,
            "a hub started without etcd exited: {}",
            hub.log_text()
        );
        assert_eq!(hub.readyz(), 503, "ready without etcd");
        // A poll interval: checking the hub stays up across several connection attempts.
        std::thread::sleep(Duration::from_millis(200));
    }

    // The members come back: the hub serves writes again, and everything acknowledged is
    // in etcd (a restarted hub reads it from there, not from memory).
    etcd.start_member(0);
    etcd.start_member(1);
    etcd.wait_healthy(Duration::from_secs(60));
    eventually(Duration::from_secs(60), "the hub ready again", || {
        (hub.readyz() == 200).then_some(())
    });
    hub.apply_ok("three", &workload("three", "3"));
    let names: Vec<String> = revisions(hub).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["one", "three", "two"]);
    hub.kill();
    hub.serve();
    let names: Vec<String> = revisions(hub).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["one", "three", "two"]);
}

fn hub_cmd(args: &[&str]) -> std::process::Output {
    run(Command::new(bin("tether-hub")).args(args))
}

#[test]
fn an_embedded_hub_migrates_onto_etcd_and_an_etcd_hub_backs_up_and_restores() {
    let test = "an_embedded_hub_migrates_onto_etcd";
    let Some(binary) = etcd::require(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdCluster::start(&binary, &dir.path().join("etcd"), 3);
    let flags = etcd.hub_flags("/migrated");
    let flag_refs: Vec<&str> = flags.iter().map(String::as_str).collect();

    // Bad usage: one line, exit 2.
    for bad in [
        vec!["serve", "--data-dir", "/nonexistent", "--store", "etcd"],
        vec![
            "serve",
            "--data-dir",
            "/nonexistent",
            "--store",
            "etcd",
            "--etcd-endpoints",
            "ftp://127.0.0.1:1",
        ],
        vec!["migrate", "--from-data-dir", "/nonexistent", "--to-etcd"],
        // etcd named, but the store left at its default (embedded): never silently local.
        vec![
            "serve",
            "--data-dir",
            "/nonexistent",
            "--etcd-endpoints",
            "https://127.0.0.1:1",
        ],
    ] {
        let out = hub_cmd(&bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr(&out));
        assert_eq!(
            stderr(&out).trim().lines().count(),
            1,
            "{bad:?}: {}",
            stderr(&out)
        );
    }

    // An embedded hub with a workload, a user and a token.
    let mut hub = Hub::start(&dir.path().join("hub"), HubOptions::default());
    hub.apply_ok("web", &workload("web", "1"));
    hub.apply_ok("web", &workload("web", "2"));
    let _viewer = hub.user_config("vera", "viewer");
    let _ = hub.token("edge-1", &[]);
    let before = revisions(&hub);
    assert_eq!(hub.stop(), 0);

    let data_dir = hub.dir.display().to_string();
    let mut migrate = vec!["migrate", "--from-data-dir", &data_dir, "--to-etcd"];
    migrate.extend(&flag_refs);
    let out = hub_cmd(&migrate);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("records"), "{}", stdout(&out));
    // Never over a hub that is already there.
    let out = hub_cmd(&migrate);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("already holds a hub"),
        "{}",
        stderr(&out)
    );
    // `--if-empty` (the chart's init container, in every replica) does nothing — and says
    // whose admin credential works: a replica whose own data directory did not seed etcd
    // holds one that is on no allow-list there, and `admin-config` says so instead of
    // printing it.
    let mut again = migrate.clone();
    again.push("--if-empty");
    let out = hub_cmd(&again);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("already holds this hub"),
        "{}",
        stdout(&out)
    );
    let replica = dir.path().join("replica");
    let out = hub_cmd(&["init", "--data-dir", replica.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let replica_dir = replica.display().to_string();
    let mut seed = vec![
        "migrate",
        "--from-data-dir",
        &replica_dir,
        "--to-etcd",
        "--if-empty",
    ];
    seed.extend(&flag_refs);
    let out = hub_cmd(&seed);
    assert!(out.status.success(), "{}", stderr(&out));
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let seeder = format!("the hub on {}", host.trim());
    assert!(stdout(&out).contains(&seeder), "{}", stdout(&out));
    let out = hub_cmd(&["admin-config", "--data-dir", &replica_dir]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).trim().lines().count(), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("not registered"), "{}", stderr(&out));
    assert!(stderr(&out).contains(&seeder), "{}", stderr(&out));
    let out = hub_cmd(&["admin-config", "--data-dir", &data_dir]);
    assert!(out.status.success(), "{}", stderr(&out));

    // The same hub, now on etcd: its store file is gone, its records are all there.
    std::fs::remove_file(hub.dir.join("store.redb")).unwrap();
    hub.opts
        .extra
        .extend(["--store".to_string(), "etcd".to_string()]);
    hub.opts.extra.extend(flags.iter().cloned());
    hub.serve();
    assert_eq!(revisions(&hub), before);
    let users = hub.ctl_json(&["user", "list"]);
    assert!(users.to_string().contains("vera"), "{users}");
    let history = hub.ctl(&["rollout", "history", "web"]);
    assert!(history.status.success(), "{}", stderr(&history));

    // An online backup of the etcd hub is the same archive as an embedded one: restored into
    // a new data directory it serves the same records without etcd.
    let backup = dir.path().join("etcd-hub.backup.tgz");
    let out = hub_cmd(&[
        "backup",
        "--config",
        hub.admin_config().to_str().unwrap(),
        "--to",
        backup.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(hub.stop(), 0);
    let restored_dir = dir.path().join("restored");
    let out = hub_cmd(&[
        "restore",
        "--data-dir",
        restored_dir.to_str().unwrap(),
        "--from",
        backup.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // On the same address: the restored admin credential points there.
    let mut restored = Hub::existing(&restored_dir, HubOptions::default());
    restored.addr = hub.addr;
    restored.metrics = hub.metrics;
    restored.serve();
    assert_eq!(revisions(&restored), before);

    // A hub pointed at an empty prefix refuses to start, saying what to do.
    let empty = etcd.hub_flags("/empty");
    let mut serve = vec![
        "serve".to_string(),
        "--data-dir".into(),
        restored.dir.display().to_string(),
        "--store".into(),
        "etcd".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--metrics-listen".into(),
        "127.0.0.1:0".into(),
    ];
    serve.extend(empty);
    assert_eq!(restored.stop(), 0);
    let out = run(Command::new(bin("tether-hub")).args(&serve));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("tether-hub migrate"),
        "{}",
        stderr(&out)
    );
}

fn store_config(etcd: &EtcdCluster, prefix: &str) -> EtcdConfig {
    EtcdConfig {
        endpoints: etcd.endpoints().split(',').map(str::to_string).collect(),
        ca: Some(etcd.ca.clone()),
        cert: Some(etcd.client_cert.clone()),
        key: Some(etcd.client_key.clone()),
        prefix: prefix.into(),
        lease_ttl: Duration::from_secs(3),
        request_timeout: Duration::from_secs(5),
        compaction_interval: Duration::ZERO,
    }
}

/// A store that holds `prefix` (seeded with a schema record, as `migrate` leaves it).
fn serving_store(etcd: &EtcdCluster, prefix: &str, seed: bool) -> EtcdStore {
    tether_common::tls::install_default_provider();
    let (store, contents) = EtcdStore::connect(&store_config(etcd, prefix), "test").unwrap();
    if seed {
        assert_eq!(contents, Contents::Empty);
        let from = tempfile::tempdir().unwrap();
        let seed = tether_hub::store::RedbStore::open(&from.path().join("s.redb")).unwrap();
        store.import(&seed).unwrap();
    } else {
        assert_eq!(contents, Contents::Hub);
        assert!(store.acquire(&Default::default()).unwrap());
    }
    store
}

fn many(n: usize, value_len: usize) -> Batch {
    let mut b = Batch::new();
    for i in 0..n {
        b.put(
            Tree::Assignments,
            format!("cluster-{i:05}/web"),
            vec![b'x'; value_len],
        );
    }
    b
}

/// etcd takes 128 operations and 1.5 MiB per transaction: a commit over either is staged and
/// applied in parts, and is still all there afterwards, read back by another hub.
#[test]
fn a_commit_larger_than_one_etcd_transaction_is_applied_whole() {
    let test = "a_commit_larger_than_one_etcd_transaction";
    let Some(binary) = etcd::require(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdCluster::start(&binary, &dir.path().join("etcd"), 3);
    let store = serving_store(&etcd, "/big", true);
    // 3,000 changes, 6 MB: 25 times etcd's operation limit, 4 times its request size.
    store.commit(&[&many(3000, 2000)]).unwrap();
    let mut shrink = Batch::new();
    for i in (0..3000).step_by(2) {
        shrink.delete(Tree::Assignments, format!("cluster-{i:05}/web"));
    }
    store.commit(&[&shrink]).unwrap();
    assert!(!store.intent_pending().unwrap());
    store.release();
    drop(store);

    let next = serving_store(&etcd, "/big", false);
    let left = next.scan_prefix(Tree::Assignments, b"").unwrap();
    assert_eq!(left.len(), 1500);
    assert!(left.iter().all(|(k, v)| {
        let n: usize = String::from_utf8_lossy(&k[8..13]).parse().unwrap_or(0);
        n % 2 == 1 && v.len() == 2000
    }));
}

/// A writer that dies after a large commit's point of no return: whichever hub takes over
/// finishes it before it reads anything.
#[test]
fn a_large_commit_left_half_done_by_a_dead_hub_is_finished_by_the_next() {
    let test = "a_large_commit_left_half_done";
    let Some(binary) = etcd::require(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdCluster::start(&binary, &dir.path().join("etcd"), 3);
    let store = serving_store(&etcd, "/crash", true);
    store.commit_then_die(&many(200, 100)).unwrap();
    assert!(store.intent_pending().unwrap());
    // The dead writer's lease ends (its process is gone; here it is revoked).
    store.release();
    drop(store);

    let next = serving_store(&etcd, "/crash", false);
    assert!(!next.intent_pending().unwrap());
    assert_eq!(next.scan_prefix(Tree::Assignments, b"").unwrap().len(), 200);
    // And it writes on normally.
    next.commit(&[&many(1, 1)]).unwrap();
    assert!(!next.intent_pending().unwrap());
}

/// A standby's copy follows the serving hub's writes, and etcd confirms it current even when
/// the latest change was elsewhere (another prefix): the revision and age a standby reports
/// as `tether_etcd_revision` and `tether_etcd_copy_age_seconds`.
#[test]
fn a_standbys_copy_follows_the_serving_hub_and_etcd_confirms_it_current() {
    let test = "a_standbys_copy_follows_the_serving_hub";
    let Some(binary) = etcd::require(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdCluster::start(&binary, &dir.path().join("etcd"), 3);
    let serving = serving_store(&etcd, "/follow", true);
    let (standby, _) = EtcdStore::connect(&store_config(&etcd, "/follow"), "standby").unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    std::thread::scope(|s| {
        let waiting = s.spawn(|| standby.acquire(&stop));
        serving.commit(&[&many(3, 10)]).unwrap();
        let (written, age) = serving.currency().unwrap();
        assert_eq!(age, None, "the serving hub has no copy to age");
        eventually(
            PATIENCE,
            "the standby's copy to reach the last write",
            || {
                standby
                    .currency()
                    .filter(|(r, age)| *r >= written && age.is_some())
                    .map(|_| ())
            },
        );
        // What a standby judges agents' certificates by (`EtcdStore::known`): the copy,
        // not the records it loaded when it last served (none here), and how long ago etcd
        // confirmed it current.
        // (The watch applies a transaction's events one at a time.)
        let age = eventually(
            PATIENCE,
            "the last record in what the standby knows",
            || match standby.known(Tree::Assignments, b"cluster-00002/web") {
                (Some(v), age) if v == vec![b'x'; 10] => Some(age),
                _ => None,
            },
        );
        assert!(
            age.is_some(),
            "the copy was confirmed current when it loaded"
        );
        // The hub holding the lease confirms nothing: from taking it until it serves, its
        // records may not be loaded yet (a restarted hub refused 345 of 10,000 agents on its
        // empty records that way), and it judges by its allow-list anyway.
        assert_eq!(
            serving.known(Tree::Assignments, b"cluster-00002/web").1,
            None
        );
        // A write under another prefix moves etcd's revision with no event this copy
        // follows: only etcd's answer to the standby's progress request moves it there.
        let other = serving_store(&etcd, "/elsewhere", true);
        other.commit(&[&many(1, 1)]).unwrap();
        let elsewhere = other.currency().unwrap().0;
        assert!(elsewhere > written, "{elsewhere} > {written}");
        eventually(PATIENCE, "etcd to confirm the copy current past it", || {
            standby
                .currency()
                .filter(|(r, _)| *r >= elsewhere)
                .map(|_| ())
        });
        stop.cancel();
        assert!(
            !waiting.join().unwrap().unwrap(),
            "the standby took the lease"
        );
    });
}

/// etcd keeps every version of every key until it is compacted; every status report is a
/// version. The serving hub compacts (as kube-apiserver does), keeping current records.
#[test]
fn the_serving_hub_compacts_etcd_history_and_keeps_every_current_record() {
    let test = "the_serving_hub_compacts_etcd_history";
    let Some(binary) = etcd::require(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdCluster::start(&binary, &dir.path().join("etcd"), 3);
    let mut opts = options();
    opts.extra
        .extend(["--etcd-compaction-interval".to_string(), "1s".to_string()]);
    let mut hubs = Hub::etcd_group(
        &dir.path().join("hubs"),
        1,
        &etcd.hub_flags("/tether"),
        opts,
    );
    let hub = &mut hubs[0];
    // Overwrites: history to compact.
    for v in 1..=5 {
        hub.apply_ok("web", &workload("web", &v.to_string()));
    }
    let compacted = eventually(PATIENCE, "the hub to compact etcd", || {
        let r = hub.metric("tether_etcd_compacted_revision");
        (r > 2.0).then_some(r as i64)
    });
    tether_common::tls::install_default_provider();
    let (reader, _) = EtcdStore::connect(&store_config(&etcd, "/tether"), "reader").unwrap();
    assert!(
        !reader.history_at(compacted - 1).unwrap(),
        "etcd still holds history before revision {compacted}"
    );
    // Nothing current is gone: the hub writes on, and a restarted hub loads everything.
    hub.apply_ok("api", &workload("api", "1"));
    hub.kill();
    hub.serve();
    let stored = hub.ctl_json(&["get", "workload", "web"]);
    assert_eq!(stored["spec"]["manifests"][0]["data"]["value"], "5");
    let names: Vec<String> = revisions(hub).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["api", "web"]);
}

/// `migrate` cut short (killed, etcd gone) before its last record: the prefix still reads as
/// empty — no hub can start on half a copy — and running it again copies everything.
#[test]
fn a_migration_cut_short_leaves_an_empty_prefix_and_can_be_run_again() {
    let test = "a_migration_cut_short";
    let Some(binary) = etcd::require(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdCluster::start(&binary, &dir.path().join("etcd"), 3);
    tether_common::tls::install_default_provider();
    let source = tether_hub::store::RedbStore::open(&dir.path().join("s.redb")).unwrap();
    source.commit(&[&many(300, 100)]).unwrap();

    let (first, contents) = EtcdStore::connect(&store_config(&etcd, "/cut"), "migrate").unwrap();
    assert_eq!(contents, Contents::Empty);
    first.import_then_die(&source).unwrap();
    first.release();
    drop(first);

    let (again, contents) = EtcdStore::connect(&store_config(&etcd, "/cut"), "migrate").unwrap();
    assert_eq!(
        contents,
        Contents::Empty,
        "a prefix holding part of a copy reads as a hub"
    );
    let records: usize = Tree::ALL
        .iter()
        .map(|t| source.scan_prefix(*t, b"").unwrap().len())
        .sum();
    assert_eq!(again.import(&source).unwrap(), records as u64);
    again.release();
    drop(again);
    let hub = serving_store(&etcd, "/cut", false);
    assert_eq!(hub.scan_prefix(Tree::Assignments, b"").unwrap().len(), 300);
}

/// The index of the hub that serves now.
fn serving(hubs: &[Hub]) -> usize {
    eventually(Duration::from_secs(20), "a hub to serve", || {
        hubs.iter().position(Hub::serving)
    })
}

#[test]
fn serving_hubs_killed_at_random_points_lose_no_acknowledged_write() {
    let test = "serving_hubs_killed_at_random_points";
    let Some(binary) = etcd::require(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdCluster::start(&binary, &dir.path().join("etcd"), 3);
    let mut hubs = Hub::etcd_group(
        &dir.path().join("hubs"),
        2,
        &etcd.hub_flags("/tether"),
        options(),
    );
    let members: Vec<(Cluster, Agent)> = ["edge-1", "edge-2"]
        .iter()
        .map(|name| member(dir.path(), &hubs, name, "", "300ms"))
        .collect();
    // tetherctl as a CI job would have it: every hub listed, the first that answers used.
    let config = Hub::config_listing(&hubs, &dir.path().join("both.yaml"));
    let yaml_dir = dir.path().join("writes");
    std::fs::create_dir_all(&yaml_dir).unwrap();

    const CRASHES: u32 = 8;
    let mut writes = Writes::new(4, 0x2545f4914f6cdd1d);
    for crash in 0..CRASHES {
        let victim = serving(&hubs);
        writes.round(&config, &yaml_dir, 5, workload, || hubs[victim].kill());
        let now = serving(&hubs);
        assert_ne!(now, victim);
        hubs[victim].serve_standby();
        writes.check(crash, |w| {
            let got = hubs[now].ctl_json(&["get", "workload", &format!("w{w}")]);
            got["spec"]["manifests"][0]["data"]["value"]
                .as_str()?
                .parse()
                .ok()
        });
    }
    eprintln!(
        "measured: etcd crash loop: {CRASHES} kill -9 of the serving hub, {} writes acknowledged, 0 lost",
        writes.acknowledged
    );
    assert!(writes.acknowledged > 0);
    let acked = writes.acked;

    // The agents converge on everything, and after one more takeover with nothing changed,
    // nothing is sent again.
    let now = serving(&hubs);
    for w in acked.keys() {
        hubs[now].wait_available(&format!("w{w}"), "60s");
    }
    hubs[now].kill();
    let next = serving(&hubs);
    for name in ["edge-1", "edge-2"] {
        hubs[next].wait_status(name, "Ready", PATIENCE);
    }
    for w in acked.keys() {
        hubs[next].wait_available(&format!("w{w}"), "60s");
    }
    assert_eq!(hubs[next].metric("tether_desired_sent_total"), 0.0);
    drop(members);
}
