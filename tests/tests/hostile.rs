//! Hostile tenants and clients: what each attack on the hub achieved before the "safe to hand
//! out" work, and the bound it meets now (docs/security.md lists them). Real processes, real
//! TLS; the attacks are hand-made clients.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use tether_tests::harness::{
    Agent, Cluster, Hub, HubOptions, bin, eventually, run, stderr, stdout,
};

const PATIENCE: Duration = Duration::from_secs(30);

fn rss_mib(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn user(dir: &Path, hub: &Hub, name: &str, role: &str) -> PathBuf {
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
    cfg
}

/// A TLS connection to the hub presenting no certificate, speaking HTTP/2.
async fn anonymous_h2(
    hub: &Hub,
) -> Option<
    hyper::client::conn::http2::SendRequest<
        http_body_util::combinators::BoxBody<bytes::Bytes, std::convert::Infallible>,
    >,
> {
    let mut config = rustls::ClientConfig::builder_with_provider(tether_common::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .ok()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(hub.addr).await.ok()?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").ok()?,
            tcp,
        )
        .await
        .ok()?;
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .ok()?;
    tokio::spawn(conn);
    Some(send)
}

/// The attacker does not care whom it talks to.
#[derive(Debug)]
struct AnyServer;

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        tether_common::tls::provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A Join whose gRPC frame announces `announced` bytes, sends 16 KiB of them, then stalls.
fn stalled_join(
    announced: u32,
) -> http::Request<http_body_util::combinators::BoxBody<bytes::Bytes, std::convert::Infallible>> {
    use futures::StreamExt;
    use http_body_util::BodyExt;
    let mut first = vec![0u8];
    first.extend_from_slice(&announced.to_be_bytes());
    first.extend_from_slice(&vec![b'x'; 16 << 10]);
    let body = futures::stream::once(async move {
        Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(bytes::Bytes::from(first)))
    })
    .chain(futures::stream::pending());
    http::Request::builder()
        .method("POST")
        .uri("https://localhost/tether.v1.AgentService/Join")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(BodyExt::boxed(http_body_util::StreamBody::new(body)))
        .unwrap()
}

/// A gRPC health check (allowed without a certificate).
fn health_check()
-> http::Request<http_body_util::combinators::BoxBody<bytes::Bytes, std::convert::Infallible>> {
    use http_body_util::BodyExt;
    http::Request::builder()
        .method("POST")
        .uri("https://localhost/grpc.health.v1.Health/Check")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(BodyExt::boxed(http_body_util::Full::new(
            bytes::Bytes::from_static(&[0, 0, 0, 0, 0]),
        )))
        .unwrap()
}

#[test]
fn clients_without_a_certificate_cannot_exhaust_the_hubs_memory_or_connections() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(
        &dir.path().join("hub"),
        HubOptions {
            extra: vec!["--anonymous-connection-lifetime".into(), "4s".into()],
            ..HubOptions::default()
        },
    );
    let pid = hub.proc.as_ref().unwrap().pid();
    let before = rss_mib(pid);
    let rt = tether_tests::rogue::runtime();

    // Before: one connection, 200 Join streams each announcing 4 MiB and never finishing,
    // grew the hub from 36 to 836 MiB. Now a connection without a certificate gets 4 streams
    // at a time and 16 KiB per request body.
    let answered = rt.block_on(async {
        let Some(send) = anonymous_h2(&hub).await else {
            return 0;
        };
        let mut calls = Vec::new();
        for _ in 0..200 {
            let mut s = send.clone();
            calls.push(tokio::spawn(async move {
                if s.ready().await.is_err() {
                    return false;
                }
                s.send_request(stalled_join(4 << 20)).await.is_ok()
            }));
        }
        // Whatever the hub lets through within a few seconds.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let done = calls.iter().filter(|c| c.is_finished()).count();
        for c in calls {
            c.abort();
        }
        done
    });
    let grown = rss_mib(pid) - before;
    eprintln!(
        "measured: 200 stalled 4 MiB joins on one connection without a certificate: hub RSS {before:.1} -> {:.1} MiB (+{grown:.1}); {answered} answered",
        before + grown
    );
    assert!(grown < 40.0, "the hub grew by {grown:.1} MiB");

    // Before: connections without a certificate were never closed. Now at most 32 per
    // address stay open, and each for its lifetime only.
    let (open, refused) = rt.block_on(async {
        let mut held = Vec::new();
        let mut refused = 0;
        for _ in 0..80 {
            match anonymous_h2(&hub).await {
                Some(mut s) => {
                    // A connection the hub closed answers no request.
                    let alive = tokio::time::timeout(Duration::from_secs(5), async {
                        s.ready().await.ok()?;
                        s.send_request(health_check()).await.ok()
                    })
                    .await
                    .is_ok_and(|r| r.is_some());
                    if alive {
                        held.push(s);
                    } else {
                        refused += 1;
                    }
                }
                None => refused += 1,
            }
        }
        (held, refused)
    });
    eprintln!(
        "measured: 80 connections without a certificate from one address: {} kept, {refused} closed at once",
        open.len()
    );
    assert!(open.len() <= 32, "{} kept open", open.len());
    assert!(refused >= 48, "{refused} refused");
    assert!(hub.metric("tether_anonymous_connections_refused_total") >= 48.0);
    // They are closed when their time is up, and then a real agent joins as usual.
    rt.block_on(async {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        for mut s in open {
            loop {
                let closed = tokio::time::timeout(Duration::from_millis(200), s.ready())
                    .await
                    .is_ok_and(|r| r.is_err());
                if closed || s.is_closed() {
                    break;
                }
                // Lets the connection's task run (a current-thread runtime).
                tokio::time::sleep(Duration::from_millis(100)).await;
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "a connection without a certificate outlived its lifetime"
                );
            }
        }
    });
    let c = Cluster::start(dir.path(), "edge-1", 1, "v1.34.4");
    let (token, pin) = hub.token("edge-1", &[]);
    let _a = Agent::join(&hub, &c, &dir.path().join("edge-1-state"), &token, &pin);
    hub.wait_status("edge-1", "Ready", PATIENCE);
}

#[test]
fn refused_calls_cost_the_store_nothing_and_are_throttled() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(&dir.path().join("hub"), HubOptions::default());
    let viewer = user(dir.path(), &hub, "vera", "viewer");
    let store = dir.path().join("hub/store.redb");
    let size = || std::fs::metadata(&store).map(|m| m.len()).unwrap_or(0);
    let before = size();
    let config = tether_client::ClientConfig::load(&viewer).unwrap();
    let rt = tether_tests::rogue::runtime();
    let codes: Vec<tonic::Code> = rt.block_on(async {
        let mut client = tether_client::connect(&config).await.unwrap();
        let name = "x".repeat(5 << 20);
        let doc = serde_json::json!({
            "apiVersion": "tether.dev/v1alpha1", "kind": "Workload",
            "metadata": {"name": name},
            "spec": {"manifests": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}]},
        });
        let mut codes = Vec::new();
        for _ in 0..40 {
            let r = client
                .apply_workload(tether_common::pb::ApplyWorkloadRequest {
                    workload_json: doc.to_string(),
                    ..Default::default()
                })
                .await;
            codes.push(r.err().map_or(tonic::Code::Ok, |s| s.code()));
        }
        codes
    });
    let grown = size().saturating_sub(before);
    eprintln!(
        "measured: 40 refused ApplyWorkload calls with a 5 MiB name: store.redb +{} KiB",
        grown / 1024
    );
    // Before: 20 such calls grew the store from 19 to 311 MB (the raw name, kept 90 days).
    assert!(grown < 1 << 20, "the store grew by {grown} bytes");
    assert!(codes.iter().all(|c| *c != tonic::Code::Ok), "{codes:?}");
    assert!(
        codes.contains(&tonic::Code::ResourceExhausted),
        "refusals never throttled: {codes:?}"
    );
    assert!(hub.metric("tether_calls_throttled_total") >= 1.0);
    // The audit log stays readable, each entry bounded.
    let out = hub.ctl(&["audit", "-o", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let entries: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let refused: Vec<&serde_json::Value> = entries
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"] == "user/vera")
        .collect();
    assert!(
        !refused.is_empty() && refused.len() <= 30,
        "{}",
        refused.len()
    );
    for e in refused {
        assert!(
            e.to_string().len() < 4096,
            "an audit entry of {} bytes",
            e.to_string().len()
        );
    }
}

#[test]
fn one_user_cannot_lock_others_out_of_a_clusters_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(
        &dir.path().join("hub"),
        HubOptions {
            extra: vec!["--proxy-max-streams-per-user".into(), "4".into()],
            ..HubOptions::default()
        },
    );
    let c = Cluster::start(dir.path(), "edge-1", 1, "v1.34.4");
    let (token, pin) = hub.token("edge-1", &[]);
    let _a = Agent::join(&hub, &c, &dir.path().join("edge-1-state"), &token, &pin);
    hub.wait_status("edge-1", "Ready", PATIENCE);
    let kc = |cfg: &Path, name: &str| {
        let path = dir.path().join(format!("{name}.kubeconfig"));
        let out = run(Command::new(bin("tetherctl"))
            .arg("--config")
            .arg(cfg)
            .args(["kubeconfig", "edge-1", "-o", path.to_str().unwrap()]));
        assert!(out.status.success(), "{}", stderr(&out));
        path
    };
    let viewer = kc(&user(dir.path(), &hub, "vera", "viewer"), "vera");
    let admin = kc(&hub.admin_config(), "admin");
    // Before: 64 watches by one viewer locked everyone out (429). Now a user holds at most
    // their own share.
    assert!(c.kubectl(&["create", "configmap", "seen"]).status.success());
    let mut watches = Vec::new();
    for i in 0..4 {
        let out = dir.path().join(format!("watch-{i}.out"));
        let child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&viewer)
            .args(["get", "configmaps", "-w", "-o", "name"])
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Listed, and now watching: the stream is held.
        eventually(PATIENCE, "a watch to start", || {
            std::fs::read_to_string(&out)
                .unwrap_or_default()
                .contains("configmap/seen")
                .then_some(())
        });
        watches.push(child);
    }
    let fifth = eventually(PATIENCE, "the viewer's fifth request refused", || {
        let out = run(Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&viewer)
            .args(["get", "namespaces"]));
        (!out.status.success()).then(|| stderr(&out))
    });
    assert!(fifth.contains("too many proxied requests"), "{fifth}");
    let out = run(Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&admin)
        .args(["get", "namespaces"]));
    assert!(
        out.status.success(),
        "the admin was locked out: {}",
        stderr(&out)
    );
    for mut w in watches {
        let _ = w.kill();
        let _ = w.wait();
    }
}

#[test]
fn admin_commands_refuse_a_serving_hub_and_leave_the_old_one_on_any_failure() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(&dir.path().join("hub"), HubOptions::default());
    let data = dir.path().join("hub");
    let key = std::fs::read(data.join("ca.key")).unwrap();
    let tether_hub = |args: &[&str]| run(Command::new(bin("tether-hub")).args(args));

    // Before: `init --force` ran against the serving hub (its acknowledged writes then lost).
    let out = tether_hub(&["init", "--force", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("in use"), "{}", stderr(&out));
    let backup = dir.path().join("hub.backup");
    std::fs::write(&backup, b"garbage").unwrap();
    let out = tether_hub(&[
        "restore",
        "--force",
        "--data-dir",
        data.to_str().unwrap(),
        "--from",
        backup.to_str().unwrap(),
    ]);
    assert_ne!(out.status.code(), Some(0), "{}", stdout(&out));
    assert_eq!(std::fs::read(data.join("ca.key")).unwrap(), key);
    assert!(
        hub.ctl(&["cluster", "list"]).status.success(),
        "the serving hub was disturbed"
    );

    // Stopped: bad arguments are found before anything is deleted.
    let mut hub = hub;
    hub.stop();
    let out = tether_hub(&[
        "init",
        "--force",
        "--data-dir",
        data.to_str().unwrap(),
        "--advertise",
        "elsewhere.example:7443",
    ]);
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(
        std::fs::read(data.join("ca.key")).unwrap(),
        key,
        "init deleted the old hub first"
    );
    // A scratch directory an interrupted backup left behind is gone after the next start.
    std::fs::create_dir(data.join(".backup-interrupted")).unwrap();
    std::fs::write(
        data.join(".backup-interrupted/store.redb"),
        b"half a snapshot",
    )
    .unwrap();
    hub.serve();
    assert!(!data.join(".backup-interrupted").exists());
    assert!(hub.ctl(&["cluster", "list"]).status.success());
}

#[test]
fn text_from_members_reaches_no_terminal_as_escape_sequences() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(&dir.path().join("hub"), HubOptions::default());
    // The member reports its version: a hostile one reports escape sequences that would
    // rewrite the table (clear the line, forge a row).
    let forged = "v1.34.4\x1b[2K\redge-9   Ready   forged";
    let c = Cluster::start(dir.path(), "edge-1", 1, forged);
    let (token, pin) = hub.token("edge-1", &[]);
    let _a = Agent::join(&hub, &c, &dir.path().join("edge-1-state"), &token, &pin);
    hub.wait_status("edge-1", "Ready", PATIENCE);
    let table = stdout(&hub.ctl(&["cluster", "list"]));
    assert!(
        !table.contains('\x1b') && !table.contains('\r'),
        "{table:?}"
    );
    assert!(table.contains("\\u001b[2K\\u000d"), "{table}");
    let json = stdout(&hub.ctl(&["cluster", "get", "edge-1", "-o", "json"]));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        v["kubernetesVersion"], forged,
        "JSON keeps the value, escaped"
    );
}

#[test]
fn a_token_is_not_spent_on_a_credential_that_cannot_be_kept_and_goes_with_its_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(&dir.path().join("hub"), HubOptions::default());
    let c = Cluster::start(dir.path(), "edge-1", 1, "v1.34.4");
    let (token, pin) = hub.token("edge-1", &["--reusable"]);
    let uses = |hub: &Hub| {
        hub.ctl_json(&["token", "list"])
            .as_array()
            .unwrap()
            .iter()
            .find(|t| token.starts_with(t["id"].as_str().unwrap()))
            .map(|t| (t["uses"].as_u64().unwrap_or(0), t["state"] == "revoked"))
            .unwrap()
    };
    // A state directory the agent must not keep its key in: a symlink someone prepared.
    let real = dir.path().join("elsewhere");
    std::fs::create_dir(&real).unwrap();
    let blocked = dir.path().join("blocked");
    std::os::unix::fs::symlink(&real, &blocked).unwrap();
    let mut cmd = Command::new(bin("tether-agent"));
    cmd.args(["--hub", &hub.addr.to_string(), "--ca-pin", &pin])
        .arg("--kubeconfig")
        .arg(&c.kubeconfig)
        .arg("--state-dir")
        .arg(&blocked)
        .env("TETHER_TOKEN", &token)
        .env_remove("KUBERNETES_SERVICE_HOST");
    let out = run(&mut cmd);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("not joining"), "{}", stderr(&out));
    assert_eq!(uses(&hub), (0, false), "the token was spent");

    // The token from the environment (never in argv) works once the state can be kept.
    let state = dir.path().join("state");
    let mut cmd = Command::new(bin("tether-agent"));
    cmd.args(["--hub", &hub.addr.to_string(), "--ca-pin", &pin])
        .arg("--kubeconfig")
        .arg(&c.kubeconfig)
        .arg("--state-dir")
        .arg(&state)
        .env("TETHER_TOKEN", &token)
        .env_remove("KUBERNETES_SERVICE_HOST");
    let agent =
        tether_tests::harness::Proc::spawn("tether-agent", &mut cmd, dir.path().join("agent.log"));
    hub.wait_status("edge-1", "Ready", PATIENCE);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", agent.pid())).unwrap();
    assert!(
        !String::from_utf8_lossy(&cmdline).contains(token.split('.').nth(1).unwrap()),
        "the token is in the agent's argv"
    );
    assert_eq!(uses(&hub).0, 1);

    // Removing the cluster revokes its tokens: a reusable one cannot bring it back.
    assert!(hub.ctl(&["cluster", "remove", "edge-1"]).status.success());
    assert!(uses(&hub).1, "the removed cluster's token is still valid");
    drop(agent);
}

#[test]
fn names_the_member_would_refuse_are_refused_at_apply() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(&dir.path().join("hub"), HubOptions::default());
    for (name, why) in [
        ("../../etc", "may not"),
        (&"a".repeat(300), "longer than 253"),
        ("Bad_Name", "DNS-1123"),
    ] {
        let w = format!(
            "apiVersion: tether.dev/v1alpha1\nkind: Workload\nmetadata: {{ name: w }}\nspec:\n  manifests:\n    - {{ apiVersion: v1, kind: ConfigMap, metadata: {{ name: \"{name}\" }} }}\n  placement: {{ clusterSelector: {{}} }}\n"
        );
        let out = hub.apply("w", &w);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("metadata.name") && stderr(&out).contains(why),
            "{}",
            stderr(&out)
        );
        assert!(
            stderr(&out).len() < 400,
            "the error repeats the whole name: {}",
            stderr(&out).len()
        );
    }
    assert!(hub.workload_status("w").is_none());
}

/// A small tmpfs, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let out = run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at));
        out.status.success().then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_makes_the_hub_unready_until_space_returns_and_agents_still_connect() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let Some(_mnt) = Tmpfs::mount(&data, "24m") else {
        assert!(
            std::env::var("CI").is_err(),
            "mounting a tmpfs needs root; CI must run this"
        );
        eprintln!("skipping: cannot mount a tmpfs (not root)");
        return;
    };
    let hub = Hub::start(&data, HubOptions::default());
    let c = Cluster::start(dir.path(), "edge-1", 1, "v1.34.4");
    let (token, pin) = hub.token("edge-1", &[]);
    let state = dir.path().join("edge-1-state");
    let agent = Agent::join(&hub, &c, &state, &token, &pin);
    hub.wait_status("edge-1", "Ready", PATIENCE);

    // Fill the disk.
    let filler = data.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 1 << 20];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
    let workload = |v: &str| {
        format!(
            "apiVersion: tether.dev/v1alpha1\nkind: Workload\nmetadata: {{ name: cfg }}\nspec:\n  manifests:\n    - {{ apiVersion: v1, kind: ConfigMap, metadata: {{ name: cfg }}, data: {{ v: \"{v}\" }} }}\n  placement: {{ clusters: [ edge-1 ] }}\n"
        )
    };
    // A write fails with a clear error (before: the first failure wedged every later write
    // until a restart, and /readyz kept answering 200).
    let failed = eventually(PATIENCE, "a write to fail on the full disk", || {
        let out = hub.apply("cfg", &workload(&"x".repeat(100_000)));
        (!out.status.success()).then(|| stderr(&out))
    });
    eprintln!("refused while full: {failed}");
    eventually(PATIENCE, "the hub to report not ready", || {
        (hub.readyz() == 503).then_some(())
    });
    // Not ready by the disk's free space too, not only by the last write's outcome (a
    // small write, such as the audit record of the refused apply, may still fit).
    let free = hub.metric("tether_store_free_bytes");
    assert!(
        (0.0..(8 << 20) as f64).contains(&free),
        "the full disk's free space is reported: {free}"
    );

    // An agent that reconnects still gets a session (no durable write in the way).
    drop(agent);
    hub.wait_status("edge-1", "Offline", PATIENCE);
    let _agent = Agent::start(&hub, &c, &state, &[]);
    hub.wait_status("edge-1", "Ready", PATIENCE);

    // Space comes back: the hub recovers by itself.
    std::fs::remove_file(&filler).unwrap();
    eventually(PATIENCE, "the hub to be ready again", || {
        (hub.readyz() == 200).then_some(())
    });
    // The gauge follows the disk (a gauge never set would have read 0 above as well).
    let free = hub.metric("tether_store_free_bytes");
    assert!(
        free >= (8 << 20) as f64,
        "the freed space is reported: {free}"
    );
    hub.apply_ok("cfg", &workload("after"));
    hub.wait_available("cfg", "60s");
    let v = c.get(&["configmap", "cfg"]).unwrap();
    assert_eq!(v["data"]["v"], "after");
}

#[test]
fn viewers_never_see_secret_values() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(&dir.path().join("hub"), HubOptions::default());
    let c = Cluster::start(dir.path(), "edge-1", 1, "v1.34.4");
    let (token, pin) = hub.token("edge-1", &[]);
    let _a = Agent::join(&hub, &c, &dir.path().join("edge-1-state"), &token, &pin);
    hub.wait_status("edge-1", "Ready", PATIENCE);
    hub.apply_ok(
        "db",
        "apiVersion: tether.dev/v1alpha1\nkind: Workload\nmetadata: { name: db }\nspec:\n  manifests:\n    - { apiVersion: v1, kind: Secret, metadata: { name: db }, stringData: { password: hunter2 }, data: { token: c2VjcmV0LXRva2Vu } }\n  placement: { clusters: [ edge-1 ] }\n  overrides:\n    - clusterSelector: {}\n      patches: [ { target: { kind: Secret, name: db }, merge: { stringData: { password: override-pass } } } ]\n  statusFeedback:\n    - { target: { kind: Secret, name: db }, jsonPath: .data.token }\n",
    );
    hub.wait_available("db", "60s");
    let viewer = user(dir.path(), &hub, "vera", "viewer");
    let as_viewer = |args: &[&str]| {
        stdout(&run(Command::new(bin("tetherctl"))
            .arg("--config")
            .arg(&viewer)
            .args(args)))
    };
    for secret in ["hunter2", "c2VjcmV0LXRva2Vu", "override-pass"] {
        // Before: a viewer read them in `get workload -o yaml` and the status feedback.
        let yaml = as_viewer(&["get", "workload", "db", "-o", "yaml"]);
        assert!(!yaml.contains(secret), "{yaml}");
        assert!(yaml.contains("<redacted>"), "{yaml}");
        let status = as_viewer(&["status", "db", "-o", "json"]);
        assert!(!status.contains(secret), "{status}");
        let admin = stdout(&hub.ctl(&["get", "workload", "db", "-o", "yaml"]));
        assert!(
            admin.contains(secret),
            "an admin sees the workload whole: {admin}"
        );
    }
    let status = as_viewer(&["status", "db", "-o", "json"]);
    assert!(
        status.contains("<redacted>"),
        "feedback from a Secret is shown redacted: {status}"
    );
    let admin = stdout(&hub.ctl(&["status", "db", "-o", "json"]));
    assert!(
        admin.contains("c2VjcmV0LXRva2Vu"),
        "an admin sees the feedback: {admin}"
    );
}
