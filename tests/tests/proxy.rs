//! The Kubernetes API proxy with the real kubectl: `tetherctl kubeconfig NAME`, then plain
//! kubectl against emulated clusters behind the real hub and agents.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tether_tests::harness::{
    Agent, Cluster, Hub, HubOptions, Proc, eventually, run, stderr, stdout,
};

const PATIENCE: Duration = Duration::from_secs(30);

fn hub(dir: &Path) -> Hub {
    Hub::start(
        &dir.join("hub"),
        HubOptions {
            heartbeat_interval: "200ms".into(),
            offline_grace: "1500ms".into(),
            ..HubOptions::default()
        },
    )
}

fn member(dir: &Path, hub: &Hub, name: &str) -> (Cluster, Agent) {
    let c = Cluster::start(dir, name, 2, "v1.33.4");
    let (token, pin) = hub.token(name, &[]);
    let a = Agent::join(hub, &c, &dir.join(format!("{name}-state")), &token, &pin);
    hub.wait_status(name, "Ready", PATIENCE);
    (c, a)
}

fn kubeconfig(dir: &Path, hub: &Hub, cluster: &str) -> PathBuf {
    let path = dir.join(format!("proxy-{cluster}.kubeconfig"));
    let out = hub.ctl(&["kubeconfig", cluster, "-o", &path.display().to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    path
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> std::process::Output {
    run(Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args))
}

/// kubectl's table output without the AGE column (it ticks between two calls).
fn without_age(s: &str) -> Vec<String> {
    s.lines()
        .map(|l| {
            l.split_whitespace()
                .filter(|w| {
                    !w.ends_with('s')
                        || w.parse::<u32>().is_ok()
                        || !w[..w.len() - 1].chars().all(|c| c.is_ascii_digit())
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

#[test]
fn kubectl_through_the_proxy_matches_the_emulator() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path());
    let (c, _a) = member(dir.path(), &hub, "edge-1");
    let kc = kubeconfig(dir.path(), &hub, "edge-1");

    let via = kubectl(&kc, &["get", "ns"]);
    assert!(via.status.success(), "{}", stderr(&via));
    let direct = c.kubectl(&["get", "ns"]);
    assert_eq!(without_age(&stdout(&via)), without_age(&stdout(&direct)));
    assert!(
        stderr(&via).is_empty(),
        "kubectl complained: {}",
        stderr(&via)
    );

    let manifest = dir.path().join("cm.yaml");
    std::fs::write(&manifest, "apiVersion: v1\nkind: ConfigMap\nmetadata: { name: via-proxy, labels: { app: demo } }\ndata: { k: v }\n").unwrap();
    let out = kubectl(&kc, &["apply", "-f", &manifest.display().to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("configmap/via-proxy created"),
        "{}",
        stdout(&out)
    );
    let via = stdout(&kubectl(
        &kc,
        &["get", "configmap", "via-proxy", "-o", "yaml"],
    ));
    let direct = stdout(&c.kubectl(&["get", "configmap", "via-proxy", "-o", "yaml"]));
    assert_eq!(via, direct);
    assert!(via.contains("k: v"));
    assert_eq!(
        without_age(&stdout(&kubectl(
            &kc,
            &["get", "nodes", "-l", "kubernetes.io/os=linux"]
        ))),
        without_age(&stdout(&c.kubectl(&[
            "get",
            "nodes",
            "-l",
            "kubernetes.io/os=linux"
        ])))
    );
    let out = kubectl(&kc, &["delete", "-f", &manifest.display().to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(c.get(&["configmap", "via-proxy"]).is_none());

    // Mutating requests are audited with user, cluster, verb, path and status.
    let audit = hub.ctl_json(&["audit"]);
    let proxied: Vec<String> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("proxy "))
        .map(|e| {
            format!(
                "{} {} {} {}",
                e["actor"].as_str().unwrap(),
                e["action"].as_str().unwrap(),
                e["target"].as_str().unwrap().split('?').next().unwrap(),
                e["result"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        proxied.contains(
            &"user/admin proxy POST cluster/edge-1 /api/v1/namespaces/default/configmaps 201"
                .to_string()
        ),
        "{proxied:?}"
    );
    assert!(proxied.contains(&"user/admin proxy DELETE cluster/edge-1 /api/v1/namespaces/default/configmaps/via-proxy 200".to_string()), "{proxied:?}");

    // The proxy's added latency for a small GET, against kubectl straight to the emulator.
    let time = |f: &dyn Fn() -> std::process::Output| {
        let mut v: Vec<Duration> = (0..15)
            .map(|_| {
                let t = Instant::now();
                assert!(f().status.success());
                t.elapsed()
            })
            .collect();
        v.sort();
        v[v.len() / 2]
    };
    // (`--raw` takes a path from the server's root, so the proxied one names the cluster.)
    let direct = time(&|| c.kubectl(&["get", "--raw", "/api/v1/namespaces/default"]));
    let via = time(&|| {
        kubectl(
            &kc,
            &["get", "--raw", "/clusters/edge-1/api/v1/namespaces/default"],
        )
    });
    assert_eq!(
        stdout(&kubectl(
            &kc,
            &["get", "--raw", "/clusters/edge-1/api/v1/namespaces/default"]
        )),
        stdout(&c.kubectl(&["get", "--raw", "/api/v1/namespaces/default"]))
    );
    eprintln!(
        "measured: kubectl get --raw (small GET), median of 15: direct {direct:?}, through the hub {via:?}, added {:?}",
        via.saturating_sub(direct)
    );
}

#[test]
fn a_watch_streams_an_update_made_after_it_began() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path());
    let (c, _a) = member(dir.path(), &hub, "edge-1");
    let kc = kubeconfig(dir.path(), &hub, "edge-1");
    let manifest = dir.path().join("cm.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: { name: first }\ndata: { a: '1' }\n",
    )
    .unwrap();
    assert!(
        c.kubectl(&["apply", "-f", &manifest.display().to_string()])
            .status
            .success()
    );

    let mut cmd = Command::new("kubectl");
    cmd.arg("--kubeconfig")
        .arg(&kc)
        .args(["get", "configmaps", "-w"]);
    let watch = Proc::spawn("kubectl get -w", &mut cmd, dir.path().join("watch.log"));
    eventually(PATIENCE, "the watch to list what exists", || {
        watch.log_text().contains("first").then_some(())
    });

    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: { name: later }\ndata: { a: '1', b: '2' }\n",
    )
    .unwrap();
    assert!(
        c.kubectl(&["apply", "-f", &manifest.display().to_string()])
            .status
            .success()
    );
    eventually(PATIENCE, "the watch to show the new object", || {
        watch.log_text().contains("later").then_some(())
    });
    let out = c.kubectl(&[
        "patch",
        "configmap",
        "first",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"x":"y","z":"w"}}"#,
    ]);
    assert!(out.status.success());
    eventually(PATIENCE, "the watch to show the update", || {
        watch
            .log_text()
            .lines()
            .any(|l| l.starts_with("first") && l.split_whitespace().nth(1) == Some("3"))
            .then_some(())
    });
}

#[test]
fn a_20_mb_list_arrives_whole() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path());
    let (c, _a) = member(dir.path(), &hub, "edge-1");
    let kc = kubeconfig(dir.path(), &hub, "edge-1");
    let manifest = dir.path().join("big.yaml");
    for i in 0..21 {
        let value: String = (0..1_000_000)
            .map(|j| (b'a' + ((i * 7 + j) % 26) as u8) as char)
            .collect();
        std::fs::write(&manifest, format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{ name: big-{i} }}\ndata: {{ blob: {value} }}\n")).unwrap();
        let out = c.kubectl(&[
            "apply",
            "--server-side",
            "-f",
            &manifest.display().to_string(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let via = kubectl(&kc, &["get", "configmaps", "-o", "json"]);
    assert!(via.status.success(), "{}", stderr(&via));
    let direct = c.kubectl(&["get", "configmaps", "-o", "json"]);
    assert!(
        via.stdout.len() > 20_000_000,
        "only {} bytes",
        via.stdout.len()
    );
    assert_eq!(
        via.stdout, direct.stdout,
        "the list through the proxy differs"
    );
}

/// A TLS client that asks for a watch through the proxy and then never reads.
fn stalled_watch(dir: &Path, hub: &Hub, kubeconfig: &Path, cluster: &str) -> Proc {
    let script = format!(
        r#"
import base64, re, socket, ssl, time
kc = open({kc:?}).read()
def data(k):
    return base64.b64decode(re.search(k + r': (\S+)', kc).group(1))
for name, key in (("c.pem", "client-certificate-data"), ("k.pem", "client-key-data"), ("ca.pem", "certificate-authority-data")):
    open({dir:?} + "/" + name, "wb").write(data(key))
ctx = ssl.create_default_context(cafile={dir:?} + "/ca.pem")
ctx.load_cert_chain({dir:?} + "/c.pem", {dir:?} + "/k.pem")
ctx.set_alpn_protocols(["http/1.1"])
s = ctx.wrap_socket(socket.create_connection(("{host}", {port})), server_hostname="{host}")
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.sendall(b"GET /clusters/{cluster}/api/v1/namespaces/default/configmaps?watch=true HTTP/1.1\r\nHost: hub\r\n\r\n")
print("watching", flush=True)
time.sleep(3600)
"#,
        kc = kubeconfig.display().to_string(),
        dir = dir.display().to_string(),
        host = hub.addr.ip(),
        port = hub.addr.port(),
    );
    let mut cmd = Command::new("python3");
    cmd.args(["-c", &script]);
    let p = Proc::spawn("stalled watch", &mut cmd, dir.join("stalled.log"));
    eventually(PATIENCE, "the stalled watch to start", || {
        p.log_text().contains("watching").then_some(())
    });
    p
}

#[test]
fn a_slow_watch_consumer_does_not_delay_heartbeats_or_other_requests() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path());
    let (a, _aa) = member(dir.path(), &hub, "edge-a");
    let (_b, _ab) = member(dir.path(), &hub, "edge-b");
    let kc_a = kubeconfig(dir.path(), &hub, "edge-a");
    let kc_b = kubeconfig(dir.path(), &hub, "edge-b");
    let _stalled = stalled_watch(dir.path(), &hub, &kc_a, "edge-a");

    // Some 30 MB of watch events that the stalled consumer never reads.
    let manifest = dir.path().join("churn.yaml");
    let started = Instant::now();
    for i in 0..30 {
        let value = format!("{i:06}").repeat(170_000);
        std::fs::write(&manifest, format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{ name: churn }}\ndata: {{ v: \"{value}\" }}\n")).unwrap();
        let out = a.kubectl(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            &manifest.display().to_string(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        // Every few events: the cluster's heartbeats still arrive (grace is 1.5 s) and both
        // clusters still answer through the proxy.
        if i % 10 == 9 {
            assert_eq!(
                hub.status_of("edge-a"),
                "Ready",
                "heartbeats were held up behind the stalled watch"
            );
            let b = kubectl(&kc_b, &["get", "ns", "default"]);
            assert!(
                b.status.success(),
                "another cluster's request was held up: {}",
                stderr(&b)
            );
            let a2 = kubectl(&kc_a, &["get", "configmap", "churn", "-o", "name"]);
            assert!(
                a2.status.success(),
                "another request to the same cluster was held up: {}",
                stderr(&a2)
            );
        }
    }
    assert!(
        started.elapsed() > Duration::from_secs(2),
        "the run must outlast the offline grace to mean anything"
    );
    assert_eq!(hub.status_of("edge-a"), "Ready");
}

#[test]
fn offline_unknown_and_unauthorized_requests_get_kubernetes_status_errors() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path());
    let (_c, mut agent) = member(dir.path(), &hub, "edge-1");
    let kc = kubeconfig(dir.path(), &hub, "edge-1");

    // exec is carried to the member (real clusters: tests/tests/real_kubernetes.rs); the
    // emulator cannot exec, and its refusal comes back clearly instead of a hang.
    let pod = dir.path().join("pod.yaml");
    std::fs::write(&pod, "apiVersion: v1\nkind: Pod\nmetadata: { name: shell }\nspec: { containers: [ { name: c, image: busybox } ] }\n").unwrap();
    assert!(
        _c.kubectl(&["apply", "-f", &pod.display().to_string()])
            .status
            .success()
    );
    let out = kubectl(&kc, &["exec", "shell", "--", "true"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("pods/shell/exec"), "{}", stderr(&out));

    // Malformed requests get errors, and the hub carries on.
    let junk = format!(
        r#"
import base64, re, socket, ssl
kc = open({kc:?}).read()
def data(k):
    return base64.b64decode(re.search(k + r': (\S+)', kc).group(1))
for name, key in (("c.pem", "client-certificate-data"), ("k.pem", "client-key-data"), ("ca.pem", "certificate-authority-data")):
    open({dir:?} + "/" + name, "wb").write(data(key))
ctx = ssl.create_default_context(cafile={dir:?} + "/ca.pem")
ctx.load_cert_chain({dir:?} + "/c.pem", {dir:?} + "/k.pem")
ctx.set_alpn_protocols(["http/1.1"])
codes = []
for req in [b"GET /clusters/../../etc/passwd HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /clusters/%00/api HTTP/1.1\r\nHost: h\r\n\r\n",
            b"BREW /clusters/edge-1/api HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /clusters/edge-1/api HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * 200000 + b"\r\n\r\n",
            b"POST /clusters/edge-1/api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n{{bad",
            b"\x00\x01garbage\r\n\r\n"]:
    s = ctx.wrap_socket(socket.create_connection(("{host}", {port})), server_hostname="{host}")
    s.settimeout(10)
    try:
        # The hub may close before all of an oversized request is sent.
        s.sendall(req)
        codes.append(s.recv(64).split(b" ")[1].decode())
    except Exception as e:
        codes.append("closed")
print(" ".join(codes))
"#,
        kc = kc.display().to_string(),
        dir = dir.path().display().to_string(),
        host = hub.addr.ip(),
        port = hub.addr.port(),
    );
    let out = run(Command::new("python3").args(["-c", &junk]));
    let codes = stdout(&out);
    assert!(out.status.success(), "{}{}", codes, stderr(&out));
    for code in codes.split_whitespace() {
        assert!(
            code == "closed" || code.starts_with('4') || code.starts_with('5'),
            "a malformed request got {code}: {codes}"
        );
    }
    assert_eq!(hub.status_of("edge-1"), "Ready");
    assert!(kubectl(&kc, &["get", "ns"]).status.success());

    // A viewer may read but not write.
    let viewer_cfg = dir.path().join("viewer.yaml");
    assert!(
        hub.ctl(&[
            "user",
            "create",
            "vera",
            "--role",
            "viewer",
            "-o",
            &viewer_cfg.display().to_string()
        ])
        .status
        .success()
    );
    let viewer_kc = dir.path().join("viewer.kubeconfig");
    let out = run(Command::new(tether_tests::harness::bin("tetherctl"))
        .arg("--config")
        .arg(&viewer_cfg)
        .args([
            "kubeconfig",
            "edge-1",
            "-o",
            &viewer_kc.display().to_string(),
        ]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(kubectl(&viewer_kc, &["get", "ns"]).status.success());
    let manifest = dir.path().join("cm.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: { name: nope }\n",
    )
    .unwrap();
    let out = kubectl(
        &viewer_kc,
        &["apply", "-f", &manifest.display().to_string()],
    );
    assert!(
        stderr(&out).contains("Forbidden") || stderr(&out).contains("forbidden"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("role viewer"), "{}", stderr(&out));

    // Requests always run as the hub user: the member sees the proxy user in the caller's
    // role group, never the agent's own identity.
    let whoami = |kc: &Path| {
        stdout(&kubectl(
            kc,
            &[
                "auth",
                "whoami",
                "-o",
                "jsonpath={.status.userInfo.username} {.status.userInfo.groups}",
            ],
        ))
    };
    assert!(whoami(&kc).starts_with("tether:proxy "), "{}", whoami(&kc));
    assert!(whoami(&kc).contains("tether:admin"), "{}", whoami(&kc));
    assert!(
        whoami(&viewer_kc).contains("tether:viewer"),
        "{}",
        whoami(&viewer_kc)
    );
    let out = hub.ctl(&["cluster", "set", "edge-1", "--impersonate", "off"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "the switch is gone: {}",
        stderr(&out)
    );

    // Unknown cluster: 404 with a Status naming it.
    // (`--raw` takes a path from the server's root.)
    let out = kubectl(
        &kc,
        &["get", "--raw", "/clusters/nowhere/api/v1/namespaces"],
    );
    assert!(
        stderr(&out).contains("NotFound") && stderr(&out).contains("nowhere"),
        "{}",
        stderr(&out)
    );

    // A cluster's certificate is not a user: 403.
    let cred = tether_tests::rogue::Cred::load(&dir.path().join("edge-1-state"));
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let text = std::fs::read_to_string(&kc).unwrap();
    let cert_line = text
        .lines()
        .find(|l| l.contains("client-certificate-data"))
        .unwrap()
        .to_string();
    let key_line = text
        .lines()
        .find(|l| l.contains("client-key-data"))
        .unwrap()
        .to_string();
    let as_cluster = dir.path().join("as-cluster.kubeconfig");
    std::fs::write(
        &as_cluster,
        text.replace(
            &cert_line,
            &format!("    client-certificate-data: {}", b64(&cred.cert)),
        )
        .replace(
            &key_line,
            &format!("    client-key-data: {}", b64(&cred.key)),
        ),
    )
    .unwrap();
    let out = kubectl(
        &as_cluster,
        &["get", "--raw", "/clusters/edge-1/api/v1/namespaces"],
    );
    assert!(
        stderr(&out).contains("Forbidden") || stderr(&out).contains("forbidden"),
        "{}",
        stderr(&out)
    );

    // Offline: 503 with a Status naming the cluster.
    agent.proc.kill();
    hub.wait_status("edge-1", "Offline", PATIENCE);
    let out = kubectl(&kc, &["get", "ns"]);
    let err = stderr(&out);
    assert!(
        err.contains("ServiceUnavailable") || err.contains("503"),
        "{err}"
    );
    assert!(err.contains("edge-1") && err.contains("Offline"), "{err}");
}
