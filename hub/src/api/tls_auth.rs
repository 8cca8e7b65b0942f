//! The hub's client-certificate policy at the TLS handshake.
//!
//! Every peer is asked for a certificate, but one is not required (a joining agent has none
//! yet; see `server::gate` for what such a peer may call). A certificate that is presented
//! must chain to the hub's CA, be valid now, be meant for client authentication, carry a
//! Tether identity, and be on the [`Access`] allow-list; otherwise the handshake fails.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tether_common::{pki, tls};

use crate::sessions::access::Access;

#[derive(Debug)]
pub struct ClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    accept: Accept,
}

/// Which certificates a [`ClientVerifier`] takes, once they chain to the CA.
#[derive(Debug)]
enum Accept {
    /// Clusters' and users' on the allow-list (a peer may also present none).
    Listed(Arc<Access>),
    /// Only a hub's own (see `api::relay`), and one is required.
    Hubs,
}

impl ClientVerifier {
    pub fn new(ca_pem: &str, access: Arc<Access>) -> Result<Self, tls::TlsError> {
        Self::build(ca_pem, Accept::Listed(access))
    }

    /// For relays from other hubs: a hub certificate required, nothing else taken.
    pub fn hubs(ca_pem: &str) -> Result<Self, tls::TlsError> {
        Self::build(ca_pem, Accept::Hubs)
    }

    fn build(ca_pem: &str, accept: Accept) -> Result<Self, tls::TlsError> {
        let roots = Arc::new(tls::root_store(ca_pem)?);
        let builder = WebPkiClientVerifier::builder_with_provider(roots, tls::provider());
        let builder = match accept {
            Accept::Listed(_) => builder.allow_unauthenticated(),
            Accept::Hubs => builder,
        };
        let inner = builder
            .build()
            .map_err(|e| tls::TlsError::Config(rustls::Error::General(e.to_string())))?;
        Ok(ClientVerifier { inner, accept })
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)
            .inspect_err(|e| tracing::info!(error = %e, "client certificate rejected"))?;
        let access = match &self.accept {
            Accept::Listed(access) => access,
            Accept::Hubs if pki::hub_name(end_entity).is_some() => {
                return Ok(ClientCertVerified::assertion());
            }
            Accept::Hubs => {
                tracing::info!("a relay from a certificate that is not a hub's refused");
                return Err(rustls::Error::InvalidCertificate(
                    CertificateError::ApplicationVerificationFailure,
                ));
            }
        };
        let info = pki::inspect(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let Some(identity) = info.identity else {
            tracing::info!(serial = %info.serial, "client certificate without a Tether identity rejected");
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        };
        if !access.allows(&identity, &info.serial) {
            tracing::info!(%identity, serial = %info.serial, "revoked or superseded client certificate rejected");
            return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
