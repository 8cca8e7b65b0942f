//! Teams and cluster sets end to end: an application team sees and changes only its own
//! clusters, workloads, namespaces, events and audit entries; the platform team keeps the
//! hub-wide roles.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use tether_tests::harness::{
    Agent, Cluster, Hub, HubOptions, bin, eventually, run, stderr, stdout,
};

const PATIENCE: Duration = Duration::from_secs(30);

fn member(dir: &Path, hub: &Hub, name: &str, labels: &str) -> (Cluster, Agent) {
    let c = Cluster::start(dir, name, 1, "v1.34.4");
    let (token, pin) = hub.token(name, &["--labels", labels]);
    let a = Agent::join(hub, &c, &dir.join(format!("{name}-state")), &token, &pin);
    hub.wait_status(name, "Ready", PATIENCE);
    (c, a)
}

fn ok(hub: &Hub, args: &[&str]) -> String {
    let out = hub.ctl(args);
    assert!(out.status.success(), "tetherctl {args:?}: {}", stderr(&out));
    stdout(&out)
}

fn workload(name: &str, ns: &str, extra: &str) -> String {
    format!(
        "apiVersion: tether.dev/v1alpha1\nkind: Workload\nmetadata: {{ name: {name} }}\nspec:\n  manifests:\n    - {{ apiVersion: v1, kind: ConfigMap, metadata: {{ name: {name}, namespace: {ns} }}, data: {{ k: v }} }}\n{extra}  placement: {{ clusterSelector: {{}} }}\n"
    )
}

#[test]
fn a_team_sees_and_changes_only_its_clusters_workloads_and_namespaces() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(&dir.path().join("hub"), HubOptions::default());
    let (eu1, _a1) = member(dir.path(), &hub, "eu-1", "region=eu");
    let (eu2, _a2) = member(dir.path(), &hub, "eu-2", "region=eu");
    let (us1, _a3) = member(dir.path(), &hub, "us-1", "region=us");
    // The platform team: a cluster set, a team owning namespace `payments`, operator there.
    ok(
        &hub,
        &["clusterset", "create", "eu", "--selector", "region=eu"],
    );
    ok(
        &hub,
        &["team", "create", "payments", "--namespaces", "payments"],
    );
    let alice = hub.user_config("alice", "none");
    let bob = hub.user_config("bob", "none");
    ok(&hub, &["team", "add-member", "payments", "alice", "bob"]);
    ok(
        &hub,
        &[
            "team",
            "grant",
            "payments",
            "--clusterset",
            "eu",
            "--role",
            "operator",
        ],
    );
    let as_user = |cfg: &Path, args: &[&str]| -> Output {
        run(Command::new(bin("tetherctl"))
            .arg("--config")
            .arg(cfg)
            .args(args))
    };
    let json = |cfg: &Path, args: &[&str]| -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let out = as_user(cfg, &all);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };

    // She sees only the clusters of her sets.
    let clusters: Vec<String> = json(&alice, &["cluster", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(clusters, ["eu-1", "eu-2"]);
    let out = as_user(&alice, &["cluster", "get", "us-1"]);
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
    let me = json(&alice, &["whoami"]);
    assert_eq!(me["teams"][0], "payments", "{me}");

    // Her workload, though it selects every cluster, runs only where her team may place it.
    let w = dir.path().join("pay.yaml");
    std::fs::write(
        &w,
        workload(
            "pay",
            "payments",
            "    - { apiVersion: v1, kind: Namespace, metadata: { name: payments } }\n",
        ),
    )
    .unwrap();
    let out = as_user(&alice, &["apply", "-f", w.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = as_user(
        &alice,
        &["wait", "pay", "--for", "available", "--timeout", "60s"],
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    for c in [&eu1, &eu2] {
        assert!(c.get(&["configmap", "pay", "-n", "payments"]).is_some());
    }
    assert!(
        us1.get(&["namespace", "payments"]).is_none(),
        "placed outside the team's sets"
    );
    assert_eq!(json(&alice, &["get", "workloads"])[0]["team"], "payments");

    // Her objects stay in her namespaces; cluster-scoped kinds need a grant.
    for (name, yaml, why) in [
        ("other-ns", workload("other-ns", "kube-system", ""), "may not use namespace"),
        (
            "crb",
            "apiVersion: tether.dev/v1alpha1\nkind: Workload\nmetadata: { name: crb }\nspec:\n  manifests:\n    - { apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRoleBinding, metadata: { name: crb }, roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin }, subjects: [ { kind: User, name: alice } ] }\n  placement: { clusterSelector: {} }\n".to_string(),
            "cluster-scoped",
        ),
    ] {
        let f = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&f, yaml).unwrap();
        let out = as_user(&alice, &["apply", "-f", f.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", stderr(&out));
        assert!(stderr(&out).contains(why), "{name}: {}", stderr(&out));
    }

    // The platform team's workload is invisible to her and not hers to change.
    let infra = dir.path().join("infra.yaml");
    std::fs::write(&infra, workload("infra", "kube-system", "")).unwrap();
    ok(&hub, &["apply", "-f", infra.to_str().unwrap()]);
    hub.wait_available("infra", "60s");
    let names: Vec<String> = json(&alice, &["get", "workloads"])
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["pay"]);
    let out = as_user(&alice, &["delete", "workload", "infra"]);
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
    let out = as_user(&alice, &["status", "infra"]);
    assert!(!out.status.success());
    // A workload of the same name cannot be taken over.
    let out = as_user(
        &alice,
        &[
            "apply",
            "-f",
            dir.path().join("infra.yaml").to_str().unwrap(),
        ],
    );
    assert!(
        !out.status.success(),
        "she took over the platform's workload"
    );
    let events = json(&alice, &["events"]);
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["workload"] == "pay"),
        "{events}"
    );
    // The audit log shows her team's entries only.
    let audit = json(&alice, &["audit"]);
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["actor"] == "user/alice" || e["actor"] == "user/bob"),
        "{audit}"
    );
    assert!(!audit.as_array().unwrap().is_empty());

    // A teammate manages the team's workload; a user of no team sees nothing.
    let out = as_user(&bob, &["rollout", "pause", "pay"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let carol = hub.user_config("carol", "none");
    assert_eq!(json(&carol, &["cluster", "list"]), Value::Array(vec![]));
    assert_eq!(json(&carol, &["get", "workloads"]), Value::Array(vec![]));

    // Taking the grant away takes the team's workload off those clusters.
    ok(&hub, &["team", "revoke", "payments", "--clusterset", "eu"]);
    eventually(
        PATIENCE,
        "the team's workload removed from its former clusters",
        || {
            eu1.get(&["configmap", "pay", "-n", "payments"])
                .is_none()
                .then_some(())
        },
    );
}

#[test]
fn the_agent_keeps_a_teams_objects_in_its_namespaces_whatever_the_hub_guessed() {
    // A custom kind the hub cannot know is cluster-scoped: the agent asks the member.
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(&dir.path().join("hub"), HubOptions::default());
    let (c, _a) = member(dir.path(), &hub, "eu-1", "region=eu");
    // The platform installs a cluster-scoped kind.
    let crd = dir.path().join("crd.yaml");
    std::fs::write(
        &crd,
        "apiVersion: tether.dev/v1alpha1\nkind: Workload\nmetadata: { name: crd }\nspec:\n  manifests:\n    - apiVersion: apiextensions.k8s.io/v1\n      kind: CustomResourceDefinition\n      metadata: { name: gadgets.example.dev }\n      spec:\n        group: example.dev\n        scope: Cluster\n        names: { kind: Gadget, plural: gadgets, singular: gadget }\n        versions: [ { name: v1, served: true, storage: true, schema: { openAPIV3Schema: { type: object, x-kubernetes-preserve-unknown-fields: true } } } ]\n  placement: { clusterSelector: {} }\n",
    )
    .unwrap();
    ok(&hub, &["apply", "-f", crd.to_str().unwrap()]);
    hub.wait_available("crd", "60s");
    ok(
        &hub,
        &["clusterset", "create", "eu", "--selector", "region=eu"],
    );
    ok(
        &hub,
        &["team", "create", "payments", "--namespaces", "payments"],
    );
    ok(
        &hub,
        &[
            "team",
            "grant",
            "payments",
            "--clusterset",
            "eu",
            "--role",
            "operator",
        ],
    );
    // Declared with the team's namespace, the hub takes it for namespaced; the member says
    // otherwise and the agent refuses it.
    let w = dir.path().join("gadget.yaml");
    std::fs::write(
        &w,
        "apiVersion: tether.dev/v1alpha1\nkind: Workload\nmetadata: { name: gadget }\nspec:\n  manifests:\n    - { apiVersion: example.dev/v1, kind: Gadget, metadata: { name: g1, namespace: payments } }\n  placement: { clusterSelector: {} }\n",
    )
    .unwrap();
    ok(
        &hub,
        &["apply", "-f", w.to_str().unwrap(), "--team", "payments"],
    );
    let s = eventually(PATIENCE, "the agent to refuse the gadget", || {
        hub.cluster_status("gadget", "eu-1")
            .filter(|s| s["phase"] == "Degraded")
    });
    assert!(
        s["message"].as_str().unwrap().contains("cluster-scoped"),
        "{s}"
    );
    assert!(c.get(&["gadgets.example.dev", "g1"]).is_none());
}

#[test]
fn a_cluster_set_takes_a_new_selector_and_the_teams_granted_on_it_follow() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(&dir.path().join("hub"), HubOptions::default());
    let (_eu1, _a1) = member(dir.path(), &hub, "eu-1", "region=eu");
    let (_us1, _a2) = member(dir.path(), &hub, "us-1", "region=us");
    ok(
        &hub,
        &["clusterset", "create", "west", "--selector", "region=eu"],
    );
    ok(&hub, &["team", "create", "web", "--namespaces", "web"]);
    let alice = hub.user_config("alice", "none");
    ok(&hub, &["team", "add-member", "web", "alice"]);
    ok(
        &hub,
        &[
            "team",
            "grant",
            "web",
            "--clusterset",
            "west",
            "--role",
            "viewer",
        ],
    );
    let sees = |cfg: &Path| -> Vec<String> {
        let out = run(Command::new(bin("tetherctl"))
            .arg("--config")
            .arg(cfg)
            .args(["cluster", "list", "-o", "json"]));
        assert!(out.status.success(), "{}", stderr(&out));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(sees(&alice), ["eu-1"]);

    let out = ok(
        &hub,
        &[
            "clusterset",
            "update",
            "west",
            "--selector",
            "region in (eu,us)",
        ],
    );
    assert_eq!(out, "cluster set west updated: 2 clusters now\n");
    assert_eq!(sees(&alice), ["eu-1", "us-1"]);

    // Only admins change cluster sets; a bad selector is a usage error.
    let out = run(Command::new(bin("tetherctl"))
        .arg("--config")
        .arg(&alice)
        .args(["clusterset", "update", "west", "--selector", "region=us"]));
    assert!(
        stderr(&out).contains("may not change cluster sets"),
        "{}",
        stderr(&out)
    );
    assert_eq!(sees(&alice), ["eu-1", "us-1"]);
    let out = hub.ctl(&["clusterset", "update", "west", "--selector", "region in"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}
