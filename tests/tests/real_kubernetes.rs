//! Tether against real Kubernetes: control planes built from Go modules (kube-apiserver,
//! kube-controller-manager, kube-scheduler, etcd, with KWOK playing the nodes), started by
//! `scripts/real-cluster`, with the real hub, agents, tetherctl and kubectl of the same
//! release.
//!
//! What the emulator cannot show: defaulting and normalisation against drift detection, real
//! controllers deciding Available, real managedFields, RBAC, protobuf bodies and connection
//! upgrades through the proxy.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use tether_tests::harness::{
    Agent, Cluster, ElectedAgent, Hub, HubOptions, eventually, free_port, http_get, lease_holder,
    metric, run, stderr, stdout,
};
use tether_tests::real;

/// Real control planes on two shared cores are slower than the emulator.
const PATIENCE: Duration = Duration::from_secs(120);

fn hub(dir: &Path) -> Hub {
    Hub::start(
        &dir.join("hub"),
        HubOptions {
            extra: vec!["--resync-interval".into(), "2s".into()],
            ..HubOptions::default()
        },
    )
}

/// A member agent with its metrics port.
struct Member {
    cluster: Cluster,
    agent: Agent,
    metrics: SocketAddr,
}

impl Member {
    fn metric(&self, name: &str) -> f64 {
        metric(&http_get(self.metrics, "/metrics").1, name)
    }
}

fn join(dir: &Path, hub: &Hub, cluster: Cluster, name: &str, labels: &str, resync: &str) -> Member {
    let (token, pin) = hub.token(name, &["--labels", labels]);
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let agent = Agent::start(
        hub,
        &cluster,
        &dir.join(format!("{name}-state")),
        &[
            "--token",
            &token,
            "--ca-pin",
            &pin,
            "--resync-interval",
            resync,
            "--metrics-listen",
            &metrics.to_string(),
        ],
    );
    hub.wait_status(name, "Ready", PATIENCE);
    Member {
        cluster,
        agent,
        metrics,
    }
}

fn kubectl_ok(c: &Cluster, args: &[&str]) -> String {
    let out = c.kubectl(args);
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// Every kind of object a team ships, written the way people write them (quantities in the
/// forms the server rewrites, a port without its protocol, a Secret in `stringData`, a custom
/// resource before its definition).
const SHOP: &str = r#"
apiVersion: tether.dev/v1alpha1
kind: Workload
metadata: { name: shop }
spec:
  manifests:
    - { apiVersion: example.dev/v1, kind: Widget, metadata: { name: w1, namespace: shop }, spec: { size: 3 } }
    - { apiVersion: v1, kind: Namespace, metadata: { name: shop } }
    - apiVersion: apps/v1
      kind: Deployment
      metadata: { name: web, namespace: shop }
      spec:
        replicas: 2
        selector: { matchLabels: { app: web } }
        template:
          metadata: { labels: { app: web } }
          spec:
            containers:
              - name: web
                image: "nginx:1.27"
                resources: { requests: { cpu: 0.5, memory: 1024Mi }, limits: { memory: 2048Mi } }
                ports: [ { containerPort: 80 } ]
    - apiVersion: apps/v1
      kind: Deployment
      metadata: { name: worker, namespace: shop }
      spec:
        replicas: 1
        selector: { matchLabels: { app: worker } }
        template:
          metadata: { labels: { app: worker } }
          spec: { containers: [ { name: worker, image: "busybox:1.36", args: [ sleep, "3600" ] } ] }
    - apiVersion: v1
      kind: Service
      metadata: { name: web, namespace: shop }
      spec: { selector: { app: web }, ports: [ { port: 80, targetPort: 80 } ] }
    - { apiVersion: v1, kind: ConfigMap, metadata: { name: web-config, namespace: shop }, data: { mode: full } }
    - { apiVersion: v1, kind: Secret, metadata: { name: web-secret, namespace: shop }, stringData: { password: s3cret } }
    - apiVersion: apiextensions.k8s.io/v1
      kind: CustomResourceDefinition
      metadata: { name: widgets.example.dev }
      spec:
        group: example.dev
        scope: Namespaced
        names: { kind: Widget, plural: widgets, singular: widget, listKind: WidgetList }
        versions:
          - name: v1
            served: true
            storage: true
            schema:
              openAPIV3Schema:
                type: object
                properties:
                  spec: { type: object, properties: { size: { type: integer } } }
  placement:
    clusterSelector: { matchLabels: { env: prod } }
  apply:
    # The worker's replicas belong to an autoscaler.
    ignoreFields: [ { target: { kind: Deployment, name: worker }, paths: [ /spec/replicas ] } ]
  statusFeedback:
    - { target: { kind: Deployment, name: web }, jsonPath: .status.availableReplicas }
"#;

const SHOP_OBJECTS: f64 = 8.0;

/// The sum of one labelled counter's series with this label value.
fn api_calls(m: &Member, verb: &str) -> f64 {
    let text = http_get(m.metrics, "/metrics").1;
    let series = format!("tether_agent_api_requests_total{{verb=\"{verb}\"}}");
    metric(&text, &series).max(0.0)
}

fn drift_corrections(hub: &Hub, cluster: &str) -> u64 {
    hub.cluster_status("shop", cluster)
        .and_then(|s| s["driftCorrections"].as_u64())
        .unwrap_or(0)
}

#[test]
fn real_clusters_join_run_a_workload_and_see_drift_only_when_someone_changes_it() {
    let Some(_) = real::available("real_clusters_join_run_a_workload") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path());
    let r1 = real::start(dir.path(), "real-1", 2);
    let r2 = real::start(dir.path(), "real-2", 1);
    eprintln!("{}", real::status(&r1));
    let m1 = join(dir.path(), &hub, r1, "real-1", "env=prod", "2s");
    let m2 = join(dir.path(), &hub, r2, "real-2", "env=prod", "2s");

    // a. The facts come from the real API server.
    let facts = hub.ctl_json(&["cluster", "get", "real-1"]);
    assert_eq!(facts["kubernetesVersion"], "v1.34.4", "{facts}");
    assert_eq!(facts["nodeCount"], 2, "{facts}");
    assert_eq!(hub.ctl_json(&["cluster", "get", "real-2"])["nodeCount"], 1);

    // b. Available as the real controllers report it.
    hub.apply_ok("shop", SHOP);
    hub.wait_available("shop", "180s");
    for m in [&m1, &m2] {
        let d = m.cluster.get(&["deployment", "web", "-n", "shop"]).unwrap();
        assert_eq!(d["status"]["availableReplicas"], 2, "{d}");
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        // What the server made of what was declared.
        assert_eq!(c["resources"]["requests"]["cpu"], "500m", "{c}");
        assert_eq!(c["resources"]["requests"]["memory"], "1Gi", "{c}");
        assert_eq!(c["ports"][0]["protocol"], "TCP", "{c}");
        let s = m
            .cluster
            .get(&["secret", "web-secret", "-n", "shop"])
            .unwrap();
        assert_eq!(s["data"]["password"], "czNjcmV0", "{s}");
        assert!(s.get("stringData").is_none(), "{s}");
        let w = m
            .cluster
            .get(&["widgets.example.dev", "w1", "-n", "shop"])
            .unwrap();
        assert_eq!(w["spec"]["size"], 3);
        let pods = m
            .cluster
            .kubectl_json(&["get", "pods", "-n", "shop", "-l", "app=web"]);
        assert!(
            pods["items"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p["status"]["phase"] == "Running"),
            "{pods}"
        );
    }
    let st = hub.cluster_status("shop", "real-1").unwrap();
    assert_eq!(
        st["feedback"]["Deployment/web.status.availableReplicas"], "2",
        "{st}"
    );

    // c. Left alone for three drift intervals (counted by the agent's own passes over the
    // objects), nothing is corrected and nothing is applied again.
    let applies = m1.metric("tether_agent_applies_total{result=\"ok\"}");
    let gets = api_calls(&m1, "get");
    let dry = api_calls(&m1, "dry_run_apply");
    eventually(PATIENCE, "three drift passes over the workload", || {
        (api_calls(&m1, "get") >= gets + 3.0 * SHOP_OBJECTS).then_some(())
    });
    let passes = (api_calls(&m1, "get") - gets) / SHOP_OBJECTS;
    let calls = api_calls(&m1, "get") - gets + api_calls(&m1, "dry_run_apply") - dry
        + m1.metric("tether_agent_applies_total{result=\"ok\"}")
        - applies;
    eprintln!(
        "measured: {:.2} API calls per object per drift interval over {passes:.1} passes ({:.0} dry runs)",
        calls / (passes * SHOP_OBJECTS),
        api_calls(&m1, "dry_run_apply") - dry
    );
    assert_eq!(
        drift_corrections(&hub, "real-1"),
        0,
        "drift on an untouched workload"
    );
    assert_eq!(
        drift_corrections(&hub, "real-2"),
        0,
        "drift on an untouched workload"
    );
    assert_eq!(
        m1.metric("tether_agent_applies_total{result=\"ok\"}"),
        applies,
        "an untouched workload was applied again"
    );
    assert_eq!(m1.metric("tether_agent_drift_corrections_total"), 0.0);

    // kubectl scale of a declared field: put back, attributed to kubectl.
    kubectl_ok(
        &m1.cluster,
        &["scale", "deployment", "web", "-n", "shop", "--replicas=5"],
    );
    let st = eventually(PATIENCE, "the scale corrected and reported", || {
        hub.cluster_status("shop", "real-1")
            .filter(|s| s["driftCorrections"].as_u64() >= Some(1))
    });
    let d = &st["drift"][0];
    assert_eq!(d["object"], "Deployment/shop/web", "{st}");
    assert_eq!(d["field"], ".spec.replicas", "{st}");
    assert!(
        d["manager"].as_str().unwrap().starts_with("kubectl"),
        "{st}"
    );
    eventually(PATIENCE, "replicas back to 2", || {
        let d = m1.cluster.get(&["deployment", "web", "-n", "shop"])?;
        (d["spec"]["replicas"] == 2).then_some(())
    });

    // kubectl edit of a declared field, with the real editor flow.
    let out = run(Command::new(&m1.cluster.kubectl)
        .arg("--kubeconfig")
        .arg(&m1.cluster.kubeconfig)
        .args(["edit", "configmap", "web-config", "-n", "shop"])
        .env("KUBE_EDITOR", "sed -i s/mode:\\ full/mode:\\ edited/"));
    assert!(out.status.success(), "{}", stderr(&out));
    let st = eventually(PATIENCE, "the edit corrected and reported", || {
        hub.cluster_status("shop", "real-1").filter(|s| {
            s["drift"]
                .as_array()
                .is_some_and(|d| d.iter().any(|e| e["field"] == ".data.mode"))
        })
    });
    let e = st["drift"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["field"] == ".data.mode")
        .unwrap();
    assert_eq!(e["manager"], "kubectl-edit", "{st}");
    eventually(PATIENCE, "the ConfigMap restored", || {
        let c = m1.cluster.get(&["configmap", "web-config", "-n", "shop"])?;
        (c["data"]["mode"] == "full").then_some(())
    });

    // ignoreFields: the worker's replicas are someone else's.
    kubectl_ok(
        &m1.cluster,
        &[
            "scale",
            "deployment",
            "worker",
            "-n",
            "shop",
            "--replicas=3",
        ],
    );
    let before = drift_corrections(&hub, "real-1");
    let gets = api_calls(&m1, "get");
    eventually(PATIENCE, "two more passes", || {
        (api_calls(&m1, "get") >= gets + 2.0 * SHOP_OBJECTS).then_some(())
    });
    let w = m1
        .cluster
        .get(&["deployment", "worker", "-n", "shop"])
        .unwrap();
    assert_eq!(w["spec"]["replicas"], 3, "an ignored field was reverted");
    assert_eq!(
        drift_corrections(&hub, "real-1"),
        before,
        "an ignored field counted as drift"
    );
    drop(m2.agent);
}

fn policies(strategy: &str, conflict: &str, delete: &str, configmaps: &[(&str, &str)]) -> String {
    let manifests: String = configmaps
        .iter()
        .map(|(name, v)| {
            format!(
                "    - {{ apiVersion: v1, kind: ConfigMap, metadata: {{ name: {name}, namespace: default }}, data: {{ v: \"{v}\" }} }}\n"
            )
        })
        .collect();
    let name = format!("p-{}-{}", strategy.to_lowercase(), conflict.to_lowercase());
    format!(
        r#"
apiVersion: tether.dev/v1alpha1
kind: Workload
metadata: {{ name: {name} }}
spec:
  manifests:
{manifests}  placement: {{ clusters: [ real-1 ] }}
  apply: {{ updateStrategy: {strategy}, conflictPolicy: {conflict} }}
  deletePolicy: {delete}
"#
    )
}

fn value(c: &Cluster, name: &str) -> Option<String> {
    c.get(&["configmap", name, "-n", "default"])
        .and_then(|cm| cm["data"]["v"].as_str().map(str::to_string))
}

fn managers(c: &Cluster, name: &str) -> Vec<String> {
    c.get(&["configmap", name, "-n", "default", "--show-managed-fields"])
        .and_then(|cm| {
            cm["metadata"]["managedFields"].as_array().map(|a| {
                a.iter()
                    .filter_map(|m| m["manager"].as_str().map(str::to_string))
                    .collect()
            })
        })
        .unwrap_or_default()
}

fn object_message(hub: &Hub, workload: &str, object: &str) -> String {
    hub.cluster_status(workload, "real-1")
        .and_then(|s| {
            s["objects"]
                .as_array()?
                .iter()
                .find(|o| o["name"] == object)
                .map(|o| format!("{} {}", o["health"], o["message"]))
        })
        .unwrap_or_default()
}

#[test]
fn update_strategies_conflicts_prune_and_orphan_with_real_managed_fields() {
    let Some(_) = real::available("update_strategies_conflicts_prune_and_orphan") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path());
    let m = join(
        dir.path(),
        &hub,
        real::start(dir.path(), "real-1", 1),
        "real-1",
        "env=prod",
        "1s",
    );
    let c = &m.cluster;
    // Objects someone else made with kubectl before Tether came.
    for (name, v) in [("theirs", "kubectl"), ("observed", "kubectl")] {
        kubectl_ok(
            c,
            &[
                "create",
                "configmap",
                name,
                "-n",
                "default",
                &format!("--from-literal=v={v}"),
            ],
        );
    }

    // Abort leaves an unmanaged object alone and says so; the rest applies.
    let abort = policies(
        "ServerSideApply",
        "Abort",
        "Delete",
        &[("theirs", "tether"), ("mine", "1"), ("gone-soon", "1")],
    );
    hub.apply_ok("abort", &abort);
    eventually(PATIENCE, "the conflict reported", || {
        object_message(&hub, "p-serversideapply-abort", "theirs")
            .contains("not managed by Tether")
            .then_some(())
    });
    eventually(PATIENCE, "mine applied", || {
        (value(c, "mine")? == "1").then_some(())
    });
    assert_eq!(value(c, "theirs").as_deref(), Some("kubectl"));
    assert!(!managers(c, "theirs").contains(&"tether-agent".to_string()));

    // Prune: a manifest dropped from the workload is deleted from the cluster.
    let pruned = policies(
        "ServerSideApply",
        "Abort",
        "Delete",
        &[("theirs", "tether"), ("mine", "1")],
    );
    hub.apply_ok("abort", &pruned);
    eventually(PATIENCE, "gone-soon pruned", || {
        value(c, "gone-soon").is_none().then_some(())
    });
    assert_eq!(value(c, "mine").as_deref(), Some("1"));

    // Adopt takes it over: the agent becomes a manager of the real object.
    hub.ctl(&["delete", "workload", "p-serversideapply-abort"]);
    eventually(PATIENCE, "mine deleted with its workload", || {
        value(c, "mine").is_none().then_some(())
    });
    assert_eq!(
        value(c, "theirs").as_deref(),
        Some("kubectl"),
        "never ours, never deleted"
    );
    let adopt = policies(
        "ServerSideApply",
        "Adopt",
        "Orphan",
        &[("theirs", "tether")],
    );
    hub.apply_ok("adopt", &adopt);
    eventually(PATIENCE, "theirs adopted", || {
        (value(c, "theirs")? == "tether").then_some(())
    });
    assert!(
        managers(c, "theirs").contains(&"tether-agent".to_string()),
        "{:?}",
        managers(c, "theirs")
    );

    // Orphan: deleting the workload leaves its objects running.
    hub.ctl(&["delete", "workload", "p-serversideapply-adopt"]);
    eventually(PATIENCE, "the workload gone from the hub", || {
        hub.workload_status("p-serversideapply-adopt")
            .is_none()
            .then_some(())
    });
    eventually(PATIENCE, "the agent to orphan it", || {
        m.agent
            .proc
            .log_text()
            .contains("objects orphaned")
            .then_some(())
    });
    assert_eq!(value(c, "theirs").as_deref(), Some("tether"));

    // CreateOnly creates what is missing and never changes it afterwards.
    let create_only = policies("CreateOnly", "Abort", "Orphan", &[("seed", "initial")]);
    hub.apply_ok("create-only", &create_only);
    hub.wait_available("p-createonly-abort", "120s");
    kubectl_ok(
        c,
        &[
            "patch",
            "configmap",
            "seed",
            "-n",
            "default",
            "--type",
            "merge",
            "-p",
            r#"{"data":{"v":"changed"}}"#,
        ],
    );
    let gets = api_calls(&m, "get");
    eventually(PATIENCE, "two more passes", || {
        (api_calls(&m, "get") >= gets + 2.0).then_some(())
    });
    assert_eq!(
        value(c, "seed").as_deref(),
        Some("changed"),
        "CreateOnly changed an existing object"
    );

    // ReadOnly observes: present objects are reported, missing ones are not created.
    let read_only = policies(
        "ReadOnly",
        "Abort",
        "Orphan",
        &[("observed", "ignored"), ("absent", "x")],
    );
    hub.apply_ok("read-only", &read_only);
    eventually(PATIENCE, "absent reported Missing", || {
        object_message(&hub, "p-readonly-abort", "absent")
            .contains("ReadOnly")
            .then_some(())
    });
    assert_eq!(value(c, "observed").as_deref(), Some("kubectl"));
    assert!(value(c, "absent").is_none());
    assert!(!managers(c, "observed").contains(&"tether-agent".to_string()));
}

#[test]
fn two_agents_elect_one_leader_on_a_real_lease_and_the_standby_takes_over() {
    let Some(_) = real::available("two_agents_elect_one_leader_on_a_real_lease") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path());
    let c = real::start(dir.path(), "real-1", 1);
    kubectl_ok(&c, &["create", "namespace", "tether-system"]);
    let (token, pin) = hub.token("real-1", &["--labels", "env=prod"]);
    let a = ElectedAgent::start(&hub, &c, dir.path(), "pod-a", (&token, &pin));
    hub.wait_status("real-1", "Ready", PATIENCE);
    assert_eq!(lease_holder(&c).as_deref(), Some("pod-a"));
    let b = ElectedAgent::start(&hub, &c, dir.path(), "pod-b", (&token, &pin));
    eventually(PATIENCE, "pod-b standing by", || {
        (b.metric("tether_agent_leader") == 0.0).then_some(())
    });
    // The Lease is a real coordination.k8s.io/v1 object with real timestamps.
    let lease = c
        .get(&["lease", "tether-agent", "-n", "tether-system"])
        .unwrap();
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 3, "{lease}");
    assert!(lease["spec"]["renewTime"].is_string(), "{lease}");

    let app = policies("ServerSideApply", "Abort", "Delete", &[("elected", "1")]);
    hub.apply_ok("app", &app);
    hub.wait_available("p-serversideapply-abort", "120s");
    let sent = hub.metric("tether_desired_sent_total");

    let killed = std::time::Instant::now();
    a.proc.signal("KILL");
    eventually(PATIENCE, "pod-b to take the Lease", || {
        (lease_holder(&c).as_deref() == Some("pod-b")).then_some(())
    });
    eprintln!(
        "measured: standby took the real Lease {:?} after the leader was killed (lease 3s)",
        killed.elapsed()
    );
    eventually(PATIENCE, "pod-b to hold the session", || {
        (b.metric("tether_agent_connected") == 1.0 && hub.status_of("real-1") == "Ready")
            .then_some(())
    });
    // The credential and the desired-state cache were in the cluster's Secrets: the new
    // leader resumed, nothing was sent again, and never two sessions at once.
    assert_eq!(hub.metric("tether_desired_sent_total"), sent);
    assert_eq!(hub.metric("tether_sessions_superseded_total"), 0.0);
    kubectl_ok(&c, &["delete", "configmap", "elected", "-n", "default"]);
    eventually(PATIENCE, "the new leader restores what was deleted", || {
        (value(&c, "elected")? == "1").then_some(())
    });
}

/// A TCP echo server for port-forward to reach (through KWOK's simulated kubelet).
fn echo_server() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut c = conn;
                let mut r = c.try_clone().unwrap();
                let _ = std::io::copy(&mut r, &mut c);
            });
        }
    });
    addr
}

#[test]
fn the_real_kubectl_through_the_hub_creates_execs_streams_logs_and_forwards_ports() {
    let Some(_) = real::available("the_real_kubectl_through_the_hub") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path());
    let echo = echo_server();
    let c = real::start_with(
        dir.path(),
        "real-1",
        1,
        &["--port-forward-to", &echo.to_string()],
    );
    let m = join(dir.path(), &hub, c, "real-1", "env=prod", "2s");
    // Proxied requests run as the hub user's role group: this platform team makes hub admins
    // cluster admins here (the agent chart's default binds them to `admin`).
    kubectl_ok(
        &m.cluster,
        &[
            "create",
            "clusterrolebinding",
            "tether-admins",
            "--clusterrole=cluster-admin",
            "--group=tether:admin",
        ],
    );
    let kc = dir.path().join("proxy.kubeconfig");
    let out = hub.ctl(&["kubeconfig", "real-1", "-o", kc.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let kubectl = |args: &[&str]| {
        run(Command::new(&m.cluster.kubectl)
            .arg("--kubeconfig")
            .arg(&kc)
            .args(args))
    };
    let ok = |args: &[&str]| {
        let out = kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} through the hub: {}{}",
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    };

    // Typed create subcommands send protobuf bodies.
    ok(&["create", "namespace", "team"]);
    ok(&[
        "create",
        "configmap",
        "settings",
        "-n",
        "team",
        "--from-literal=mode=on",
    ]);
    ok(&[
        "create",
        "secret",
        "generic",
        "creds",
        "-n",
        "team",
        "--from-literal=k=v",
    ]);
    let direct = m
        .cluster
        .get(&["configmap", "settings", "-n", "team"])
        .unwrap();
    assert_eq!(direct["data"]["mode"], "on");

    // Server-side apply, then watch the real controllers roll it out.
    let deploy = dir.path().join("web.yaml");
    std::fs::write(
        &deploy,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: { name: web, namespace: team }\nspec:\n  replicas: 1\n  selector: { matchLabels: { app: web } }\n  template:\n    metadata: { labels: { app: web } }\n    spec: { containers: [ { name: web, image: nginx } ] }\n",
    )
    .unwrap();
    ok(&["apply", "--server-side", "-f", deploy.to_str().unwrap()]);
    ok(&[
        "rollout",
        "status",
        "deployment/web",
        "-n",
        "team",
        "--timeout=120s",
    ]);

    // A watch streams what happens after it began.
    let mut watch = Command::new(&m.cluster.kubectl)
        .arg("--kubeconfig")
        .arg(&kc)
        .args([
            "get",
            "configmaps",
            "-n",
            "team",
            "-w",
            "--output-watch-events",
            "-o",
            "name",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let lines = lines.clone();
        let out = watch.stdout.take().unwrap();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                lines.lock().unwrap().push_str(&format!("{l}\n"));
            }
        })
    };
    eventually(PATIENCE, "the watch to list what exists", || {
        lines
            .lock()
            .unwrap()
            .contains("configmap/settings")
            .then_some(())
    });
    kubectl_ok(&m.cluster, &["create", "configmap", "later", "-n", "team"]);
    eventually(PATIENCE, "the watch to see a later create", || {
        lines
            .lock()
            .unwrap()
            .contains("configmap/later")
            .then_some(())
    });
    let _ = watch.kill();
    let _ = watch.wait();
    let _ = reader.join();

    // Logs, exec (WebSocket, and SPDY as older clients use), port-forward: connection
    // upgrades carried through the hub and the agent's stream.
    let logs = ok(&["logs", "deployment/web", "-n", "team"]);
    assert!(logs.contains("hello from a kwok pod"), "{logs}");
    let said = ok(&[
        "exec",
        "deployment/web",
        "-n",
        "team",
        "--",
        "echo",
        "hello",
        "through",
        "tether",
    ]);
    assert_eq!(said.trim(), "hello through tether");
    let spdy = run(Command::new(&m.cluster.kubectl)
        .arg("--kubeconfig")
        .arg(&kc)
        .args([
            "exec",
            "deployment/web",
            "-n",
            "team",
            "--",
            "echo",
            "over",
            "spdy",
        ])
        .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false"));
    assert!(spdy.status.success(), "{}", stderr(&spdy));
    assert_eq!(stdout(&spdy).trim(), "over spdy");
    // Interactive: stdin travels to the pod. (KWOK's simulated exec never sees stdin close,
    // so the session is ended from here once the echo came back.)
    {
        use std::io::{BufRead, Write};
        let mut child = Command::new(&m.cluster.kubectl)
            .arg("--kubeconfig")
            .arg(&kc)
            .args(["exec", "-i", "deployment/web", "-n", "team", "--", "cat"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(b"typed into stdin\n").unwrap();
        input.flush().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(out).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(PATIENCE);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(line.as_deref(), Ok("typed into stdin\n"));
    }

    let local = free_port();
    let mut forward = Command::new(&m.cluster.kubectl)
        .arg("--kubeconfig")
        .arg(&kc)
        .args([
            "port-forward",
            "deployment/web",
            "-n",
            "team",
            &format!("{local}:80"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let echoed = eventually(PATIENCE, "an echo through port-forward", || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", local)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        s.write_all(b"ping through the hub").ok()?;
        let mut buf = [0u8; 20];
        s.read_exact(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf).to_string())
    });
    assert_eq!(echoed, "ping through the hub");
    let _ = forward.kill();
    let _ = forward.wait();

    let can = ok(&["auth", "can-i", "create", "deployments", "-n", "team"]);
    assert_eq!(can.trim(), "yes");
    let audit = stdout(&hub.ctl(&["audit"]));
    assert!(audit.contains("/exec"), "exec is audited: {audit}");
}

/// The agent as the chart's DaemonSet runs it (same flags), with the chart's ServiceAccount.
fn chart_agent(
    hub: &Hub,
    kubeconfig: &Path,
    dir: &Path,
    token: &str,
    pin: &str,
) -> tether_tests::harness::Proc {
    let mut cmd = Command::new(tether_tests::harness::bin("tether-agent"));
    cmd.args(["--hub", &hub.addr.to_string()])
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args([
            "--leader-elect",
            "--leader-identity",
            "tether-agent-x1",
            "--lease=tether-system/tether-tether-agent",
            "--credential-secret=tether-system/tether-tether-agent-credential",
            "--namespace=tether-system",
            "--resync-interval=2s",
            "--progress-interval=200ms",
            "--reconnect-max-delay=1s",
        ])
        .env("TETHER_TOKEN", token)
        .env("TETHER_CA_PIN", pin)
        .env("RUST_LOG", "info")
        .env_remove("KUBERNETES_SERVICE_HOST");
    tether_tests::harness::Proc::spawn(
        "tether-agent (chart RBAC)",
        &mut cmd,
        dir.join("chart-agent.log"),
    )
}

fn user_kubeconfig(dir: &Path, hub: &Hub, name: &str, role: &str) -> std::path::PathBuf {
    let cfg = dir.join(format!("{name}.yaml"));
    let out = hub.ctl(&[
        "user",
        "create",
        name,
        "--role",
        role,
        "-o",
        cfg.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let kc = dir.join(format!("{name}.kubeconfig"));
    let out = run(Command::new(tether_tests::harness::bin("tetherctl"))
        .arg("--config")
        .arg(&cfg)
        .args(["kubeconfig", "real-1", "-o", kc.to_str().unwrap()]));
    assert!(out.status.success(), "{}", stderr(&out));
    kc
}

#[test]
fn both_charts_install_into_a_real_api_server_and_the_proxy_never_lends_the_agents_power() {
    let Some(_) = real::available("both_charts_install_into_a_real_api_server") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path());
    let c = real::start(dir.path(), "real-1", 1);

    // g. Every ci values file of both charts passes the real server's validation (one binds
    // a team in its namespace).
    kubectl_ok(&c, &["create", "namespace", "tether-system"]);
    kubectl_ok(&c, &["create", "namespace", "payments"]);
    let mut skipped = Vec::new();
    for chart in ["tether-hub", "tether-agent"] {
        let ci = real::repo_root().join("deploy/helm").join(chart).join("ci");
        let mut files: Vec<_> = std::fs::read_dir(&ci)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort();
        for f in files {
            let values = std::fs::read_to_string(&f).unwrap();
            let rendered = real::render_chart(chart, &values, "tether-system", dir.path());
            // ServiceMonitor is prometheus-operator's CRD, not installed here.
            let docs: Vec<&str> = rendered
                .split("\n---\n")
                .filter(|d| {
                    let sm = d.contains("kind: ServiceMonitor");
                    if sm {
                        skipped.push(format!(
                            "{chart}/{}",
                            f.file_name().unwrap().to_string_lossy()
                        ));
                    }
                    !sm && d.contains("kind:")
                })
                .collect();
            let out = real::apply_yaml(&c, &docs.join("\n---\n"), &["--dry-run=server"]);
            assert!(
                out.status.success(),
                "{chart} with {}: the API server refused: {}",
                f.display(),
                stderr(&out)
            );
        }
    }
    eprintln!("ServiceMonitor (no CRD here) left out for: {skipped:?}");

    // Installed for real: the hub chart, and the agent chart with its default RBAC (plus the
    // custom resource kind the workload ships, as its values document).
    kubectl_ok(&c, &["create", "namespace", "tether"]);
    let out = real::apply_yaml(
        &c,
        &real::render_chart("tether-hub", "{}", "tether", dir.path()),
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let (token, pin) = hub.token("real-1", &["--labels", "env=prod"]);
    let values = format!(
        "hub: {{ address: \"{}\" }}\njoin: {{ token: \"{token}\", caPin: \"{pin}\" }}\nagent: {{ resyncInterval: 2s }}\nrbac:\n  extraManage:\n    - {{ apiGroups: [example.dev], resources: [widgets] }}\n",
        hub.addr
    );
    let out = real::apply_yaml(
        &c,
        &real::render_chart("tether-agent", &values, "tether-system", dir.path()),
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let kc = dir.path().join("agent-sa.kubeconfig");
    real::service_account_kubeconfig(&c, "tether-system", "tether-tether-agent", &kc);
    let agent = chart_agent(&hub, &kc, dir.path(), &token, &pin);
    hub.wait_status("real-1", "Ready", PATIENCE);

    // The chart's default RBAC is enough for the workload of every kind above.
    hub.apply_ok("shop", SHOP);
    hub.wait_available("shop", "180s");
    assert!(
        c.get(&[
            "secret",
            "tether-tether-agent-credential",
            "-n",
            "tether-system"
        ])
        .is_some()
    );

    // The agent can impersonate exactly the proxy names, nothing more.
    let as_agent = |args: &[&str]| {
        run(Command::new(&c.kubectl)
            .arg("--kubeconfig")
            .arg(&kc)
            .args(args))
    };
    let masters = as_agent(&[
        "get",
        "secrets",
        "-A",
        "--as",
        "tether:proxy",
        "--as-group",
        "system:masters",
    ]);
    assert!(
        !masters.status.success(),
        "the agent impersonated system:masters"
    );
    let other = as_agent(&["get", "pods", "--as", "alice"]);
    assert!(
        !other.status.success(),
        "the agent impersonated an arbitrary user"
    );
    let sa = as_agent(&[
        "get",
        "pods",
        "--as",
        "system:serviceaccount:kube-system:default",
    ]);
    assert!(
        !sa.status.success(),
        "the agent impersonated a service account"
    );

    // 13.1: a hub viewer cannot take the cluster over through the proxy.
    let viewer = user_kubeconfig(dir.path(), &hub, "vera", "viewer");
    let operator = user_kubeconfig(dir.path(), &hub, "otto", "operator");
    let admin = user_kubeconfig(dir.path(), &hub, "ada", "admin");
    let via = |kc: &Path, args: &[&str]| {
        run(Command::new(&c.kubectl)
            .arg("--kubeconfig")
            .arg(kc)
            .args(args))
    };
    let steal = [
        "get",
        "secret",
        "tether-tether-agent-credential",
        "-n",
        "tether-system",
        "-o",
        "yaml",
    ];
    for (who, kc) in [("viewer", &viewer), ("operator", &operator)] {
        let out = via(kc, &steal);
        assert!(
            !out.status.success(),
            "a hub {who} read the agent's credential: {}",
            stdout(&out)
        );
        assert!(
            stderr(&out).contains("Forbidden") || stderr(&out).contains("forbidden"),
            "{}",
            stderr(&out)
        );
        let all = via(kc, &["get", "secrets", "-A"]);
        assert!(!all.status.success(), "a hub {who} listed every Secret");
    }
    // The viewer reads what `view` allows and never a Secret; the operator edits.
    assert!(
        via(&viewer, &["get", "deployments", "-n", "shop"])
            .status
            .success()
    );
    let secret = via(&viewer, &["get", "secret", "web-secret", "-n", "shop"]);
    assert!(!secret.status.success(), "a viewer read a workload Secret");
    let cm = via(&viewer, &["create", "configmap", "nope", "-n", "shop"]);
    assert!(!cm.status.success());
    let op = via(&operator, &["create", "configmap", "by-otto", "-n", "shop"]);
    assert!(op.status.success(), "{}", stderr(&op));
    let whoami = stdout(&via(&viewer, &["auth", "whoami", "-o", "json"]));
    let who: serde_json::Value = serde_json::from_str(&whoami).unwrap();
    assert_eq!(
        who["status"]["userInfo"]["username"], "tether:proxy",
        "{who}"
    );
    assert_eq!(
        who["status"]["userInfo"]["extra"]["tether.dev/user"][0], "vera",
        "{who}"
    );
    assert!(
        who["status"]["userInfo"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g == "tether:viewer"),
        "{who}"
    );
    // A hub admin may (they could remove the cluster anyway).
    assert!(via(&admin, &steal).status.success());
    // Secret reads through the proxy are audited, refused ones included.
    let audit = stdout(&hub.ctl(&["audit", "-o", "json"]));
    assert!(
        audit.contains("user/vera") && audit.contains("tether-agent-credential"),
        "{audit}"
    );
    // The real agent still holds its session: nobody took it over.
    assert_eq!(hub.metric("tether_sessions_superseded_total"), 0.0);
    drop(agent);
}

/// Every JSON pointer under `v` that holds a scalar (lists by index).
fn leaves(
    v: &serde_json::Value,
    prefix: String,
    out: &mut std::collections::BTreeMap<String, serde_json::Value>,
) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                leaves(
                    x,
                    format!("{prefix}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                leaves(x, format!("{prefix}/{i}"), out);
            }
        }
        other => {
            out.insert(prefix, other.clone());
        }
    }
}

const PARITY: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: { name: web, namespace: parity }
spec:
  replicas: 2
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec:
      containers:
        - name: web
          image: "nginx:1.27"
          resources: { requests: { cpu: 0.5, memory: 1024Mi }, limits: { memory: 2048Mi } }
          ports: [ { containerPort: 80 } ]
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: parity }
spec: { selector: { app: web }, ports: [ { port: 80 } ] }
---
apiVersion: v1
kind: Secret
metadata: { name: web-secret, namespace: parity }
stringData: { password: s3cret }
"#;

#[test]
fn the_emulator_answers_the_agents_and_kubectls_calls_like_a_real_server() {
    let Some(_) = real::available("the_emulator_answers_like_a_real_server") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let real = real::start(dir.path(), "real-1", 1);
    let emu = Cluster::start(dir.path(), "emu-1", 1, "v1.34.4");
    let file = dir.path().join("parity.yaml");
    std::fs::write(&file, PARITY).unwrap();
    // The same kubectl (the real release's) against both.
    let emu = Cluster {
        kubectl: real.kubectl.clone(),
        ..emu
    };
    let mut must_match = Vec::new();
    let mut lacks = std::collections::BTreeSet::new();
    let mut objects = Vec::new();
    for c in [&real, &emu] {
        // Typed create subcommands: protobuf bodies.
        kubectl_ok(c, &["create", "namespace", "parity"]);
        kubectl_ok(
            c,
            &[
                "create",
                "configmap",
                "c1",
                "-n",
                "parity",
                "--from-literal=a=b",
            ],
        );
        kubectl_ok(
            c,
            &[
                "create",
                "secret",
                "generic",
                "s1",
                "-n",
                "parity",
                "--from-literal=k=v",
            ],
        );
        // What the agent does: server-side apply as tether-agent.
        kubectl_ok(
            c,
            &[
                "apply",
                "--server-side",
                "--field-manager=tether-agent",
                "-f",
                file.to_str().unwrap(),
            ],
        );
        let get = |args: &[&str]| c.kubectl_json(args);
        // A dry run answers with what the apply would store, at the stored resourceVersion
        // (read before and after it, so a controller's status write in between is seen and
        // the dry run repeated).
        let rv_of = || {
            get(&["get", "deployment", "web", "-n", "parity"])["metadata"]["resourceVersion"]
                .clone()
        };
        let dry_matches = eventually(PATIENCE, "a dry run between two equal reads", || {
            let before = rv_of();
            let dry: serde_json::Value = serde_json::from_str(&kubectl_ok(
                c,
                &[
                    "apply",
                    "--server-side",
                    "--field-manager=tether-agent",
                    "--dry-run=server",
                    "-o",
                    "json",
                    "-f",
                    file.to_str().unwrap(),
                ],
            ))
            .ok()?;
            let dry_rv = dry["items"]
                .as_array()?
                .iter()
                .find(|o| o["kind"] == "Deployment")?["metadata"]["resourceVersion"]
                .clone();
            (rv_of() == before).then_some(dry_rv == before)
        });
        // A repeated apply changes nothing (once the controllers have settled).
        let rv = eventually(PATIENCE, "the deployment to settle", || {
            let a = rv_of();
            (get(&["get", "deployment", "web", "-n", "parity"])["status"]["availableReplicas"] == 2
                && rv_of() == a)
                .then_some(a)
        });
        kubectl_ok(
            c,
            &[
                "apply",
                "--server-side",
                "--field-manager=tether-agent",
                "-f",
                file.to_str().unwrap(),
            ],
        );
        let again =
            get(&["get", "deployment", "web", "-n", "parity"])["metadata"]["resourceVersion"]
                .clone();
        // kubectl scale: who owns replicas afterwards.
        kubectl_ok(
            c,
            &["scale", "deployment", "web", "-n", "parity", "--replicas=3"],
        );
        let scaled = get(&[
            "get",
            "deployment",
            "web",
            "-n",
            "parity",
            "--show-managed-fields",
        ]);
        let owners: Vec<String> = scaled["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["fieldsV1"]["f:spec"].get("f:replicas").is_some())
            .map(|e| format!("{} {} {}", e["manager"], e["operation"], e["subresource"]))
            .collect();
        let mut seen = serde_json::Map::new();
        for (kind, name) in [
            ("deployment", "web"),
            ("service", "web"),
            ("secret", "web-secret"),
            ("configmap", "c1"),
            ("secret", "s1"),
        ] {
            seen.insert(
                format!("{kind}/{name}"),
                get(&["get", kind, name, "-n", "parity"]),
            );
        }
        seen.insert(
            "namespace/parity".into(),
            get(&["get", "namespace", "parity"]),
        );
        seen.insert(
            "dry-run rv = stored rv".into(),
            serde_json::json!(dry_matches),
        );
        seen.insert(
            "no-op apply keeps rv".into(),
            serde_json::json!(again == rv),
        );
        seen.insert(
            "replicas owners after scale".into(),
            serde_json::json!(owners),
        );
        objects.push(serde_json::Value::Object(seen));
    }
    let (r, e) = (&objects[0], &objects[1]);
    // What the agent and the proxy tests rely on.
    for p in [
        "/deployment~1web/spec/template/spec/containers/0/resources/requests/cpu",
        "/deployment~1web/spec/template/spec/containers/0/resources/requests/memory",
        "/deployment~1web/spec/template/spec/containers/0/resources/limits/memory",
        "/deployment~1web/spec/template/spec/containers/0/ports/0/protocol",
        "/deployment~1web/spec/template/spec/containers/0/imagePullPolicy",
        "/service~1web/spec/ports/0/protocol",
        "/service~1web/spec/ports/0/targetPort",
        "/service~1web/spec/type",
        "/secret~1web-secret/data/password",
        "/secret~1web-secret/stringData",
        "/secret~1web-secret/type",
        "/secret~1s1/data/k",
        "/secret~1s1/type",
        "/configmap~1c1/data/a",
        "/namespace~1parity/status/phase",
        "/dry-run rv = stored rv",
        "/no-op apply keeps rv",
        "/replicas owners after scale",
    ] {
        if r.pointer(p) != e.pointer(p) {
            must_match.push(format!(
                "{p}: real {:?}, emulator {:?}",
                r.pointer(p),
                e.pointer(p)
            ));
        }
    }
    // Everything else the real server fills in that the emulator does not: reported.
    let (mut rl, mut el) = (Default::default(), Default::default());
    leaves(r, String::new(), &mut rl);
    leaves(e, String::new(), &mut el);
    for (p, v) in &rl {
        if p.contains("/managedFields/") || p.contains("/metadata/") && !p.contains("/template/") {
            continue;
        }
        if el.get(p) != Some(v) {
            lacks.insert(format!("{p} (real: {v})"));
        }
    }
    eprintln!(
        "emulator differences not relied on ({}):\n  {}",
        lacks.len(),
        lacks.iter().cloned().collect::<Vec<_>>().join("\n  ")
    );
    assert!(
        must_match.is_empty(),
        "the emulator differs where it matters:\n{}",
        must_match.join("\n")
    );
}

const SHOP_RESOURCE: &str = r#"
apiVersion: tether.dev/v1alpha1
kind: Workload
metadata: { name: shop, labels: { team: shop } }
spec:
  manifests:
    - { apiVersion: v1, kind: Namespace, metadata: { name: shop } }
    - apiVersion: v1
      kind: ConfigMap
      metadata: { name: shop-config, namespace: shop }
      data: { mode: MODE }
  placement:
    clusterSelector: { matchLabels: { env: prod } }
"#;

/// A resource (`kind` as kubectl takes it) of `kubectl get -o json`, once `pred` holds for it.
fn resource_when(
    host: &Cluster,
    kind: &str,
    name: &str,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    eventually(PATIENCE, what, || {
        host.get(&[kind, name]).filter(|w| pred(w))
    })
}

fn condition<'a>(w: &'a Value, type_: &str) -> Option<&'a Value> {
    w["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

#[test]
fn workload_resources_applied_with_kubectl_run_on_two_members_report_back_and_delete() {
    let Some(_) = real::available("workload_resources_applied_with_kubectl") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let host = real::start(dir.path(), "host", 1);
    let hub = hub(dir.path());
    let members: Vec<(Cluster, Agent)> = ["prod-1", "prod-2"]
        .into_iter()
        .map(|name| {
            let cluster = Cluster::start(dir.path(), name, 1, "v1.34.4");
            let (token, pin) = hub.token(name, &["--labels", "env=prod"]);
            let agent = Agent::start(
                &hub,
                &cluster,
                &dir.path().join(format!("{name}-state")),
                &["--token", &token, "--ca-pin", &pin],
            );
            hub.wait_status(name, "Ready", PATIENCE);
            (cluster, agent)
        })
        .collect();

    // The CRD as the repository ships it, into a real API server (which checks it is
    // structural), and the controller as a hub user with the admin's config.
    let crds = tether_tests::real::repo_root().join("deploy/crds");
    kubectl_ok(
        &host,
        &["apply", "--server-side", "-f", &crds.display().to_string()],
    );
    kubectl_ok(
        &host,
        &[
            "wait",
            "--for",
            "condition=Established",
            "--timeout",
            "60s",
            "crd/workloads.tether.dev",
            "crd/clustersets.tether.dev",
        ],
    );
    let mut cmd = Command::new(tether_tests::harness::bin("tether-controller"));
    cmd.args(["run", "--status-interval", "1s", "--config"])
        .arg(hub.admin_config())
        .arg("--kubeconfig")
        .arg(&host.kubeconfig)
        .env("RUST_LOG", "info,tether_controller=debug");
    let controller = tether_tests::harness::Proc::spawn(
        "tether-controller",
        &mut cmd,
        dir.path().join("controller.log"),
    );
    eventually(PATIENCE, "the controller watching", || {
        controller
            .log_text()
            .contains("watching Workload and ClusterSet resources")
            .then_some(())
    });

    // kubectl apply, then kubectl wait for the condition, as a GitOps tool's health check does.
    let out = real::apply_yaml(&host, &SHOP_RESOURCE.replace("MODE", "crd"), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    kubectl_ok(
        &host,
        &[
            "wait",
            "--for",
            "condition=Available",
            "--timeout",
            "120s",
            "workload.tether.dev/shop",
        ],
    );
    kubectl_ok(
        &host,
        &[
            "wait",
            "--for",
            "condition=Ready",
            "--timeout",
            "10s",
            "workload.tether.dev/shop",
        ],
    );
    let w = host.get(&["workload.tether.dev", "shop"]).unwrap();
    assert_eq!(
        w["status"]["observedGeneration"], w["metadata"]["generation"],
        "{w}"
    );
    assert_eq!(w["status"]["summary"], "2/2", "{w}");
    let names: Vec<&str> = w["status"]["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["prod-1", "prod-2"], "{w}");
    assert_eq!(condition(&w, "Synced").unwrap()["status"], "True", "{w}");
    assert_eq!(condition(&w, "Degraded").unwrap()["status"], "False", "{w}");
    assert!(
        w["metadata"]["finalizers"]
            .to_string()
            .contains("tether.dev/hub-workload"),
        "{w}"
    );
    for (cluster, _) in &members {
        let cm = cluster
            .get(&["configmap", "shop-config", "-n", "shop"])
            .unwrap();
        assert_eq!(cm["data"]["mode"], "crd", "{cm}");
    }
    let on_hub = hub.ctl_json(&["get", "workload", "shop"]);
    assert_eq!(
        on_hub["metadata"]["annotations"]["tether.dev/managed-by"], "tether-controller",
        "{on_hub}"
    );
    assert_eq!(on_hub["metadata"]["labels"]["team"], "shop", "{on_hub}");
    let table = kubectl_ok(&host, &["get", "workloads.tether.dev"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("shop") && l.contains("True") && l.contains("2/2")),
        "{table}"
    );

    // A change is a new generation and a new hub revision, observed on the resource.
    let out = real::apply_yaml(&host, &SHOP_RESOURCE.replace("MODE", "changed"), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let w = resource_when(
        &host,
        "workload.tether.dev",
        "shop",
        "generation 2 Available",
        |w| {
            w["status"]["observedGeneration"] == 2
                && w["status"]["revision"] == 2
                && condition(w, "Available").is_some_and(|c| c["status"] == "True")
        },
    );
    assert_eq!(w["metadata"]["generation"], 2, "{w}");
    for (cluster, _) in &members {
        let cm = cluster
            .get(&["configmap", "shop-config", "-n", "shop"])
            .unwrap();
        assert_eq!(
            cm["data"]["mode"],
            "changed",
            "{cm}\nresource: {w}\nhub: {}",
            hub.ctl_json(&["status", "shop"])
        );
    }

    // A spec the hub refuses is reported on the resource, not retried in a loop.
    let bad = SHOP_RESOURCE
        .replace("MODE", "x")
        .replace("      kind: ConfigMap\n", "");
    let out = real::apply_yaml(&host, &bad, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let w = resource_when(
        &host,
        "workload.tether.dev",
        "shop",
        "Synced=False for a refused spec",
        |w| condition(w, "Synced").is_some_and(|c| c["status"] == "False"),
    );
    let synced = condition(&w, "Synced").unwrap();
    assert_eq!(synced["reason"], "Rejected", "{w}");
    assert!(synced["message"].as_str().unwrap().contains("kind"), "{w}");
    assert_eq!(
        hub.ctl_json(&["get", "workload", "shop"])["status"]["revision"],
        2
    );
    let out = real::apply_yaml(&host, &SHOP_RESOURCE.replace("MODE", "changed"), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    resource_when(&host, "workload.tether.dev", "shop", "Synced again", |w| {
        condition(w, "Synced").is_some_and(|c| c["status"] == "True")
    });

    // Reading status back never re-sends a spec the hub holds: three applies so far (create,
    // change, the fixed spec after the refusal), however many status polls.
    let applies = controller.log_text().matches("applied to the hub").count();
    assert_eq!(applies, 3, "{}", controller.log_text());

    // A workload made with tetherctl is not taken over by a resource of the same name.
    let manual = SHOP_RESOURCE.replace("shop", "manual");
    hub.apply_ok("manual", &manual.replace("MODE", "by-hand"));
    let out = real::apply_yaml(&host, &manual.replace("MODE", "from-git"), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let w = resource_when(
        &host,
        "workload.tether.dev",
        "manual",
        "OwnedElsewhere",
        |w| condition(w, "Synced").is_some_and(|c| c["reason"] == "OwnedElsewhere"),
    );
    assert_eq!(condition(&w, "Synced").unwrap()["status"], "False", "{w}");
    let manual = hub.ctl_json(&["get", "workload", "manual"]);
    assert_eq!(manual["status"]["revision"], 1, "{manual}");
    assert!(manual.to_string().contains("by-hand"), "{manual}");

    // kubectl delete waits on the finalizer until the hub has taken the workload off both
    // members; deleting the resource that never owned its workload leaves the hub's alone.
    kubectl_ok(
        &host,
        &["delete", "workload.tether.dev", "shop", "--timeout", "120s"],
    );
    let gone = hub.ctl(&["get", "workload", "shop"]);
    assert!(
        !gone.status.success(),
        "workload shop is still on the hub: {}",
        stdout(&gone)
    );
    for (cluster, _) in &members {
        assert!(
            cluster
                .get(&["configmap", "shop-config", "-n", "shop"])
                .is_none()
        );
    }
    kubectl_ok(
        &host,
        &[
            "delete",
            "workload.tether.dev",
            "manual",
            "--timeout",
            "60s",
        ],
    );
    assert!(hub.ctl(&["get", "workload", "manual"]).status.success());

    // ClusterSet resources become the hub's cluster sets; a new selector changes the set.
    let set = |name: &str, env: &str| {
        format!(
            "apiVersion: tether.dev/v1alpha1\nkind: ClusterSet\nmetadata: {{ name: {name} }}\nspec:\n  selector: {{ matchLabels: {{ env: {env} }} }}\n"
        )
    };
    let on_hub = |name: &str| -> Option<Value> {
        hub.ctl_json(&["clusterset", "list"])
            .as_array()?
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
    };
    let out = real::apply_yaml(&host, &set("prod", "prod"), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = resource_when(
        &host,
        "clusterset.tether.dev",
        "prod",
        "ClusterSet synced",
        |s| condition(s, "Synced").is_some_and(|c| c["status"] == "True"),
    );
    assert_eq!(
        s["status"]["clusters"],
        serde_json::json!(["prod-1", "prod-2"]),
        "{s}"
    );
    let h = on_hub("prod").expect("cluster set prod on the hub");
    assert_eq!(h["managedBy"], "tether-controller", "{h}");
    assert_eq!(h["selector"], "env=prod", "{h}");
    let out = real::apply_yaml(&host, &set("prod", "staging"), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    eventually(PATIENCE, "the new selector on the hub", || {
        on_hub("prod").filter(|h| h["selector"] == "env=staging")
    });
    resource_when(
        &host,
        "clusterset.tether.dev",
        "prod",
        "no clusters now",
        |s| s["status"]["observedGeneration"] == 2 && s["status"]["summary"] == "0",
    );
    // A set made with tetherctl is not taken over, and survives its namesake's deletion.
    kubectl_ok(&host, &["get", "clustersets.tether.dev"]);
    let made = hub.ctl(&["clusterset", "create", "edge", "--selector", "env=edge"]);
    assert!(made.status.success(), "{}", stderr(&made));
    let out = real::apply_yaml(&host, &set("edge", "prod"), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    resource_when(
        &host,
        "clusterset.tether.dev",
        "edge",
        "OwnedElsewhere",
        |s| condition(s, "Synced").is_some_and(|c| c["reason"] == "OwnedElsewhere"),
    );
    assert_eq!(on_hub("edge").unwrap()["selector"], "env=edge");
    kubectl_ok(
        &host,
        &[
            "delete",
            "clusterset.tether.dev",
            "prod",
            "edge",
            "--timeout",
            "60s",
        ],
    );
    assert!(on_hub("prod").is_none(), "prod is still on the hub");
    assert!(on_hub("edge").is_some(), "tetherctl's edge was deleted");
    drop(controller);
}
