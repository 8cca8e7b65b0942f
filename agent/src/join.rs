//! Joining: a fresh key pair, a CSR, and the join token, sent to a hub verified only by the
//! CA pin. On success the agent has a credential and never needs the token again.

use std::sync::Arc;
use std::time::Duration;

use tether_common::labels::Labels;
use tether_common::pb::{self, agent_service_client::AgentServiceClient};
use tether_common::pki;
use tether_common::time::unix_now;
use tether_common::tls::{self, ChannelOptions, TlsError};

use crate::credentials::Credential;

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The hub could not be reached: worth retrying.
    #[error("cannot reach hub at {hub}: {detail}")]
    Unreachable { hub: String, detail: String },
    /// The hub is not the one pinned, or its certificate is wrong for the address: retrying
    /// cannot help.
    #[error("refusing hub at {hub}: {detail}")]
    Untrusted { hub: String, detail: String },
    /// The hub refused the join (token expired, revoked, used, unknown...).
    #[error("the hub refused to join: {0}")]
    Refused(String),
    #[error("failed to create a key: {0}")]
    Key(#[from] pki::PkiError),
    #[error("the hub's answer was incomplete: {0}")]
    Protocol(String),
}

impl JoinError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, JoinError::Unreachable { .. })
    }
}

/// Classifies a connection failure: TLS verification problems are final, the rest transient.
pub(crate) fn classify_connect(hub: &str, e: TlsError) -> JoinError {
    match &e {
        TlsError::Connect {
            detail,
            tls: Some(_),
            ..
        } => JoinError::Untrusted {
            hub: hub.to_string(),
            detail: detail.clone(),
        },
        TlsError::Connect {
            detail, tls: None, ..
        } => JoinError::Unreachable {
            hub: hub.to_string(),
            detail: detail.clone(),
        },
        other => JoinError::Untrusted {
            hub: hub.to_string(),
            detail: other.to_string(),
        },
    }
}

/// One join attempt.
pub async fn join_once(
    hub: &str,
    token: &str,
    ca_pin: &str,
    facts: pb::ClusterFacts,
    labels: &Labels,
    opts: &ChannelOptions,
) -> Result<Credential, JoinError> {
    let (key_pem, csr_der) = pki::new_key_and_csr()?;
    let config = tls::pinned_client_config(ca_pin).map_err(|e| JoinError::Untrusted {
        hub: hub.to_string(),
        detail: e.to_string(),
    })?;
    let addrs = tls::hub_addresses(hub).map_err(|e| classify_connect(hub, e))?;
    let (channel, _) = tls::connect_first(&addrs, 0, Arc::new(config), opts)
        .await
        .map_err(|e| classify_connect(hub, e))?;
    let resp = AgentServiceClient::new(channel)
        .join(pb::JoinRequest {
            token: token.to_string(),
            csr_der,
            facts: Some(facts),
            labels: labels.clone().into_iter().collect(),
        })
        .await
        .map_err(|s| match s.code() {
            tonic::Code::Unauthenticated
            | tonic::Code::InvalidArgument
            | tonic::Code::PermissionDenied => JoinError::Refused(s.message().to_string()),
            _ => JoinError::Unreachable {
                hub: hub.to_string(),
                detail: tls::status_detail(&s),
            },
        })?
        .into_inner();
    let cred = resp
        .credential
        .ok_or_else(|| JoinError::Protocol("no credential in the join response".into()))?;
    // The CAs we were given must include the one we pinned (during a CA rotation the hub
    // hands out the new CA and the pinned old one).
    let cas = tls::certs_from_pem(&cred.ca_pem, "CA bundle")
        .map_err(|e| JoinError::Protocol(e.to_string()))?;
    if !cas
        .iter()
        .any(|c| pki::spki_pin(c).is_ok_and(|p| p == ca_pin))
    {
        return Err(JoinError::Untrusted {
            hub: hub.to_string(),
            detail: "the CA in the join response does not match the pin".into(),
        });
    }
    Ok(Credential {
        cluster: resp.cluster,
        ca_pem: cred.ca_pem,
        cert_pem: cred.cert_pem,
        key_pem,
        not_after_unix: cred.not_after_unix,
        received_unix: unix_now(),
    })
}

/// How a join retries: up to `max_delay` apart, until `stop`.
#[derive(Debug, Clone, Copy)]
pub struct Retry<'a> {
    pub max_delay: Duration,
    pub stop: &'a tokio_util::sync::CancellationToken,
}

/// Joins, retrying while the hub is unreachable (an edge site may boot before its uplink);
/// `None` if `stop` came first (SIGTERM while waiting for the hub).
pub async fn join(
    hub: &str,
    token: &str,
    ca_pin: &str,
    facts: pb::ClusterFacts,
    labels: &Labels,
    opts: &ChannelOptions,
    retry: Retry<'_>,
) -> Result<Option<Credential>, JoinError> {
    let Retry { max_delay, stop } = retry;
    let mut backoff = crate::session::reconnect_backoff(max_delay);
    loop {
        let attempt = tokio::select! {
            _ = stop.cancelled() => return Ok(None),
            r = join_once(hub, token, ca_pin, facts.clone(), labels, opts) => r,
        };
        match attempt {
            Ok(c) => return Ok(Some(c)),
            Err(e) if e.is_retryable() => {
                let delay = backoff.next().unwrap_or(max_delay);
                tracing::warn!(error = %e, "join failed; retrying in {}", humantime::format_duration(delay));
                tokio::select! {
                    _ = stop.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            Err(e) => return Err(e),
        }
    }
}
