//! The hub's one TLS port: accepts connections, finishes the TLS handshake, reads the
//! peer's verified identity once per connection, and hands each request to the router with
//! that identity attached as a [`Peer`] extension.
//!
//! gRPC (agents, API clients, health, reflection) and, later, the Kubernetes proxy share this
//! port: HTTP/2 and HTTP/1.1 are both served.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tether_common::identity::Identity;
use tether_common::pb;
use tether_common::pki;
use tether_common::tls;
use tokio::net::TcpListener;
use tokio_rustls::{LazyConfigAcceptor, TlsAcceptor};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::api::relay::{self, Relay};
use crate::control::ratelimit::CallLimits;
use crate::metrics::{Metrics, OncePer};
use crate::sessions::access::Access;

/// Whether `path` is a call of the client API (`/tether.v1.HubApiService/Method`): those are
/// limited per identity. The name comes from the generated code, so a rename cannot leave
/// the limit behind.
fn is_client_api(path: &str) -> bool {
    path.strip_prefix('/')
        .and_then(|p| p.strip_prefix(pb::hub_api_service_server::SERVICE_NAME))
        .is_some_and(|method| method.starts_with('/'))
}

/// Paths a peer without a client certificate may call.
const UNAUTHENTICATED_PATHS: &[&str] = &[
    "/tether.v1.AgentService/Join",
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
];

/// How long a TLS handshake on the port may take (an agent's on a standby too:
/// `api::forward`).
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an HTTP/1.1 request's headers may take to arrive.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection whose certificate was revoked may take to finish its last writes.
const REVOKED_DRAIN: Duration = Duration::from_secs(2);

pub use crate::control::PeerCert;

/// Who is calling: attached to every request.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    pub cert: Option<PeerCert>,
}

/// Bounds for peers without a client certificate: they may only join (a token and a CSR, a
/// few KB) or ask for health, so everything they may hold is small and short-lived.
#[derive(Debug, Clone)]
pub struct AnonymousLimits {
    /// Connections without a certificate open at once, per source address and in all.
    pub per_address: usize,
    pub total: usize,
    /// The longest such a connection may stay open, busy or idle.
    pub lifetime: Duration,
    /// HTTP/2 streams at once on one such connection.
    pub streams: u32,
    /// The largest request body (a Join is a token and a CSR).
    pub body: usize,
}

impl Default for AnonymousLimits {
    fn default() -> Self {
        AnonymousLimits {
            per_address: 32,
            total: 1024,
            lifetime: Duration::from_secs(30),
            streams: 4,
            body: 16 << 10,
        }
    }
}

/// HTTP/2 settings of the port.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    pub max_concurrent_streams: u32,
    /// HTTP/2 receive window of one stream.
    pub stream_window: u32,
    /// HTTP/2 receive window of a whole connection. Much larger than a stream's: data a slow
    /// proxy client has not read stays charged to the connection, and if one stalled stream
    /// could fill it, the agent's heartbeats on the control stream would stall behind it.
    pub connection_window: u32,
    /// HTTP/2 streams at once on a user's connection (an agent's needs more: one per proxied
    /// request).
    pub user_streams: u32,
    /// The largest request header block (HTTP/1.1 and HTTP/2).
    pub max_header_bytes: u32,
    pub anonymous: AnonymousLimits,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            keepalive_interval: Duration::from_secs(20),
            keepalive_timeout: Duration::from_secs(10),
            max_concurrent_streams: 1024,
            stream_window: 1 << 20,
            // Room for the proxy's limit of streams per cluster (64 by default), all stalled,
            // and the control stream still flowing.
            connection_window: 96 << 20,
            user_streams: 64,
            max_header_bytes: 64 << 10,
            anonymous: AnonymousLimits::default(),
        }
    }
}

/// Connections without a certificate, counted per source address.
#[derive(Default)]
struct Anonymous {
    open: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
    total: std::sync::atomic::AtomicUsize,
}

/// One counted connection; uncounted on drop.
struct AnonymousSlot {
    counts: Arc<Anonymous>,
    ip: std::net::IpAddr,
}

impl Anonymous {
    fn admit(
        self: &Arc<Self>,
        ip: std::net::IpAddr,
        limits: &AnonymousLimits,
    ) -> Option<AnonymousSlot> {
        use std::sync::atomic::Ordering;
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let here = open.entry(ip).or_insert(0);
        if *here >= limits.per_address || self.total.load(Ordering::Relaxed) >= limits.total {
            if *here == 0 {
                open.remove(&ip);
            }
            return None;
        }
        *here += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Some(AnonymousSlot {
            counts: self.clone(),
            ip,
        })
    }
}

impl Drop for AnonymousSlot {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering;
        let mut open = self.counts.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
        self.counts.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves `router` on `listener` until `shutdown` is cancelled.
/// Who decides what a connection may do before the router sees a request.
#[derive(Clone)]
pub struct Guards {
    /// Which certificates are accepted.
    pub access: Arc<Access>,
    /// Calls in flight and refused, per identity.
    pub calls: Arc<CallLimits>,
    /// With etcd: connections relayed to the serving hub while this hub does not serve, and
    /// relays from other hubs accepted while it does (see [`crate::api::relay`]).
    pub relay: Option<Relaying>,
    /// Cancelled when the hub begins to shut down: the port closes at once (a client, or a
    /// hub relaying one, goes elsewhere instead of starting a session about to end), and the
    /// connections already open finish with `shutdown`.
    pub draining: CancellationToken,
}

/// Both sides of relaying.
#[derive(Clone)]
pub struct Relaying {
    pub relay: Arc<Relay>,
    /// The TLS configuration relays and forwarding connections from other hubs are accepted
    /// with.
    pub accept: Arc<rustls::ServerConfig>,
    /// Verifies the agents' certificates other hubs forward (see [`crate::api::forward`]).
    pub verifier: Arc<crate::api::tls_auth::ClientVerifier>,
}

pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: axum::Router,
    guards: Guards,
    metrics: Metrics,
    opts: ServerOptions,
    shutdown: CancellationToken,
) {
    let Guards {
        access,
        calls,
        relay,
        draining,
    } = guards;
    let anonymous = Arc::new(Anonymous::default());
    loop {
        let held = async {
            match &relay {
                Some(r) => r.relay.held().await,
                None => std::future::pending().await,
            }
        };
        let (tcp, addr, waited) = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = draining.cancelled() => return,
            (tcp, addr) = next_connection(&listener, &metrics) => (tcp, addr, false),
            (tcp, addr) = held => (tcp, addr, true),
        };
        // A hub that lost its lease relays once it knows which hub serves instead; until
        // then it answers reads itself. A connection that waited in the relay for this hub
        // to serve is served.
        if !waited
            && let Some(r) = &relay
            && r.relay.target().is_some()
        {
            tokio::spawn(r.relay.clone().forward(tcp, addr));
            continue;
        }
        let conn = Connection {
            tls: tls.clone(),
            relay_accept: relay
                .as_ref()
                .map(|r| (r.accept.clone(), r.verifier.clone())),
            router: router.clone(),
            access: access.clone(),
            calls: calls.clone(),
            metrics: metrics.clone(),
            opts: opts.clone(),
            shutdown: shutdown.clone(),
            anonymous: anonymous.clone(),
        };
        tokio::spawn(conn.run(tcp, addr));
    }
}

/// The next connection `listener` accepts, with Nagle off. Out of file descriptors and the
/// like, it backs off instead of spinning, counts each failure and warns at most once per
/// [`ACCEPT_WARN_EVERY`] (with how many failed meanwhile): a hub out of file descriptors
/// fails ten accepts a second for as long as it lasts.
pub(crate) async fn next_connection(
    listener: &TcpListener,
    metrics: &Metrics,
) -> (tokio::net::TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((tcp, addr)) => {
                let _ = tcp.set_nodelay(true);
                return (tcp, addr);
            }
            Err(e) => {
                metrics.accept_failures.inc();
                if let Some(failed) = ACCEPT_WARNINGS.due() {
                    tracing::warn!(
                        error = %e,
                        failed,
                        "cannot accept connections (file descriptors: see tether_open_files)"
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// How often a failing accept is logged.
const ACCEPT_WARN_EVERY: Duration = Duration::from_secs(10);

static ACCEPT_WARNINGS: OncePer = OncePer::new(ACCEPT_WARN_EVERY);

struct Connection {
    tls: Arc<rustls::ServerConfig>,
    relay_accept: Option<(
        Arc<rustls::ServerConfig>,
        Arc<crate::api::tls_auth::ClientVerifier>,
    )>,
    router: axum::Router,
    access: Arc<Access>,
    calls: Arc<CallLimits>,
    metrics: Metrics,
    opts: ServerOptions,
    shutdown: CancellationToken,
    anonymous: Arc<Anonymous>,
}

impl Connection {
    async fn run(self, tcp: tokio::net::TcpStream, addr: SocketAddr) {
        // The ClientHello's ALPN tells a client from another hub relaying one.
        let start = tokio::time::timeout(
            HANDSHAKE_TIMEOUT,
            LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp),
        )
        .await;
        let start = match start {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                self.metrics.tls_handshake_failures.inc();
                tracing::debug!(peer = %addr, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                self.metrics.tls_handshake_failures.inc();
                tracing::debug!(peer = %addr, "TLS handshake timed out");
                return;
            }
        };
        let relayed = start.client_hello().alpn().is_some_and(|mut protocols| {
            protocols.any(|p| p == tls::RELAY_ALPN || p == tls::FORWARD_ALPN)
        });
        match (&self.relay_accept, relayed) {
            (Some((config, verifier)), true) => {
                let outer =
                    tokio::time::timeout(HANDSHAKE_TIMEOUT, start.into_stream(config.clone()))
                        .await;
                let mut outer = match outer {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        self.metrics.tls_handshake_failures.inc();
                        tracing::info!(peer = %addr, error = %e, "a relay from another hub refused");
                        return;
                    }
                    Err(_) => {
                        self.metrics.tls_handshake_failures.inc();
                        return;
                    }
                };
                // Another hub forwarding its agents' requests (see `api::forward`).
                if outer.get_ref().1.alpn_protocol() == Some(tls::FORWARD_ALPN) {
                    let forwarded = crate::api::forward::Forwarded {
                        router: self.router.clone(),
                        verifier: verifier.clone(),
                        access: self.access.clone(),
                        metrics: self.metrics.clone(),
                        shutdown: self.shutdown.clone(),
                    };
                    forwarded.serve(outer, addr).await;
                    return;
                }
                let client = match relay::client_addr(&mut outer).await {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::info!(peer = %addr, error = %e, "a relay from another hub sent no client address");
                        return;
                    }
                };
                // The client's own handshake, inside the relay, as if it had come directly.
                let accept = TlsAcceptor::from(self.tls.clone()).accept(outer);
                self.handshake(accept.into_fallible(), client).await;
            }
            _ => {
                let accept = start.into_stream(self.tls.clone()).into_fallible();
                self.handshake(accept, addr).await;
            }
        }
    }

    async fn handshake<IO>(self, accept: tokio_rustls::FallibleAccept<IO>, addr: SocketAddr)
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept).await {
            Ok(Ok(s)) => s,
            Ok(Err((e, tcp))) => {
                self.metrics.tls_handshake_failures.inc();
                tracing::debug!(peer = %addr, error = %e, "TLS handshake failed");
                linger(tcp).await;
                return;
            }
            Err(_) => {
                self.metrics.tls_handshake_failures.inc();
                tracing::debug!(peer = %addr, "TLS handshake timed out");
                return;
            }
        };
        let cert = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|der| pki::inspect(der).ok())
            .and_then(|info| {
                Some(PeerCert {
                    identity: info.identity?,
                    serial: info.serial,
                    not_after: info.not_after,
                })
            });
        // A peer without a certificate may only join: few such connections per address,
        // each small and short-lived.
        let anonymous_slot = match &cert {
            Some(_) => None,
            None => match self.anonymous.admit(addr.ip(), &self.opts.anonymous) {
                Some(slot) => Some(slot),
                None => {
                    self.metrics.anonymous_refused.inc();
                    tracing::debug!(peer = %addr, "too many connections without a certificate; closing");
                    return;
                }
            },
        };
        let body_limit = anonymous_slot.as_ref().map(|_| self.opts.anonymous.body);
        let streams = match &cert {
            None => self.opts.anonymous.streams,
            Some(PeerCert {
                identity: Identity::User(_),
                ..
            }) => self.opts.user_streams,
            Some(_) => self.opts.max_concurrent_streams,
        };
        let guard = cert
            .as_ref()
            .map(|c| self.access.register(c.identity.clone(), c.serial.clone()));
        let revoked = guard
            .as_ref()
            .map(|g| g.revoked.clone())
            .unwrap_or_default();
        let peer = Peer { addr, cert };
        let router = self.router;
        let access = self.access;
        let calls = self.calls;
        let metrics = self.metrics.clone();
        let svc = tower::service_fn(move |mut req: http::Request<Incoming>| {
            req.extensions_mut().insert(peer.clone());
            let mut rejection = gate(&peer, req.uri().path(), &access).or_else(|| not_ours(&req));
            // A user's API calls: a bounded number in flight, and none for a while after too
            // many refusals. Checked before the request is read.
            let mut permit = None;
            if rejection.is_none()
                && is_client_api(req.uri().path())
                && let Some(c) = &peer.cert
            {
                match calls.admit(&c.identity.actor()) {
                    Ok(p) => permit = Some(p),
                    Err(why) => {
                        metrics.throttled.inc();
                        rejection = Some(tonic::Status::resource_exhausted(why).into_http());
                    }
                }
            }
            let router = router.clone();
            async move {
                let _permit = permit;
                if let Some(resp) = rejection {
                    return Ok::<_, std::convert::Infallible>(resp);
                }
                match body_limit {
                    // Read no more than a Join needs: a larger body fails the call instead of
                    // being buffered.
                    Some(limit) => {
                        router
                            .oneshot(req.map(|b| Body::new(http_body_util::Limited::new(b, limit))))
                            .await
                    }
                    None => router.oneshot(req.map(Body::new)).await,
                }
            }
        });
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        let mut builder = auto::Builder::new(TokioExecutor::new());
        let (stream_window, connection_window) = match anonymous_slot {
            Some(_) => (64 << 10, 256 << 10),
            None => (self.opts.stream_window, self.opts.connection_window),
        };
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(self.opts.keepalive_interval))
            .keep_alive_timeout(self.opts.keepalive_timeout)
            .max_concurrent_streams(streams)
            .max_header_list_size(self.opts.max_header_bytes)
            .initial_stream_window_size(stream_window)
            .initial_connection_window_size(connection_window);
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_buf_size((self.opts.max_header_bytes as usize).max(8192));
        let lifetime = anonymous_slot
            .as_ref()
            .map(|_| self.opts.anonymous.lifetime);
        let io = TokioIo::new(stream);
        let svc = TowerToHyperService::new(svc);
        let ends = Ends {
            addr,
            revoked,
            shutdown: self.shutdown.clone(),
            lifetime,
        };
        // With ALPN h2 the server speaks first (its SETTINGS), which lets a client tell an
        // accepted certificate from a refused one right after the handshake. HTTP/1.1 (kubectl
        // through the proxy, connection upgrades) needs the version sniffing of `auto`.
        if h2 {
            let builder = builder.http2_only();
            ends.drive(builder.serve_connection(io, svc)).await;
        } else {
            ends.drive(builder.serve_connection_with_upgrades(io, svc))
                .await;
        }
        drop(guard);
        drop(anonymous_slot);
    }
}

/// Both connection kinds hyper-util serves can be shut down gracefully.
trait Graceful:
    std::future::Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>>
{
    fn shut_down(self: std::pin::Pin<&mut Self>);
}

impl<'a, I, S, E, B> Graceful for auto::Connection<'a, I, S, E>
where
    auto::Connection<'a, I, S, E>:
        std::future::Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>>,
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn shut_down(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<'a, I, S, E, B> Graceful for auto::UpgradeableConnection<'a, I, S, E>
where
    auto::UpgradeableConnection<'a, I, S, E>:
        std::future::Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>>,
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn shut_down(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// What ends a connection besides its peer.
struct Ends {
    addr: SocketAddr,
    revoked: CancellationToken,
    shutdown: CancellationToken,
    /// The longest the connection may live (connections without a certificate).
    lifetime: Option<Duration>,
}

impl Ends {
    async fn drive<C: Graceful>(self, conn: C) {
        tokio::pin!(conn);
        let expiry = async {
            match self.lifetime {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = expiry => {
                tracing::debug!(peer = %self.addr, "closing a connection without a certificate: its time is up");
            }
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(peer = %self.addr, error = %e, "connection ended with an error");
                }
            }
            _ = self.revoked.cancelled() => {
                tracing::info!(peer = %self.addr, "closing connection: its certificate is no longer accepted");
                // New requests are already refused; let what was sent (a goodbye) reach the
                // peer before the connection goes.
                conn.as_mut().shut_down();
                let _ = tokio::time::timeout(REVOKED_DRAIN, conn).await;
            }
            _ = self.shutdown.cancelled() => {
                conn.as_mut().shut_down();
                let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
            }
        }
    }
}

/// A plain HTTP request (not gRPC) outside `/clusters/`: nothing here answers it, and the gRPC
/// router would reply with an empty 200 that HTTP clients take for success.
fn not_ours(req: &http::Request<Incoming>) -> Option<http::Response<Body>> {
    let grpc = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"));
    if grpc || req.uri().path().starts_with("/clusters/") {
        return None;
    }
    Some(crate::api::proxy::not_found(format!(
        "the hub serves member clusters' APIs under /clusters/NAME/ (see: tetherctl kubeconfig NAME); {} is not one",
        req.uri().path()
    )))
}

/// Closes a refused connection so that the peer reads our TLS alert: a socket closed with
/// unread data (the client's first request, sent right after its handshake flight) is reset,
/// and a reset can destroy the alert before the peer reads it. So: stop writing, drain what
/// the peer sends for a moment, then close.
async fn linger<IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut tcp: IO) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tcp.shutdown().await;
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Ok(n) = tcp.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// Refuses requests the peer may not make at all: anything but join and health without a
/// certificate, and anything with a certificate that was revoked after the handshake.
fn gate(peer: &Peer, path: &str, access: &Access) -> Option<http::Response<Body>> {
    let message = match &peer.cert {
        None if UNAUTHENTICATED_PATHS.contains(&path) => return None,
        None => "a client certificate issued by this hub is required".to_string(),
        Some(c) if access.allows_open(&c.identity, &c.serial) => return None,
        Some(c) => format!("the certificate of {} is no longer accepted", c.identity),
    };
    if path.starts_with("/clusters/") {
        return Some(crate::api::proxy::unauthorized(message));
    }
    Some(tonic::Status::unauthenticated(message).into_http())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_accept_warns_once_per_interval_with_how_many_failed() {
        let w = OncePer::new(ACCEPT_WARN_EVERY);
        let t0 = std::time::Instant::now();
        assert_eq!(w.due_at(t0), Some(1));
        for i in 1..50 {
            assert_eq!(w.due_at(t0 + Duration::from_millis(100 * i)), None);
        }
        assert_eq!(w.due_at(t0 + ACCEPT_WARN_EVERY), Some(50));
        assert_eq!(w.due_at(t0 + ACCEPT_WARN_EVERY * 3), Some(1));
    }

    #[test]
    fn client_api_calls_are_recognised_by_the_generated_service_name() {
        assert!(is_client_api("/tether.v1.HubApiService/ListClusters"));
        for other in [
            "/tether.v1.HubApi/ListClusters",
            "/tether.v1.HubApiServiceX/ListClusters",
            "/tether.v1.AgentService/Connect",
            "/grpc.health.v1.Health/Check",
            "tether.v1.HubApiService/ListClusters",
            "/clusters/edge-1/api/v1/pods",
        ] {
            assert!(!is_client_api(other), "{other}");
        }
    }
}
