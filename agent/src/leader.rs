//! Leader election on a `coordination.k8s.io/v1` Lease, so that a DaemonSet of agents holds
//! exactly one hub session per cluster: one pod leads (joins, holds the session, applies),
//! the others stand by and take over when the leader's lease runs out.
//!
//! The algorithm is client-go's `leaderelection` package: a candidate takes the Lease when it
//! is free, or when the holder has not renewed it for a lease duration *as observed on this
//! candidate's own clock* (so clock skew between nodes cannot hand the Lease over early);
//! updates carry the resourceVersion, so two candidates can never both win a round. A leader
//! that cannot renew within the renew deadline (shorter than the lease duration) stops all
//! work before any standby may take over, and a leader that shuts down hands the Lease back at
//! once.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tokio_util::sync::CancellationToken;

/// How the Lease is held.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    /// This candidate's identity (the pod name in a DaemonSet).
    pub identity: String,
    /// A standby takes over after the leader has not renewed for this long.
    pub duration: Duration,
    /// The leader steps down when it could not renew for this long (less than `duration`).
    pub renew_deadline: Duration,
    /// How often the leader renews and a standby retries.
    pub retry_period: Duration,
}

impl LeaseSettings {
    /// Checks the three durations against each other, as client-go does.
    pub fn validate(&self) -> Result<(), String> {
        if self.duration <= self.renew_deadline {
            return Err("--lease-duration must be longer than --lease-renew-deadline".into());
        }
        if self.renew_deadline <= self.retry_period {
            return Err("--lease-renew-deadline must be longer than --lease-retry-period".into());
        }
        if self.retry_period < Duration::from_millis(100) {
            return Err("--lease-retry-period must be at least 100ms".into());
        }
        if self.identity.is_empty() {
            return Err(
                "the leader-election identity is empty (set POD_NAME or --leader-identity)".into(),
            );
        }
        Ok(())
    }
}

/// Why [`Elector::hold`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldEnd {
    /// Another candidate holds the Lease now, or renewal failed past the deadline.
    Lost,
    /// Shutdown was requested; the caller stops its work, then calls [`Elector::release`].
    Shutdown,
}

/// The outcome of one round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Round {
    /// This candidate holds the Lease.
    Held,
    /// Another candidate holds it and it has not run out.
    Other,
    /// The Lease changed between read and write; try again next round.
    Conflict,
}

/// One candidate's view of the Lease.
pub struct Elector {
    api: Api<Lease>,
    settings: LeaseSettings,
    /// The last (holder, renewTime) seen and when this candidate first saw it.
    observed: Option<(Option<String>, Option<MicroTime>)>,
    observed_at: Instant,
}

impl Elector {
    pub fn new(client: kube::Client, settings: LeaseSettings) -> Self {
        Elector {
            api: Api::namespaced(client, &settings.namespace),
            settings,
            observed: None,
            observed_at: Instant::now(),
        }
    }

    pub fn settings(&self) -> &LeaseSettings {
        &self.settings
    }

    /// Waits until this candidate holds the Lease. False when shutdown came first.
    pub async fn acquire(&mut self, shutdown: &CancellationToken) -> bool {
        let mut said_waiting = false;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(Round::Held) => return true,
                Ok(Round::Conflict) => {}
                Ok(Round::Other) => {
                    if !said_waiting {
                        tracing::info!(
                            lease = %self.lease_ref(),
                            holder = self.holder().unwrap_or("-"),
                            "standing by: another agent holds the lease"
                        );
                        said_waiting = true;
                    }
                }
                Err(e) => {
                    tracing::warn!(lease = %self.lease_ref(), error = %e, "cannot read or take the lease")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(self.settings.retry_period) => {}
            }
        }
    }

    /// Renews the Lease every retry period until it is lost or shutdown is requested.
    pub async fn hold(&mut self, shutdown: &CancellationToken) -> HoldEnd {
        let mut renewed = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return HoldEnd::Shutdown,
                _ = tokio::time::sleep(self.settings.retry_period) => {}
            }
            match self.try_acquire_or_renew().await {
                Ok(Round::Held) => renewed = Instant::now(),
                // Someone wrote the Lease meanwhile: read it again next round (until the deadline).
                Ok(Round::Conflict) => {}
                Ok(Round::Other) => {
                    tracing::warn!(lease = %self.lease_ref(), holder = self.holder().unwrap_or("-"), "lost the lease to another agent");
                    return HoldEnd::Lost;
                }
                Err(e) => {
                    tracing::warn!(lease = %self.lease_ref(), error = %e, "cannot renew the lease");
                }
            }
            if renewed.elapsed() >= self.settings.renew_deadline {
                tracing::warn!(
                    lease = %self.lease_ref(),
                    "could not renew the lease within {}; stepping down",
                    humantime::format_duration(self.settings.renew_deadline)
                );
                return HoldEnd::Lost;
            }
        }
    }

    /// Hands the Lease back so a standby takes over at once (best effort: on failure the
    /// standby waits out the lease duration instead).
    pub async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.settings.name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(&self.settings.identity) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now());
        match self
            .api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(lease = %self.lease_ref(), "released the lease"),
            Err(e) => {
                tracing::warn!(lease = %self.lease_ref(), error = %e, "cannot release the lease")
            }
        }
    }

    /// One round of read, decide, compare-and-swap.
    async fn try_acquire_or_renew(&mut self) -> Result<Round, kube::Error> {
        let me = self.settings.identity.clone();
        let Some(mut lease) = self.api.get_opt(&self.settings.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.settings.name.clone()),
                    namespace: Some(self.settings.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(me),
                    lease_duration_seconds: Some(self.duration_seconds()),
                    acquire_time: Some(now()),
                    renew_time: Some(now()),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observe(&created, true);
                    Ok(Round::Held)
                }
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Round::Conflict),
                Err(e) => Err(e),
            };
        };
        self.observe(&lease, false);
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let mine = holder.as_deref() == Some(me.as_str());
        if let Some(_other) = holder.as_ref().filter(|_| !mine) {
            let duration = spec
                .lease_duration_seconds
                .filter(|s| *s > 0)
                .map(|s| Duration::from_secs(s as u64))
                .unwrap_or(self.settings.duration);
            if self.observed_at.elapsed() < duration {
                return Ok(Round::Other);
            }
        }
        if !mine {
            spec.acquire_time = Some(now());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.holder_identity = Some(me);
        spec.lease_duration_seconds = Some(self.duration_seconds());
        spec.renew_time = Some(now());
        // The resourceVersion read above makes this a compare-and-swap.
        match self
            .api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
        {
            Ok(updated) => {
                self.observe(&updated, true);
                Ok(Round::Held)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Round::Conflict),
            Err(e) => Err(e),
        }
    }

    /// Records what the Lease says; the clock restarts whenever holder or renewTime change.
    fn observe(&mut self, lease: &Lease, force: bool) {
        let spec = lease.spec.clone().unwrap_or_default();
        let seen = (spec.holder_identity, spec.renew_time);
        if force || self.observed.as_ref() != Some(&seen) {
            self.observed = Some(seen);
            self.observed_at = Instant::now();
        }
    }

    fn holder(&self) -> Option<&str> {
        self.observed.as_ref()?.0.as_deref()
    }

    fn duration_seconds(&self) -> i32 {
        self.settings.duration.as_secs().clamp(1, i32::MAX as u64) as i32
    }

    fn lease_ref(&self) -> String {
        format!("{}/{}", self.settings.namespace, self.settings.name)
    }
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}
