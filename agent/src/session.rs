//! The control stream to the hub: connect with mutual TLS, say `Hello`, exchange heartbeats,
//! and reconnect with capped exponential backoff and jitter when anything goes wrong.
//!
//! [`run`] loops over sessions; [`Session`] is one of them. A session ends for good only when
//! the hub says this cluster was removed, another agent took over its identity, or the hub
//! refuses the certificate at the handshake; everything else is retried.

use std::sync::Arc;
use std::time::Duration;

use backon::BackoffBuilder;
use tether_common::pb::{
    self, agent_service_client::AgentServiceClient, connect_request, connect_response,
};
use tether_common::time::unix_now_ms;
use tether_common::tls::{self, ChannelOptions, TlsError};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::credentials::Credential;
use crate::metrics::AgentMetrics;
use crate::proxy::Forward;
use crate::reconcile::Workloads;
use crate::status::{Health, Phase, Report};

/// The largest message the agent accepts from the hub (a compressed bundle).
const MAX_HUB_MESSAGE: usize = 64 << 20;

/// How the session loop behaves.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// One hub, or several (comma-separated) on one etcd.
    pub hub: String,
    pub channel: ChannelOptions,
    /// Cap of the reconnect backoff.
    pub max_backoff: Duration,
    /// A session that lasted this long resets the backoff.
    pub healthy_after: Duration,
    /// How often facts are re-read and sent when they changed.
    pub facts_interval: Duration,
    pub metrics: AgentMetrics,
}

impl SessionOptions {
    pub fn new(hub: String) -> Self {
        SessionOptions {
            hub,
            channel: ChannelOptions::default(),
            max_backoff: Duration::from_secs(30),
            healthy_after: Duration::from_secs(30),
            facts_interval: Duration::from_secs(60),
            metrics: AgentMetrics::default(),
        }
    }
}

/// Why the agent stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum Fatal {
    #[error(
        "{0}; re-join with a new token if this cluster should come back (see docs/operations.md)"
    )]
    Removed(String),
    #[error("{0}; another agent is using this cluster's identity, so this one stops")]
    Superseded(String),
    #[error(
        "the hub refused this agent's certificate ({0}): the cluster was removed, re-joined elsewhere, or its \
         certificate expired; re-join with a new token (see docs/operations.md)"
    )]
    CredentialRejected(String),
    #[error("the stored credential is unusable: {0}")]
    BadCredential(String),
    #[error(
        "the hub's certificate is not from the CA this agent trusts ({0}): the hub's CA was rotated while this \
         agent was away, or this is not the right hub; re-join with a new token (see docs/operations.md)"
    )]
    HubUntrusted(String),
}

/// The reconnect backoff: exponential from 500 ms, capped, jittered, never giving up.
///
/// backon's own jitter adds up to one more delay on top (so up to twice the cap), which
/// broke the promise of `--reconnect-max-delay`; here each delay is drawn from its upper
/// half instead ("equal jitter"), so the cap holds and a fleet still spreads out.
pub fn reconnect_backoff(max_delay: Duration) -> impl Iterator<Item = Duration> {
    use rand::RngExt;
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(max_delay)
        .with_factor(2.0)
        .without_max_times()
        .build()
        .map(move |d| {
            let d = d.min(max_delay);
            d.mul_f64(rand::rng().random_range(0.5..=1.0))
        })
}

/// Where the session gets the facts it reports.
pub trait FactsSource: Send + Sync + 'static {
    fn gather(&self) -> futures::future::BoxFuture<'_, pb::ClusterFacts>;
}

impl FactsSource for kube::Client {
    fn gather(&self) -> futures::future::BoxFuture<'_, pb::ClusterFacts> {
        Box::pin(crate::facts::gather(self))
    }
}

/// Runs sessions until `shutdown` or a fatal end.
pub async fn run(
    opts: SessionOptions,
    credential: watch::Receiver<Credential>,
    facts: Arc<dyn FactsSource>,
    workloads: Arc<dyn Workloads>,
    renew_now: Arc<tokio::sync::Notify>,
    forward: Option<Arc<dyn Forward>>,
    shutdown: CancellationToken,
) -> Result<(), Fatal> {
    let mut backoff = reconnect_backoff(opts.max_backoff);
    // With several hubs, a session that ends starts the next attempt at the next hub: the
    // one that ended it may be the one that stopped serving.
    let next_hub = std::sync::atomic::AtomicUsize::new(0);
    loop {
        let started = Instant::now();
        let session = Session {
            next_hub: &next_hub,
            opts: &opts,
            credential: credential.borrow().clone(),
            facts: facts.as_ref(),
            workloads: workloads.as_ref(),
            renew_now: &renew_now,
            forward: forward.clone(),
        };
        let end = session.run(&shutdown).await;
        opts.metrics.connected.set(0);
        match end {
            End::Shutdown => return Ok(()),
            End::Fatal(f) => return Err(f),
            End::Retry(reason) => {
                if started.elapsed() >= opts.healthy_after {
                    backoff = reconnect_backoff(opts.max_backoff);
                }
                let delay = backoff.next().unwrap_or(opts.max_backoff);
                tracing::warn!(hub = %opts.hub, reason = %reason, "session ended; reconnecting in {}", humantime::format_duration(delay));
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

enum End {
    Shutdown,
    Retry(String),
    Fatal(Fatal),
}

fn classify_status(status: &tonic::Status) -> End {
    if let Some(alert) = tls::peer_refused_certificate(status) {
        return End::Fatal(Fatal::CredentialRejected(format!("TLS alert {alert:?}")));
    }
    match tls::find_tls_error(status) {
        _ if status.code() == tonic::Code::Unauthenticated => {
            End::Fatal(Fatal::CredentialRejected(status.message().to_string()))
        }
        Some(e) => End::Retry(e.to_string()),
        None => End::Retry(tls::status_detail(status)),
    }
}

struct Session<'a> {
    next_hub: &'a std::sync::atomic::AtomicUsize,
    opts: &'a SessionOptions,
    credential: Credential,
    facts: &'a dyn FactsSource,
    workloads: &'a dyn Workloads,
    renew_now: &'a tokio::sync::Notify,
    forward: Option<Arc<dyn Forward>>,
}

impl Session<'_> {
    async fn run(self, shutdown: &CancellationToken) -> End {
        let c = &self.credential;
        let config = match tls::agent_client_config(&c.ca_pem, &c.cert_pem, &c.key_pem) {
            Ok(c) => c,
            Err(e) => return End::Fatal(Fatal::BadCredential(e.to_string())),
        };
        let addrs = match tls::hub_addresses(&self.opts.hub) {
            Ok(a) => a,
            Err(e) => return End::Fatal(Fatal::BadCredential(e.to_string())),
        };
        use std::sync::atomic::Ordering::Relaxed;
        let start = self.next_hub.load(Relaxed);
        let connected = tokio::select! {
            _ = shutdown.cancelled() => return End::Shutdown,
            r = tls::connect_first(&addrs, start, Arc::new(config), &self.opts.channel) => match r {
                Ok(ch) => ch,
                Err(e) => match (tls::peer_refused_certificate(&e), &e) {
                    (Some(alert), _) => return End::Fatal(Fatal::CredentialRejected(format!("TLS alert {alert:?}"))),
                    (None, TlsError::Connect { tls: Some(rustls::Error::InvalidCertificate(c)), .. }) => {
                        return End::Fatal(Fatal::HubUntrusted(format!("{c:?}")));
                    }
                    (None, _) => return End::Retry(e.to_string()),
                },
            },
        };
        let (channel, reached) = connected;
        let hub = addrs[reached].clone();
        // Unless this session lasts, the next attempt starts with the hub after this one.
        self.next_hub.store(reached + 1, Relaxed);
        let facts = self.facts.gather().await;
        let (out, out_rx) = mpsc::channel::<pb::ConnectRequest>(64);
        let hello = pb::ConnectRequest {
            msg: Some(connect_request::Msg::Hello(pb::Hello {
                facts: Some(facts.clone()),
                applied: self.workloads.applied(),
                applied_bundles: self.workloads.applied_bundles(),
            })),
        };
        // The channel is empty: this cannot block.
        let _ = out.send(hello).await;
        let proxy_channel = channel.clone();
        let mut client = agent_client(channel);
        let mut inbound = tokio::select! {
            _ = shutdown.cancelled() => return End::Shutdown,
            r = client.connect(ReceiverStream::new(out_rx)) => match r {
                Ok(resp) => resp.into_inner(),
                Err(status) => return classify_status(&status),
            },
        };
        let welcome = match tokio::time::timeout(Duration::from_secs(30), inbound.message()).await {
            Ok(Ok(Some(pb::ConnectResponse {
                msg: Some(connect_response::Msg::Welcome(w)),
            }))) => w,
            Ok(Ok(Some(pb::ConnectResponse {
                msg: Some(connect_response::Msg::Goodbye(g)),
            }))) => return goodbye(g),
            Ok(Ok(_)) => return End::Retry("the hub did not answer Hello with Welcome".into()),
            Ok(Err(status)) => return classify_status(&status),
            Err(_) => return End::Retry("no Welcome from the hub within 30s".into()),
        };
        if welcome.renew_now {
            tracing::info!("the hub asks for a certificate renewal now (CA rotation)");
            self.renew_now.notify_one();
        }
        let interval = Duration::from_millis(u64::from(welcome.heartbeat_interval_ms.max(100)));
        // The hub heartbeats at the same interval; three missed in a row means it is gone
        // even if TCP has not noticed.
        let hub_silence_limit = interval * 3 + Duration::from_secs(1);
        tracing::info!(
            cluster = %welcome.cluster,
            session = %welcome.session_id,
            epoch = welcome.epoch,
            hub = %hub,
            "connected to hub"
        );
        self.opts.metrics.connected.set(1);
        self.opts.metrics.hub_contact();
        let mut heartbeat = tokio::time::interval(interval);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut facts_tick = tokio::time::interval(self.opts.facts_interval);
        facts_tick.tick().await;
        let mut last_facts = facts;
        let mut gathering: Option<futures::future::BoxFuture<'_, pb::ClusterFacts>> = None;
        let mut last_heard = Instant::now();
        // The hub may have missed reports while we were away: send every status again.
        let board = self.workloads.board();
        board.mark_all_dirty();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return End::Shutdown,
                _ = board.changed() => {
                    let reports = board.take();
                    let mut unsent = Vec::new();
                    for r in reports {
                        if !unsent.is_empty() {
                            unsent.push(r);
                            continue;
                        }
                        let msg = report_message(&r);
                        if out.send(msg).await.is_err() {
                            unsent.push(r);
                        }
                    }
                    if !unsent.is_empty() {
                        board.untake(unsent);
                        return End::Retry("the stream to the hub closed".into());
                    }
                }
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() > hub_silence_limit {
                        return End::Retry(format!("nothing heard from the hub for {}", humantime::format_duration(hub_silence_limit)));
                    }
                    let hb = pb::ConnectRequest {
                        msg: Some(connect_request::Msg::Heartbeat(pb::Heartbeat { sent_unix_ms: unix_now_ms() })),
                    };
                    if out.send(hb).await.is_err() {
                        return End::Retry("the stream to the hub closed".into());
                    }
                }
                _ = facts_tick.tick(), if gathering.is_none() => {
                    // Gathered beside the loop: a hung API server must not stop heartbeats
                    // (the hub would take "cannot reach its API" for "agent gone").
                    gathering = Some(self.facts.gather());
                }
                facts = async {
                    match gathering.as_mut() {
                        Some(f) => f.await,
                        None => std::future::pending().await,
                    }
                }, if gathering.is_some() => {
                    gathering = None;
                    if facts != last_facts {
                        let update = pb::ConnectRequest {
                            msg: Some(connect_request::Msg::Facts(pb::FactsUpdate { facts: Some(facts.clone()) })),
                        };
                        if out.send(update).await.is_err() {
                            return End::Retry("the stream to the hub closed".into());
                        }
                        last_facts = facts;
                    }
                }
                msg = inbound.message() => match msg {
                    Ok(Some(m)) => {
                        last_heard = Instant::now();
                        self.opts.metrics.hub_contact();
                        match m.msg {
                            Some(connect_response::Msg::Goodbye(g)) => return goodbye(g),
                            Some(connect_response::Msg::Heartbeat(_)) | Some(connect_response::Msg::Welcome(_)) => {}
                            Some(connect_response::Msg::Desired(d)) => {
                                let (workload, revision) = (d.workload.clone(), d.revision);
                                let bundle_hash = d.bundle_hash.clone();
                                match self.workloads.desired(d.workload, d.revision, d.bundle_hash, d.bundle).await {
                                    Ok(()) => {
                                        self.opts.metrics.revisions_received.inc();
                                        let ack = pb::ConnectRequest {
                                            msg: Some(connect_request::Msg::Ack(pb::Ack { workload, revision, bundle_hash })),
                                        };
                                        if out.send(ack).await.is_err() {
                                            return End::Retry("the stream to the hub closed".into());
                                        }
                                    }
                                    // Not acknowledged: the hub sends it again on its next resync.
                                    Err(e) => tracing::error!(workload = %workload, revision, error = %e, "cannot accept desired state"),
                                }
                            }
                            Some(connect_response::Msg::Remove(r)) => self.workloads.remove(&r.workload),
                            Some(connect_response::Msg::ProxyOpen(p)) => match &self.forward {
                                // Each request on its own stream and task: the control stream
                                // never waits for a proxied one.
                                Some(f) => {
                                    tokio::spawn(crate::proxy::serve(proxy_channel.clone(), f.clone(), p.request_id));
                                }
                                None => tracing::warn!("the hub asked for a proxy stream, but this agent has no API to forward to"),
                            },
                            Some(connect_response::Msg::Assigned(a)) => self.workloads.assigned(&a.revisions),
                            // A newer hub may send messages this agent does not know yet.
                            None => {}
                        }
                    }
                    Ok(None) => return End::Retry("the hub closed the stream".into()),
                    Err(status) => return classify_status(&status),
                },
            }
        }
    }
}

/// A client for the agent service over `channel`, accepting large bundles (the hub caps them
/// when they are applied).
pub fn agent_client(
    channel: tonic::transport::Channel,
) -> AgentServiceClient<tonic::transport::Channel> {
    AgentServiceClient::new(channel).max_decoding_message_size(MAX_HUB_MESSAGE)
}

/// The message that carries a report to the hub.
pub fn report_message(r: &Report) -> pb::ConnectRequest {
    use pb::object_status::Health as PbHealth;
    use pb::workload_status::Phase as PbPhase;
    let msg = match r {
        Report::Removed(w) => connect_request::Msg::Removed(pb::Removed {
            workload: w.clone(),
        }),
        Report::Status(s) => connect_request::Msg::Status(pb::WorkloadStatus {
            workload: s.workload.clone(),
            revision: s.revision,
            phase: match s.phase {
                Phase::Applied => PbPhase::Applied,
                Phase::Progressing => PbPhase::Progressing,
                Phase::Available => PbPhase::Available,
                Phase::Degraded => PbPhase::Degraded,
            } as i32,
            message: s.message.clone(),
            ready: s.ready,
            total: s.total,
            objects: s
                .objects
                .iter()
                .map(|o| pb::ObjectStatus {
                    api_version: o.api_version.clone(),
                    kind: o.kind.clone(),
                    namespace: o.namespace.clone(),
                    name: o.name.clone(),
                    health: match o.health {
                        Health::Ready => PbHealth::Ready,
                        Health::Progressing => PbHealth::Progressing,
                        Health::Failed => PbHealth::Failed,
                        Health::Missing => PbHealth::Missing,
                    } as i32,
                    message: o.message.clone(),
                })
                .collect(),
            objects_total: s.objects_total,
            feedback: s.feedback.clone().into_iter().collect(),
            drift: s
                .drift
                .iter()
                .map(|d| pb::DriftEvent {
                    object: d.object.clone(),
                    field: d.field.clone(),
                    manager: d.manager.clone(),
                    unix: d.unix,
                })
                .collect(),
            drift_corrections: s.drift_corrections,
            observed_unix_ms: unix_now_ms(),
        }),
    };
    pb::ConnectRequest { msg: Some(msg) }
}

fn goodbye(g: pb::Goodbye) -> End {
    use pb::goodbye::Reason;
    match Reason::try_from(g.reason).unwrap_or(Reason::Unspecified) {
        Reason::Removed => End::Fatal(Fatal::Removed(g.message)),
        Reason::Superseded => End::Fatal(Fatal::Superseded(g.message)),
        Reason::Shutdown => End::Retry(format!("hub shutting down: {}", g.message)),
        Reason::ProtocolError | Reason::Unspecified => {
            End::Retry(format!("hub ended the session: {}", g.message))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_and_never_stops() {
        let cap = Duration::from_secs(4);
        let delays: Vec<_> = reconnect_backoff(cap).take(50).collect();
        assert_eq!(
            delays.len(),
            50,
            "the reconnect loop must not run out of retries"
        );
        assert!(delays[0] <= Duration::from_millis(500));
        assert!(
            delays.iter().all(|d| *d <= cap),
            "--reconnect-max-delay is a cap, jitter included: {delays:?}"
        );
        assert!(
            delays[10..].iter().all(|d| *d >= cap / 2),
            "late delays sit in the upper half below the cap: {delays:?}"
        );
    }

    #[test]
    fn jitter_spreads_agents_that_fail_together() {
        let first: std::collections::HashSet<_> = (0..20)
            .map(|_| reconnect_backoff(Duration::from_secs(30)).next().unwrap())
            .collect();
        assert!(
            first.len() > 10,
            "first delays should differ between agents: {first:?}"
        );
    }
}
