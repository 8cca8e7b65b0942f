//! The hub's etcd connection: endpoints tried in turn (TLS 1.3 with the operator's CA and,
//! for mTLS, a client certificate), every call bounded by a deadline, and the lease that
//! proves this hub is the one writing.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use super::pb;
use crate::store::StoreError;

/// How the hub reaches etcd (`tether-hub serve --store etcd ...`).
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    /// `https://HOST:PORT` (or `http://` for a test etcd without TLS).
    pub endpoints: Vec<String>,
    /// The CA that signed the etcd members' serving certificates (PEM).
    pub ca: Option<PathBuf>,
    /// The hub's client certificate and key for etcd's `--client-cert-auth` (PEM).
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Every key the hub writes starts with this (several installations can share an etcd).
    pub prefix: String,
    /// The lease that fences this hub's writes; a hub that cannot renew it for this long
    /// stops, and another takes over.
    pub lease_ttl: Duration,
    /// The longest one etcd call may take before it counts as failed.
    pub request_timeout: Duration,
    /// How often the serving hub compacts etcd's history (zero: never, for an etcd that
    /// compacts itself with `--auto-compaction-retention`).
    pub compaction_interval: Duration,
}

impl EtcdConfig {
    /// Checks the endpoints and files; the message names the flag at fault.
    pub fn validate(&self) -> Result<(), String> {
        if self.endpoints.is_empty() {
            return Err("--etcd-endpoints is required with --store etcd".into());
        }
        for e in &self.endpoints {
            Target::parse(e)?;
        }
        let tls = self.endpoints.iter().any(|e| e.starts_with("https://"));
        if tls && self.ca.is_none() {
            return Err("--etcd-ca is required for https:// etcd endpoints".into());
        }
        if self.cert.is_some() != self.key.is_some() {
            return Err("--etcd-cert and --etcd-key go together".into());
        }
        if !self.prefix.starts_with('/') || self.prefix.ends_with('/') || self.prefix.len() < 2 {
            return Err(format!(
                "--etcd-prefix {:?} must start with '/' and not end with one (e.g. /tether)",
                self.prefix
            ));
        }
        if self.lease_ttl < Duration::from_secs(2) {
            return Err("--etcd-lease-ttl must be at least 2s".into());
        }
        Ok(())
    }
}

/// One endpoint, parsed.
#[derive(Debug, Clone)]
struct Target {
    tls: bool,
    host: String,
    port: u16,
}

impl Target {
    fn parse(endpoint: &str) -> Result<Target, String> {
        let bad = || {
            format!(
                "etcd endpoint {endpoint:?} is not http(s)://HOST:PORT (e.g. https://etcd-0:2379)"
            )
        };
        let (tls, rest) = if let Some(r) = endpoint.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = endpoint.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad());
        };
        let (host, port) =
            tether_common::tls::split_host_port(rest.trim_end_matches('/')).map_err(|_| bad())?;
        Ok(Target { tls, host, port })
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

fn read_pem(path: &PathBuf, what: &str) -> Result<String, StoreError> {
    std::fs::read_to_string(path)
        .map_err(|e| StoreError::Io(format!("cannot read the {what} {}: {e}", path.display())))
}

fn tls_config(config: &EtcdConfig) -> Result<Option<Arc<rustls::ClientConfig>>, StoreError> {
    let Some(ca) = &config.ca else {
        return Ok(None);
    };
    let ca = read_pem(ca, "etcd CA")?;
    let tls = |e: tether_common::tls::TlsError| StoreError::Io(format!("etcd TLS: {e}"));
    let built = match (&config.cert, &config.key) {
        (Some(c), Some(k)) => tether_common::tls::mtls_client_config(
            &ca,
            &read_pem(c, "etcd client certificate")?,
            &read_pem(k, "etcd client key")?,
        )
        .map_err(tls)?,
        _ => {
            let roots = tether_common::tls::root_store(&ca).map_err(tls)?;
            let mut c = rustls::ClientConfig::builder_with_provider(tether_common::tls::provider())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .map_err(|e| StoreError::Io(format!("etcd TLS: {e}")))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            c.alpn_protocols = vec![b"h2".to_vec()];
            c
        }
    };
    Ok(Some(Arc::new(built)))
}

/// A gRPC connection to whichever member answers, starting with the one after the last that
/// failed us.
pub struct Client {
    channel: Mutex<Channel>,
    targets: Arc<Vec<Target>>,
    next: Arc<AtomicUsize>,
    tls: Option<Arc<rustls::ClientConfig>>,
    pub timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("targets", &self.targets)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Must run inside the runtime that will drive the connection.
    pub fn new(config: &EtcdConfig) -> Result<Client, StoreError> {
        config.validate().map_err(StoreError::Io)?;
        let targets = config
            .endpoints
            .iter()
            .map(|e| Target::parse(e))
            .collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::Io)?;
        let tls = tls_config(config)?;
        let targets = Arc::new(targets);
        let next = Arc::new(AtomicUsize::new(0));
        let channel = Self::channel(&targets, &next, &tls, config.request_timeout);
        Ok(Client {
            channel: Mutex::new(channel),
            targets,
            next,
            tls,
            timeout: config.request_timeout,
        })
    }

    fn channel(
        targets: &Arc<Vec<Target>>,
        next: &Arc<AtomicUsize>,
        tls: &Option<Arc<rustls::ClientConfig>>,
        timeout: Duration,
    ) -> Channel {
        let (targets, next, tls) = (targets.clone(), next.clone(), tls.clone());
        let connect = tower::service_fn(move |_uri: http::Uri| {
            let (targets, next, tls) = (targets.clone(), next.clone(), tls.clone());
            async move {
                let start = next.load(Ordering::Relaxed);
                let mut last = None;
                for i in 0..targets.len() {
                    let idx = (start + i) % targets.len();
                    match tokio::time::timeout(timeout, dial(&targets[idx], &tls)).await {
                        Ok(Ok(io)) => {
                            next.store(idx, Ordering::Relaxed);
                            return Ok(TokioIo::new(io));
                        }
                        Ok(Err(e)) => last = Some(e),
                        Err(_) => {
                            last = Some(std::io::Error::new(
                                std::io::ErrorKind::TimedOut,
                                "connection timed out",
                            ))
                        }
                    }
                }
                Err(last.unwrap_or_else(|| std::io::Error::other("no etcd endpoints")))
            }
        });
        Endpoint::from_static("http://etcd")
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(timeout)
            .keep_alive_while_idle(true)
            .connect_with_connector_lazy(connect)
    }

    fn current(&self) -> Channel {
        self.channel
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Drops the connection and starts again with the next member: a member that is up but
    /// cut off from the others (no leader) keeps a connection open and answers nothing.
    pub fn rotate(&self) {
        let n = self.targets.len();
        let _ = self
            .next
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |i| Some((i + 1) % n));
        let fresh = Self::channel(&self.targets, &self.next, &self.tls, self.timeout);
        *self.channel.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
    }

    pub fn kv(&self) -> pb::kv_client::KvClient<Channel> {
        pb::kv_client::KvClient::new(self.current())
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(4 << 20)
    }

    pub fn watch(&self) -> pb::watch_client::WatchClient<Channel> {
        pb::watch_client::WatchClient::new(self.current()).max_decoding_message_size(64 << 20)
    }

    pub fn lease(&self) -> pb::lease_client::LeaseClient<Channel> {
        pb::lease_client::LeaseClient::new(self.current())
    }

    /// Runs one call with the deadline; a failure moves to the next member for later calls.
    pub async fn call<T, F>(&self, what: &str, f: F) -> Result<T, CallError>
    where
        F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(status)) => {
                if matches!(
                    status.code(),
                    tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown
                ) {
                    self.rotate();
                }
                Err(CallError {
                    what: what.to_string(),
                    detail: tether_common::tls::status_detail(&status),
                })
            }
            Err(_) => {
                self.rotate();
                Err(CallError {
                    what: what.to_string(),
                    detail: format!(
                        "no answer within {} (is a majority of etcd members up?)",
                        humantime::format_duration(self.timeout)
                    ),
                })
            }
        }
    }
}

/// An etcd call that failed or did not answer in time.
#[derive(Debug, Clone)]
pub struct CallError {
    pub what: String,
    pub detail: String,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "etcd {}: {}", self.what, self.detail)
    }
}

async fn dial(t: &Target, tls: &Option<Arc<rustls::ClientConfig>>) -> std::io::Result<Box<dyn Io>> {
    let tcp = TcpStream::connect((t.host.as_str(), t.port)).await?;
    tcp.set_nodelay(true)?;
    if !t.tls {
        return Ok(Box::new(tcp));
    }
    let config = tls.clone().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "https endpoint without --etcd-ca",
        )
    })?;
    let name = ServerName::try_from(t.host.clone())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    Ok(Box::new(stream))
}

/// The lease this hub holds, renewed until it is lost or released.
pub struct Lease {
    pub id: i64,
    /// Cancelled when the lease can no longer be trusted to be alive: the hub must stop
    /// writing and serving before etcd lets it expire and another hub takes over.
    pub lost: CancellationToken,
    /// Whether the last renewal got an answer: the hub is not ready while etcd is silent.
    pub answering: Arc<std::sync::atomic::AtomicBool>,
}

/// Grants a lease and keeps it alive on the current runtime. Validity is counted from when
/// each successful renewal was *sent*, less a third of the TTL, so this hub always stops
/// holding sessions well before etcd could let the lease go.
pub async fn grant_lease(client: Arc<Client>, ttl: Duration) -> Result<Lease, CallError> {
    let granted = client
        .call(
            "lease grant",
            client.lease().lease_grant(pb::LeaseGrantRequest {
                ttl: ttl.as_secs() as i64,
                id: 0,
            }),
        )
        .await?;
    if !granted.error.is_empty() {
        return Err(CallError {
            what: "lease grant".into(),
            detail: granted.error,
        });
    }
    let id = granted.id;
    let lost = CancellationToken::new();
    let answering = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let ttl = Duration::from_secs(granted.ttl.max(1) as u64);
    let (l, c, ok) = (lost.clone(), client.clone(), answering.clone());
    tokio::spawn(async move {
        // This hub gives the lease up a third of its TTL before etcd could let it expire:
        // its sessions must be closed before another hub can take the lease and accept the
        // same agents (renewals every quarter TTL leave room for two to fail first).
        let margin = ttl / 3;
        let mut valid_until = Instant::now() + ttl - margin;
        // Each try gets at most a quarter TTL: a member that died or lost its leader must
        // not use up the time left; after a failed try the next member is tried at once.
        let try_for = (ttl / 4).min(c.timeout);
        let mut wait = Duration::ZERO;
        loop {
            tokio::select! {
                _ = l.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            let sent = Instant::now();
            // One request per stream keeps reconnects simple: a renewal every ttl/4 is cheap.
            let renewed = async {
                let (tx, rx) = tokio::sync::mpsc::channel(1);
                tx.send(pb::LeaseKeepAliveRequest { id }).await.ok();
                let mut answers = c
                    .call(
                        "lease keep-alive",
                        c.lease()
                            .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx)),
                    )
                    .await?;
                match tokio::time::timeout(try_for, answers.message()).await {
                    Ok(Ok(Some(a))) => Ok(a.ttl),
                    Ok(Ok(None)) => Ok(0),
                    Ok(Err(s)) => Err(CallError {
                        what: "lease keep-alive".into(),
                        detail: tether_common::tls::status_detail(&s),
                    }),
                    Err(_) => {
                        c.rotate();
                        Err(CallError {
                            what: "lease keep-alive".into(),
                            detail: "no answer".into(),
                        })
                    }
                }
            };
            let remaining = valid_until.saturating_duration_since(Instant::now());
            let result = tokio::time::timeout(remaining.min(try_for), renewed).await;
            ok.store(matches!(result, Ok(Ok(_))), Ordering::Relaxed);
            wait = Duration::from_millis(100);
            match result {
                Ok(Ok(left)) if left > 0 => {
                    valid_until = sent + Duration::from_secs(left as u64) - margin;
                    wait = ttl / 4;
                }
                Ok(Ok(_)) => {
                    tracing::error!(lease = id, "etcd says this hub's lease has expired");
                    l.cancel();
                    return;
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot renew this hub's etcd lease"),
                Err(_) => {
                    // The member did not answer in time: the next try goes to another.
                    c.rotate();
                    tracing::warn!("no answer to this hub's etcd lease renewal")
                }
            }
            if Instant::now() >= valid_until {
                tracing::error!(
                    lease = id,
                    "could not renew this hub's etcd lease before it ends"
                );
                l.cancel();
                return;
            }
        }
    });
    Ok(Lease {
        id,
        lost,
        answering,
    })
}
