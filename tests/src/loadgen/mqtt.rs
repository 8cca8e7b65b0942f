//! The fan-out baseline: Mosquitto (the Debian package) with N mutual-TLS subscribers.
//!
//! MQTT brokers are the transport other multi-cluster and edge systems put between their
//! control plane and their agents. The clients here speak just enough MQTT 3.1.1 (CONNECT,
//! SUBSCRIBE, PUBLISH/PUBACK at QoS 1) over the same rustls as Tether, so the baseline pays
//! for TLS 1.3 and acknowledged delivery as Tether does, and nothing else. (A general MQTT
//! crate was not used: rumqttc, the widely used one, pulls a rustls-webpki with open
//! advisories and the unmaintained rustls-pemfile.)

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use rustls::pki_types::ServerName;
use tether_common::identity::Identity;
use tether_common::pki::CertificateAuthority;
use tether_common::tls;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;

use crate::harness::{self, Proc};

/// A Mosquitto broker listening with TLS 1.3 on loopback, requiring client certificates.
pub struct Broker {
    pub addr: SocketAddr,
    client: Arc<rustls::ClientConfig>,
    _proc: Proc,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Where the broker binary is, if installed.
pub fn mosquitto() -> Option<PathBuf> {
    ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

impl Broker {
    pub async fn start(dir: &Path) -> anyhow::Result<Broker> {
        let bin = mosquitto().ok_or_else(|| anyhow!("mosquitto is not installed"))?;
        std::fs::create_dir_all(dir)?;
        let day = Duration::from_secs(86_400);
        let (ca, _) = CertificateAuthority::generate(day)?;
        let server = ca.issue_server(&["127.0.0.1".to_string()], day)?;
        let (user, _) = ca.issue_client(&Identity::User("bench".into()), day)?;
        let write = |name: &str, text: &str| -> anyhow::Result<PathBuf> {
            let p = dir.join(name);
            tether_common::files::write_private(&p, text.as_bytes())?;
            Ok(p)
        };
        let ca_path = write("ca.pem", ca.cert_pem())?;
        let cert_path = write("server.pem", &server.cert_pem)?;
        let key_path = write("server.key", &server.key_pem)?;
        let port = harness::free_port();
        let conf = format!(
            "# Written by tether-loadgen: the fan-out baseline.\n\
             user root\n\
             per_listener_settings false\n\
             persistence false\n\
             allow_anonymous false\n\
             max_queued_messages 1000\n\
             set_tcp_nodelay true\n\
             connection_messages false\n\
             log_dest stdout\n\
             log_type error\n\
             log_type warning\n\
             listener {port} 127.0.0.1\n\
             tls_version tlsv1.3\n\
             cafile {}\n\
             certfile {}\n\
             keyfile {}\n\
             require_certificate true\n\
             use_identity_as_username true\n",
            ca_path.display(),
            cert_path.display(),
            key_path.display()
        );
        let conf_path = write("mosquitto.conf", &conf)?;
        let mut cmd = std::process::Command::new(bin);
        cmd.arg("-c").arg(&conf_path);
        let proc = Proc::spawn("mosquitto", &mut cmd, dir.join("mosquitto.log"));
        let client = Arc::new(tls::mtls_client_config(
            ca.cert_pem(),
            &user.cert_pem,
            &user.key_pem,
        )?);
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match Conn::connect(addr, client.clone(), "probe").await {
                Ok(_) => break,
                Err(e) if Instant::now() > deadline => {
                    bail!(
                        "mosquitto did not accept a connection within 10s: {e}; its log: {}",
                        proc.log_text()
                    )
                }
                // A poll inside a deadline loop.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        Ok(Broker {
            addr,
            client,
            _proc: proc,
        })
    }

    pub fn pid(&self) -> u32 {
        self._proc.pid()
    }

    pub async fn connect(&self, client_id: &str) -> anyhow::Result<Conn> {
        Conn::connect(self.addr, self.client.clone(), client_id).await
    }
}

/// One MQTT 3.1.1 connection.
pub struct Conn {
    io: TlsStream<TcpStream>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").finish_non_exhaustive()
    }
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let mut b = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        out.push(b);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// A received packet: its first byte and body.
#[derive(Debug)]
pub struct Packet {
    pub first: u8,
    pub body: Vec<u8>,
}

impl Conn {
    async fn connect(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
        client_id: &str,
    ) -> anyhow::Result<Conn> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from(addr.ip().to_string())?;
        let io = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .context("TLS to mosquitto")?;
        let mut c = Conn {
            io,
            buf: Vec::with_capacity(4096),
        };
        let mut body = Vec::new();
        put_str(&mut body, b"MQTT");
        body.push(4); // protocol level 3.1.1
        body.push(0x02); // clean session
        body.extend_from_slice(&0u16.to_be_bytes()); // no keep-alive: the run is short
        put_str(&mut body, client_id.as_bytes());
        c.io.write_all(&packet(0x10, &body)).await?;
        let ack = c.read().await?;
        if ack.first >> 4 != 2 || ack.body.get(1) != Some(&0) {
            bail!("mosquitto refused CONNECT: {ack:?}");
        }
        Ok(c)
    }

    /// Reads one packet.
    pub async fn read(&mut self) -> anyhow::Result<Packet> {
        loop {
            if let Some((first, start, len)) = self.header()
                && self.buf.len() >= start + len
            {
                let body = self.buf[start..start + len].to_vec();
                self.buf.drain(..start + len);
                return Ok(Packet { first, body });
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self.io.read(&mut chunk).await?;
            if n == 0 {
                bail!("mosquitto closed the connection");
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn header(&self) -> Option<(u8, usize, usize)> {
        let first = *self.buf.first()?;
        let mut len = 0usize;
        for i in 0..4 {
            let b = *self.buf.get(1 + i)?;
            len |= usize::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Some((first, 2 + i, len));
            }
        }
        None
    }

    pub async fn subscribe(&mut self, topic: &str) -> anyhow::Result<()> {
        let mut body = 1u16.to_be_bytes().to_vec();
        put_str(&mut body, topic.as_bytes());
        body.push(1); // QoS 1
        self.io.write_all(&packet(0x82, &body)).await?;
        let ack = self.read().await?;
        if ack.first >> 4 != 9 || ack.body.get(2).is_none_or(|rc| *rc > 2) {
            bail!("mosquitto refused SUBSCRIBE: {ack:?}");
        }
        Ok(())
    }

    /// Publishes at QoS 1 and waits for the broker's PUBACK.
    pub async fn publish(&mut self, topic: &str, payload: &[u8], id: u16) -> anyhow::Result<()> {
        let mut body = Vec::with_capacity(payload.len() + topic.len() + 4);
        put_str(&mut body, topic.as_bytes());
        body.extend_from_slice(&id.to_be_bytes());
        body.extend_from_slice(payload);
        self.io.write_all(&packet(0x32, &body)).await?;
        loop {
            let p = self.read().await?;
            if p.first >> 4 == 4 {
                return Ok(());
            }
        }
    }

    /// Acknowledges a QoS 1 PUBLISH; returns its payload.
    async fn accept_publish(&mut self, p: &Packet) -> anyhow::Result<Vec<u8>> {
        let topic_len = usize::from(u16::from_be_bytes([
            *p.body.first().unwrap_or(&0),
            *p.body.get(1).unwrap_or(&0),
        ]));
        let qos = (p.first >> 1) & 0x3;
        let mut at = 2 + topic_len;
        if qos > 0 {
            let id = p
                .body
                .get(at..at + 2)
                .ok_or_else(|| anyhow!("short PUBLISH"))?;
            let ack = packet(0x40, id);
            self.io.write_all(&ack).await?;
            at += 2;
        }
        Ok(p.body.get(at..).unwrap_or_default().to_vec())
    }
}

/// When each subscriber got each run's message: `(run, subscriber, at)`.
pub type Receipts = Arc<Mutex<Vec<(u64, u32, Instant)>>>;

/// Connects `n` subscribers to `topic` (64 handshakes at a time) and keeps them reading until
/// `stop`. Every message's first 8 bytes are its run number.
pub async fn subscribers(
    broker: &Broker,
    n: usize,
    topic: &str,
    receipts: Receipts,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    use futures::stream::{self, StreamExt};
    let retries = std::sync::atomic::AtomicUsize::new(0);
    let conns: Vec<anyhow::Result<Conn>> = stream::iter(0..n)
        .map(|i| {
            let retries = &retries;
            async move {
                // Mosquitto 2.0.11 now and then never answers a new TLS client's CONNECT; a
                // fresh connection goes through. Setting up is not timed.
                let mut last = anyhow!("no attempt");
                for _ in 0..5 {
                    let attempt = tokio::time::timeout(Duration::from_secs(3), async {
                        let mut c = broker.connect(&format!("sub-{i}")).await?;
                        c.subscribe(topic).await?;
                        anyhow::Ok(c)
                    });
                    match attempt.await {
                        Ok(Ok(c)) => return Ok(c),
                        Ok(Err(e)) => last = e,
                        Err(_) => last = anyhow!("no CONNACK/SUBACK within 3s"),
                    }
                    retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Err(last.context(format!("subscriber {i}")))
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let retries = retries.into_inner();
    if retries > 0 {
        eprintln!("  ({retries} subscriber connections to mosquitto stalled and were retried)");
    }
    for (i, c) in conns.into_iter().enumerate() {
        let mut c = c?;
        let (receipts, stop) = (receipts.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let p = tokio::select! {
                    _ = stop.cancelled() => return,
                    p = c.read() => match p { Ok(p) => p, Err(_) => return },
                };
                if p.first >> 4 != 3 {
                    continue;
                }
                let at = Instant::now();
                let Ok(payload) = c.accept_publish(&p).await else {
                    return;
                };
                let run = payload
                    .get(..8)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map_or(0, u64::from_be_bytes);
                receipts
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((run, i as u32, at));
            }
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_length_is_a_varint() {
        assert_eq!(packet(0x30, &[0; 5])[..2], [0x30, 5]);
        assert_eq!(packet(0x30, &[0; 200])[..3], [0x30, 0xc8, 0x01]);
        assert_eq!(packet(0x30, &[0; 16_384])[..4], [0x30, 0x80, 0x80, 0x01]);
    }
}
