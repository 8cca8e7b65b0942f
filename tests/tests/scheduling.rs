//! Scheduling across clusters with real processes: choosing N clusters spread over regions,
//! failover that never deletes on the unreachable side, staged rollouts that halt, undo, and
//! divided replicas.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tether_tests::harness::{Agent, Cluster, Hub, HubOptions, eventually, stdout};

const PATIENCE: Duration = Duration::from_secs(40);

fn hub(dir: &Path) -> Hub {
    Hub::start(
        &dir.join("hub"),
        HubOptions {
            heartbeat_interval: "200ms".into(),
            offline_grace: "1s".into(),
            extra: ["--resync-interval", "1s", "--schedule-interval", "300ms"]
                .map(String::from)
                .to_vec(),
            ..HubOptions::default()
        },
    )
}

struct Member {
    cluster: Cluster,
    agent: Option<Agent>,
    state: std::path::PathBuf,
}

fn members(dir: &Path, hub: &Hub, spec: &[(&str, &str)]) -> BTreeMap<String, Member> {
    let mut out = BTreeMap::new();
    for (name, labels) in spec {
        let cluster = Cluster::start(dir, name, 1, "v1.33.4");
        let (token, pin) = hub.token(name, &["--labels", labels]);
        let state = dir.join(format!("{name}-state"));
        let agent = Agent::join(hub, &cluster, &state, &token, &pin);
        out.insert(
            name.to_string(),
            Member {
                cluster,
                agent: Some(agent),
                state,
            },
        );
    }
    for name in out.keys() {
        hub.wait_status(name, "Ready", PATIENCE);
    }
    out
}

/// The clusters a workload is placed on (not those it is leaving).
fn placed(hub: &Hub, workload: &str) -> BTreeSet<String> {
    hub.workload_status(workload)
        .map(|s| {
            s["clusters"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["phase"] != "Removing")
                .map(|c| c["cluster"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn events(hub: &Hub, workload: &str) -> Vec<Value> {
    hub.ctl_json(&["events", "--workload", workload])
        .as_array()
        .unwrap()
        .clone()
}

fn deployment(image: &str, extra: &str) -> String {
    format!(
        "apiVersion: tether.dev/v1alpha1\nkind: Workload\nmetadata: {{ name: web }}\nspec:\n  manifests:\n    - apiVersion: apps/v1\n      kind: Deployment\n      metadata: {{ name: web }}\n      spec: {{ replicas: 2, selector: {{ matchLabels: {{ app: web }} }}, template: {{ metadata: {{ labels: {{ app: web }} }}, spec: {{ containers: [ {{ name: web, image: \"{image}\" }} ] }} }} }}\n{extra}"
    )
}

#[test]
fn three_of_six_clusters_one_per_region_and_a_seventh_moves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path());
    let regions = [
        ("eu-1", "eu"),
        ("eu-2", "eu"),
        ("us-1", "us"),
        ("us-2", "us"),
        ("ap-1", "ap"),
        ("ap-2", "ap"),
    ];
    let specs: Vec<(String, String)> = regions
        .iter()
        .map(|(n, r)| (n.to_string(), format!("tier=prod,region={r}")))
        .collect();
    let refs: Vec<(&str, &str)> = specs
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let mut ms = members(dir.path(), &hub, &refs);
    hub.apply_ok(
        "web",
        &deployment("web:1", "  placement:\n    clusterSelector: { matchLabels: { tier: prod } }\n    maxClusters: 3\n    spreadBy: region\n"),
    );
    hub.wait_available("web", "60s");
    let chosen = placed(&hub, "web");
    assert_eq!(chosen.len(), 3, "{chosen:?}");
    let used: BTreeSet<&str> = chosen.iter().map(|c| &c[..2]).collect();
    assert_eq!(used.len(), 3, "one per region: {chosen:?}");
    for name in ms.keys() {
        let has = ms[name].cluster.get(&["deployment", "web"]).is_some();
        assert_eq!(has, chosen.contains(name), "{name}");
    }
    let placed_events = events(&hub, "web")
        .iter()
        .filter(|e| e["reason"] == "Placed")
        .count();
    assert_eq!(placed_events, 3);

    // A seventh matching cluster joins: nothing moves.
    let extra = members(dir.path(), &hub, &[("eu-3", "tier=prod,region=eu")]);
    ms.extend(extra);
    hub.wait_available("web", "60s");
    assert_eq!(placed(&hub, "web"), chosen);
    assert!(ms["eu-3"].cluster.get(&["deployment", "web"]).is_none());
    assert_eq!(
        events(&hub, "web")
            .iter()
            .filter(|e| e["reason"] == "Placed")
            .count(),
        3
    );
}

#[test]
fn a_lost_cluster_is_replaced_in_its_region_and_cleans_up_only_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path());
    let mut ms = members(
        dir.path(),
        &hub,
        &[
            ("eu-1", "tier=prod,region=eu"),
            ("eu-2", "tier=prod,region=eu"),
            ("us-1", "tier=prod,region=us"),
            ("us-2", "tier=prod,region=us"),
        ],
    );
    let placement = "  placement:\n    clusterSelector: { matchLabels: { tier: prod } }\n    maxClusters: 2\n    spreadBy: region\n    failover: { enabled: true, afterSeconds: 3 }\n";
    hub.apply_ok("web", &deployment("web:1", placement));
    hub.wait_available("web", "60s");
    let before = placed(&hub, "web");
    let lost = before.iter().find(|c| c.starts_with("eu")).unwrap().clone();
    let spare = if lost == "eu-1" { "eu-2" } else { "eu-1" }.to_string();

    // Back inside the window: nothing changes.
    ms.get_mut(&lost).unwrap().agent.take().unwrap().proc.kill();
    hub.wait_status(&lost, "Offline", PATIENCE);
    let m = ms.get_mut(&lost).unwrap();
    m.agent = Some(Agent::start(&hub, &m.cluster, &m.state, &[]));
    hub.wait_status(&lost, "Ready", PATIENCE);
    assert_eq!(placed(&hub, "web"), before);
    assert!(
        !events(&hub, "web")
            .iter()
            .any(|e| e["reason"] == "Replaced")
    );

    // Away past the window: replaced by the spare in the same region.
    ms.get_mut(&lost).unwrap().agent.take().unwrap().proc.kill();
    hub.wait_status(&lost, "Offline", PATIENCE);
    eventually(PATIENCE, "the replacement to run the workload", || {
        ms[&spare].cluster.get(&["deployment", "web"]).map(|_| ())
    });
    let after = placed(&hub, "web");
    assert!(
        after.contains(&spare) && !after.contains(&lost),
        "{after:?}"
    );
    let replaced = events(&hub, "web")
        .into_iter()
        .find(|e| e["reason"] == "Replaced")
        .unwrap();
    assert_eq!(replaced["cluster"], lost.as_str());
    // Nothing was deleted on the unreachable side.
    assert!(ms[&lost].cluster.get(&["deployment", "web"]).is_some());

    // When it returns, it is told its workload moved, and removes it.
    let m = ms.get_mut(&lost).unwrap();
    m.agent = Some(Agent::start(&hub, &m.cluster, &m.state, &[]));
    eventually(
        PATIENCE,
        "the returning cluster to remove the workload",
        || {
            ms[&lost]
                .cluster
                .get(&["deployment", "web"])
                .is_none()
                .then_some(())
        },
    );
    hub.wait_available("web", "60s");
    assert_eq!(placed(&hub, "web"), after);
}

#[test]
fn a_canary_wave_that_never_gets_ready_halts_the_rollout_and_undo_restores_it() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path());
    let ms = members(
        dir.path(),
        &hub,
        &[
            ("canary", "ring=canary"),
            ("main-1", "ring=main"),
            ("main-2", "ring=main"),
        ],
    );
    let rollout = "  placement: { clusterSelector: {} }\n  rollout:\n    maxUnavailable: 1\n    waves: [ { clusterSelector: { matchLabels: { ring: canary } } } ]\n    progressDeadlineSeconds: 3\n";
    hub.apply_ok("web", &deployment("web:1", rollout));
    hub.wait_available("web", "60s");

    hub.apply_ok("web", &deployment("web:broken", rollout));
    let status = eventually(PATIENCE, "the rollout to halt", || {
        let s = hub.ctl_json(&["rollout", "status", "web"]);
        (s["state"] == "Halted").then_some(s)
    });
    let reason = status["reason"].as_str().unwrap();
    assert!(
        reason.contains("wave 1") && reason.contains("canary"),
        "{reason}"
    );
    let image = |m: &str| {
        ms[m].cluster.get(&["deployment", "web"]).unwrap()["spec"]["template"]["spec"]["containers"]
            [0]["image"]
            .clone()
    };
    assert_eq!(image("canary"), "web:broken");
    assert_eq!(
        image("main-1"),
        "web:1",
        "later waves keep the old revision"
    );
    assert_eq!(image("main-2"), "web:1");
    let table = stdout(&hub.ctl(&["rollout", "status", "web"]));
    assert!(
        table.contains("Halted") && table.contains("wave 1") && table.contains("canary"),
        "{table}"
    );
    assert!(events(&hub, "web").iter().any(|e| e["reason"] == "Halted"));

    let out = hub.ctl(&["rollout", "undo", "web"]);
    assert!(
        out.status.success(),
        "{}",
        tether_tests::harness::stderr(&out)
    );
    hub.wait_available("web", "60s");
    for m in ["canary", "main-1", "main-2"] {
        assert_eq!(image(m), "web:1", "{m}");
    }
    // Completion is recorded by the scheduler's next pass after the last cluster turned
    // Available, which may come a tick after `wait` returns.
    eventually(PATIENCE, "the rollout of the undo to complete", || {
        let s = hub.ctl_json(&["rollout", "status", "web"]);
        (s["state"] == "Complete").then_some(())
    });
}

#[test]
fn divided_replicas_follow_weights_and_still_add_up_after_a_failover() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path());
    let mut ms = members(
        dir.path(),
        &hub,
        &[
            ("eu-1", "tier=prod,region=eu"),
            ("eu-2", "tier=prod,region=eu"),
            ("us-1", "tier=prod,region=us"),
            ("eu-3", "tier=spare,region=eu"),
        ],
    );
    let spec = "  placement:\n    clusterSelector: { matchExpressions: [ { key: tier, operator: In, values: [ prod, spare ] } ] }\n    maxClusters: 3\n    spreadBy: region\n    failover: { enabled: true, afterSeconds: 3 }\n  replicas:\n    target: { kind: Deployment, name: web }\n    total: 10\n    weights: { region=eu: 2, region=us: 1 }\n  rollout: { maxUnavailable: 3 }\n";
    hub.apply_ok("web", &deployment("web:1", spec));
    hub.wait_available("web", "60s");
    let replicas =
        |ms: &BTreeMap<String, Member>, names: &BTreeSet<String>| -> BTreeMap<String, i64> {
            names
                .iter()
                .map(|n| {
                    (
                        n.clone(),
                        ms[n].cluster.get(&["deployment", "web"]).unwrap()["spec"]["replicas"]
                            .as_i64()
                            .unwrap(),
                    )
                })
                .collect()
        };
    let first = placed(&hub, "web");
    assert!(first.contains("us-1"), "{first:?}");
    let shares = replicas(&ms, &first);
    assert_eq!(shares.values().sum::<i64>(), 10, "{shares:?}");
    for (name, share) in &shares {
        if name.starts_with("eu") {
            assert!(*share > shares["us-1"], "weights eu:2 us:1 -> {shares:?}");
        }
    }

    // us-1 is lost; a spare takes its place and the shares are redistributed.
    ms.get_mut("us-1")
        .unwrap()
        .agent
        .take()
        .unwrap()
        .proc
        .kill();
    hub.wait_status("us-1", "Offline", PATIENCE);
    eventually(PATIENCE, "a replacement for us-1", || {
        let p = placed(&hub, "web");
        (!p.contains("us-1") && p.len() == 3).then_some(())
    });
    hub.wait_available("web", "60s");
    let after = placed(&hub, "web");
    let shares = replicas(&ms, &after);
    assert_eq!(
        shares.values().sum::<i64>(),
        10,
        "after the failover: {shares:?}"
    );
}

#[test]
fn cordoned_and_tainted_clusters_get_no_new_placements() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path());
    let _ms = members(
        dir.path(),
        &hub,
        &[("a", "tier=prod"), ("b", "tier=prod"), ("c", "tier=prod")],
    );
    assert!(hub.ctl(&["cluster", "cordon", "a"]).status.success());
    assert!(
        hub.ctl(&["cluster", "taint", "b", "gpu=yes:NoSchedule"])
            .status
            .success()
    );
    let c = hub.cluster("b").unwrap();
    assert_eq!(
        c["taints"],
        serde_json::json!(["gpu=yes:NoSchedule"]),
        "{c}"
    );

    // (Each workload gets its own object names: two workloads never share an object.)
    let named = |name: &str, extra: &str| {
        deployment("web:1", extra).replace("name: web", &format!("name: {name}"))
    };
    hub.apply_ok(
        "plain",
        &named(
            "plain",
            "  placement: { clusterSelector: { matchLabels: { tier: prod } } }\n",
        ),
    );
    hub.wait_available("plain", "60s");
    assert_eq!(placed(&hub, "plain"), BTreeSet::from(["c".to_string()]));

    let tolerant = "  placement:\n    clusterSelector: { matchLabels: { tier: prod } }\n    tolerations: [ { key: gpu, operator: Equal, value: \"yes\" } ]\n";
    hub.apply_ok("gpu", &named("gpu", tolerant));
    hub.wait_available("gpu", "60s");
    assert_eq!(
        placed(&hub, "gpu"),
        BTreeSet::from(["b".to_string(), "c".to_string()])
    );

    // Cordoning does not evict; uncordoning lets new placements in.
    assert!(hub.ctl(&["cluster", "cordon", "c"]).status.success());
    assert!(hub.ctl(&["cluster", "uncordon", "a"]).status.success());
    let table = String::from_utf8(hub.ctl(&["get", "clusters"]).stdout).unwrap();
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row for {name} in\n{table}"))
            .to_string()
    };
    assert!(row("c").contains("SchedulingDisabled"), "{table}");
    assert!(!row("a").contains("SchedulingDisabled"), "{table}");
    assert!(row("b").contains("gpu=yes:NoSchedule"), "{table}");
    let bad = hub.ctl(&["cluster", "taint", "b", "gpu=yes:NoExecute"]);
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.trim().lines().count() == 1 && err.contains("NoExecute"),
        "{err}"
    );
    eventually(PATIENCE, "a placed after uncordon", || {
        placed(&hub, "plain").contains("a").then_some(())
    });
    assert!(
        placed(&hub, "plain").contains("c"),
        "a cordon must not evict"
    );
    assert!(
        hub.ctl(&["cluster", "taint", "b", "gpu=yes:NoSchedule-"])
            .status
            .success()
    );
    eventually(PATIENCE, "b placed after the taint is gone", || {
        placed(&hub, "plain").contains("b").then_some(())
    });
}
