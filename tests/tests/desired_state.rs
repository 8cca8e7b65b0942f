//! Desired state end to end with real processes: placement and overrides, delivery by
//! revision, server-side apply, prune, delete, drift, health, status and offline autonomy.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use tether_tests::harness::{Agent, Cluster, Hub, HubOptions, eventually, stderr, stdout};

const PATIENCE: Duration = Duration::from_secs(30);

fn hub(dir: &Path) -> Hub {
    Hub::start(
        &dir.join("hub"),
        HubOptions {
            extra: vec!["--resync-interval".into(), "1s".into()],
            ..HubOptions::default()
        },
    )
}

/// A member cluster with labels, its agent joined and Ready.
fn member(
    dir: &Path,
    hub: &Hub,
    name: &str,
    labels: &str,
    agent_args: &[&str],
) -> (Cluster, Agent) {
    let cluster = Cluster::start(dir, name, 1, "v1.33.4");
    let (token, pin) = hub.token(name, &["--labels", labels]);
    let mut args = vec!["--token", token.as_str(), "--ca-pin", pin.as_str()];
    args.extend(agent_args);
    let agent = Agent::start(hub, &cluster, &dir.join(format!("{name}-state")), &args);
    hub.wait_status(name, "Ready", PATIENCE);
    (cluster, agent)
}

fn data(cluster: &Cluster, ns: &str, name: &str) -> Option<Value> {
    cluster
        .get(&["configmap", name, "-n", ns])
        .map(|c| c["data"].clone())
}

const WEB: &str = r#"
apiVersion: tether.dev/v1alpha1
kind: Workload
metadata: { name: web, labels: { team: shop } }
spec:
  manifests:
    - apiVersion: v1
      kind: Namespace
      metadata: { name: shop }
    - apiVersion: apps/v1
      kind: Deployment
      metadata: { name: web, namespace: shop }
      spec:
        replicas: 3
        selector: { matchLabels: { app: web } }
        template:
          metadata: { labels: { app: web } }
          spec: { containers: [ { name: web, image: "nginx:1.27" } ] }
    - apiVersion: v1
      kind: ConfigMap
      metadata: { name: web-config, namespace: shop }
      data: { mode: full }
  placement:
    clusterSelector: { matchLabels: { env: prod } }
  overrides:
    - clusterSelector: { matchLabels: { tier: edge } }
      patches:
        - target: { kind: Deployment, name: web }
          merge: { spec: { replicas: 1 } }
        - target: { kind: ConfigMap, name: web-config }
          json: [ { op: replace, path: /data/mode, value: lite } ]
  statusFeedback:
    - { target: { kind: Deployment, name: web }, jsonPath: .status.readyReplicas }
"#;

#[test]
fn a_workload_reaches_three_clusters_by_selector_with_the_edge_override() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path());
    let (edge, _a1) = member(dir.path(), &hub, "edge-1", "env=prod,tier=edge", &[]);
    let (core1, _a2) = member(dir.path(), &hub, "core-1", "env=prod,tier=core", &[]);
    let (core2, _a3) = member(dir.path(), &hub, "core-2", "env=prod", &[]);
    let (dev, _a4) = member(dir.path(), &hub, "dev-1", "env=dev,tier=edge", &[]);

    let started = Instant::now();
    hub.apply_ok("web", WEB);
    hub.wait_available("web", "60s");
    eprintln!(
        "measured: apply to Available on 3 clusters: {:?}",
        started.elapsed()
    );

    for (c, replicas, mode) in [(&edge, 1, "lite"), (&core1, 3, "full"), (&core2, 3, "full")] {
        let d = c
            .get(&["deployment", "web", "-n", "shop", "--show-managed-fields"])
            .expect("deployment");
        assert_eq!(d["spec"]["replicas"], replicas);
        assert_eq!(d["metadata"]["labels"]["tether.dev/workload"], "web");
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx:1.27"
        );
        assert_eq!(data(c, "shop", "web-config").unwrap()["mode"], mode);
        let managers: Vec<String> = d["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["manager"].as_str().unwrap().to_string())
            .collect();
        assert!(
            managers.contains(&"tether-agent".to_string()),
            "{managers:?}"
        );
    }
    assert!(
        dev.get(&["namespace", "shop"]).is_none(),
        "dev-1 is not placed"
    );

    let list = hub.ctl_json(&["get", "workloads"]);
    assert_eq!(list[0]["clusters"], 3);
    assert_eq!(list[0]["available"], 3);
    let edge_status = hub.cluster_status("web", "edge-1").unwrap();
    assert_eq!(
        edge_status["feedback"]["Deployment/web.status.readyReplicas"],
        "1"
    );
    assert_eq!(edge_status["phase"], "Available");
    let table = stdout(&hub.ctl(&["status", "web"]));
    for col in ["CLUSTER", "REVISION", "PHASE", "READY", "MESSAGE", "AGE"] {
        assert!(table.contains(col), "{table}");
    }
    let yaml = stdout(&hub.ctl(&["get", "workload", "web", "-o", "yaml"]));
    assert!(
        yaml.contains("kind: Workload") && yaml.contains("revision: 1"),
        "{yaml}"
    );

    // A matching cluster that joins later gets its copy (override included) at the current
    // revision; one that does not match gets nothing.
    let (edge2, _a5) = member(dir.path(), &hub, "edge-2", "env=prod,tier=edge", &[]);
    let (_dev2, _a6) = member(dir.path(), &hub, "dev-2", "env=dev", &[]);
    hub.wait_available("web", "60s");
    let d = edge2
        .get(&["deployment", "web", "-n", "shop"])
        .expect("deployment on edge-2");
    assert_eq!(d["spec"]["replicas"], 1);
    assert_eq!(data(&edge2, "shop", "web-config").unwrap()["mode"], "lite");
    let list = hub.ctl_json(&["get", "workloads"]);
    assert_eq!(list[0]["clusters"], 4, "{list}");
    assert_eq!(list[0]["revision"], 1, "{list}");
}

const TWO: &str = r#"
apiVersion: tether.dev/v1alpha1
kind: Workload
metadata: { name: one }
spec:
  manifests:
    - { apiVersion: v1, kind: ConfigMap, metadata: { name: a }, data: { v: "1" } }
    - { apiVersion: v1, kind: ConfigMap, metadata: { name: b }, data: { v: "1" } }
  placement: { clusters: [ edge-1 ] }
---
apiVersion: tether.dev/v1alpha1
kind: Workload
metadata: { name: two }
spec:
  manifests:
    - { apiVersion: v1, kind: ConfigMap, metadata: { name: c }, data: { v: "1" } }
  placement: { clusters: [ edge-1 ] }
  deletePolicy: Orphan
"#;

#[test]
fn changes_deliver_only_the_new_revision_then_prune_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path());
    let (c, agent) = member(dir.path(), &hub, "edge-1", "env=prod", &[]);
    hub.apply_ok("two", TWO);
    hub.wait_available("one", "30s");
    hub.wait_available("two", "30s");
    let sent = hub.metric("tether_desired_sent_total");
    assert_eq!(sent, 2.0);

    // Change one manifest of `one`: only `one` revision 2 travels.
    hub.apply_ok(
        "two",
        &TWO.replacen("data: { v: \"1\" } }", "data: { v: \"2\" } }", 1),
    );
    eventually(PATIENCE, "a updated", || {
        (data(&c, "default", "a")?["v"] == "2").then_some(())
    });
    hub.wait_available("one", "30s");
    assert_eq!(
        hub.metric("tether_desired_sent_total"),
        3.0,
        "only the changed workload is sent"
    );
    let log = agent.proc.log_text();
    assert!(log.contains("workload=one revision=2"), "{log}");
    assert!(!log.contains("workload=two revision=2"), "{log}");

    // Drop `b` from the workload: it is pruned.
    let without_b = TWO
        .replacen("data: { v: \"1\" } }", "data: { v: \"2\" } }", 1)
        .replace("    - { apiVersion: v1, kind: ConfigMap, metadata: { name: b }, data: { v: \"1\" } }\n", "");
    hub.apply_ok("two", &without_b);
    eventually(PATIENCE, "b pruned", || {
        data(&c, "default", "b").is_none().then_some(())
    });
    assert!(data(&c, "default", "a").is_some());

    // Delete: `one` takes its objects along; `two` (Orphan) leaves them running.
    assert!(hub.ctl(&["delete", "workload", "one"]).status.success());
    assert!(hub.ctl(&["delete", "workload", "two"]).status.success());
    eventually(PATIENCE, "a deleted", || {
        data(&c, "default", "a").is_none().then_some(())
    });
    eventually(PATIENCE, "workloads gone from the hub", || {
        hub.ctl_json(&["get", "workloads"])
            .as_array()?
            .is_empty()
            .then_some(())
    });
    assert!(
        data(&c, "default", "c").is_some(),
        "an orphaned object stays"
    );
}

#[test]
fn an_agent_offline_during_two_updates_receives_only_the_latest() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path());
    let (c, mut agent) = member(dir.path(), &hub, "edge-1", "env=prod", &[]);
    let w = |v: &str| {
        format!(
            "apiVersion: tether.dev/v1alpha1\nkind: Workload\nmetadata: {{ name: cfg }}\nspec:\n  manifests:\n    - {{ apiVersion: v1, kind: ConfigMap, metadata: {{ name: cfg }}, data: {{ v: \"{v}\" }} }}\n  placement: {{ clusters: [ edge-1 ] }}\n"
        )
    };
    hub.apply_ok("cfg", &w("1"));
    hub.wait_available("cfg", "30s");
    agent.proc.kill();
    hub.wait_status("edge-1", "Offline", PATIENCE);

    // While it is away the status is stale, never healthy.
    let s = hub.cluster_status("cfg", "edge-1").unwrap();
    assert_eq!(s["stale"], true, "{s}");
    let list = hub.ctl_json(&["get", "workloads"]);
    assert_eq!(
        (list[0]["available"].as_u64(), list[0]["stale"].as_u64()),
        (Some(0), Some(1))
    );
    assert!(stdout(&hub.ctl(&["status", "cfg"])).contains("(stale)"));

    hub.apply_ok("cfg", &w("2"));
    hub.apply_ok("cfg", &w("3"));
    let before = hub.metric("tether_desired_sent_total");
    let agent = Agent::start(&hub, &c, &dir.path().join("edge-1-state"), &[]);
    eventually(PATIENCE, "latest revision applied", || {
        (data(&c, "default", "cfg")?["v"] == "3").then_some(())
    });
    hub.wait_available("cfg", "30s");
    assert_eq!(
        hub.metric("tether_desired_sent_total") - before,
        1.0,
        "exactly one revision is sent"
    );
    let log = agent.proc.log_text();
    assert!(log.contains("workload=cfg revision=3"), "{log}");
    assert!(!log.contains("workload=cfg revision=2"), "{log}");

    // Reconnecting with nothing changed sends no workload at all.
    let before = hub.metric("tether_desired_sent_total");
    let bytes = hub.metric("tether_stream_bytes_sent_total");
    drop(agent);
    hub.wait_status("edge-1", "Offline", PATIENCE);
    let _agent = Agent::start(&hub, &c, &dir.path().join("edge-1-state"), &[]);
    hub.wait_status("edge-1", "Ready", PATIENCE);
    hub.wait_available("cfg", "30s");
    assert_eq!(
        hub.metric("tether_desired_sent_total"),
        before,
        "an unchanged workload is never re-sent"
    );
    eprintln!(
        "measured: bytes the hub sent on a reconnect with nothing changed (assigned list + heartbeats so far): {}",
        hub.metric("tether_stream_bytes_sent_total") - bytes
    );
}

#[test]
fn drift_is_corrected_and_reported_but_ignored_fields_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path());
    let (c, _agent) = member(
        dir.path(),
        &hub,
        "edge-1",
        "env=prod",
        &["--resync-interval", "500ms"],
    );
    let w = r#"
apiVersion: tether.dev/v1alpha1
kind: Workload
metadata: { name: app }
spec:
  manifests:
    - apiVersion: apps/v1
      kind: Deployment
      metadata: { name: app }
      spec: { replicas: 2, selector: { matchLabels: { app: app } }, template: { metadata: { labels: { app: app } }, spec: { containers: [ { name: app, image: "app:1" } ] } } }
    - { apiVersion: v1, kind: ConfigMap, metadata: { name: app }, data: { mode: "on" } }
  placement: { clusters: [ edge-1 ] }
  apply:
    ignoreFields: [ { target: { kind: Deployment, name: app }, paths: [ /spec/replicas ] } ]
"#;
    hub.apply_ok("app", w);
    hub.wait_available("app", "30s");

    let out = c.kubectl(&[
        "patch",
        "configmap",
        "app",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"mode":"off"}}"#,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    eventually(PATIENCE, "drift corrected", || {
        (data(&c, "default", "app")?["mode"] == "on").then_some(())
    });
    let s = eventually(PATIENCE, "drift reported", || {
        hub.cluster_status("app", "edge-1")
            .filter(|s| s["driftCorrections"].as_u64() >= Some(1))
    });
    let d = &s["drift"][0];
    assert_eq!(d["object"], "ConfigMap/default/app", "{s}");
    assert_eq!(d["field"], ".data.mode", "{s}");
    assert_eq!(d["manager"], "kubectl-patch", "{s}");

    // An HPA (here: kubectl) owning replicas is not fought. A later drift of the ConfigMap
    // proves the agent passed over the Deployment again after the change.
    let out = c.kubectl(&[
        "patch",
        "deployment",
        "app",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"replicas":5}}"#,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let corrections = s["driftCorrections"].as_u64().unwrap();
    c.kubectl(&[
        "patch",
        "configmap",
        "app",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"mode":"again"}}"#,
    ]);
    eventually(PATIENCE, "second drift corrected", || {
        hub.cluster_status("app", "edge-1")
            .filter(|s| s["driftCorrections"].as_u64() > Some(corrections))
    });
    eventually(PATIENCE, "configmap restored", || {
        (data(&c, "default", "app")?["mode"] == "on").then_some(())
    });
    let d = c.get(&["deployment", "app"]).unwrap();
    assert_eq!(d["spec"]["replicas"], 5, "an ignored field was reverted");
}

#[test]
fn a_crd_and_its_custom_resource_apply_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path());
    let (c, _agent) = member(dir.path(), &hub, "edge-1", "env=prod", &[]);
    // The custom resource is written before its definition on purpose.
    let w = r#"
apiVersion: tether.dev/v1alpha1
kind: Workload
metadata: { name: widgets }
spec:
  manifests:
    - { apiVersion: example.dev/v1, kind: Widget, metadata: { name: w1 }, spec: { size: 3 } }
    - apiVersion: apiextensions.k8s.io/v1
      kind: CustomResourceDefinition
      metadata: { name: widgets.example.dev }
      spec:
        group: example.dev
        scope: Namespaced
        names: { kind: Widget, plural: widgets, singular: widget }
        versions: [ { name: v1, served: true, storage: true, schema: { openAPIV3Schema: { type: object, x-kubernetes-preserve-unknown-fields: true } } } ]
  placement: { clusters: [ edge-1 ] }
"#;
    hub.apply_ok("widgets", w);
    hub.wait_available("widgets", "60s");
    let widget = c
        .get(&["widgets.example.dev", "w1"])
        .expect("the custom resource exists");
    assert_eq!(widget["spec"]["size"], 3);
}

#[test]
fn one_invalid_manifest_fails_alone_and_unmanaged_objects_are_not_taken_without_adopt() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path());
    let (c, _agent) = member(dir.path(), &hub, "edge-1", "env=prod", &[]);
    let existing = dir.path().join("existing.yaml");
    std::fs::write(&existing, "apiVersion: v1\nkind: ConfigMap\nmetadata: { name: taken }\ndata: { owner: someone-else }\n").unwrap();
    assert!(
        c.kubectl(&["apply", "-f", &existing.display().to_string()])
            .status
            .success()
    );

    let w = |policy: &str| {
        format!(
            r#"
apiVersion: tether.dev/v1alpha1
kind: Workload
metadata: {{ name: five }}
spec:
  manifests:
    - {{ apiVersion: v1, kind: ConfigMap, metadata: {{ name: c1 }}, data: {{ k: v }} }}
    - {{ apiVersion: v1, kind: ConfigMap, metadata: {{ name: c2 }}, data: {{ k: v }} }}
    - {{ apiVersion: v1, kind: ConfigMap, metadata: {{ name: bad, namespace: nowhere }}, data: {{ k: v }} }}
    - {{ apiVersion: v1, kind: ConfigMap, metadata: {{ name: c4 }}, data: {{ k: v }} }}
    - {{ apiVersion: v1, kind: ConfigMap, metadata: {{ name: taken }}, data: {{ owner: tether }} }}
  placement: {{ clusters: [ edge-1 ] }}
  apply: {{ conflictPolicy: {policy} }}
"#
        )
    };
    hub.apply_ok("five", &w("Abort"));
    let s = eventually(PATIENCE, "a Degraded report", || {
        hub.cluster_status("five", "edge-1")
            .filter(|s| s["phase"] == "Degraded")
    });
    for name in ["c1", "c2", "c4"] {
        assert!(
            data(&c, "default", name).is_some(),
            "{name} should apply despite the bad one"
        );
    }
    let bad = s["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "bad")
        .unwrap()
        .clone();
    assert_eq!(bad["health"], "Failed");
    assert!(
        bad["message"].as_str().unwrap().contains("not found"),
        "{bad}"
    );
    assert!(s["message"].as_str().unwrap().contains("bad"), "{s}");
    let taken = s["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "taken")
        .unwrap()
        .clone();
    assert!(
        taken["message"]
            .as_str()
            .unwrap()
            .contains("not managed by Tether"),
        "{taken}"
    );
    assert_eq!(
        data(&c, "default", "taken").unwrap()["owner"],
        "someone-else",
        "Abort must not touch it"
    );

    hub.apply_ok("five", &w("Adopt"));
    eventually(PATIENCE, "adopted", || {
        (data(&c, "default", "taken")?["owner"] == "tether").then_some(())
    });
}

#[test]
fn an_agent_restarted_without_its_hub_restores_what_was_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = hub(dir.path());
    let (c, mut agent) = member(
        dir.path(),
        &hub,
        "edge-1",
        "env=prod",
        &["--resync-interval", "500ms"],
    );
    let w = "apiVersion: tether.dev/v1alpha1\nkind: Workload\nmetadata: { name: keep }\nspec:\n  manifests:\n    - { apiVersion: v1, kind: ConfigMap, metadata: { name: keep }, data: { k: v } }\n  placement: { clusters: [ edge-1 ] }\n";
    hub.apply_ok("keep", w);
    hub.wait_available("keep", "30s");

    hub.kill();
    agent.proc.kill();
    let _agent = Agent::start(
        &hub,
        &c,
        &dir.path().join("edge-1-state"),
        &["--resync-interval", "500ms"],
    );
    assert!(c.kubectl(&["delete", "configmap", "keep"]).status.success());
    eventually(PATIENCE, "restored while the hub is down", || {
        data(&c, "default", "keep").map(|_| ())
    });

    // What the agent saw while offline reaches the hub when it returns.
    hub.serve();
    let s = eventually(PATIENCE, "the offline drift reported", || {
        hub.cluster_status("keep", "edge-1")
            .filter(|s| s["driftCorrections"].as_u64() >= Some(1))
    });
    assert_eq!(s["drift"][0]["field"], "(deleted)", "{s}");
    assert_eq!(s["phase"], "Available");
}

#[test]
fn bad_workloads_are_rejected_with_file_document_and_field_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(
        &dir.path().join("hub"),
        HubOptions {
            extra: vec!["--max-bundle-size".into(), "4096".into()],
            ..HubOptions::default()
        },
    );
    let good = "apiVersion: tether.dev/v1alpha1\nkind: Workload\nmetadata: { name: ok }\nspec:\n  manifests:\n    - { apiVersion: v1, kind: ConfigMap, metadata: { name: ok }, data: { k: v } }\n  placement: { clusterSelector: {} }\n";
    let cases: Vec<(&str, String, &str)> = vec![
        ("unknown field", good.replace("placement: {", "placemnt: {"), "field spec.placemnt: unknown field `placemnt`"),
        ("no kind", good.replace("kind: ConfigMap, ", ""), "field spec.manifests[0].kind: required"),
        ("no name", good.replace("metadata: { name: ok }, data", "metadata: {}, data"), "field spec.manifests[0].metadata.name: required"),
        (
            "patch target",
            good.replace(
                "  placement:",
                "  overrides: [ { patches: [ { target: { kind: ConfigMap, name: nope }, merge: { data: { k: x } } } ] } ]\n  placement:",
            ),
            "field spec.overrides[0].patches[0].target: target ConfigMap/nope matches no manifest",
        ),
        ("selector", good.replace("clusterSelector: {}", "clusterSelector: { matchLabels: { \"bad key!\": x } }"), "field spec.placement.clusterSelector"),
    ];
    for (what, yaml, expected) in cases {
        // The bad one is the second document: the first must not be stored either.
        let text = format!("{good}---\n{yaml}");
        let out = hub.apply(&format!("bad-{}", what.replace(' ', "-")), &text);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{what}: {err}");
        assert!(
            err.contains("document 2") && err.contains(expected),
            "{what}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{what}: {err}");
    }
    // Too large for the hub's limit: refused by the hub, with the limit named.
    let big = good.replace(
        "data: { k: v }",
        &format!("data: {{ k: \"{}\" }}", "x".repeat(5000)),
    );
    let out = hub.apply("big", &big);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("over this hub's limit"),
        "{}",
        stderr(&out)
    );
    // A folder of plain manifests with a mistake names the file and document.
    let plain = dir.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    std::fs::write(plain.join("a.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata: { name: a }\n---\napiVersion: v1\nmetadata: { name: b }\n").unwrap();
    let out = hub.ctl(&[
        "workload",
        "create",
        "x",
        "--from",
        &plain.display().to_string(),
        "--selector",
        "env=prod",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("a.yaml, document 2, field kind: required"),
        "{}",
        stderr(&out)
    );

    assert_eq!(
        hub.ctl_json(&["get", "workloads"]),
        serde_json::json!([]),
        "nothing may be stored"
    );

    // The same folder, fixed, becomes a workload.
    std::fs::write(
        plain.join("a.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: { name: a }\n",
    )
    .unwrap();
    let out = hub.ctl(&[
        "workload",
        "create",
        "x",
        "--from",
        &plain.display().to_string(),
        "--selector",
        "env=prod",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let w: Value =
        serde_json::from_slice(&hub.ctl(&["get", "workload", "x", "-o", "json"]).stdout).unwrap();
    assert_eq!(
        w["spec"]["placement"]["clusterSelector"]["matchLabels"]["env"],
        "prod"
    );
}
