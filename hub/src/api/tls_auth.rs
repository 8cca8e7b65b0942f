//! The hub's client-certificate policy at the TLS handshake.
//!
//! Every peer is asked for a certificate, but one is not required (a joining agent has none
//! yet; see `server::gate` for what such a peer may call). A certificate that is presented
//! must chain to the hub's CA, be valid now, be meant for client authentication, carry a
//! Tether identity, and be on the [`Access`] allow-list; otherwise the handshake fails.
//! Between hubs (etcd), a relay or forwarding connection needs a hub's certificate, and an
//! agent's connection to a hub that does not serve a cluster's, judged by that hub's copy of
//! the records (`api::forward`).

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tether_common::identity::Identity;
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
    /// Only a cluster's, one its check lets in (required): a hub that does not serve,
    /// terminating agents' connections (see `api::forward`).
    Clusters(ClusterSerials),
}

/// How a hub without an allow-list of its own judges a cluster's certificate: given the
/// cluster, the serial and the certificate's `not_before`, whether to let it in.
pub type ClusterCheck = Arc<dyn Fn(&str, &str, i64) -> bool + Send + Sync>;

/// A [`ClusterCheck`], for a [`ClientVerifier`].
#[derive(Clone)]
pub struct ClusterSerials(pub ClusterCheck);

impl std::fmt::Debug for ClusterSerials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSerials")
    }
}

impl ClientVerifier {
    pub fn new(ca_pem: &str, access: Arc<Access>) -> Result<Self, tls::TlsError> {
        Self::build(ca_pem, Accept::Listed(access))
    }

    /// For relays from other hubs: a hub certificate required, nothing else taken.
    pub fn hubs(ca_pem: &str) -> Result<Self, tls::TlsError> {
        Self::build(ca_pem, Accept::Hubs)
    }

    /// For agents' connections to a hub that does not serve: a cluster's certificate
    /// required, and one `check` lets in.
    pub fn clusters(ca_pem: &str, serials: ClusterSerials) -> Result<Self, tls::TlsError> {
        Self::build(ca_pem, Accept::Clusters(serials))
    }

    fn build(ca_pem: &str, accept: Accept) -> Result<Self, tls::TlsError> {
        let roots = Arc::new(tls::root_store(ca_pem)?);
        let builder = WebPkiClientVerifier::builder_with_provider(roots, tls::provider());
        let builder = match accept {
            Accept::Listed(_) => builder.allow_unauthenticated(),
            Accept::Hubs | Accept::Clusters(_) => builder,
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
        let listed = match &self.accept {
            Accept::Listed(access) => Some(access),
            Accept::Clusters(_) => None,
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
        let allowed = match (listed, &self.accept, &identity) {
            (Some(access), _, _) => access.allows(&identity, &info.serial),
            (None, Accept::Clusters(check), Identity::Cluster(name)) => {
                (check.0)(name, &info.serial, info.not_before)
            }
            _ => {
                tracing::info!(%identity, "a certificate that is not a cluster's refused on an agents' connection");
                return Err(rustls::Error::InvalidCertificate(
                    CertificateError::ApplicationVerificationFailure,
                ));
            }
        };
        if !allowed {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tether_common::pki::CertificateAuthority;

    fn der(pem: &str) -> CertificateDer<'static> {
        pki::first_cert_der(pem).unwrap()
    }

    #[test]
    fn a_standby_lets_in_only_clusters_its_check_accepts() {
        let (ca, _) = CertificateAuthority::generate(Duration::from_secs(3600)).unwrap();
        let day = Duration::from_secs(86_400);
        let (cluster, _) = ca
            .issue_client(&Identity::Cluster("edge-1".into()), day)
            .unwrap();
        let (user, _) = ca
            .issue_client(&Identity::User("alice".into()), day)
            .unwrap();
        let hub = ca.issue_hub("hub-1", day).unwrap();
        let check = ClusterSerials(Arc::new(|cluster: &str, _: &str, _: i64| {
            cluster == "edge-1"
        }));
        let v = ClientVerifier::clusters(ca.cert_pem(), check).unwrap();
        assert!(
            v.client_auth_mandatory(),
            "an agent's connection carries its certificate"
        );
        let now = UnixTime::now();
        assert!(
            v.verify_client_cert(&der(&cluster.cert_pem), &[], now)
                .is_ok()
        );
        for (who, pem) in [("a user", &user.cert_pem), ("a hub", &hub.cert_pem)] {
            assert!(
                v.verify_client_cert(&der(pem), &[], now).is_err(),
                "{who} must not get in as an agent"
            );
        }
        let (other, _) = ca
            .issue_client(&Identity::Cluster("edge-2".into()), day)
            .unwrap();
        assert!(
            matches!(
                v.verify_client_cert(&der(&other.cert_pem), &[], now),
                Err(rustls::Error::InvalidCertificate(CertificateError::Revoked))
            ),
            "a cluster the check refuses is told its certificate is revoked"
        );
        // Another CA's cluster certificate: refused before any check.
        let (stranger, _) = CertificateAuthority::generate(Duration::from_secs(3600)).unwrap();
        let (foreign, _) = stranger
            .issue_client(&Identity::Cluster("edge-1".into()), day)
            .unwrap();
        assert!(
            v.verify_client_cert(&der(&foreign.cert_pem), &[], now)
                .is_err()
        );
    }
}
