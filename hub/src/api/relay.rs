//! Hubs that do not serve hand their clients' connections to the hub that does.
//!
//! On an etcd prefix one hub serves at a time (it holds the lease). The others still accept
//! every connection on their TLS port — an agent, `tetherctl`, kubectl through the proxy — and
//! relay it, still encrypted, to the serving hub, the way Vault's standby nodes forward to the
//! active one. The client's TLS session runs end to end with the serving hub, which checks its
//! certificate, the allow-list and every limit exactly as for a direct connection: a relaying
//! hub never sees a credential or a request. So one Service address in front of every hub
//! works, every hub with a serving hub to relay to is ready, and clients need no list.
//!
//! The relay is a TLS 1.3 connection to the serving hub's own port with ALPN
//! `tether-relay/1`, authenticated both ways: the serving hub presents its serving certificate
//! (checked against the CA under `localhost`, a name every serving certificate carries); the
//! relaying hub presents a client certificate for `spiffe://tether.dev/hub/NAME`, which it
//! issues itself from the CA every hub on the prefix shares (valid a day, reissued after
//! half). The first bytes inside are the client's address (a `u16` length, then the text),
//! for the serving hub's per-address limits and logs: that address is all a relaying hub is
//! trusted with. A hub certificate is refused everywhere else (it carries no cluster or user
//! identity).

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tether_common::pki::CertificateAuthority;
use tether_common::tls;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// How long a hub certificate is valid, and when it is reissued.
const CERT_LIFETIME: Duration = Duration::from_secs(24 * 3600);
const CERT_RENEW_AFTER: Duration = Duration::from_secs(12 * 3600);
/// Reaching the serving hub's port (TCP). The relay's TLS handshake after that may take
/// longer under a reconnect storm: it is bounded by [`HANDSHAKE_TIMEOUT`], above the 20 s a
/// client gives its own handshake, so a relay is not abandoned (its work wasted) before the
/// client itself gives up.
pub(crate) const DIAL_TIMEOUT: Duration = Duration::from_secs(3);
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(25);
/// How long a connection waits for a serving hub that answers: a takeover after a kill
/// takes up to the lease TTL (10 s by default) and a moment; below the 20 s clients give a
/// TLS handshake (`tls::ChannelOptions`), leaving them time for the handshake itself.
pub const HOLD: Duration = Duration::from_secs(15);
/// Relays this hub dials and handshakes with the serving hub at once. Only the relay's own
/// handshake (hub to hub, no client involved) holds a turn, a millisecond or two each, so
/// the client handshakes inside follow at the rate the serving hub finishes relays.
const DIALS_IN_FLIGHT: usize = 64;
/// How often a waiting connection looks again for a serving hub.
pub(crate) const HOLD_POLL: Duration = Duration::from_millis(250);
/// How long a serving hub that did not answer is left alone before it is dialled again.
const REDIAL_AFTER: Duration = Duration::from_secs(1);
/// Connections handed to this hub's own server at once, beyond which the waiting ones wait
/// for room (within their hold).
const HANDOFF_QUEUE: usize = 1024;
/// How long a client may take to send its ClientHello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest client address the serving hub reads (`[v6]:port` fits).
const MAX_ADDR: usize = 64;

/// Where the serving hub is: `None` while this hub serves itself (or knows no other).
pub type Target = Arc<dyn Fn() -> Option<String> + Send + Sync>;
/// Whether this hub serves now.
pub type Serving = Arc<dyn Fn() -> bool + Send + Sync>;

/// The relaying side.
pub struct Relay {
    ca: Arc<CertificateAuthority>,
    trust_pem: String,
    name: String,
    dial: RwLock<(Dial, Instant)>,
    target: Target,
    serving: Serving,
    /// Connections that waited here while this hub took the lease, for its own server (see
    /// [`Relay::held`]).
    handoff: mpsc::Sender<(TcpStream, SocketAddr)>,
    held: tokio::sync::Mutex<mpsc::Receiver<(TcpStream, SocketAddr)>>,
    /// Turns to dial the serving hub ([`DIALS_IN_FLIGHT`]).
    dials: tokio::sync::Semaphore,
    /// The serving hub's address when a dial to it last failed, and when.
    dead: std::sync::Mutex<Option<(String, Instant)>>,
    /// Agents' connections this hub terminates itself while it does not serve, their
    /// requests forwarded (see [`crate::api::forward`]); unset, they are relayed like any.
    agents: std::sync::OnceLock<crate::api::forward::Agents>,
    /// What answers the agents' calls this hub terminated once it serves itself: set when
    /// its server starts.
    here: std::sync::OnceLock<crate::api::forward::Forwarded>,
    pub(crate) metrics: Metrics,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Relay {
    pub fn new(
        ca: Arc<CertificateAuthority>,
        trust_pem: String,
        name: String,
        (target, serving): (Target, Serving),
        metrics: Metrics,
    ) -> Result<Arc<Relay>, tls::TlsError> {
        let config = dial_config(&ca, &trust_pem, &name)?;
        let (handoff, held) = mpsc::channel(HANDOFF_QUEUE);
        Ok(Arc::new(Relay {
            ca,
            trust_pem,
            name,
            dial: RwLock::new((config, Instant::now())),
            target,
            serving,
            handoff,
            held: tokio::sync::Mutex::new(held),
            dials: tokio::sync::Semaphore::new(DIALS_IN_FLIGHT),
            dead: std::sync::Mutex::new(None),
            agents: std::sync::OnceLock::new(),
            here: std::sync::OnceLock::new(),
            metrics,
        }))
    }

    /// From now on, agents' connections (ALPN [`tls::AGENT_ALPN`]) are terminated here with
    /// `accept` while this hub does not serve, and their requests forwarded to the hub that
    /// does (see [`crate::api::forward`]).
    pub fn terminate_agents(&self, accept: Arc<rustls::ServerConfig>) {
        let _ = self.agents.set(crate::api::forward::Agents::new(accept));
    }

    /// While this hub serves, the calls of the agents whose connections it terminated are
    /// answered by `here` (its own server's router), as if another hub had forwarded them.
    pub fn answer_here(&self, here: crate::api::forward::Forwarded) {
        let _ = self.here.set(here);
    }

    /// What answers terminated agents' calls on this hub, once it serves.
    pub(crate) fn here(&self) -> Option<&crate::api::forward::Forwarded> {
        self.here.get().filter(|_| self.serving())
    }

    /// Where agents' connections are terminated, if they are.
    pub(crate) fn agents(&self) -> Option<&crate::api::forward::Agents> {
        self.agents.get()
    }

    /// Whether this hub serves now.
    pub(crate) fn serving(&self) -> bool {
        (self.serving)()
    }

    /// The serving hub's address when connections should be relayed there now.
    pub fn target(&self) -> Option<String> {
        (self.target)()
    }

    fn config(&self) -> Arc<rustls::ClientConfig> {
        self.dial().relay
    }

    /// This hub's TLS configurations for dialling another, its certificate reissued after
    /// [`CERT_RENEW_AFTER`].
    pub(crate) fn dial(&self) -> Dial {
        {
            let d = self.dial.read().unwrap_or_else(|e| e.into_inner());
            if d.1.elapsed() < CERT_RENEW_AFTER {
                return d.0.clone();
            }
        }
        match dial_config(&self.ca, &self.trust_pem, &self.name) {
            Ok(c) => {
                *self.dial.write().unwrap_or_else(|e| e.into_inner()) = (c.clone(), Instant::now());
                c
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot reissue this hub's relay certificate; using the old one");
                self.dial
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .0
                    .clone()
            }
        }
    }

    /// Carries `client` to the serving hub until either side closes. While no serving hub
    /// answers (a takeover: the old one died, the next has not its lease yet) the connection
    /// waits here, up to [`HOLD`], for one that does, so clients ride through a takeover
    /// instead of backing off further; after that it is closed and the client tries again.
    pub async fn forward(self: Arc<Self>, mut client: TcpStream, addr: SocketAddr) {
        // A relay is never relayed again: two hubs that each took the other for the serving
        // one (for the moment their views of the lease differ) would bounce it between them.
        match tokio::time::timeout(HELLO_TIMEOUT, peek_hello(&client)).await {
            Ok(Ok(hello)) if !hello.is_empty() => {
                if is_relay(&hello) {
                    self.metrics.relay_failures.inc();
                    tracing::debug!(peer = %addr, "a relay reached a hub that does not serve; not relaying it again");
                    return;
                }
                if offers(&hello, tls::AGENT_ALPN)
                    && let Some(agents) = self.agents.get()
                    && !self.serving()
                    && !agents.relayed_to(self.target().as_deref())
                {
                    agents.serve(&self, client, addr).await;
                    return;
                }
            }
            _ => return,
        }
        let deadline = Instant::now() + HOLD;
        let mut upstream = loop {
            if (self.serving)() {
                // This hub serves now: its own server takes the connection as if it had
                // accepted it (the ClientHello was only peeked). Relaying it to this hub's own
                // port instead would cost the hub two more TLS handshakes per connection (the
                // relay's, both ends) just when a takeover's reconnect storm arrives.
                let wait = deadline.saturating_duration_since(Instant::now());
                if tokio::time::timeout(wait, self.handoff.send((client, addr)))
                    .await
                    .is_ok_and(|sent| sent.is_ok())
                {
                    self.metrics.relay_served_here.inc();
                } else {
                    self.metrics.relay_failures.inc();
                    tracing::debug!(peer = %addr, "this hub serves, but its server took no more held connections within the hold");
                }
                return;
            }
            if let Some(to) = self.target()
                && !self.known_dead(&to)
            {
                // A turn to dial: a takeover releases every connection held here at once,
                // and started together their relays' handshakes would share the serving
                // hub's cores until few finish in time (see [`DIALS_IN_FLIGHT`]).
                let wait = deadline.saturating_duration_since(Instant::now());
                let Ok(Ok(_turn)) = tokio::time::timeout(wait, self.dials.acquire()).await else {
                    self.metrics.relay_failures.inc();
                    tracing::debug!(peer = %addr, "no turn to dial the serving hub within the hold");
                    return;
                };
                let budget = deadline
                    .saturating_duration_since(Instant::now())
                    .clamp(Duration::from_millis(500), DIAL_TIMEOUT);
                match tokio::time::timeout(budget, TcpStream::connect(&to)).await {
                    Ok(Ok(tcp)) => {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.handshake(tcp, addr))
                            .await
                        {
                            Ok(Ok(s)) => break s,
                            // The hub there no longer serves (it closes a relay it would
                            // have to relay again): try again.
                            Ok(Err(e)) => {
                                tracing::debug!(peer = %addr, serving = %to, error = %e, "the relay's handshake with the serving hub failed; waiting");
                                self.mark_dead(&to);
                            }
                            Err(_) => {
                                self.metrics.relay_failures.inc();
                                tracing::debug!(peer = %addr, serving = %to, "the serving hub did not finish the relay's handshake in time");
                                return;
                            }
                        }
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(peer = %addr, serving = %to, error = %e, "cannot reach the serving hub; waiting");
                        self.mark_dead(&to);
                    }
                    Err(_) => self.mark_dead(&to),
                }
            }
            if Instant::now() >= deadline {
                self.metrics.relay_failures.inc();
                tracing::debug!(peer = %addr, "no serving hub answered in time; connection not relayed");
                return;
            }
            tokio::time::sleep(HOLD_POLL).await;
        };
        self.metrics.relayed.inc();
        let r = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        self.metrics.relayed.dec();
        if let Err(e) = r {
            tracing::debug!(peer = %addr, error = %e, "relayed connection ended with an error");
        }
    }

    /// The next connection that waited here for a serving hub until this hub became it:
    /// the server of this hub serves it as if it had accepted it. Called by one server loop
    /// at a time.
    pub async fn held(&self) -> (TcpStream, SocketAddr) {
        let mut held = self.held.lock().await;
        match held.recv().await {
            Some(c) => c,
            // The relay holds a sender itself: the channel cannot close while `self` lives.
            None => std::future::pending().await,
        }
    }

    /// The relay's own TLS connection over `tcp`, with `client`'s address sent first.
    async fn handshake(
        &self,
        tcp: TcpStream,
        client: SocketAddr,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let _ = tcp.set_nodelay(true);
        let name = ServerName::DnsName(
            rustls::pki_types::DnsName::try_from("localhost")
                .map_err(|e| std::io::Error::other(e.to_string()))?,
        );
        let mut tls = tokio_rustls::TlsConnector::from(self.config())
            .connect(name, tcp)
            .await?;
        let text = client.to_string();
        tls.write_all(&(text.len() as u16).to_be_bytes()).await?;
        tls.write_all(text.as_bytes()).await?;
        tls.flush().await?;
        Ok(tls)
    }

    /// Whether a dial to `to` failed within [`REDIAL_AFTER`]: thousands of waiting clients
    /// then wait on one failure instead of each dialling a dead hub.
    pub(crate) fn known_dead(&self, to: &str) -> bool {
        self.dead
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|(addr, at)| addr == to && at.elapsed() < REDIAL_AFTER)
    }

    pub(crate) fn mark_dead(&self, to: &str) {
        *self.dead.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((to.to_string(), Instant::now()));
    }

    /// Relays what `listener` accepts until `stop`, then gives the listener back: a hub
    /// standing by before it ever served.
    pub async fn standby(
        self: Arc<Self>,
        listener: TcpListener,
        stop: CancellationToken,
    ) -> TcpListener {
        loop {
            let (tcp, addr) = tokio::select! {
                _ = stop.cancelled() => return listener,
                c = crate::api::server::next_connection(&listener, &self.metrics) => c,
            };
            // Even with no serving hub known yet: the connection waits for one.
            tokio::spawn(self.clone().forward(tcp, addr));
        }
    }
}

/// The connection's first TLS record (its ClientHello), left unread: the bytes arrived so
/// far, waiting for the rest while the record's header says more is coming. A ClientHello
/// split over TCP segments must not slip past [`is_relay`] with the protocol name in its
/// second part.
async fn peek_hello(client: &TcpStream) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 5 + MAX_RECORD];
    loop {
        let n = client.peek(&mut buf).await?;
        if n == 0 {
            return Ok(Vec::new());
        }
        if n >= hello_len(&buf[..n]).unwrap_or(usize::MAX).min(buf.len()) {
            buf.truncate(n);
            return Ok(buf);
        }
        // Peeking again returns at once while anything is buffered: wait for the rest
        // (bounded by the caller's timeout). Rare: a ClientHello fits one segment.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The largest TLS record's payload.
const MAX_RECORD: usize = 16 * 1024;

/// The length of the TLS record that starts `first` (header included), once its header is
/// there.
fn hello_len(first: &[u8]) -> Option<usize> {
    let header = first.get(..5)?;
    Some(5 + u16::from_be_bytes([header[3], header[4]]) as usize)
}

/// Whether the first bytes of a connection are a ClientHello from another hub: offering the
/// relay's or the forwarding's ALPN.
fn is_relay(first: &[u8]) -> bool {
    offers(first, tls::RELAY_ALPN) || offers(first, tls::FORWARD_ALPN)
}

/// Whether the first bytes of a connection are a ClientHello offering `protocol`. A byte
/// search, not a TLS parser: the protocol name appears in the ALPN extension as is, and
/// nothing else in a ClientHello a client sends would carry it by chance.
pub(crate) fn offers(first: &[u8], protocol: &[u8]) -> bool {
    first.windows(protocol.len()).any(|w| w == protocol)
}

/// A hub's TLS configurations for dialling another: both carry its hub certificate.
#[derive(Clone)]
pub(crate) struct Dial {
    pub relay: Arc<rustls::ClientConfig>,
    pub forward: Arc<rustls::ClientConfig>,
}

fn dial_config(
    ca: &CertificateAuthority,
    trust_pem: &str,
    name: &str,
) -> Result<Dial, tls::TlsError> {
    let own = ca
        .issue_hub(name, CERT_LIFETIME)
        .map_err(|e| tls::TlsError::Invalid(e.to_string()))?;
    let config = |alpn| tls::hub_client_config(trust_pem, &own.cert_pem, &own.key_pem, alpn);
    Ok(Dial {
        relay: Arc::new(config(tls::RELAY_ALPN)?),
        forward: Arc::new(config(tls::FORWARD_ALPN)?),
    })
}

/// The serving side's TLS configuration for relays: the serving certificate, and a client
/// certificate for a hub required.
pub fn accept_config(
    chain_pem: &str,
    key_pem: &str,
    trust_pem: &str,
) -> Result<Arc<rustls::ServerConfig>, tls::TlsError> {
    let verifier = Arc::new(crate::api::tls_auth::ClientVerifier::hubs(trust_pem)?);
    let mut config = tls::server_config(chain_pem, key_pem, verifier)?;
    config.alpn_protocols = vec![tls::RELAY_ALPN.to_vec(), tls::FORWARD_ALPN.to_vec()];
    // Unlike clients' connections, relays may resume: a hub's certificate names no cluster
    // or user and is on no allow-list, so a resumed handshake skips no check that matters,
    // and in a reconnect storm through a standby it saves the serving hub a signature and
    // a chain verification per relayed connection.
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(1024);
    config.send_tls13_tickets = 2;
    Ok(Arc::new(config))
}

/// Reads the client's address a relaying hub sends first.
pub async fn client_addr<IO: AsyncRead + Unpin>(io: &mut IO) -> std::io::Result<SocketAddr> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let read = async {
        let len = io.read_u16().await? as usize;
        if len > MAX_ADDR {
            return Err(bad("a relayed client address longer than any address"));
        }
        let mut buf = vec![0u8; len];
        io.read_exact(&mut buf).await?;
        std::str::from_utf8(&buf)
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| bad("a relayed client address that is not one"))
    };
    tokio::time::timeout(DIAL_TIMEOUT, read)
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "no relayed client address")
        })?
}

/// Writes `addr` the way [`Relay::forward`] does. For tests.
#[cfg(test)]
async fn write_addr<IO: tokio::io::AsyncWrite + Unpin>(
    io: &mut IO,
    addr: &str,
) -> std::io::Result<()> {
    io.write_all(&(addr.len() as u16).to_be_bytes()).await?;
    io.write_all(addr.as_bytes()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    /// A real ClientHello offering `alpn`, as it goes on the wire.
    fn hello(alpn: &[&[u8]]) -> Vec<u8> {
        let mut c = rustls::ClientConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let mut conn =
            rustls::ClientConnection::new(Arc::new(c), ServerName::try_from("localhost").unwrap())
                .unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    #[test]
    fn a_client_hello_offering_the_relay_protocol_is_recognised() {
        assert!(is_relay(&hello(&[tls::RELAY_ALPN])));
        assert!(!is_relay(&hello(&[b"h2", b"http/1.1"])));
    }

    #[tokio::test]
    async fn a_client_hello_split_over_segments_is_read_whole_before_it_is_judged() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hello = hello(&[b"h2", tls::RELAY_ALPN]);
        assert_eq!(hello_len(&hello), Some(hello.len()));
        // Cut inside the protocol name.
        let at = hello
            .windows(tls::RELAY_ALPN.len())
            .position(|w| w == tls::RELAY_ALPN)
            .unwrap();
        let cut = at + 2;
        let (first, rest) = (hello[..cut].to_vec(), hello[cut..].to_vec());
        let sender = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.set_nodelay(true).unwrap();
            c.write_all(&first).await.unwrap();
            c.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            c.write_all(&rest).await.unwrap();
            c
        });
        let (server, _) = listener.accept().await.unwrap();
        let seen = tokio::time::timeout(Duration::from_secs(5), peek_hello(&server))
            .await
            .unwrap()
            .unwrap();
        assert!(
            is_relay(&seen),
            "only {} of {} bytes judged",
            seen.len(),
            cut
        );
        drop(sender.await.unwrap());
    }

    #[tokio::test]
    async fn held_connections_dial_the_new_serving_hub_a_bounded_number_at_a_time() {
        let (ca, _) = CertificateAuthority::generate(Duration::from_secs(3600)).unwrap();
        let trust = ca.cert_pem().to_string();
        // The new serving hub: it accepts, but finishes no relay's handshake yet.
        let serving = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = serving.local_addr().unwrap().to_string();
        let relay = Relay::new(
            Arc::new(ca),
            trust,
            "test".into(),
            (Arc::new(move || Some(target.clone())), Arc::new(|| false)),
            Metrics::new(),
        )
        .unwrap();
        // The clients held on this hub through the takeover.
        let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = front.local_addr().unwrap();
        let mut clients = Vec::new();
        for _ in 0..DIALS_IN_FLIGHT + 1 {
            let mut c = TcpStream::connect(at).await.unwrap();
            c.write_all(&hello(&[b"h2"])).await.unwrap();
            let (tcp, addr) = front.accept().await.unwrap();
            tokio::spawn(relay.clone().forward(tcp, addr));
            clients.push(c);
        }
        let deadline = Duration::from_secs(10);
        let mut dialled = Vec::new();
        for _ in 0..DIALS_IN_FLIGHT {
            let (c, _) = tokio::time::timeout(deadline, serving.accept())
                .await
                .unwrap()
                .unwrap();
            dialled.push(c);
        }
        // Every turn is held by a relay whose handshake has not finished: the last client
        // waits instead of adding one more handshake to the serving hub's load.
        assert_eq!(relay.dials.available_permits(), 0);
        assert!(serving.accept().now_or_never().is_none());
        // One relay's handshake ends (here: refused): the waiting one dials.
        drop(dialled.pop());
        tokio::time::timeout(deadline, serving.accept())
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn the_client_address_is_read_back_and_garbage_refused() {
        let (mut a, mut b) = tokio::io::duplex(256);
        write_addr(&mut a, "[2001:db8::1]:40000").await.unwrap();
        write_addr(&mut a, "10.0.0.7:1").await.unwrap();
        assert_eq!(
            client_addr(&mut b).await.unwrap(),
            "[2001:db8::1]:40000".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            client_addr(&mut b).await.unwrap(),
            "10.0.0.7:1".parse::<SocketAddr>().unwrap()
        );
        write_addr(&mut a, "not an address").await.unwrap();
        assert!(client_addr(&mut b).await.is_err());
        a.write_all(&[0xff, 0xff]).await.unwrap();
        assert!(client_addr(&mut b).await.is_err());
    }
}
