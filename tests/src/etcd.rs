//! A real etcd cluster for the hubs-on-etcd suites: `members` etcd processes on loopback,
//! clients over mutual TLS 1.3 (a CA made for the test signs the members' serving certificates
//! and the hubs' client certificate; `--client-cert-auth`), each member killable and
//! restartable with its data.
//!
//! The binary is Debian's `etcd-server` (etcd 3.4), which `./scripts/test` installs, or an
//! `etcd` on PATH; without one the suites skip, except under `CI=true`, where they fail.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tether_common::identity::Identity;
use tether_common::pki::CertificateAuthority;

use crate::harness::{Proc, eventually, free_port};

/// The etcd binary, if there is one.
pub fn etcd_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("etcd"))
            .find(|p| p.is_file())
    });
    on_path.or_else(crate::loadgen::etcd::etcd)
}

/// The etcd binary, or `None` if the calling test should skip (never under `CI=true`).
pub fn require(test: &str) -> Option<PathBuf> {
    match etcd_binary() {
        Some(b) => Some(b),
        None if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{test}: etcd is required under CI=true (./scripts/test installs etcd-server)")
        }
        None => {
            eprintln!("{test}: skipped: etcd is not installed (apt-get install etcd-server)");
            None
        }
    }
}

struct Member {
    name: String,
    client: u16,
    peer: u16,
    proc: Option<Proc>,
    starts: u32,
}

/// An etcd cluster on loopback.
pub struct EtcdCluster {
    binary: PathBuf,
    dir: PathBuf,
    members: Vec<Member>,
    pub ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    /// An address besides loopback the members also serve clients on.
    extra_ip: Option<String>,
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

impl EtcdCluster {
    /// Starts `members` members and waits until the cluster has a leader.
    pub fn start(binary: &Path, dir: &Path, members: usize) -> EtcdCluster {
        EtcdCluster::start_with(binary, dir, members, None)
    }

    /// Also serving clients on `extra_ip` (a root-side veth address a hub in a network
    /// namespace reaches etcd by).
    pub fn start_with(
        binary: &Path,
        dir: &Path,
        members: usize,
        extra_ip: Option<&str>,
    ) -> EtcdCluster {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {dir:?}: {e}"));
        let day = Duration::from_secs(86_400);
        let (ca, _) =
            CertificateAuthority::generate(day).unwrap_or_else(|e| panic!("test CA: {e}"));
        let mut sans = vec!["127.0.0.1".to_string(), "localhost".to_string()];
        sans.extend(extra_ip.map(str::to_string));
        let server = ca
            .issue_server(&sans, day)
            .unwrap_or_else(|e| panic!("etcd serving certificate: {e}"));
        let (client, _) = ca
            .issue_client(&Identity::User("tether-hub".into()), day)
            .unwrap_or_else(|e| panic!("etcd client certificate: {e}"));
        let mut cluster = EtcdCluster {
            binary: binary.to_path_buf(),
            dir: dir.to_path_buf(),
            members: (0..members)
                .map(|i| Member {
                    name: format!("m{i}"),
                    client: free_port(),
                    peer: free_port(),
                    proc: None,
                    starts: 0,
                })
                .collect(),
            ca: dir.join("ca.crt"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            extra_ip: extra_ip.map(str::to_string),
        };
        write(&cluster.ca, ca.cert_pem());
        write(&cluster.client_cert, &client.cert_pem);
        write(&cluster.client_key, &client.key_pem);
        write(&cluster.server_cert, &server.cert_pem);
        write(&cluster.server_key, &server.key_pem);
        for i in 0..members {
            cluster.start_member(i);
        }
        cluster.wait_healthy(Duration::from_secs(30));
        cluster
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts member `i` (again, with its data after a kill).
    pub fn start_member(&mut self, i: usize) {
        let initial = self.initial_cluster();
        let (dir, binary) = (self.dir.clone(), self.binary.clone());
        let (cert, key, ca) = (
            self.server_cert.clone(),
            self.server_key.clone(),
            self.ca.clone(),
        );
        let m = &mut self.members[i];
        m.starts += 1;
        let client_url = format!("https://127.0.0.1:{}", m.client);
        let listen = match &self.extra_ip {
            Some(ip) => format!("{client_url},https://{ip}:{}", m.client),
            None => client_url.clone(),
        };
        let peer_url = format!("http://127.0.0.1:{}", m.peer);
        let mut cmd = Command::new(&binary);
        cmd.args(["--name", &m.name, "--data-dir"])
            .arg(dir.join(&m.name))
            .args(["--listen-client-urls", &listen])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &initial])
            .args(["--initial-cluster-state", "new"])
            .args(["--client-cert-auth", "--trusted-ca-file"])
            .arg(&ca)
            .arg("--cert-file")
            .arg(&cert)
            .arg("--key-file")
            .arg(&key)
            .args(["--logger", "zap", "--log-level", "warn"])
            .env("ETCD_UNSUPPORTED_ARCH", std::env::consts::ARCH);
        let log = dir.join(format!("{}-{}.log", m.name, m.starts));
        m.proc = Some(Proc::spawn(&format!("etcd {}", m.name), &mut cmd, log));
    }

    /// The running members' process ids (what they cost is measured from `/proc`).
    pub fn pids(&self) -> Vec<u32> {
        self.members
            .iter()
            .filter_map(|m| m.proc.as_ref().map(Proc::pid))
            .collect()
    }

    /// `kill -9` of member `i`.
    pub fn kill_member(&mut self, i: usize) {
        if let Some(mut p) = self.members[i].proc.take() {
            p.signal("KILL");
            p.wait_exit(Duration::from_secs(10));
        }
    }

    /// Client URLs, comma-separated, as `--etcd-endpoints` takes them.
    pub fn endpoints(&self) -> String {
        self.endpoints_on("127.0.0.1")
    }

    /// Client URLs on `ip` (loopback, or the extra address).
    pub fn endpoints_on(&self, ip: &str) -> String {
        self.members
            .iter()
            .map(|m| format!("https://{ip}:{}", m.client))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The members' client ports.
    pub fn client_ports(&self) -> Vec<u16> {
        self.members.iter().map(|m| m.client).collect()
    }

    /// The flags a hub needs to use this cluster under `prefix`.
    pub fn hub_flags(&self, prefix: &str) -> Vec<String> {
        self.hub_flags_on(prefix, "127.0.0.1")
    }

    /// The same, reaching the members on `ip`.
    pub fn hub_flags_on(&self, prefix: &str, ip: &str) -> Vec<String> {
        vec![
            "--etcd-endpoints".into(),
            self.endpoints_on(ip),
            "--etcd-ca".into(),
            self.ca.display().to_string(),
            "--etcd-cert".into(),
            self.client_cert.display().to_string(),
            "--etcd-key".into(),
            self.client_key.display().to_string(),
            "--etcd-prefix".into(),
            prefix.into(),
        ]
    }

    /// Waits until every running member accepts a write (a leader is elected and a
    /// majority answers), asked over mTLS with the hub's client certificate.
    pub fn wait_healthy(&self, timeout: Duration) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("a runtime: {e}"));
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        tether_common::tls::install_default_provider();
        let config = std::sync::Arc::new(
            tether_common::tls::mtls_client_config(
                &read(&self.ca),
                &read(&self.client_cert),
                &read(&self.client_key),
            )
            .unwrap_or_else(|e| panic!("etcd client TLS: {e}")),
        );
        let opts = tether_common::tls::ChannelOptions {
            connect_timeout: Duration::from_secs(2),
            handshake_timeout: Duration::from_secs(2),
            ..Default::default()
        };
        for m in self.members.iter().filter(|m| m.proc.is_some()) {
            let addr = format!("127.0.0.1:{}", m.client);
            eventually(
                timeout,
                &format!("etcd {} to accept a write", m.name),
                || {
                    rt.block_on(async {
                        let ch = tether_common::tls::connect(&addr, config.clone(), &opts)
                            .await
                            .ok()?;
                        tokio::time::timeout(
                            Duration::from_secs(3),
                            crate::loadgen::etcd::put(&ch, b"/probe".to_vec(), b"1".to_vec()),
                        )
                        .await
                        .ok()?
                        .ok()
                    })
                },
            );
        }
    }
}
