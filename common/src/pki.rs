//! Certificates: the hub's CA, its serving certificate, client certificates signed from
//! CSRs, and reading a peer's identity back out of a verified certificate.
//!
//! Keys are ECDSA P-256. The hub never trusts what a CSR asks for: only the public key is
//! taken from it; the identity, usages and lifetime are the hub's decision.

use std::net::IpAddr;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, CertifiedIssuer,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType, SerialNumber,
};
use ring::rand::SecureRandom;
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer, pem::PemObject};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::identity::Identity;

/// Backdating of `notBefore`, so a peer whose clock is a little behind accepts a new cert.
pub const CLOCK_SKEW: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("failed to generate a key pair: {0}")]
    KeyGen(#[source] rcgen::Error),
    #[error("failed to read private key: {0}")]
    ParseKey(#[source] rcgen::Error),
    #[error("failed to read certificate: {0}")]
    ParseCert(String),
    #[error("invalid certificate signing request: {0}")]
    Csr(#[source] rcgen::Error),
    #[error("failed to sign certificate: {0}")]
    Sign(#[source] rcgen::Error),
    #[error("the operating system's random number generator failed")]
    Rng,
    #[error("invalid subject alternative name {0:?}")]
    San(String),
}

/// A private key and the certificate for it, both PEM.
#[derive(Clone)]
pub struct KeyAndCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for KeyAndCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyAndCert").finish_non_exhaustive()
    }
}

/// A certificate the hub signed, with the facts it records about it.
#[derive(Debug, Clone)]
pub struct SignedCert {
    pub cert_pem: String,
    pub serial: String,
    pub not_before: i64,
    pub not_after: i64,
}

/// The hub's certificate authority.
pub struct CertificateAuthority {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .finish_non_exhaustive()
    }
}

fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| PkiError::Rng)?;
    // A positive INTEGER: clear the top bit; never all zero.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

fn validity(lifetime: Duration) -> (OffsetDateTime, OffsetDateTime) {
    let now = OffsetDateTime::now_utc();
    (now - CLOCK_SKEW, now + lifetime)
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Tether");
    dn.push(DnType::CommonName, common_name);
    dn
}

impl CertificateAuthority {
    /// Creates a new self-signed CA valid for `lifetime`. Returns it with its key PEM.
    pub fn generate(lifetime: Duration) -> Result<(Self, String), PkiError> {
        let key = KeyPair::generate().map_err(PkiError::KeyGen)?;
        let key_pem = key.serialize_pem();
        let mut params = CertificateParams::default();
        params.distinguished_name = dn("Tether CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(random_serial()?);
        (params.not_before, params.not_after) = validity(lifetime);
        let issuer = CertifiedIssuer::self_signed(params, key).map_err(PkiError::Sign)?;
        let cert_pem = issuer.pem();
        let ca = Self::load(&cert_pem, &key_pem)?;
        Ok((ca, key_pem))
    }

    /// Loads a CA from its certificate and key (PEM).
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(PkiError::ParseKey)?;
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| PkiError::ParseCert(e.to_string()))?;
        // A CA brought from elsewhere (`init --ca-cert/--ca-key`) must really be one, with
        // its own key: otherwise every certificate issued would fail to verify.
        let (_, x509) =
            X509Certificate::from_der(&cert_der).map_err(|e| PkiError::ParseCert(e.to_string()))?;
        if !x509.is_ca() {
            return Err(PkiError::ParseCert(
                "the certificate is not a CA (it lacks basicConstraints CA:TRUE)".into(),
            ));
        }
        if x509.public_key().raw != rcgen::PublicKeyData::subject_public_key_info(&key).as_slice() {
            return Err(PkiError::ParseCert(
                "the private key does not belong to the CA certificate".into(),
            ));
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)
            .map_err(|e| PkiError::ParseCert(e.to_string()))?;
        Ok(CertificateAuthority {
            cert_pem: cert_pem.to_string(),
            cert_der,
            issuer,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// `sha256:<hex>` of the CA's SubjectPublicKeyInfo: what agents pin.
    pub fn pin(&self) -> Result<String, PkiError> {
        spki_pin(&self.cert_der)
    }

    /// Issues the hub's serving certificate for the given DNS names and IP addresses.
    pub fn issue_server(
        &self,
        sans: &[String],
        lifetime: Duration,
    ) -> Result<KeyAndCert, PkiError> {
        let key = KeyPair::generate().map_err(PkiError::KeyGen)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn("tether-hub");
        params.subject_alt_names = sans
            .iter()
            .map(|s| match s.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => s
                    .as_str()
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(|_| PkiError::San(s.clone())),
            })
            .collect::<Result<_, _>>()?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial()?);
        (params.not_before, params.not_after) = validity(lifetime);
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(PkiError::Sign)?;
        Ok(KeyAndCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    fn client_params(
        identity: &Identity,
        lifetime: Duration,
    ) -> Result<CertificateParams, PkiError> {
        Self::client_params_for(identity.name(), identity.uri(), lifetime)
    }

    /// A client certificate's parameters: common name `cn`, one URI SAN.
    fn client_params_for(
        cn: &str,
        uri: String,
        lifetime: Duration,
    ) -> Result<CertificateParams, PkiError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(cn);
        let san = uri
            .as_str()
            .try_into()
            .map_err(|_| PkiError::San(uri.clone()))?;
        params.subject_alt_names = vec![SanType::URI(san)];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial()?);
        (params.not_before, params.not_after) = validity(lifetime);
        Ok(params)
    }

    /// Signs a client certificate for `identity` over the public key in `csr_der`.
    pub fn sign_csr(
        &self,
        csr_der: &[u8],
        identity: &Identity,
        lifetime: Duration,
    ) -> Result<SignedCert, PkiError> {
        let csr =
            CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(csr_der))
                .map_err(PkiError::Csr)?;
        let request = CertificateSigningRequestParams {
            params: Self::client_params(identity, lifetime)?,
            public_key: csr.public_key,
        };
        let cert = request.signed_by(&self.issuer).map_err(PkiError::Sign)?;
        let info = inspect(cert.der())?;
        Ok(SignedCert {
            cert_pem: cert.pem(),
            serial: info.serial,
            not_before: info.not_before,
            not_after: info.not_after,
        })
    }

    /// Issues a client key and certificate for `identity` (API users: the hub makes the key).
    pub fn issue_client(
        &self,
        identity: &Identity,
        lifetime: Duration,
    ) -> Result<(KeyAndCert, SignedCert), PkiError> {
        let key = KeyPair::generate().map_err(PkiError::KeyGen)?;
        let cert = Self::client_params(identity, lifetime)?
            .signed_by(&key, &self.issuer)
            .map_err(PkiError::Sign)?;
        let info = inspect(cert.der())?;
        let pem = cert.pem();
        Ok((
            KeyAndCert {
                cert_pem: pem.clone(),
                key_pem: key.serialize_pem(),
            },
            SignedCert {
                cert_pem: pem,
                serial: info.serial,
                not_before: info.not_before,
                not_after: info.not_after,
            },
        ))
    }
}

/// The URI SAN of a hub's own client certificate, before the hub's name. Not an
/// [`Identity`]: such a certificate is refused wherever clusters and users are accepted, and
/// accepted only where one hub hands another a client's connection (see `hub::api::relay`).
pub const HUB_URI_PREFIX: &str = "spiffe://tether.dev/hub/";

impl CertificateAuthority {
    /// Issues a hub's own client key and certificate, for connections between hubs on one
    /// etcd prefix.
    pub fn issue_hub(&self, name: &str, lifetime: Duration) -> Result<KeyAndCert, PkiError> {
        let key = KeyPair::generate().map_err(PkiError::KeyGen)?;
        let cert =
            Self::client_params_for("tether-hub", format!("{HUB_URI_PREFIX}{name}"), lifetime)?
                .signed_by(&key, &self.issuer)
                .map_err(PkiError::Sign)?;
        Ok(KeyAndCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The hub name in a hub's client certificate (see [`HUB_URI_PREFIX`]); `None` for any
/// other certificate. It does not verify the certificate.
pub fn hub_name(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|name| match name {
        GeneralName::URI(uri) => uri
            .strip_prefix(HUB_URI_PREFIX)
            .filter(|n| !n.is_empty())
            .map(str::to_string),
        _ => None,
    })
}

/// A fresh key pair and a CSR for it (agent side). The CSR asks for nothing: the hub decides.
pub fn new_key_and_csr() -> Result<(String, Vec<u8>), PkiError> {
    let key = KeyPair::generate().map_err(PkiError::KeyGen)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = dn("tether-agent");
    let csr = params.serialize_request(&key).map_err(PkiError::Csr)?;
    Ok((key.serialize_pem(), csr.der().to_vec()))
}

/// What the hub reads from a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// `None` when the certificate carries no Tether identity.
    pub identity: Option<Identity>,
    /// Lowercase hex of the serial number.
    pub serial: String,
    pub not_before: i64,
    pub not_after: i64,
}

/// Reads identity, serial and validity from a DER certificate. It does not verify it.
pub fn inspect(der: &[u8]) -> Result<CertInfo, PkiError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| PkiError::ParseCert(e.to_string()))?;
    let mut identity = None;
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::URI(uri) = name
                && let Some(id) = Identity::from_uri(uri)
            {
                identity = Some(id);
                break;
            }
        }
    }
    Ok(CertInfo {
        identity,
        serial: hex::encode(cert.raw_serial()),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// Reads the first certificate of a PEM bundle.
pub fn first_cert_der(pem: &str) -> Result<CertificateDer<'static>, PkiError> {
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| PkiError::ParseCert(e.to_string()))
}

/// `sha256:<hex>` of a certificate's SubjectPublicKeyInfo.
pub fn spki_pin(der: &[u8]) -> Result<String, PkiError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| PkiError::ParseCert(e.to_string()))?;
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.public_key().raw);
    Ok(format!("sha256:{}", hex::encode(digest)))
}

/// Checks the form of a CA pin (`sha256:` and 64 hex digits); returns it lowercased.
pub fn parse_pin(pin: &str) -> Result<String, String> {
    let hex_part = pin
        .strip_prefix("sha256:")
        .ok_or_else(|| format!("invalid CA pin {pin:?}: expected sha256:<64 hex digits>"))?;
    if hex_part.len() != 64 || !hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "invalid CA pin {pin:?}: expected sha256:<64 hex digits>"
        ));
    }
    Ok(format!("sha256:{}", hex_part.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn signed_client_certs_carry_the_hubs_identity_not_the_csrs() {
        let (ca, _) = CertificateAuthority::generate(DAY).unwrap();
        let (_key, csr) = new_key_and_csr().unwrap();
        let id = Identity::Cluster("edge-1".into());
        let signed = ca.sign_csr(&csr, &id, DAY).unwrap();
        let info = inspect(&first_cert_der(&signed.cert_pem).unwrap()).unwrap();
        assert_eq!(info.identity, Some(id));
        assert_eq!(info.serial, signed.serial);
        assert!(info.not_after - info.not_before >= 86_400);
    }

    #[test]
    fn a_hub_certificate_names_the_hub_and_carries_no_identity() {
        let (ca, _) = CertificateAuthority::generate(DAY).unwrap();
        let hub = ca.issue_hub("hub-0", DAY).unwrap();
        let der = first_cert_der(&hub.cert_pem).unwrap();
        assert_eq!(hub_name(&der).as_deref(), Some("hub-0"));
        // Never taken for a cluster or a user.
        assert_eq!(inspect(&der).unwrap().identity, None);
        let (_, user) = ca
            .issue_client(&Identity::User("hub-0".into()), DAY)
            .unwrap();
        assert_eq!(hub_name(&first_cert_der(&user.cert_pem).unwrap()), None);
    }

    #[test]
    fn serials_are_unique() {
        let (ca, _) = CertificateAuthority::generate(DAY).unwrap();
        let id = Identity::User("admin".into());
        let (_, a) = ca.issue_client(&id, DAY).unwrap();
        let (_, b) = ca.issue_client(&id, DAY).unwrap();
        assert_ne!(a.serial, b.serial);
    }

    #[test]
    fn a_garbage_csr_is_refused() {
        let (ca, _) = CertificateAuthority::generate(DAY).unwrap();
        let err = ca
            .sign_csr(b"not a csr", &Identity::Cluster("x".into()), DAY)
            .unwrap_err();
        assert!(err.to_string().contains("certificate signing request"));
    }

    #[test]
    fn the_pin_survives_a_reload_and_differs_between_cas() {
        let (ca, key) = CertificateAuthority::generate(DAY).unwrap();
        let again = CertificateAuthority::load(ca.cert_pem(), &key).unwrap();
        assert_eq!(ca.pin().unwrap(), again.pin().unwrap());
        let (other, _) = CertificateAuthority::generate(DAY).unwrap();
        assert_ne!(ca.pin().unwrap(), other.pin().unwrap());
        assert!(parse_pin(&ca.pin().unwrap()).is_ok());
    }

    #[test]
    fn pins_are_checked_for_form() {
        assert!(parse_pin("sha256:xyz").is_err());
        assert!(parse_pin("md5:00").is_err());
        let upper = format!("sha256:{}", "AB".repeat(32));
        assert_eq!(
            parse_pin(&upper).unwrap(),
            format!("sha256:{}", "ab".repeat(32))
        );
    }
}
