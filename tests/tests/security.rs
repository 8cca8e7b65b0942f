//! The security suite: identities cannot cross, tokens resist guessing, bad certificates are
//! refused at the handshake, roles hold, every change is audited, no secret is logged, and a
//! hostile agent cannot break the hub.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tether_common::pb::{self, connect_request};
use tether_tests::harness::{
    Agent, Cluster, Hub, HubOptions, bin, eventually, run, stderr, stdout,
};
use tether_tests::rogue::{self, Cred};
use tokio_stream::StreamExt;

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

fn member(dir: &Path, hub: &Hub, name: &str) -> (Cluster, Agent) {
    let c = Cluster::start(dir, name, 1, "v1.33.4");
    let (token, pin) = hub.token(name, &[]);
    let a = Agent::join(hub, &c, &dir.join(format!("{name}-state")), &token, &pin);
    hub.wait_status(name, "Ready", PATIENCE);
    (c, a)
}

fn hello() -> pb::ConnectRequest {
    pb::ConnectRequest {
        msg: Some(connect_request::Msg::Hello(pb::Hello::default())),
    }
}

#[test]
fn a_cluster_certificate_cannot_act_for_another_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path());
    let (_ca, mut agent_a) = member(dir.path(), &hub, "cluster-a");
    let (cb, _agent_b) = member(dir.path(), &hub, "cluster-b");
    hub.apply_ok(
        "b-only",
        "apiVersion: tether.dev/v1alpha1\nkind: Workload\nmetadata: { name: b-only }\nspec:\n  manifests:\n    - { apiVersion: v1, kind: ConfigMap, metadata: { name: b }, data: { k: v } }\n  placement: { clusters: [ cluster-b ] }\n",
    );
    hub.wait_available("b-only", "30s");

    // A's own credential, used by someone who claims to speak for B's workload.
    agent_a.proc.kill();
    let cred_a = Cred::load(&dir.path().join("cluster-a-state"));
    let rt = rogue::runtime();
    let addr = hub.addr.to_string();
    let forged = rt.block_on(async {
        let mut client = rogue::agent_client(rogue::mtls(&addr, &cred_a).await.unwrap());
        let messages = vec![
            hello(),
            pb::ConnectRequest {
                msg: Some(connect_request::Msg::Status(pb::WorkloadStatus {
                    workload: "b-only".into(),
                    revision: 1,
                    phase: pb::workload_status::Phase::Degraded as i32,
                    message: "forged by cluster-a".into(),
                    ..Default::default()
                })),
            },
            pb::ConnectRequest {
                msg: Some(connect_request::Msg::Removed(pb::Removed {
                    workload: "b-only".into(),
                })),
            },
            pb::ConnectRequest {
                msg: Some(connect_request::Msg::Ack(pb::Ack {
                    workload: "b-only".into(),
                    revision: 99,
                    bundle_hash: String::new(),
                })),
            },
        ];
        let mut inbound = client
            .connect(tokio_stream::iter(messages))
            .await
            .unwrap()
            .into_inner();
        // Whatever the hub says, it speaks to cluster-a and sends it nothing of B's.
        let mut seen = Vec::new();
        while let Ok(Some(Ok(m))) =
            tokio::time::timeout(Duration::from_secs(2), inbound.next()).await
        {
            seen.push(m);
        }
        seen
    });
    let welcome = forged.iter().find_map(|m| match &m.msg {
        Some(pb::connect_response::Msg::Welcome(w)) => Some(w.clone()),
        _ => None,
    });
    assert_eq!(
        welcome.unwrap().cluster,
        "cluster-a",
        "identity comes from the certificate"
    );
    for m in &forged {
        if let Some(pb::connect_response::Msg::Desired(d)) = &m.msg {
            panic!("cluster-a was sent {}", d.workload);
        }
    }
    let s = hub.cluster_status("b-only", "cluster-b").unwrap();
    assert_eq!(s["phase"], "Available", "{s}");
    assert!(!s["message"].as_str().unwrap().contains("forged"));
    let status = hub.workload_status("b-only").unwrap();
    let clusters: Vec<&str> = status["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["cluster"].as_str().unwrap())
        .collect();
    assert_eq!(
        clusters,
        vec!["cluster-b"],
        "a forged Removed must not drop B's assignment"
    );
    assert!(cb.get(&["configmap", "b"]).is_some());
}

#[test]
fn join_token_guessing_is_rate_limited_per_source_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(
        &dir.path().join("hub"),
        HubOptions {
            extra: vec!["--join-failures-per-minute".into(), "5".into()],
            ..HubOptions::default()
        },
    );
    let (good, pin) = hub.token("edge-1", &[]);
    let id = good.split('.').next().unwrap().to_string();
    let rt = rogue::runtime();
    let addr = hub.addr.to_string();
    let (pin2, good2) = (pin.clone(), good.clone());
    let codes = rt.block_on(async move {
        let mut client = rogue::agent_client(rogue::pinned(&addr, &pin2).await.unwrap());
        let (_, csr) = tether_common::pki::new_key_and_csr().unwrap();
        let mut codes = Vec::new();
        for i in 0..7 {
            let token = if i < 5 {
                format!("{id}.{i:0>32}")
            } else {
                good2.clone()
            };
            let r = client
                .join(pb::JoinRequest {
                    token,
                    csr_der: csr.clone(),
                    facts: None,
                    labels: Default::default(),
                })
                .await;
            codes.push(r.err().map(|s| (s.code(), s.message().to_string())));
        }
        codes
    });
    for c in &codes[..5] {
        assert_eq!(
            c.as_ref().map(|c| c.0),
            Some(tonic::Code::Unauthenticated),
            "{codes:?}"
        );
    }
    // Past the limit even the right token is refused from this source, with the reason.
    let (code, msg) = codes[5]
        .clone()
        .unwrap_or_else(|| panic!("{codes:?}\n{}", hub.log_text()));
    assert_eq!(code, tonic::Code::ResourceExhausted, "{codes:?}");
    assert!(msg.contains("too many failed join attempts"), "{msg}");
    assert_eq!(
        hub.metric("tether_joins_total{result=\"rate_limited\"}"),
        2.0
    );
    let log = hub.log_text();
    assert_eq!(
        log.matches("join refused").count(),
        7,
        "every refusal is logged:\n{log}"
    );
    assert!(
        !log.contains(good.split('.').nth(1).unwrap()),
        "the secret must not be logged"
    );
    let _ = pin;
}

#[test]
fn bad_certificates_are_refused_at_the_handshake_and_the_hub_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(
        &dir.path().join("hub"),
        HubOptions {
            cert_lifetime: "2s".into(),
            ..HubOptions::default()
        },
    );
    let (_good_cluster, _good_agent) = member(dir.path(), &hub, "good");
    let rt = rogue::runtime();
    let addr = hub.addr.to_string();
    let ca_pem = std::fs::read_to_string(hub.dir.join("ca.crt")).unwrap();

    // A certificate the hub issued but nobody renewed: refused once it has expired.
    let (token, pin) = hub.token("edge-1", &[]);
    let (cert, key) = rt.block_on(async {
        let mut client = rogue::agent_client(rogue::pinned(&addr, &pin).await.unwrap());
        let (key, csr) = tether_common::pki::new_key_and_csr().unwrap();
        // Labels a joining agent asks for are checked like any label, before the token is
        // looked at (so it is not used up).
        for labels in [
            (0..100)
                .map(|i| (format!("k{i}"), "v".to_string()))
                .collect(),
            [("bad key".to_string(), "v".to_string())]
                .into_iter()
                .collect(),
        ] {
            let refused = client
                .join(pb::JoinRequest {
                    token: token.clone(),
                    csr_der: csr.clone(),
                    facts: None,
                    labels,
                })
                .await
                .unwrap_err();
            assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
        }
        let r = client
            .join(pb::JoinRequest {
                token,
                csr_der: csr,
                facts: None,
                labels: Default::default(),
            })
            .await
            .unwrap()
            .into_inner();
        (r.credential.unwrap().cert_pem, key)
    });
    let expired = Cred {
        ca: ca_pem.clone(),
        cert: cert.clone(),
        key: key.clone(),
    };
    let info =
        tether_common::pki::inspect(&tether_common::pki::first_cert_der(&cert).unwrap()).unwrap();
    eventually(PATIENCE, "the certificate to expire", || {
        (tether_common::time::unix_now() > info.not_after).then_some(())
    });
    let refused = rt.block_on(connect_and_hello(&addr, &expired));
    assert!(
        refused.contains("CertificateExpired") || refused.contains("Expired"),
        "{refused}"
    );

    // The same identity and serial, signed by the hub's own CA, but for server auth only.
    let wrong_usage = rt.block_on(async {
        let c = forge(
            &hub.dir,
            &info.serial,
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        );
        connect_and_hello(
            &addr,
            &Cred {
                ca: ca_pem.clone(),
                cert: c.0,
                key: c.1,
            },
        )
        .await
    });
    assert!(wrong_usage.contains("fatal alert"), "{wrong_usage}");
    eventually(PATIENCE, "the refusal in the hub's log", || {
        hub.log_text()
            .contains("client certificate rejected")
            .then_some(())
    });

    // Another CA's certificate with a valid-looking identity.
    let other = tether_common::pki::CertificateAuthority::generate(Duration::from_secs(3600))
        .unwrap()
        .0;
    let (cred, _) = other
        .issue_client(
            &tether_common::identity::Identity::Cluster("good".into()),
            Duration::from_secs(3600),
        )
        .unwrap();
    let foreign = rt.block_on(connect_and_hello(
        &addr,
        &Cred {
            ca: ca_pem.clone(),
            cert: cred.cert_pem,
            key: cred.key_pem,
        },
    ));
    assert!(foreign.contains("fatal alert"), "{foreign}");

    assert_eq!(
        hub.status_of("good"),
        "Ready",
        "the hub kept serving everyone else"
    );
}

/// Opens a stream with `cred` and sends Hello; returns the error text, or "accepted".
async fn connect_and_hello(addr: &str, cred: &Cred) -> String {
    let channel = match rogue::mtls(addr, cred).await {
        Ok(c) => c,
        Err(e) => return e,
    };
    match rogue::agent_client(channel)
        .connect(tokio_stream::iter(vec![hello()]))
        .await
    {
        Ok(_) => "accepted".into(),
        Err(s) => format!("{s:?}"),
    }
}

/// A client certificate for cluster `good` signed with the hub's CA key, with `usage`.
fn forge(
    data_dir: &Path,
    serial_hex: &str,
    usage: rcgen::ExtendedKeyUsagePurpose,
) -> (String, String) {
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(data_dir.join("ca.key")).unwrap())
            .unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(
        &std::fs::read_to_string(data_dir.join("ca.crt")).unwrap(),
        ca_key,
    )
    .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![rcgen::SanType::URI(
        tether_common::identity::Identity::Cluster("edge-1".into())
            .uri()
            .try_into()
            .unwrap(),
    )];
    params.extended_key_usages = vec![usage];
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&hex_decode(serial_hex)));
    let cert = params.signed_by(&key, &issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn roles_limit_what_users_may_do_and_every_change_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path());
    let cfg = |name: &str| dir.path().join(format!("{name}.yaml"));
    for (name, role) in [("olivia", "operator"), ("victor", "viewer")] {
        let out = hub.ctl(&[
            "user",
            "create",
            name,
            "--role",
            role,
            "-o",
            &cfg(name).display().to_string(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(cfg(name)).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let as_user = |name: &str, args: &[&str]| {
        run(Command::new(bin("tetherctl"))
            .arg("--config")
            .arg(cfg(name))
            .args(args))
    };
    let workload = dir.path().join("w.yaml");
    std::fs::write(
        &workload,
        "apiVersion: tether.dev/v1alpha1\nkind: Workload\nmetadata: { name: w }\nspec:\n  manifests:\n    - { apiVersion: v1, kind: ConfigMap, metadata: { name: w } }\n  placement: { clusterSelector: {} }\n",
    )
    .unwrap();
    let w = workload.display().to_string();

    let out = as_user("victor", &["apply", "-f", &w]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("permission denied") && stderr(&out).contains("role viewer"),
        "{}",
        stderr(&out)
    );
    assert!(
        as_user("victor", &["get", "workloads"]).status.success(),
        "a viewer reads"
    );

    assert!(
        as_user("olivia", &["apply", "-f", &w]).status.success(),
        "an operator applies"
    );
    let out = as_user("olivia", &["token", "create", "--cluster", "x"]);
    assert!(
        stderr(&out).contains("permission denied"),
        "{}",
        stderr(&out)
    );
    let out = as_user("olivia", &["user", "create", "mallory", "--role", "admin"]);
    assert!(
        stderr(&out).contains("permission denied"),
        "{}",
        stderr(&out)
    );

    let users = hub.ctl_json(&["user", "list"]);
    assert_eq!(users.as_array().unwrap().len(), 3);

    let audit = hub.ctl_json(&["audit", "--since", "1h"]);
    let entries: Vec<(String, String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().into(),
                e["action"].as_str().unwrap().into(),
                e["result"].as_str().unwrap().into(),
            )
        })
        .collect();
    let has = |actor: &str, action: &str, ok: bool| {
        entries
            .iter()
            .any(|(a, x, r)| a == actor && x == action && (r == "ok") == ok)
    };
    assert!(has("user/admin", "CreateUser", true), "{entries:?}");
    assert!(
        has("user/victor", "ApplyWorkload", false),
        "refusals are audited too: {entries:?}"
    );
    assert!(has("user/olivia", "ApplyWorkload", true), "{entries:?}");
    assert!(has("user/olivia", "CreateToken", false), "{entries:?}");
    assert!(has("user/olivia", "CreateUser", false), "{entries:?}");
    assert!(
        as_user("victor", &["audit"]).status.code() == Some(1),
        "only admins read the audit log"
    );

    // A removed user is cut off.
    assert!(hub.ctl(&["user", "remove", "victor"]).status.success());
    let out = as_user("victor", &["get", "workloads"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        hub.ctl_json(&["audit"])
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "RemoveUser")
    );
}

#[test]
fn no_secret_reaches_any_log_at_debug_level() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(
        &dir.path().join("hub"),
        HubOptions {
            log: "debug".into(),
            ..HubOptions::default()
        },
    );
    let c = Cluster::start(dir.path(), "edge-1", 1, "v1.33.4");
    let (token, pin) = hub.token("edge-1", &[]);
    let agent = Agent::start_logged(
        &hub,
        &c,
        &dir.path().join("state"),
        &["--token", &token, "--ca-pin", &pin],
        "debug",
    );
    hub.wait_status("edge-1", "Ready", PATIENCE);
    let secret_value = "s3cr3t-p4ssw0rd-value";
    hub.apply_ok(
        "sec",
        &format!(
            "apiVersion: tether.dev/v1alpha1\nkind: Workload\nmetadata: {{ name: sec }}\nspec:\n  manifests:\n    - {{ apiVersion: v1, kind: Secret, metadata: {{ name: db }}, stringData: {{ password: {secret_value} }} }}\n  placement: {{ clusters: [ edge-1 ] }}\n"
        ),
    );
    hub.wait_available("sec", "30s");
    let user_cfg = dir.path().join("u.yaml");
    assert!(
        hub.ctl(&[
            "user",
            "create",
            "u",
            "--role",
            "viewer",
            "-o",
            &user_cfg.display().to_string()
        ])
        .status
        .success()
    );

    let mut needles = vec![
        token.split('.').nth(1).unwrap().to_string(),
        secret_value.to_string(),
    ];
    let key_body = |pem: &str| pem.lines().nth(1).unwrap_or("none").to_string();
    needles.push(key_body(&Cred::load(&dir.path().join("state")).key));
    for f in ["u.yaml", "hub/admin.yaml"] {
        let cfg: Value =
            serde_saphyr::from_str(&std::fs::read_to_string(dir.path().join(f)).unwrap()).unwrap();
        needles.push(key_body(cfg["key"].as_str().unwrap()));
    }
    needles.push(key_body(
        &std::fs::read_to_string(dir.path().join("hub/ca.key")).unwrap(),
    ));
    needles.push(key_body(
        &std::fs::read_to_string(dir.path().join("hub/hub.key")).unwrap(),
    ));
    let logs = [("hub", hub.log_text()), ("agent", agent.proc.log_text())];
    for (who, log) in &logs {
        assert!(
            log.lines().count() > 20,
            "{who} logged too little to prove anything"
        );
        for n in &needles {
            assert!(
                !log.contains(n.as_str()),
                "a secret reached the {who} log: {n}"
            );
        }
    }
}

#[test]
fn oversized_and_hostile_agent_messages_never_break_the_hub() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path());
    let (_good, _good_agent) = member(dir.path(), &hub, "good");
    let (_c, mut victim) = member(dir.path(), &hub, "hostile");
    hub.apply_ok(
        "w",
        "apiVersion: tether.dev/v1alpha1\nkind: Workload\nmetadata: { name: w }\nspec:\n  manifests:\n    - { apiVersion: v1, kind: ConfigMap, metadata: { name: w } }\n  placement: { clusterSelector: {} }\n",
    );
    hub.wait_available("w", "30s");
    victim.proc.kill();
    let cred = Cred::load(&dir.path().join("hostile-state"));
    let rt = rogue::runtime();
    let addr = hub.addr.to_string();

    // One message over the hub's limit: refused, and the stream closed with a reason.
    let oversized = rt.block_on(async {
        let mut client = rogue::agent_client(rogue::mtls(&addr, &cred).await.unwrap());
        let huge = pb::ConnectRequest {
            msg: Some(connect_request::Msg::Status(pb::WorkloadStatus {
                workload: "w".into(),
                message: "x".repeat(5 << 20),
                ..Default::default()
            })),
        };
        let mut inbound = client
            .connect(tokio_stream::iter(vec![hello(), huge]))
            .await
            .unwrap()
            .into_inner();
        loop {
            match tokio::time::timeout(Duration::from_secs(10), inbound.next()).await {
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(s))) => return format!("{:?}: {}", s.code(), s.message()),
                Ok(None) => return "stream ended".to_string(),
                Err(_) => return "no answer".to_string(),
            }
        }
    });
    assert!(
        oversized.to_lowercase().contains("message") || oversized == "stream ended",
        "{oversized}"
    );

    // A flood of nonsense: unknown enum values, huge fields within the limit, acks for
    // workloads that do not exist, out-of-order messages, a second Hello.
    let mut seed = 42u64;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        seed >> 33
    };
    let mut junk = vec![hello()];
    for i in 0..400 {
        let name = match next() % 4 {
            0 => "w".to_string(),
            1 => "".to_string(),
            2 => "x".repeat((next() % 3000) as usize),
            _ => format!("ghost-{i}"),
        };
        let msg = match next() % 6 {
            0 => connect_request::Msg::Ack(pb::Ack {
                workload: name,
                revision: next(),
                bundle_hash: format!("{:x}", next()),
            }),
            1 => connect_request::Msg::Removed(pb::Removed { workload: name }),
            2 => connect_request::Msg::Status(pb::WorkloadStatus {
                workload: name,
                revision: next(),
                phase: (next() % 100) as i32,
                objects: (0..(next() % 200))
                    .map(|_| pb::ObjectStatus {
                        health: 77,
                        name: "o".into(),
                        ..Default::default()
                    })
                    .collect(),
                feedback: (0..(next() % 200))
                    .map(|j| (format!("k{j}"), "v".repeat(2000)))
                    .collect(),
                ..Default::default()
            }),
            3 => connect_request::Msg::Hello(pb::Hello::default()),
            4 => connect_request::Msg::Facts(pb::FactsUpdate {
                facts: Some(pb::ClusterFacts {
                    kubernetes_version: "v".repeat(100_000),
                    node_count: u32::MAX,
                    ..Default::default()
                }),
            }),
            _ => connect_request::Msg::Heartbeat(pb::Heartbeat {
                sent_unix_ms: next() as i64,
            }),
        };
        junk.push(pb::ConnectRequest { msg: Some(msg) });
    }
    junk.push(pb::ConnectRequest { msg: None });
    rt.block_on(async {
        let mut client = rogue::agent_client(rogue::mtls(&addr, &cred).await.unwrap());
        let mut inbound = client
            .connect(tokio_stream::iter(junk))
            .await
            .unwrap()
            .into_inner();
        while let Ok(Some(Ok(_))) =
            tokio::time::timeout(Duration::from_secs(2), inbound.next()).await
        {}
    });
    // Garbage on the TLS port and a TLS client speaking no HTTP/2.
    {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(hub.addr).unwrap();
        let _ = s.write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 0, 1, 2, 3]);
    }

    // The hub still serves, its store reads back, and the hostile cluster's record is sane.
    assert_eq!(hub.status_of("good"), "Ready");
    let c = hub.cluster("hostile").unwrap();
    assert!(
        c["kubernetesVersion"].as_str().unwrap().len() <= 256,
        "facts are bounded"
    );
    let s = hub.workload_status("w").unwrap();
    assert_eq!(
        s["clusters"].as_array().unwrap().len(),
        2,
        "forged Removed/acks did not drop assignments"
    );
    let good = hub.cluster_status("w", "good").unwrap();
    assert_eq!(good["phase"], "Available");
    let hostile = hub.cluster_status("w", "hostile").unwrap();
    assert!(hostile["objects"].as_array().unwrap().len() <= 50);
    assert!(hostile["feedback"].as_object().unwrap().len() <= 50);
    let restarted_ok = hub.ctl(&["get", "workloads"]);
    assert!(restarted_ok.status.success());
}
