//! The status-ingest baseline: etcd (the Debian package) with its default durability (the
//! write-ahead log fsynced before a put is acknowledged), the store behind every
//! Kubernetes-based hub.
//!
//! The client is the etcd v3 gRPC `KV.Put` call, with the two messages written out here
//! (field numbers from etcd's `api/etcdserverpb/rpc.proto`). The `etcd-client` crate was not
//! used: its build needs a system `protoc`, which this repository avoids.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use tonic::transport::{Channel, Endpoint};

use crate::harness::{self, Proc};

#[derive(Clone, PartialEq, prost::Message)]
pub struct PutRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ResponseHeader {
    #[prost(int64, tag = "3")]
    pub revision: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PutResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
}

/// Where etcd is, if installed.
pub fn etcd() -> Option<PathBuf> {
    ["/usr/bin/etcd", "/usr/local/bin/etcd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// A single-member etcd on loopback.
pub struct Etcd {
    pub addr: SocketAddr,
    proc: Proc,
}

impl std::fmt::Debug for Etcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Etcd")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Etcd {
    pub async fn start(dir: &Path) -> anyhow::Result<Etcd> {
        let bin = etcd().ok_or_else(|| anyhow!("etcd is not installed"))?;
        std::fs::create_dir_all(dir)?;
        let (client, peer) = (harness::free_port(), harness::free_port());
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let mut cmd = std::process::Command::new(bin);
        cmd.args(["--name", "bench", "--data-dir"])
            .arg(dir.join("data"))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("bench={peer_url}")])
            .args(["--logger", "zap", "--log-level", "warn"])
            // Debian's etcd 3.4 refuses to start on some architectures without this; on
            // amd64 it is a no-op.
            .env("ETCD_UNSUPPORTED_ARCH", std::env::consts::ARCH);
        let proc = Proc::spawn("etcd", &mut cmd, dir.join("etcd.log"));
        let addr: SocketAddr = format!("127.0.0.1:{client}").parse()?;
        let etcd = Etcd { addr, proc };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = match etcd.client().await {
                Ok(c) => put(&c, b"probe".to_vec(), b"1".to_vec()).await.is_ok(),
                Err(_) => false,
            };
            if ok {
                return Ok(etcd);
            }
            if Instant::now() > deadline {
                bail!(
                    "etcd did not accept a put within 20s; its log: {}",
                    etcd.proc.log_text()
                );
            }
            // A poll inside a deadline loop.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// A new connection.
    pub async fn client(&self) -> anyhow::Result<Channel> {
        Ok(Endpoint::from_shared(format!("http://{}", self.addr))?
            .connect()
            .await?)
    }
}

/// One `KV.Put`.
pub async fn put(channel: &Channel, key: Vec<u8>, value: Vec<u8>) -> anyhow::Result<i64> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await?;
    let path = http::uri::PathAndQuery::from_static("/etcdserverpb.KV/Put");
    let codec = tonic_prost::ProstCodec::<PutRequest, PutResponse>::default();
    let resp = grpc
        .unary(tonic::Request::new(PutRequest { key, value }), path, codec)
        .await?;
    Ok(resp.into_inner().header.map_or(0, |h| h.revision))
}

/// `clients` connections each putting `value` under its own keys, one put at a time, for
/// `window`. Returns the puts acknowledged.
pub async fn put_load(
    etcd: &Etcd,
    clients: usize,
    value: &[u8],
    window: Duration,
) -> anyhow::Result<u64> {
    let done = Arc::new(AtomicU64::new(0));
    let mut channels = Vec::with_capacity(clients);
    for _ in 0..clients {
        channels.push(etcd.client().await?);
    }
    let until = Instant::now() + window;
    let mut tasks = Vec::new();
    for (i, ch) in channels.into_iter().enumerate() {
        let (done, value) = (done.clone(), value.to_vec());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < until {
                // The same key space as the hub's statuses: one key per cluster/workload.
                let key = format!("/status/sim-{i:05}/ingest").into_bytes();
                if put(&ch, key, value.clone()).await.is_err() {
                    return;
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(done.load(Ordering::Relaxed))
}
