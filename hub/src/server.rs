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
use tether_common::pki;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::access::Access;
use crate::metrics::Metrics;

/// Paths a peer without a client certificate may call.
const UNAUTHENTICATED_PATHS: &[&str] = &[
    "/tether.v1.AgentService/Join",
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
];

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A verified client certificate's facts.
#[derive(Debug, Clone)]
pub struct PeerCert {
    pub identity: Identity,
    pub serial: String,
    pub not_after: i64,
}

/// Who is calling: attached to every request.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    pub cert: Option<PeerCert>,
}

/// HTTP/2 settings of the port.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    pub max_concurrent_streams: u32,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            keepalive_interval: Duration::from_secs(20),
            keepalive_timeout: Duration::from_secs(10),
            max_concurrent_streams: 1024,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: axum::Router,
    access: Arc<Access>,
    metrics: Metrics,
    opts: ServerOptions,
    shutdown: CancellationToken,
) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, addr) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let conn = Connection {
            acceptor: acceptor.clone(),
            router: router.clone(),
            access: access.clone(),
            metrics: metrics.clone(),
            opts: opts.clone(),
            shutdown: shutdown.clone(),
        };
        tokio::spawn(conn.run(tcp, addr));
    }
}

struct Connection {
    acceptor: TlsAcceptor,
    router: axum::Router,
    access: Arc<Access>,
    metrics: Metrics,
    opts: ServerOptions,
    shutdown: CancellationToken,
}

impl Connection {
    async fn run(self, tcp: tokio::net::TcpStream, addr: SocketAddr) {
        let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(tcp)).await {
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
        let svc = tower::service_fn(move |mut req: http::Request<Incoming>| {
            req.extensions_mut().insert(peer.clone());
            let rejection = gate(&peer, req.uri().path(), &access);
            let router = router.clone();
            async move {
                if let Some(resp) = rejection {
                    return Ok::<_, std::convert::Infallible>(resp);
                }
                router.oneshot(req.map(Body::new)).await
            }
        });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(self.opts.keepalive_interval))
            .keep_alive_timeout(self.opts.keepalive_timeout)
            .max_concurrent_streams(self.opts.max_concurrent_streams);
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(svc));
        tokio::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(peer = %addr, error = %e, "connection ended with an error");
                }
            }
            _ = revoked.cancelled() => {
                tracing::info!(peer = %addr, "closing connection: its certificate is no longer accepted");
            }
            _ = self.shutdown.cancelled() => {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
            }
        }
        drop(guard);
    }
}

/// Refuses requests the peer may not make at all: anything but join and health without a
/// certificate, and anything with a certificate that was revoked after the handshake.
fn gate(peer: &Peer, path: &str, access: &Access) -> Option<http::Response<Body>> {
    let message = match &peer.cert {
        None if UNAUTHENTICATED_PATHS.contains(&path) => return None,
        None => "a client certificate issued by this hub is required".to_string(),
        Some(c) if access.allows(&c.identity, &c.serial) => return None,
        Some(c) => format!("the certificate of {} is no longer accepted", c.identity),
    };
    Some(tonic::Status::unauthenticated(message).into_http())
}
