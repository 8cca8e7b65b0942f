//! API users: credentials issued over a CSR made on the user's machine, roles, removal.

use std::time::Duration;

use tether_common::identity::{Identity, validate_name};
use tether_common::pki::SignedCert;
use tether_common::time::unix_now;

use crate::control::RecordLock;
use crate::control::error::HubError;
use crate::sessions::access::Access;
use crate::store::records::Records;
use crate::store::records::{Put, Role, UserRecord};
use crate::store::{Batch, Tree};
use std::sync::Arc;
use tether_common::pki::CertificateAuthority;

/// Default and longest lifetime of a user certificate.
pub const USER_CERT_LIFETIME: Duration = Duration::from_secs(365 * 86_400);
pub const USER_CERT_MAX_LIFETIME: Duration = Duration::from_secs(2 * 365 * 86_400);

/// API users' operations.
#[derive(Clone)]
pub struct Users {
    records: Records,
    /// Held while reading, changing and writing back records other operations change too.
    write_lock: RecordLock,
    ca: Arc<CertificateAuthority>,
    signing_pin: String,
    access: Arc<Access>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users").finish_non_exhaustive()
    }
}

impl Users {
    pub fn new(
        records: Records,
        write_lock: RecordLock,
        ca: Arc<CertificateAuthority>,
        signing_pin: String,
        access: Arc<Access>,
    ) -> Self {
        Users {
            records,
            write_lock,
            ca,
            signing_pin,
            access,
        }
    }
}

impl Users {
    /// Creates a user and signs their CSR.
    pub async fn create_user(
        &self,
        name: &str,
        role: Role,
        csr_der: &[u8],
        ttl: Option<Duration>,
        by: &str,
    ) -> Result<SignedCert, HubError> {
        validate_name(name).map_err(|e| HubError::InvalidArgument(format!("user {e}")))?;
        let lifetime = ttl.unwrap_or(USER_CERT_LIFETIME);
        if lifetime > USER_CERT_MAX_LIFETIME || lifetime.is_zero() {
            return Err(HubError::InvalidArgument(format!(
                "user certificate lifetime must be between 1s and {}",
                humantime::format_duration(USER_CERT_MAX_LIFETIME)
            )));
        }
        let _w = self.write_lock.lock().await;
        if self.records.user(name)?.is_some() {
            return Err(HubError::FailedPrecondition(format!(
                "user {name:?} already exists (remove it first to issue a new credential)"
            )));
        }
        let identity = Identity::User(name.to_string());
        let cert = self
            .ca
            .sign_csr(csr_der, &identity, lifetime)
            .map_err(|e| HubError::InvalidArgument(e.to_string()))?;
        let record = UserRecord {
            name: name.to_string(),
            role,
            created_unix: unix_now(),
            cert_serials: vec![cert.serial.clone()],
            cert_not_after: cert.not_after,
            cert_issuer: self.signing_pin.clone(),
            created_by: by.to_string(),
        };
        let mut batch = Batch::new();
        batch.put_user(&record);
        self.records.commit(&batch).await?;
        self.access.set(identity, record.cert_serials.clone());
        tracing::info!(user = name, %role, by, "user created");
        Ok(cert)
    }

    pub fn list_users(&self) -> Result<Vec<UserRecord>, HubError> {
        Ok(self.records.users()?)
    }

    /// Removes a user: their certificate stops working at once.
    pub async fn remove_user(&self, name: &str, by: &str) -> Result<(), HubError> {
        if name == by {
            return Err(HubError::FailedPrecondition(
                "you cannot remove yourself".into(),
            ));
        }
        let _w = self.write_lock.lock().await;
        if self.records.user(name)?.is_none() {
            return Err(HubError::NotFound {
                kind: "user",
                name: name.to_string(),
                hint: " (see: tetherctl user list)",
            });
        }
        let mut batch = Batch::new();
        batch.delete(Tree::Users, name);
        self.records.commit(&batch).await?;
        self.access.remove(&Identity::User(name.to_string()));
        tracing::info!(user = name, by, "user removed");
        Ok(())
    }
}
