//! Joining and renewing: turning a join token or a valid certificate into a new client
//! certificate for a member cluster.

use std::net::SocketAddr;

use tether_common::identity::Identity;
use tether_common::labels::Labels;
use tether_common::pki::SignedCert;
use tether_common::time::{rfc3339, unix_now};
use tether_common::token::JoinToken;

use crate::control::PeerCert;
use crate::control::RecordLock;
use crate::control::error::HubError;
use crate::control::ratelimit::FailureLimiter;
use crate::control::scheduler::Scheduler;
use crate::metrics::Metrics;
use crate::sessions::access::Access;
use crate::store::Batch;
use crate::store::records::Records;
use crate::store::records::{ClusterRecord, Facts, Put};
use std::sync::Arc;
use tether_common::pki::CertificateAuthority;

/// A join as the agent asked for it.
#[derive(Debug)]
pub struct JoinRequest {
    pub token: String,
    pub csr_der: Vec<u8>,
    pub facts: Facts,
    /// Labels the agent asks for; the token's win.
    pub labels: Labels,
    pub source: SocketAddr,
}

/// A join the hub granted.
#[derive(Debug)]
pub struct Joined {
    pub cluster: String,
    pub cert: SignedCert,
}

/// Joining and renewing.
#[derive(Clone)]
pub struct Joins {
    records: Records,
    /// Held while reading, changing and writing back records other operations change too.
    write_lock: RecordLock,
    ca: Arc<CertificateAuthority>,
    signing_pin: String,
    cert_lifetime: std::time::Duration,
    access: Arc<Access>,
    metrics: Metrics,
    join_limiter: Arc<FailureLimiter>,
    scheduler: Scheduler,
}

impl std::fmt::Debug for Joins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Joins").finish_non_exhaustive()
    }
}

/// What [`Joins`] works with.
pub struct JoinsDeps {
    pub records: Records,
    pub write_lock: RecordLock,
    pub ca: Arc<CertificateAuthority>,
    pub signing_pin: String,
    pub cert_lifetime: std::time::Duration,
    pub access: Arc<Access>,
    pub metrics: Metrics,
    pub join_limiter: Arc<FailureLimiter>,
    pub scheduler: Scheduler,
}

impl Joins {
    pub fn new(d: JoinsDeps) -> Self {
        Joins {
            records: d.records,
            write_lock: d.write_lock,
            ca: d.ca,
            signing_pin: d.signing_pin,
            cert_lifetime: d.cert_lifetime,
            access: d.access,
            metrics: d.metrics,
            join_limiter: d.join_limiter,
            scheduler: d.scheduler,
        }
    }
}

impl Joins {
    fn join_refused(
        &self,
        result: &str,
        token_id: &str,
        source: SocketAddr,
        message: String,
    ) -> HubError {
        Metrics::count(&self.metrics.joins, result);
        self.join_limiter.failed(&source.ip());
        tracing::warn!(token_id, %source, reason = result, "join refused");
        HubError::Unauthenticated(message)
    }

    /// Validates the token, signs the CSR for the token's cluster and records the cluster.
    /// A token for a cluster that already exists replaces that cluster's credential (the
    /// documented way back in for an agent that lost its own).
    pub async fn join(&self, req: JoinRequest) -> Result<Joined, HubError> {
        if let Err(retry) = self.join_limiter.check(&req.source.ip()) {
            Metrics::count(&self.metrics.joins, "rate_limited");
            tracing::warn!(source = %req.source, "join refused: too many failed attempts from this address");
            return Err(HubError::ResourceExhausted(format!(
                "too many failed join attempts from {}; retry in {}s",
                req.source.ip(),
                retry.as_secs().max(1)
            )));
        }
        let token = JoinToken::parse(&req.token).map_err(|e| {
            Metrics::count(&self.metrics.joins, "malformed");
            self.join_limiter.failed(&req.source.ip());
            tracing::warn!(source = %req.source, "join refused: malformed token");
            HubError::InvalidArgument(e.to_string())
        })?;
        let id = token.id.clone();
        let _w = self.write_lock.lock().await;
        let Some(mut rec) = self.records.token(&id)? else {
            return Err(self.join_refused(
                "unknown",
                &id,
                req.source,
                format!("join token {id} is not known to this hub (see: tetherctl token list)"),
            ));
        };
        let now = unix_now();
        if !token.matches_hash(&rec.secret_sha256) {
            return Err(self.join_refused(
                "bad_secret",
                &id,
                req.source,
                format!("join token {id} was refused: wrong secret"),
            ));
        }
        if rec.revoked {
            return Err(self.join_refused(
                "revoked",
                &id,
                req.source,
                format!(
                    "join token {id} was revoked; create a new one with `tetherctl token create`"
                ),
            ));
        }
        if rec.expires_unix <= now {
            return Err(self.join_refused(
                "expired",
                &id,
                req.source,
                format!(
                    "join token {id} expired at {}; create a new one with `tetherctl token create`",
                    rfc3339(rec.expires_unix)
                ),
            ));
        }
        if !rec.reusable && rec.uses > 0 {
            return Err(self.join_refused(
                "used",
                &id,
                req.source,
                format!("join token {id} was already used (tokens are single-use unless created with --reusable)"),
            ));
        }
        let identity = Identity::Cluster(rec.cluster.clone());
        let cert = self
            .ca
            .sign_csr(&req.csr_der, &identity, self.cert_lifetime)
            .map_err(|e| {
                Metrics::count(&self.metrics.joins, "bad_csr");
                HubError::InvalidArgument(e.to_string())
            })?;
        let existing = self.records.cluster(&rec.cluster)?;
        let rejoin = existing.is_some();
        let mut cluster = existing.unwrap_or_else(|| ClusterRecord {
            name: rec.cluster.clone(),
            joined_unix: now,
            ..Default::default()
        });
        // The agent may claim only the label keys its token allows; the token's own win.
        let claimed: Vec<&String> = req
            .labels
            .keys()
            .filter(|k| !rec.labels.contains_key(*k) && !rec.allow_labels.contains(*k))
            .collect();
        if let Some(k) = claimed.first() {
            Metrics::count(&self.metrics.joins, "label_refused");
            return Err(HubError::PermissionDenied(format!(
                "join token {id} does not let the cluster claim label {k:?} (create the token with --allow-labels {k}, or give it the label with --labels)"
            )));
        }
        cluster.labels.extend(req.labels);
        cluster.labels.extend(rec.labels.clone());
        tether_common::labels::check_count(cluster.labels.len())
            .map_err(HubError::InvalidArgument)?;
        cluster.cert_serials = vec![cert.serial.clone()];
        cluster.cert_not_after = cert.not_after;
        cluster.cert_issuer = self.signing_pin.clone();
        cluster.facts = Some(req.facts);
        cluster.joined_with_token = id.clone();
        rec.uses += 1;
        let mut batch = Batch::new();
        batch.put_cluster(&cluster).put_token(&rec);
        self.records.commit(&batch).await?;
        // A re-join replaces the old credential: whoever still holds it is cut off.
        self.access.set(identity, cluster.cert_serials.clone());
        if !rejoin {
            self.metrics.clusters.inc();
        }
        drop(_w);
        // Any workload may now choose it (or, after a re-join with new labels, drop it).
        // The scheduler's queue coalesces a burst of joins into one pass per workload.
        self.scheduler.enqueue_all();
        Metrics::count(&self.metrics.joins, "ok");
        tracing::info!(cluster = %cluster.name, token_id = %id, source = %req.source, rejoin, "cluster joined");
        Ok(Joined {
            cluster: cluster.name,
            cert,
        })
    }

    /// Signs a new certificate for the caller's own cluster. The certificate used for this
    /// call stays valid too until the next renewal, in case the agent crashes before it has
    /// saved the new one.
    pub async fn renew(&self, peer: &PeerCert, csr_der: &[u8]) -> Result<SignedCert, HubError> {
        let Identity::Cluster(name) = &peer.identity else {
            return Err(HubError::PermissionDenied(format!(
                "{} cannot renew through the agent service",
                peer.identity
            )));
        };
        let _w = self.write_lock.lock().await;
        let mut cluster = self
            .records
            .cluster(name)?
            .ok_or_else(|| HubError::cluster_not_found(name))?;
        let cert = self
            .ca
            .sign_csr(csr_der, &peer.identity, self.cert_lifetime)
            .map_err(|e| {
                Metrics::count(&self.metrics.renewals, "bad_csr");
                HubError::InvalidArgument(e.to_string())
            })?;
        cluster.cert_serials = vec![cert.serial.clone(), peer.serial.clone()];
        cluster.cert_not_after = cert.not_after;
        cluster.cert_issuer = self.signing_pin.clone();
        let mut batch = Batch::new();
        batch.put_cluster(&cluster);
        self.records.commit(&batch).await?;
        self.access
            .renewed(peer.identity.clone(), cluster.cert_serials.clone());
        Metrics::count(&self.metrics.renewals, "ok");
        tracing::info!(cluster = %name, serial = %cert.serial, not_after = %rfc3339(cert.not_after), "certificate renewed");
        Ok(cert)
    }
}
