//! Certificate renewal: at 70-80% of the certificate's remaining life when it was received
//! (jittered, so a fleet joined together does not renew together), the agent makes a new key,
//! asks the hub to sign it over mutual TLS, saves it and switches to it for new connections.

use std::sync::Arc;
use std::time::Duration;

use rand::RngExt;
use tether_common::pb::{self, agent_service_client::AgentServiceClient};
use tether_common::pki;
use tether_common::time::unix_now;
use tether_common::tls::{self, ChannelOptions};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::credentials::{Credential, CredentialStore};

/// When to renew `cred`, as Unix milliseconds.
pub fn renew_at_ms(cred: &Credential, fraction: f64) -> i64 {
    let received = cred.received_unix.min(cred.not_after_unix) * 1000;
    let life = (cred.not_after_unix * 1000 - received).max(0) as f64;
    received + (life * fraction) as i64
}

/// The jittered point in a certificate's life at which to renew it.
fn renew_fraction() -> f64 {
    rand::rng().random_range(0.70..0.80)
}

async fn renew_once(
    hub: &str,
    cred: &Credential,
    opts: &ChannelOptions,
) -> Result<Credential, String> {
    let (key_pem, csr_der) = pki::new_key_and_csr().map_err(|e| e.to_string())?;
    let config = tls::agent_client_config(&cred.ca_pem, &cred.cert_pem, &cred.key_pem)
        .map_err(|e| e.to_string())?;
    let addrs = tls::hub_addresses(hub).map_err(|e| e.to_string())?;
    let (channel, _) = tls::connect_first(&addrs, 0, Arc::new(config), opts)
        .await
        .map_err(|e| e.to_string())?;
    let resp = AgentServiceClient::new(channel)
        .renew(pb::RenewRequest { csr_der })
        .await
        .map_err(|s| tls::status_detail(&s))?
        .into_inner();
    let issued = resp
        .credential
        .ok_or("no credential in the renewal response")?;
    Ok(Credential {
        cluster: cred.cluster.clone(),
        ca_pem: issued.ca_pem,
        cert_pem: issued.cert_pem,
        key_pem,
        not_after_unix: issued.not_after_unix,
        received_unix: unix_now(),
    })
}

/// Renews for as long as the agent runs. A failed renewal is retried with backoff until the
/// certificate expires; after that only a re-join helps, which the session reports.
pub async fn run(
    hub: String,
    store: CredentialStore,
    credential: watch::Sender<Credential>,
    opts: ChannelOptions,
    renew_now: std::sync::Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) {
    loop {
        let current = credential.borrow().clone();
        let at_ms = renew_at_ms(&current, renew_fraction());
        let wait =
            Duration::from_millis((at_ms - tether_common::time::unix_now_ms()).max(0) as u64);
        tracing::debug!(
            in_secs = wait.as_secs(),
            "next certificate renewal scheduled"
        );
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
            _ = renew_now.notified() => {}
        }
        let mut backoff = crate::session::reconnect_backoff(Duration::from_secs(30));
        loop {
            match renew_once(&hub, &current, &opts).await {
                Ok(new) => {
                    if let Err(e) = store.save(&new).await {
                        // Keep using it in memory; the hub still accepts the old one too, so a
                        // restart before the next save is not locked out.
                        tracing::error!(error = %e, "renewed certificate could not be saved");
                    }
                    tracing::info!(
                        cluster = %new.cluster,
                        not_after = %tether_common::time::rfc3339(new.not_after_unix),
                        "certificate renewed"
                    );
                    credential.send_replace(new);
                    break;
                }
                Err(e) => {
                    if current.is_expired() {
                        tracing::error!(error = %e, "certificate expired before it could be renewed");
                        return;
                    }
                    let delay = backoff.next().unwrap_or(Duration::from_secs(30));
                    tracing::warn!(error = %e, "certificate renewal failed; retrying in {}", humantime::format_duration(delay));
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_falls_at_the_given_fraction_of_remaining_life() {
        let cred = Credential {
            cluster: "a".into(),
            ca_pem: String::new(),
            cert_pem: String::new(),
            key_pem: String::new(),
            received_unix: 1_000,
            not_after_unix: 2_000,
        };
        assert_eq!(renew_at_ms(&cred, 0.75), 1_750_000);
        for _ in 0..100 {
            let f = renew_fraction();
            assert!((0.70..0.80).contains(&f));
        }
    }
}
