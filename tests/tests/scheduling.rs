//! Scheduling across clusters with real processes: choosing N clusters spread over regions,
//! failover that never deletes on the unreachable side, staged rollouts that halt, undo, and
//! divided replicas.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tether_tests::harness::{Agent, Cluster, Hub, HubOptions, eventually, stderr, stdout};

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
                .filter(|c| c["phase"] != "Removing" && c["phase"] != "Retiring")
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
    // `rollout status` watches until the rollout ends, and fails when it halted (as
    // `kubectl rollout status` fails past a progress deadline).
    let watched = hub.ctl(&["rollout", "status", "web", "--timeout", "60s"]);
    assert_eq!(watched.status.code(), Some(1), "{}", stderr(&watched));
    assert!(stderr(&watched).contains("halted"), "{}", stderr(&watched));
    let once = hub.ctl(&["rollout", "status", "web", "-o", "json"]);
    assert_eq!(once.status.code(), Some(1));
    let status: Value = serde_json::from_slice(&once.stdout).unwrap();
    assert_eq!(status["state"], "Halted");
    let reason = status["reason"].as_str().unwrap();
    assert!(
        reason.contains("wave 1") && reason.contains("canary") && reason.contains("3s"),
        "the halt names the wave, the cluster and the real deadline: {reason}"
    );
    // `wait` knows the new revision will not come, and says so at once.
    let wait = hub.ctl(&["wait", "web", "--timeout", "60s"]);
    assert_eq!(wait.status.code(), Some(1));
    assert!(stderr(&wait).contains("halted"), "{}", stderr(&wait));
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
    let table = stdout(&hub.ctl(&["rollout", "status", "web", "--watch=false"]));
    assert!(
        table.contains("Halted") && table.contains("wave 1") && table.contains("canary"),
        "{table}"
    );
    let evs = events(&hub, "web");
    assert!(evs.iter().any(|e| e["reason"] == "Halted"));
    assert!(
        evs.iter().any(|e| e["reason"] == "WaveStarted"
            && e["message"]
                .as_str()
                .unwrap()
                .contains("revision 2: wave 1 of 2")),
        "the first wave is announced: {evs:#?}"
    );

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
    let done = hub.ctl(&["rollout", "status", "web", "--timeout", "60s"]);
    assert!(done.status.success(), "{}", stderr(&done));
    let completed: Vec<String> = events(&hub, "web")
        .iter()
        .filter(|e| e["reason"] == "Completed")
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect();
    assert!(
        completed.iter().any(|m| m.contains("revision 1 "))
            && completed.iter().any(|m| m.contains("revision 3 ")),
        "every revision that rolled out is Completed: {completed:?}"
    );
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

fn configmap(name: &str, ns: &str, extra_manifest: &str, placement: &str) -> String {
    format!(
        "apiVersion: tether.dev/v1alpha1\nkind: Workload\nmetadata: {{ name: {name} }}\nspec:\n  manifests:\n{extra_manifest}    - {{ apiVersion: v1, kind: ConfigMap, metadata: {{ name: {name}, namespace: {ns} }}, data: {{ k: v }} }}\n  placement: {placement}\n"
    )
}

fn image_on(m: &Member) -> Option<String> {
    m.cluster.get(&["deployment", "web"]).map(|d| {
        d["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap()
            .to_string()
    })
}

#[test]
fn new_placements_skip_offline_clusters_and_a_hub_restart_fails_nothing_over() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = hub(dir.path());
    let mut ms = members(
        dir.path(),
        &hub,
        &[("eu-1", "region=eu"), ("eu-2", "region=eu")],
    );
    // Finding 1: with eu-1 Offline, new single-cluster workloads went there for ever.
    ms.get_mut("eu-1")
        .unwrap()
        .agent
        .take()
        .unwrap()
        .proc
        .kill();
    hub.wait_status("eu-1", "Offline", PATIENCE);
    for i in 0..6 {
        hub.apply_ok(
            &format!("w{i}"),
            &configmap(
                &format!("w{i}"),
                "default",
                "",
                "{ clusterSelector: { matchLabels: { region: eu } }, maxClusters: 1 }",
            ),
        );
        assert_eq!(
            placed(&hub, &format!("w{i}")),
            BTreeSet::from(["eu-2".to_string()]),
            "w{i} placed on an Offline cluster"
        );
    }
    let m = ms.get_mut("eu-1").unwrap();
    m.agent = Some(Agent::start(&hub, &m.cluster, &m.state, &[]));
    hub.wait_status("eu-1", "Ready", PATIENCE);

    // Finding 2: a hub down longer than the failover window replaced every placement when
    // it came back, counting its own downtime as the clusters'.
    let placement = "  placement:\n    clusterSelector: { matchLabels: { region: eu } }\n    failover: { enabled: true, afterSeconds: 3 }\n";
    hub.apply_ok("web", &deployment("web:1", placement));
    hub.wait_available("web", "60s");
    let before = placed(&hub, "web");
    assert_eq!(before.len(), 2);
    hub.kill();
    // The hub stays down past the 3 s window: the time passing is the condition under test.
    std::thread::sleep(Duration::from_secs(4));
    hub.serve();
    for name in ["eu-1", "eu-2"] {
        hub.wait_status(name, "Ready", PATIENCE);
    }
    hub.wait_available("web", "60s");
    assert_eq!(placed(&hub, "web"), before);
    let evs = events(&hub, "web");
    assert!(
        !evs.iter().any(|e| e["reason"] == "Replaced"),
        "the hub's downtime is not the clusters': {evs:#?}"
    );
}

#[test]
fn a_pause_holds_across_revisions_wait_means_the_current_revision_and_history_undoes_to_any() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path());
    let ms = members(dir.path(), &hub, &[("a", "x=1"), ("b", "x=1")]);
    let placement = "  placement: { clusterSelector: {} }\n";
    hub.apply_ok("web", &deployment("web:1", placement));
    hub.wait_available("web", "60s");
    let out = hub.ctl(&["rollout", "pause", "web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    hub.apply_ok("web", &deployment("web:2", placement));
    hub.apply_ok("web", &deployment("web:3", placement));
    let s = hub.ctl_json(&["rollout", "status", "web"]);
    assert_eq!(s["state"], "Paused", "{s}");
    assert_eq!(s["revision"], 3);
    for m in ms.values() {
        assert_eq!(image_on(m).as_deref(), Some("web:1"), "moved while paused");
    }
    // Every cluster is Available, on revision 1: not what `wait` waits for by default.
    let strict = hub.ctl(&["wait", "web", "--timeout", "2s"]);
    assert_eq!(strict.status.code(), Some(1));
    assert!(
        stderr(&strict).contains("older revision"),
        "{}",
        stderr(&strict)
    );
    let any = hub.ctl(&["wait", "web", "--for", "available=any", "--timeout", "30s"]);
    assert!(any.status.success(), "{}", stderr(&any));
    let bad = hub.ctl(&["wait", "web", "--for", "ready"]);
    assert_eq!(bad.status.code(), Some(2));

    let out = hub.ctl(&["rollout", "resume", "web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let done = hub.ctl(&["rollout", "status", "web", "--timeout", "60s"]);
    assert!(done.status.success(), "{}", stderr(&done));
    hub.wait_available("web", "60s");
    for m in ms.values() {
        assert_eq!(image_on(m).as_deref(), Some("web:3"));
    }

    let history = hub.ctl_json(&["rollout", "history", "web"]);
    let revisions: Vec<u64> = history["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["revision"].as_u64().unwrap())
        .collect();
    assert_eq!(revisions, vec![1, 2, 3]);
    assert_eq!(history["revisions"][0]["change"], "created");
    assert_eq!(
        history["revisions"][1]["change"],
        "changed Deployment.apps web"
    );
    assert!(
        stdout(&hub.ctl(&["rollout", "history", "web"])).contains("changed Deployment.apps web")
    );
    let out = hub.ctl(&["rollout", "undo", "web", "--to-revision", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    hub.wait_available("web", "60s");
    for m in ms.values() {
        assert_eq!(image_on(m).as_deref(), Some("web:1"));
    }
    let history = hub.ctl_json(&["rollout", "history", "web"]);
    assert_eq!(
        history["revisions"].as_array().unwrap().last().unwrap()["change"],
        "undo: back to revision 1"
    );
    let missing = hub.ctl(&["rollout", "undo", "web", "--to-revision", "99"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("rollout history web"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn two_workloads_never_share_an_object_and_a_namespace_another_uses_survives() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path());
    let ms = members(dir.path(), &hub, &[("a", "x=1")]);
    let all = "{ clusterSelector: {} }";
    let ns = "    - { apiVersion: v1, kind: Namespace, metadata: { name: shop } }\n";
    hub.apply_ok("team-a", &configmap("team-a", "shop", ns, all));
    // The same Namespace declared again: refused, naming both workloads and the object.
    let out = hub.apply("team-b", &configmap("team-b", "shop", ns, all));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("team-a") && err.contains("team-b") && err.contains("Namespace shop"),
        "{err}"
    );
    // Objects in it are fine.
    hub.apply_ok("team-b", &configmap("team-b", "shop", "", all));
    hub.wait_available("team-b", "60s");
    let c = &ms["a"].cluster;
    assert!(c.get(&["configmap", "team-a", "-n", "shop"]).is_some());

    // Deleting the workload that declared the Namespace keeps it: team-b still has objects
    // there.
    let out = hub.ctl(&["delete", "workload", "team-a"]);
    assert!(out.status.success(), "{}", stderr(&out));
    eventually(PATIENCE, "team-a to be gone", || {
        hub.workload_status("team-a").is_none().then_some(())
    });
    assert!(c.get(&["configmap", "team-a", "-n", "shop"]).is_none());
    assert!(
        c.get(&["namespace", "shop"]).is_some(),
        "the Namespace was deleted"
    );
    assert!(c.get(&["configmap", "team-b", "-n", "shop"]).is_some());
    // Now free, the Namespace may be declared by another.
    hub.apply_ok("team-c", &configmap("team-c", "shop", ns, all));
}

#[test]
fn removing_a_cluster_reschedules_cleanup_removes_its_objects_and_labels_need_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path());
    let ms = members(dir.path(), &hub, &[("a", "x=1"), ("b", "x=1")]);
    hub.apply_ok(
        "web",
        &deployment(
            "web:1",
            "  placement: { clusterSelector: { matchLabels: { x: \"1\" } }, maxClusters: 1 }\n",
        ),
    );
    hub.wait_available("web", "60s");
    let first = placed(&hub, "web").into_iter().next().unwrap();
    let other = if first == "a" { "b" } else { "a" };

    let out = hub.ctl(&["cluster", "remove", &first, "--cleanup", "--timeout", "60s"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(hub.cluster(&first).is_none());
    assert!(
        image_on(&ms[&first]).is_none(),
        "--cleanup: the agent removed what it applied before the cluster was forgotten"
    );
    // Finding 5: the maxClusters workload takes the other cluster at once.
    eventually(
        PATIENCE,
        "the workload to move to the other cluster",
        || image_on(&ms[other]).map(|_| ()),
    );
    assert_eq!(placed(&hub, "web"), BTreeSet::from([other.to_string()]));

    // Changing a label's value needs --overwrite, as in kubectl.
    let out = hub.ctl(&["cluster", "label", other, "x=2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--overwrite"), "{}", stderr(&out));
    assert_eq!(placed(&hub, "web"), BTreeSet::from([other.to_string()]));
    let out = hub.ctl(&["cluster", "label", other, "x=2", "--overwrite"]);
    assert!(out.status.success(), "{}", stderr(&out));
    eventually(
        PATIENCE,
        "the workload to leave the relabelled cluster",
        || image_on(&ms[other]).is_none().then_some(()),
    );
    // Adding a new label needs nothing.
    let out = hub.ctl(&["cluster", "label", other, "zone=z1"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn an_unhealthy_cluster_is_replaced_without_a_gap_and_cleans_up_when_it_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path());
    let mut ms = BTreeMap::new();
    for name in ["a", "b"] {
        let cluster = Cluster::start(dir.path(), name, 1, "v1.33.4");
        let (token, pin) = hub.token(name, &["--labels", "x=1"]);
        let state = dir.path().join(format!("{name}-state"));
        let agent = Agent::start(
            &hub,
            &cluster,
            &state,
            &[
                "--token",
                &token,
                "--ca-pin",
                &pin,
                "--facts-interval",
                "500ms",
            ],
        );
        ms.insert(
            name.to_string(),
            Member {
                cluster,
                agent: Some(agent),
                state,
            },
        );
        hub.wait_status(name, "Ready", PATIENCE);
    }
    let placement = "  placement:\n    clusterSelector: {}\n    maxClusters: 1\n    failover: { enabled: true, afterSeconds: 600, unhealthySeconds: 2 }\n";
    hub.apply_ok("web", &deployment("web:1", placement));
    hub.wait_available("web", "60s");
    let sick = placed(&hub, "web").into_iter().next().unwrap();
    let healthy = if sick == "a" { "b" } else { "a" }.to_string();

    // Its Kubernetes API hangs; its agent stays connected to the hub.
    let emulator = ms[&sick].cluster.proc.as_ref().unwrap();
    emulator.signal("STOP");
    eventually(PATIENCE, "the replacement to run the workload", || {
        image_on(&ms[&healthy]).map(|_| ())
    });
    assert_eq!(hub.status_of(&sick), "Ready", "the agent itself is heard");
    let replaced = events(&hub, "web")
        .into_iter()
        .find(|e| e["reason"] == "Replaced")
        .unwrap();
    let msg = replaced["message"].as_str().unwrap();
    assert!(
        msg.contains("unreachable") && msg.contains(&format!("replaced by {healthy}")),
        "{msg}"
    );
    hub.wait_available("web", "60s");
    // The old copy is taken off only once the replacement is Available; the cluster cannot
    // act on it until its API answers again.
    eventually(PATIENCE, "the old copy to be retired", || {
        let s = hub.cluster_status("web", &sick)?;
        (s["phase"] == "Removing").then_some(())
    });
    assert!(
        events(&hub, "web").iter().any(|e| e["reason"] == "Retired"),
        "retired after the replacement was Available"
    );
    let emulator = ms[&sick].cluster.proc.as_ref().unwrap();
    emulator.signal("CONT");
    eventually(
        PATIENCE,
        "the recovered cluster to remove its old copy",
        || image_on(&ms[&sick]).is_none().then_some(()),
    );
    assert_eq!(placed(&hub, "web"), BTreeSet::from([healthy.clone()]));
    let _ = &mut ms;
}

#[test]
fn sigterm_stops_an_agent_still_waiting_to_join() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), "edge", 1, "v1.33.4");
    let nowhere = format!("127.0.0.1:{}", tether_tests::harness::free_port());
    let mut cmd = std::process::Command::new(tether_tests::harness::bin("tether-agent"));
    cmd.args(["--hub", &nowhere])
        .arg("--kubeconfig")
        .arg(&cluster.kubeconfig)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args(["--ca-pin", &format!("sha256:{}", "0".repeat(64))])
        .args(["--reconnect-max-delay", "30s"])
        .env("TETHER_TOKEN", format!("abcdef.{}", "0".repeat(32)))
        .env("RUST_LOG", "info")
        .env_remove("KUBERNETES_SERVICE_HOST");
    let mut agent =
        tether_tests::harness::Proc::spawn("agent", &mut cmd, dir.path().join("agent.log"));
    eventually(PATIENCE, "the agent to retry its join", || {
        agent
            .log_text()
            .contains("join failed; retrying")
            .then_some(())
    });
    agent.signal("TERM");
    assert_eq!(
        agent.wait_exit(Duration::from_secs(10)),
        0,
        "{}",
        agent.log_text()
    );
}

#[test]
fn last_contact_survives_a_hub_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = Hub::start(
        &dir.path().join("hub"),
        HubOptions {
            heartbeat_interval: "200ms".into(),
            offline_grace: "1s".into(),
            extra: ["--last-contact-interval", "1s"].map(String::from).to_vec(),
            ..HubOptions::default()
        },
    );
    let mut ms = members(dir.path(), &hub, &[("a", "x=1")]);
    let joined = hub.cluster("a").unwrap()["lastSeen"]
        .as_str()
        .unwrap()
        .to_string();
    // Heard for a while after the session started, written down by the periodic record.
    let later = eventually(PATIENCE, "a later contact to be recorded", || {
        let seen = hub.cluster("a")?["lastSeen"].as_str()?.to_string();
        (seen.as_str() >= joined.as_str() && seen != joined).then_some(seen)
    });
    // Let the periodic write catch up with `later`, then crash.
    let mut crashed_after = later.clone();
    eventually(PATIENCE, "the periodic record", || {
        let seen = hub.cluster("a")?["lastSeen"].as_str()?.to_string();
        crashed_after = seen;
        (crashed_after > later).then_some(())
    });
    hub.kill();
    ms.get_mut("a").unwrap().agent.take().unwrap().proc.kill();
    hub.serve();
    let c = hub.cluster("a").unwrap();
    assert_eq!(c["status"], "Offline");
    let seen = c["lastSeen"].as_str().unwrap();
    assert!(
        seen >= later.as_str() && seen > joined.as_str(),
        "LAST SEEN after a crash is the last recorded contact ({later}), not the session start ({joined}): {c}"
    );
}
