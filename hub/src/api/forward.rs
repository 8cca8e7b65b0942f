//! Agents' connections terminated by a hub that does not serve, their requests carried to the
//! hub that does over one hub-to-hub HTTP/2 connection.
//!
//! [`crate::api::relay`] carries a client's bytes to the serving hub, so every relayed
//! connection still costs the serving hub a TLS handshake and a TLS connection. Agents are the
//! fleet — thousands of long-lived connections — so a hub that does not serve terminates
//! theirs itself (an agent with a credential offers ALPN `tether-agent/1` after `h2`) and
//! forwards each of their requests, as an HTTP/2 stream, to the serving hub over a connection
//! with ALPN `tether-forward/1` authenticated both ways like a relay (the serving hub's
//! certificate; a hub certificate from the shared CA). The agent's session, its writes and
//! its proxy streams all still live on the serving hub: one place holds every session, so at
//! most one exists per cluster and nothing about them needs to cross hubs. What moves off the
//! serving hub is what scales with connections: handshakes, TLS and TCP state, per-connection
//! HTTP/2 state (`docs/benchmarks-stores.md` measures it).
//!
//! Identity stays with the certificate. The terminating hub checks the agent's certificate at
//! its handshake (chain, validity, a cluster identity, a serial the records list: a revoked
//! agent is refused there, as by the serving hub) and sends the certificate itself with each
//! request (`tether-forwarded-cert`, with the agent's address in `tether-forwarded-for`); the
//! serving hub verifies that certificate again against the CA and its allow-list and takes
//! the identity from it, never from a name. What it trusts a hub for is that the agent holds
//! the certificate's key — a hub holds the CA's key anyway. Only the agent service is
//! forwarded; the serving hub refuses anything else on such a connection, and either hub
//! drops `tether-forwarded-*` headers a client sent.
//!
//! When the terminating hub itself serves, it answers the calls on the connections it
//! terminated itself, the same way (the certificate checked again, the identity taken from
//! it). A call that arrives while no hub serves waits up to the relay's hold for one: another
//! hub to forward it to, or this one.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use tether_common::identity::Identity;
use tether_common::{pb, pki};
use tokio::net::TcpStream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tower::ServiceExt;

use crate::api::relay::{self, Relay};
use crate::api::server::{Peer, PeerCert};
use crate::api::tls_auth::ClientVerifier;
use crate::metrics::Metrics;
use crate::sessions::access::{Access, ConnGuard};

/// The agent's address, as the terminating hub saw it.
pub const FORWARDED_FOR: &str = "tether-forwarded-for";
/// The agent's certificate (DER, base64), as it presented it in its handshake.
pub const FORWARDED_CERT: &str = "tether-forwarded-cert";
/// The longest certificate header the serving hub reads (an agent's certificate is ~600
/// bytes).
const MAX_CERT_HEADER: usize = 8 << 10;
/// HTTP/2 on an agent's connection to a terminating hub: as on the serving hub's port.
const AGENT_STREAMS: u32 = 1024;
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 between hubs. Every agent of the terminating hub is a stream or more (its session,
/// its proxy streams) on one connection, so the connection's receive window is HTTP/2's
/// largest: data one agent's stream leaves unread (a slow proxy client) stays charged to it,
/// and only with ~8,000 such streams stalled at once could it hold up the others. A stream's
/// window is small for the same reason.
const HUB_STREAMS: u32 = 1 << 20;
const HUB_STREAM_WINDOW: u32 = 256 << 10;
const HUB_CONNECTION_WINDOW: u32 = (1 << 31) - 1;
/// Streams reset at once (an agent gone before its request was taken) or in error before a
/// hub ends the connection between them: HTTP/2 servers cap these against floods from one
/// client (20 and 1,024 by default), but here one connection is a whole fleet's, and a
/// reconnect storm resets thousands of streams legitimately. The peer is a hub.
const HUB_RESETS: usize = 1 << 20;

/// The terminating side, on a hub that does not serve.
pub struct Agents {
    /// TLS for agents: the serving certificate; a cluster's certificate required.
    accept: Arc<rustls::ServerConfig>,
    /// The connection to the serving hub, and where it goes. One at a time is dialled.
    upstream: tokio::sync::Mutex<Option<(String, SendRequest<Body>)>>,
    /// A serving hub that refused a forwarding connection (one before forwarding: hubs are
    /// upgraded one at a time): agents are relayed to it instead.
    refused: std::sync::Mutex<Option<String>>,
}

impl Agents {
    pub fn new(accept: Arc<rustls::ServerConfig>) -> Self {
        Agents {
            accept,
            upstream: tokio::sync::Mutex::new(None),
            refused: std::sync::Mutex::new(None),
        }
    }

    /// Whether agents' connections are relayed rather than terminated, the serving hub being
    /// at `target`: it refused forwarding (an older hub).
    pub fn relayed_to(&self, target: Option<&str>) -> bool {
        let refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        refused.is_some() && refused.as_deref() == target
    }

    /// Terminates one agent's connection and forwards its requests (or, while this hub
    /// serves, answers them here) until either side closes it.
    pub async fn serve(&self, relay: &Arc<Relay>, tcp: TcpStream, addr: SocketAddr) {
        let accept = tokio_rustls::TlsAcceptor::from(self.accept.clone()).accept(tcp);
        let tls = match tokio::time::timeout(crate::api::server::HANDSHAKE_TIMEOUT, accept).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                relay.metrics.tls_handshake_failures.inc();
                tracing::debug!(peer = %addr, error = %e, "an agent's TLS handshake failed");
                return;
            }
            Err(_) => {
                relay.metrics.tls_handshake_failures.inc();
                return;
            }
        };
        // The verifier required a certificate: there is one.
        let Some(cert) = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|der| {
                HeaderValue::from_str(&base64::engine::general_purpose::STANDARD.encode(der)).ok()
            })
        else {
            return;
        };
        let for_requests = relay.clone();
        let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
            let (relay, cert) = (for_requests.clone(), cert.clone());
            async move {
                Ok::<_, Infallible>(match relay.agents() {
                    Some(agents) => agents.forward(&relay, cert, addr, req).await,
                    None => tonic::Status::unavailable("this hub forwards no agents").into_http(),
                })
            }
        });
        let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(KEEPALIVE_INTERVAL))
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .max_concurrent_streams(AGENT_STREAMS)
            .max_header_list_size(64 << 10)
            .serve_connection(TokioIo::new(tls), svc);
        relay.metrics.forwarded_agents.inc();
        if let Err(e) = conn.await {
            tracing::debug!(peer = %addr, error = %e, "a terminated agent connection ended with an error");
        }
        relay.metrics.forwarded_agents.dec();
    }

    /// One of the agent's requests, carried to the serving hub; its answer streams back.
    async fn forward(
        &self,
        relay: &Arc<Relay>,
        cert: HeaderValue,
        addr: SocketAddr,
        mut req: Request<Incoming>,
    ) -> Response<Body> {
        if !is_agent_call(req.uri().path()) {
            return tonic::Status::permission_denied(
                "a hub that does not serve forwards only the agent service",
            )
            .into_http();
        }
        let headers = req.headers_mut();
        headers.remove(FORWARDED_FOR);
        headers.remove(FORWARDED_CERT);
        if let Ok(v) = HeaderValue::from_str(&addr.to_string()) {
            headers.insert(FORWARDED_FOR, v);
        }
        headers.insert(FORWARDED_CERT, cert);
        if let Some(here) = relay.here() {
            return here.answer(req).await;
        }
        let Some(mut send) = self.upstream(relay, Instant::now() + relay::HOLD).await else {
            // This hub may serve itself now (a takeover while the call waited).
            if let Some(here) = relay.here() {
                return here.answer(req).await;
            }
            return tonic::Status::unavailable(
                "no serving hub answered this hub in time; connect again",
            )
            .into_http();
        };
        match send.send_request(req.map(Body::new)).await {
            Ok(resp) => resp.map(Body::new),
            Err(e) => {
                tracing::debug!(peer = %addr, error = %e, "forwarding an agent's request failed");
                tonic::Status::unavailable(format!(
                    "the serving hub did not take the request: {e}; connect again"
                ))
                .into_http()
            }
        }
    }

    /// The connection to the serving hub, dialled if there is none (one dial at a time; the
    /// others wait for it). `None` if this hub serves now or none answered by `deadline`.
    async fn upstream(&self, relay: &Arc<Relay>, deadline: Instant) -> Option<SendRequest<Body>> {
        loop {
            if relay.serving() {
                return None;
            }
            let wait = deadline.saturating_duration_since(Instant::now());
            let mut current = tokio::time::timeout(wait, self.upstream.lock())
                .await
                .ok()?;
            let target = relay.target();
            if let Some((to, send)) = current.as_ref()
                && Some(to) == target.as_ref()
                && !send.is_closed()
            {
                let mut send = send.clone();
                drop(current);
                if send.ready().await.is_ok() {
                    return Some(send);
                }
                continue;
            }
            *current = None;
            if let Some(to) = target
                && !relay.known_dead(&to)
            {
                match tokio::time::timeout(relay::HANDSHAKE_TIMEOUT, dial(relay, &to)).await {
                    Ok(Ok(send)) => {
                        *current = Some((to, send.clone()));
                        return Some(send);
                    }
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::Unsupported => {
                        tracing::warn!(serving = %to, "the serving hub does not take forwarded agents (an older version); relaying agents to it instead");
                        *self.refused.lock().unwrap_or_else(|e| e.into_inner()) = Some(to);
                        return None;
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(serving = %to, error = %e, "cannot open a forwarding connection to the serving hub; waiting");
                        relay.mark_dead(&to);
                    }
                    Err(_) => relay.mark_dead(&to),
                }
            }
            drop(current);
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(relay::HOLD_POLL).await;
        }
    }
}

/// A forwarding connection to the hub at `to`.
async fn dial(relay: &Arc<Relay>, to: &str) -> std::io::Result<SendRequest<Body>> {
    let tcp = tokio::time::timeout(relay::DIAL_TIMEOUT, TcpStream::connect(to))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::DnsName(
        rustls::pki_types::DnsName::try_from("localhost")
            .map_err(|e| std::io::Error::other(e.to_string()))?,
    );
    let refused = || {
        std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "the serving hub does not take forwarded requests",
        )
    };
    let tls = tokio_rustls::TlsConnector::from(relay.dial().forward)
        .connect(name, tcp)
        .await
        .map_err(|e| match rustls_error(&e) {
            // A hub before forwarding: it offers `h2` and `http/1.1` only.
            Some(rustls::Error::AlertReceived(rustls::AlertDescription::NoApplicationProtocol)) => {
                refused()
            }
            _ => e,
        })?;
    if tls.get_ref().1.alpn_protocol() != Some(tether_common::tls::FORWARD_ALPN) {
        return Err(refused());
    }
    let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .initial_stream_window_size(HUB_STREAM_WINDOW)
        .initial_connection_window_size(HUB_CONNECTION_WINDOW)
        .max_header_list_size(64 << 10)
        .max_pending_accept_reset_streams(HUB_RESETS)
        .max_local_error_reset_streams(HUB_RESETS)
        .handshake(TokioIo::new(tls))
        .await
        .map_err(std::io::Error::other)?;
    let to = to.to_string();
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::info!(serving = %to, error = %e, "the forwarding connection to the serving hub ended");
        }
    });
    Ok(send)
}

/// The TLS error inside an I/O error from a handshake.
fn rustls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

/// Whether `path` is a call of the agent service.
fn is_agent_call(path: &str) -> bool {
    path.strip_prefix('/')
        .and_then(|p| p.strip_prefix(pb::agent_service_server::SERVICE_NAME))
        .is_some_and(|method| method.starts_with('/'))
}

/// The serving side: what answers the requests another hub forwards.
#[derive(Clone)]
pub struct Forwarded {
    pub router: axum::Router,
    /// Verifies the forwarded certificate: a cluster's, chaining to the CA, valid now. The
    /// allow-list is then checked as for a request on an open connection (the terminating
    /// hub checked it as for a handshake).
    pub verifier: Arc<ClientVerifier>,
    pub access: Arc<Access>,
    pub metrics: Metrics,
    pub shutdown: CancellationToken,
}

impl Forwarded {
    /// Serves the forwarding connection `io` from the hub at `from` until it closes.
    pub async fn serve<IO>(self, io: IO, from: SocketAddr)
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let shutdown = self.shutdown.clone();
        let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
            let this = self.clone();
            async move { Ok::<_, Infallible>(this.answer(req).await) }
        });
        let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(KEEPALIVE_INTERVAL))
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .max_concurrent_streams(HUB_STREAMS)
            .initial_stream_window_size(HUB_STREAM_WINDOW)
            .initial_connection_window_size(HUB_CONNECTION_WINDOW)
            .max_header_list_size(64 << 10)
            .max_pending_accept_reset_streams(HUB_RESETS)
            .max_local_error_reset_streams(HUB_RESETS)
            .serve_connection(TokioIo::new(io), svc);
        tokio::pin!(conn);
        tracing::info!(hub = %from, "another hub forwards its agents' requests here");
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::info!(hub = %from, error = %e, "a forwarding connection ended with an error");
                }
            }
            _ = shutdown.cancelled() => {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
            }
        }
    }

    pub(crate) async fn answer(&self, mut req: Request<Incoming>) -> Response<Body> {
        if !is_agent_call(req.uri().path()) {
            return tonic::Status::permission_denied("only the agent service is forwarded")
                .into_http();
        }
        let peer = match self.peer(&req) {
            Ok(p) => p,
            Err(status) => return status.into_http(),
        };
        let Some(cert) = peer.cert.clone() else {
            return tonic::Status::unauthenticated("a forwarded request without a certificate")
                .into_http();
        };
        // As `server::gate` for a request on an open connection.
        if !self.access.allows_open(&cert.identity, &cert.serial) {
            return tonic::Status::unauthenticated(format!(
                "the certificate of {} is no longer accepted",
                cert.identity
            ))
            .into_http();
        }
        // The request lives as a connection would: revoking the certificate ends it.
        let guard = self
            .access
            .register(cert.identity.clone(), cert.serial.clone());
        req.extensions_mut().insert(peer);
        let resp = match self.router.clone().oneshot(req.map(Body::new)).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        self.metrics.forwarded_requests.inc();
        let counted = Counted(self.metrics.clone());
        resp.map(|body| {
            Body::new(Revocable {
                revoked: Box::pin(guard.revoked.clone().cancelled_owned()),
                drain: None,
                inner: body,
                _guard: (guard, counted),
                ended: false,
            })
        })
    }

    /// The agent a forwarded request is from: its certificate verified here.
    fn peer(&self, req: &Request<Incoming>) -> Result<Peer, tonic::Status> {
        let bad = |what: &str| tonic::Status::unauthenticated(format!("forwarded request: {what}"));
        let addr = req
            .headers()
            .get(FORWARDED_FOR)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<SocketAddr>().ok())
            .ok_or_else(|| bad("no agent address"))?;
        let der = req
            .headers()
            .get(FORWARDED_CERT)
            .filter(|v| v.len() <= MAX_CERT_HEADER)
            .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
            .ok_or_else(|| bad("no agent certificate"))?;
        let end = CertificateDer::from(der);
        self.verifier
            .verify_client_cert(&end, &[], UnixTime::now())
            .map_err(|e| bad(&format!("the agent's certificate is not accepted: {e}")))?;
        let info = pki::inspect(&end).map_err(|_| bad("an unreadable certificate"))?;
        match info.identity {
            Some(identity @ Identity::Cluster(_)) => Ok(Peer {
                addr,
                cert: Some(PeerCert {
                    identity,
                    serial: info.serial,
                    not_after: info.not_after,
                }),
            }),
            _ => Err(bad("not a member cluster's certificate")),
        }
    }
}

/// Uncounts a forwarded request when its answer ends.
struct Counted(Metrics);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.forwarded_requests.dec();
    }
}

/// A forwarded request's answer, cut off (the stream reset) once its certificate is no
/// longer accepted: what closing the connection does for an agent connected directly, and
/// as there, after [`REVOKED_DRAIN`] for what was sent (a goodbye) to reach the agent.
struct Revocable {
    inner: Body,
    revoked: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Set once revoked: when the answer is cut off.
    drain: Option<Pin<Box<tokio::time::Sleep>>>,
    _guard: (ConnGuard, Counted),
    ended: bool,
}

/// How long a revoked request's answer may take to end by itself.
const REVOKED_DRAIN: Duration = Duration::from_secs(2);

impl http_body::Body for Revocable {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        if this.drain.is_none() && this.revoked.as_mut().poll(cx).is_ready() {
            this.drain = Some(Box::pin(tokio::time::sleep(REVOKED_DRAIN)));
        }
        if let Some(drain) = this.drain.as_mut()
            && drain.as_mut().poll(cx).is_ready()
        {
            this.ended = true;
            return Poll::Ready(Some(Err(axum::Error::new(
                "the agent's certificate is no longer accepted",
            ))));
        }
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            this.ended = true;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;
    use http_body_util::BodyExt;
    use tokio_stream::StreamExt;

    /// An allow-list accepting serial `s1` of cluster `a`, an answer that streams until told
    /// otherwise, its sender, and the answer as the serving hub returns it for a forwarded
    /// request of that cluster.
    fn revocable() -> (Arc<Access>, tokio::sync::mpsc::Sender<Bytes>, Revocable) {
        let access = Arc::new(Access::default());
        access.set(Identity::Cluster("a".into()), vec!["s1".into()]);
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx)
            .map(|b| Ok::<_, Infallible>(http_body::Frame::data(b)));
        let guard = access.register(Identity::Cluster("a".into()), "s1".into());
        let body = Revocable {
            inner: Body::new(http_body_util::StreamBody::new(stream)),
            revoked: Box::pin(guard.revoked.clone().cancelled_owned()),
            drain: None,
            _guard: (guard, Counted(Metrics::new())),
            ended: false,
        };
        (access, tx, body)
    }

    #[tokio::test(start_paused = true)]
    async fn a_forwarded_answer_is_cut_off_two_seconds_after_its_certificate_is_revoked() {
        let (access, tx, mut body) = revocable();
        tx.send(Bytes::from_static(b"before")).await.unwrap();
        let f = body.frame().await.unwrap().unwrap();
        assert_eq!(f.into_data().unwrap(), "before");

        access.set(Identity::Cluster("a".into()), vec!["s2".into()]);
        // What was sent meanwhile (a goodbye) still gets through...
        tx.send(Bytes::from_static(b"goodbye")).await.unwrap();
        let f = body.frame().await.unwrap().unwrap();
        assert_eq!(f.into_data().unwrap(), "goodbye");
        // ...and then, the answer still open, it is cut off after the drain.
        let start = tokio::time::Instant::now();
        let end = body.frame().await.unwrap();
        assert!(end.is_err(), "the answer was not cut off");
        assert_eq!(start.elapsed(), REVOKED_DRAIN);
        assert!(body.frame().await.is_none());
        assert_eq!(
            Arc::strong_count(&access),
            2,
            "the request stays registered until its answer is dropped"
        );
        drop(body);
        assert_eq!(Arc::strong_count(&access), 1);
    }

    #[tokio::test]
    async fn agents_are_relayed_to_a_serving_hub_that_does_not_take_forwarded_calls() {
        use tether_common::pki::CertificateAuthority;
        let (ca, _) = CertificateAuthority::generate(Duration::from_secs(3600)).unwrap();
        let trust = ca.cert_pem().to_string();
        // A serving hub from before forwarding: its port offers `h2` and `http/1.1` only.
        let issued = ca
            .issue_server(&["localhost".into()], Duration::from_secs(3600))
            .unwrap();
        let chain = format!("{}{}", issued.cert_pem, trust);
        let verifier = Arc::new(ClientVerifier::new(&trust, Arc::new(Access::default())).unwrap());
        let older =
            Arc::new(tether_common::tls::server_config(&chain, &issued.key_pem, verifier).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = listener.local_addr().unwrap().to_string();
        let accept = older.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = tokio_rustls::TlsAcceptor::from(accept.clone());
                tokio::spawn(async move {
                    let _ = acceptor.accept(tcp).await;
                });
            }
        });
        let to = target.clone();
        let relay = Relay::new(
            Arc::new(ca),
            trust,
            "test".into(),
            (Arc::new(move || Some(to.clone())), Arc::new(|| false)),
            Metrics::new(),
        )
        .unwrap();
        let agents = Agents::new(older);
        assert!(!agents.relayed_to(Some(&target)));
        let deadline = Instant::now() + Duration::from_secs(10);
        assert!(agents.upstream(&relay, deadline).await.is_none());
        assert!(
            Instant::now() < deadline,
            "a refusal is final for that hub: no waiting out the hold"
        );
        assert!(
            agents.relayed_to(Some(&target)),
            "agents are relayed to it now"
        );
        assert!(
            !agents.relayed_to(Some("127.0.0.1:1")),
            "but not to another hub"
        );
        assert!(!agents.relayed_to(None));
    }

    #[tokio::test(start_paused = true)]
    async fn a_forwarded_answer_that_ends_by_itself_is_not_cut_off() {
        let (_access, tx, mut body) = revocable();
        tx.send(Bytes::from_static(b"all")).await.unwrap();
        drop(tx);
        assert!(body.frame().await.unwrap().is_ok());
        assert!(body.frame().await.is_none());
        assert!(body.is_end_stream());
    }

    #[test]
    fn only_the_agent_service_is_forwarded() {
        assert!(is_agent_call("/tether.v1.AgentService/Connect"));
        assert!(is_agent_call("/tether.v1.AgentService/Proxy"));
        for other in [
            "/tether.v1.HubApiService/ListClusters",
            "/tether.v1.AgentServiceX/Connect",
            "/clusters/edge-1/api/v1/pods",
            "tether.v1.AgentService/Connect",
            "/grpc.health.v1.Health/Check",
        ] {
            assert!(!is_agent_call(other), "{other}");
        }
    }
}
