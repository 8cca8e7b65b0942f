//! rustls configurations. Every connection is TLS 1.3 with the `ring` provider; no OpenSSL.
//!
//! - [`server_config`]: the hub's one TLS port (the client-certificate policy is the hub's).
//! - [`pinned_client_config`]: a joining agent, which knows only the CA pin.
//! - [`mtls_client_config`]: agents and API clients with a credential.
//! - [`connect`]: a tonic channel over one of those configurations.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};

use crate::pki;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("failed to read PEM {what}: {detail}")]
    Pem { what: &'static str, detail: String },
    #[error("invalid TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("invalid trust anchors: {0}")]
    Verifier(#[from] rustls::client::VerifierBuilderError),
    #[error("invalid hub address {0:?}: expected HOST:PORT")]
    Address(String),
    #[error("no {0} found")]
    NoCertificate(&'static str),
    #[error("{0}")]
    Invalid(String),
    #[error("cannot reach hub at {addr}: {detail}")]
    Connect {
        addr: String,
        detail: String,
        /// The TLS failure, when that is what went wrong (as opposed to the network).
        tls: Option<rustls::Error>,
    },
}

/// The process-wide crypto provider: `ring`.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs `ring` as rustls' process default, for libraries (kube) that build their own
/// configs. Harmless if called twice.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Every certificate in a PEM bundle.
pub fn certs_from_pem(
    pem: &str,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what,
            detail: "no certificate found".into(),
        });
    }
    Ok(certs)
}

/// The private key in a PEM document.
pub fn key_from_pem(pem: &str, what: &'static str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| TlsError::Pem {
        what,
        detail: e.to_string(),
    })
}

/// The hub's server configuration: TLS 1.3, ALPN `h2` then `http/1.1` (gRPC and, for the
/// Kubernetes proxy, kubectl), client certificates per `client_verifier`.
pub fn server_config(
    chain_pem: &str,
    key_pem: &str,
    client_verifier: Arc<dyn ClientCertVerifier>,
) -> Result<ServerConfig, TlsError> {
    let chain = certs_from_pem(chain_pem, "hub certificate")?;
    let key = key_from_pem(key_pem, "hub key")?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // No TLS session resumption. A resumed handshake skips the client-certificate verifier,
    // so a certificate that expired, or that a renewal took off the list of those new
    // handshakes may present, would still get in for as long as the session is cached.
    // rustls resumes by default (a 256-entry cache, two tickets per handshake). The price
    // is a full handshake per reconnect, which every agent pays after a takeover anyway (a
    // new hub process holds no sessions).
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// What a certificate is for, when [`verify_issued`] checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertUse {
    /// The hub's serving certificate (checked for the name `localhost`, always among its
    /// names).
    Server,
    /// A client credential (an agent's or a user's).
    Client,
}

/// Checks that `chain_pem`'s first certificate was issued by (chains to) `ca_pem`, is valid
/// now for `purpose`, and that `key_pem` is its private key: what a restore or an init
/// checks before it replaces a working hub.
pub fn verify_issued(
    ca_pem: &str,
    chain_pem: &str,
    key_pem: &str,
    purpose: CertUse,
) -> Result<(), TlsError> {
    let chain = certs_from_pem(chain_pem, "certificate")?;
    let key = key_from_pem(key_pem, "key")?;
    let roots = Arc::new(root_store(ca_pem)?);
    let (end, intermediates) = chain
        .split_first()
        .ok_or(TlsError::NoCertificate("certificate"))?;
    let now = rustls::pki_types::UnixTime::now();
    match purpose {
        CertUse::Client => {
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(|e| TlsError::Invalid(e.to_string()))?;
            v.verify_client_cert(end, intermediates, now)?;
        }
        CertUse::Server => {
            let v = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider())
                .build()?;
            use rustls::client::danger::ServerCertVerifier;
            let name = rustls::pki_types::ServerName::try_from("localhost")
                .map_err(|e| TlsError::Invalid(e.to_string()))?;
            v.verify_server_cert(end, intermediates, &name, &[], now)?;
        }
    }
    // rustls refuses a certified key whose private key does not match the certificate.
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::Invalid(format!("unusable key: {e}")))?;
    rustls::sign::CertifiedKey::new(chain.clone(), signing)
        .keys_match()
        .map_err(|_| TlsError::Invalid("the private key does not belong to the certificate".into()))
}

/// A root store holding the CA certificates of a PEM bundle.
pub fn root_store(ca_pem: &str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certs_from_pem(ca_pem, "CA certificate")? {
        roots.add(cert)?;
    }
    Ok(roots)
}

/// A client with a credential, trusting only the hub's CA.
pub fn mtls_client_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<ClientConfig, TlsError> {
    let roots = root_store(ca_pem)?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_auth_cert(
            certs_from_pem(cert_pem, "client certificate")?,
            key_from_pem(key_pem, "client key")?,
        )?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// ALPN of a connection one hub opens to another to hand it a client's connection (see the
/// hub's `api::relay`).
pub const RELAY_ALPN: &[u8] = b"tether-relay/1";

/// ALPN of the connection a hub that does not serve opens to the one that does to carry
/// its agents' requests (see the hub's `api::forward`).
pub const FORWARD_ALPN: &[u8] = b"tether-forward/1";

/// Offered by an agent with a credential after `h2`: a hub that does not serve finishes the
/// agent's TLS handshake itself and forwards its requests, instead of relaying its bytes (see
/// the hub's `api::forward`). Never selected: a hub answers `h2`.
pub const AGENT_ALPN: &[u8] = b"tether-agent/1";

/// An agent's connection with its credential: [`mtls_client_config`] offering
/// [`AGENT_ALPN`] too.
pub fn agent_client_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<ClientConfig, TlsError> {
    let mut config = mtls_client_config(ca_pem, cert_pem, key_pem)?;
    config.alpn_protocols = vec![b"h2".to_vec(), AGENT_ALPN.to_vec()];
    Ok(config)
}

/// The dialling side of a connection between hubs: the hub's own certificate, the CA as the
/// only root, ALPN `alpn` ([`RELAY_ALPN`] or [`FORWARD_ALPN`]).
pub fn hub_client_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
    alpn: &[u8],
) -> Result<ClientConfig, TlsError> {
    let mut config = mtls_client_config(ca_pem, cert_pem, key_pem)?;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

/// A client that knows only the CA pin: it accepts the hub if the hub presents a CA
/// certificate whose public key matches the pin and a leaf that chains to it.
pub fn pinned_client_config(pin: &str) -> Result<ClientConfig, TlsError> {
    let verifier = Arc::new(PinnedCaVerifier {
        pin: pin.to_string(),
        provider: provider(),
    });
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Verifies a hub against a CA pin (like kubeadm's discovery hash): the hub sends its CA
/// after its leaf; we find the CA whose SPKI hashes to the pin and then verify the chain and
/// the server name with webpki, exactly as if that CA had been configured.
#[derive(Debug)]
struct PinnedCaVerifier {
    pin: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let anchor = intermediates
            .iter()
            .find(|c| pki::spki_pin(c).is_ok_and(|p| p == self.pin))
            .ok_or_else(|| {
                rustls::Error::General(format!(
                    "the hub's CA does not match the pin {} (wrong --ca-pin, or not the hub you meant)",
                    self.pin
                ))
            })?;
        let mut roots = RootCertStore::empty();
        roots.add(anchor.clone().into_owned())?;
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Transport settings for a channel to the hub.
#[derive(Debug, Clone)]
pub struct ChannelOptions {
    /// Reaching the hub's port (TCP).
    pub connect_timeout: Duration,
    /// The TLS handshake and the hub's first frame after it, once connected: longer than a
    /// connect, since a hub that does not serve holds a connection through a takeover
    /// (up to 15 s) before the serving hub's handshake begins.
    pub handshake_timeout: Duration,
    /// HTTP/2 PING interval; the peer is considered gone after `keepalive_timeout` silence.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        ChannelOptions {
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(20),
            keepalive_interval: Duration::from_secs(20),
            keepalive_timeout: Duration::from_secs(10),
        }
    }
}

/// Splits `HOST:PORT` (IPv6 as `[::1]:7443`) and checks it.
pub fn split_host_port(addr: &str) -> Result<(String, u16), TlsError> {
    let bad = || TlsError::Address(addr.to_string());
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// The addresses of a hub list, `HOST:PORT[,HOST:PORT...]` (several hubs on one etcd; an
/// agent or client tries them in turn), each checked.
pub fn hub_addresses(list: &str) -> Result<Vec<String>, TlsError> {
    let addrs: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect();
    if addrs.is_empty() {
        return Err(TlsError::Address(list.to_string()));
    }
    for a in &addrs {
        split_host_port(a)?;
    }
    Ok(addrs)
}

/// Connects to the first of `addrs` that answers, starting at `start` (modulo the length) and
/// going round once; returns the channel and the index of the address it reached. A refusal
/// of our certificate or of the hub's ends the round at once: every hub shares one CA, so the
/// next would answer the same.
pub async fn connect_first(
    addrs: &[String],
    start: usize,
    config: Arc<ClientConfig>,
    opts: &ChannelOptions,
) -> Result<(Channel, usize), TlsError> {
    let mut last = TlsError::Address(String::new());
    for i in 0..addrs.len() {
        let idx = (start + i) % addrs.len();
        match connect(&addrs[idx], config.clone(), opts).await {
            Ok(ch) => return Ok((ch, idx)),
            Err(e) => {
                let fatal = peer_refused_certificate(&e).is_some()
                    || matches!(&e, TlsError::Connect { tls: Some(_), .. });
                if fatal {
                    return Err(e);
                }
                last = e;
            }
        }
    }
    Err(last)
}

/// Opens a gRPC channel to `addr` (`HOST:PORT`) over TLS with `config`. The TLS server name is
/// HOST, so the hub's certificate must carry it (see `tether-hub init --san`).
pub async fn connect(
    addr: &str,
    config: Arc<ClientConfig>,
    opts: &ChannelOptions,
) -> Result<Channel, TlsError> {
    let (host, port) = split_host_port(addr)?;
    let server_name =
        ServerName::try_from(host.clone()).map_err(|_| TlsError::Address(addr.to_string()))?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let (connect_timeout, handshake_timeout) = (opts.connect_timeout, opts.handshake_timeout);
    let make = tower::service_fn(move |_uri: http::Uri| {
        let (host, connector, server_name) = (host.clone(), connector.clone(), server_name.clone());
        async move {
            let timed_out = |what: &str| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{what} timed out"))
            };
            let tcp =
                tokio::time::timeout(connect_timeout, TcpStream::connect((host.as_str(), port)))
                    .await
                    .map_err(|_| timed_out("connection"))??;
            tcp.set_nodelay(true)?;
            let io = tokio::time::timeout(handshake_timeout, async {
                let tls = connector.connect(server_name, tcp).await?;
                confirm_accepted(tls).await
            })
            .await
            .map_err(|_| timed_out("TLS handshake"))??;
            Ok::<_, std::io::Error>(TokioIo::new(io))
        }
    });
    Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|_| TlsError::Address(addr.to_string()))?
        .http2_keep_alive_interval(opts.keepalive_interval)
        .keep_alive_timeout(opts.keepalive_timeout)
        .keep_alive_while_idle(true)
        .connect_with_connector(make)
        .await
        .map_err(|e| TlsError::Connect {
            addr: addr.to_string(),
            detail: root_cause(&e),
            tls: find_tls_error(&e),
        })
}

/// Waits for the server's first bytes after the handshake. In TLS 1.3 the server checks our
/// certificate only after we have sent it, and refuses it with an alert; an HTTP/2 server
/// otherwise speaks first (its SETTINGS). Reading here turns a refusal into a typed error at
/// connect time, instead of a reset that a request would report as "canceled".
async fn confirm_accepted(
    mut tls: tokio_rustls::client::TlsStream<TcpStream>,
) -> std::io::Result<Prefixed<tokio_rustls::client::TlsStream<TcpStream>>> {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 16 * 1024];
    let n = tls.read(&mut buf).await?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the hub closed the connection after the TLS handshake",
        ));
    }
    buf.truncate(n);
    Ok(Prefixed {
        prefix: buf,
        pos: 0,
        inner: tls,
    })
}

/// A stream that first yields bytes already read from it.
#[derive(Debug)]
pub struct Prefixed<T> {
    prefix: Vec<u8>,
    pos: usize,
    inner: T,
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Prefixed<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = (self.prefix.len() - self.pos).min(buf.remaining());
            let start = self.pos;
            buf.put_slice(&self.prefix[start..start + n]);
            self.pos += n;
            if self.pos == self.prefix.len() {
                self.prefix = Vec::new();
                self.pos = 0;
            }
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Prefixed<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// What a failed gRPC call says: the hub's message, or, when there is none (the call never
/// reached it), the root cause of the transport error.
pub fn status_detail(status: &tonic::Status) -> String {
    if status.message().is_empty() {
        root_cause(status)
    } else {
        status.message().to_string()
    }
}

/// The most specific message in an error's source chain, for one-line reports.
pub fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut last = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return r.to_string();
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(r) = inner.downcast_ref::<rustls::Error>()
        {
            return r.to_string();
        }
        last = e.to_string();
        cur = e.source();
    }
    last
}

/// The rustls error somewhere in a chain, if any (to tell "revoked" from "unreachable").
pub fn find_tls_error(err: &(dyn std::error::Error + 'static)) -> Option<rustls::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(r.clone());
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(r) = inner.downcast_ref::<rustls::Error>()
        {
            return Some(r.clone());
        }
        cur = e.source();
    }
    None
}

/// Alerts a server sends when it refuses the client's certificate.
const REFUSAL_ALERTS: [rustls::AlertDescription; 5] = [
    rustls::AlertDescription::CertificateRevoked,
    rustls::AlertDescription::CertificateExpired,
    rustls::AlertDescription::BadCertificate,
    rustls::AlertDescription::CertificateUnknown,
    rustls::AlertDescription::UnknownCA,
];

/// The alert with which the peer refused our certificate, if that is what `err` is.
///
/// HTTP/2 keeps only the message of an I/O error (its errors must be cloneable), so below
/// hyper the rustls error survives as text: both forms are recognised.
pub fn peer_refused_certificate(
    err: &(dyn std::error::Error + 'static),
) -> Option<rustls::AlertDescription> {
    if let Some(rustls::Error::AlertReceived(a)) = find_tls_error(err)
        && REFUSAL_ALERTS.contains(&a)
    {
        return Some(a);
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        let text = e.to_string();
        for a in REFUSAL_ALERTS {
            if text.contains(&format!("received fatal alert: {a:?}")) {
                return Some(a);
            }
        }
        cur = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_credentials_are_verified_and_foreign_or_mismatched_ones_refused() {
        use std::time::Duration;
        let (ca, _) = pki::CertificateAuthority::generate(Duration::from_secs(3600)).unwrap();
        let (other, _) = pki::CertificateAuthority::generate(Duration::from_secs(3600)).unwrap();
        let id = crate::identity::Identity::User("admin".into());
        let (cred, _) = ca.issue_client(&id, Duration::from_secs(3600)).unwrap();
        let (foreign, _) = other.issue_client(&id, Duration::from_secs(3600)).unwrap();
        verify_issued(
            ca.cert_pem(),
            &cred.cert_pem,
            &cred.key_pem,
            CertUse::Client,
        )
        .unwrap();
        assert!(
            verify_issued(
                ca.cert_pem(),
                &foreign.cert_pem,
                &foreign.key_pem,
                CertUse::Client
            )
            .is_err()
        );
        assert!(
            verify_issued(
                ca.cert_pem(),
                &cred.cert_pem,
                &foreign.key_pem,
                CertUse::Client
            )
            .unwrap_err()
            .to_string()
            .contains("does not belong"),
        );
        let server = ca
            .issue_server(&["localhost".into()], Duration::from_secs(3600))
            .unwrap();
        let chain = format!("{}{}", server.cert_pem, ca.cert_pem());
        verify_issued(ca.cert_pem(), &chain, &server.key_pem, CertUse::Server).unwrap();
        assert!(verify_issued(other.cert_pem(), &chain, &server.key_pem, CertUse::Server).is_err());
    }

    /// Drives a handshake between two in-memory connections.
    fn handshake(client: &mut rustls::ClientConnection, server: &mut rustls::ServerConnection) {
        let mut buf = Vec::new();
        for _ in 0..20 {
            if !client.is_handshaking() && !server.is_handshaking() {
                break;
            }
            buf.clear();
            client.write_tls(&mut buf).unwrap();
            server.read_tls(&mut buf.as_slice()).unwrap();
            server.process_new_packets().unwrap();
            buf.clear();
            server.write_tls(&mut buf).unwrap();
            client.read_tls(&mut buf.as_slice()).unwrap();
            client.process_new_packets().unwrap();
        }
        assert!(!client.is_handshaking() && !server.is_handshaking());
        // Session tickets, if any, come after the handshake.
        buf.clear();
        server.write_tls(&mut buf).unwrap();
        client.read_tls(&mut buf.as_slice()).unwrap();
        client.process_new_packets().unwrap();
    }

    #[test]
    fn the_hub_never_resumes_a_session_so_every_connection_meets_the_certificate_check() {
        use rustls::HandshakeKind;
        use std::time::Duration;
        let (ca, _) = pki::CertificateAuthority::generate(Duration::from_secs(3600)).unwrap();
        let id = crate::identity::Identity::User("admin".into());
        let (cred, _) = ca.issue_client(&id, Duration::from_secs(3600)).unwrap();
        let server = ca
            .issue_server(&["localhost".into()], Duration::from_secs(3600))
            .unwrap();
        let chain = format!("{}{}", server.cert_pem, ca.cert_pem());
        let roots = Arc::new(root_store(ca.cert_pem()).unwrap());
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider())
                .build()
                .unwrap();
        let server_config = Arc::new(server_config(&chain, &server.key_pem, verifier).unwrap());
        let client_config =
            Arc::new(mtls_client_config(ca.cert_pem(), &cred.cert_pem, &cred.key_pem).unwrap());
        let name = ServerName::try_from("localhost").unwrap();
        // The same client connecting twice: what kind of handshake the server did each time.
        let twice = |server: &Arc<ServerConfig>| -> Vec<Option<HandshakeKind>> {
            (0..2)
                .map(|_| {
                    let mut c =
                        rustls::ClientConnection::new(client_config.clone(), name.clone()).unwrap();
                    let mut s = rustls::ServerConnection::new(server.clone()).unwrap();
                    handshake(&mut c, &mut s);
                    s.handshake_kind()
                })
                .collect()
        };
        assert_eq!(
            twice(&server_config),
            [Some(HandshakeKind::Full), Some(HandshakeKind::Full)]
        );

        // The same client against rustls's defaults resumes (what the test would miss if
        // the client never offered to).
        let mut resuming = (*server_config).clone();
        resuming.session_storage = rustls::server::ServerSessionMemoryCache::new(16);
        resuming.send_tls13_tickets = 2;
        assert_eq!(twice(&Arc::new(resuming))[1], Some(HandshakeKind::Resumed));
    }

    #[test]
    fn refusals_are_recognised_typed_or_as_text() {
        let typed = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRevoked),
        );
        assert_eq!(
            peer_refused_certificate(&typed),
            Some(rustls::AlertDescription::CertificateRevoked)
        );
        let text = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "received fatal alert: CertificateExpired",
        );
        assert_eq!(
            peer_refused_certificate(&text),
            Some(rustls::AlertDescription::CertificateExpired)
        );
        let other =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        assert_eq!(peer_refused_certificate(&other), None);
    }

    #[test]
    fn host_port_is_checked() {
        assert_eq!(split_host_port("hub:7443").unwrap(), ("hub".into(), 7443));
        assert_eq!(split_host_port("[::1]:7443").unwrap(), ("::1".into(), 7443));
        for bad in ["hub", "hub:", ":7443", "hub:99999", "hub:0"] {
            assert!(split_host_port(bad).is_err(), "{bad}");
        }
    }
}
